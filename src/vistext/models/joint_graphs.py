"""A saved joint model's two ONNX graphs, written from its safetensors (and MiniLM's) with NumPy: no torch.

The text graph takes MiniLM's ``input_ids`` and ``attention_mask`` and returns ``joined`` (the joint-space text
embeddings: MiniLM token states, the text encoder's pooling, every branch's projection, the join and the PCA
reduction, normalised) and ``minilm`` (the plain sentence embedding from the same token states: what the
concept space of ``models.concepts`` is built on), so a query runs the transformer once. The image graph takes
the bundled encoder's ``pooled`` features (and the ``grid``, for grid heads) and returns ``joined``. The CSLS
hubness correction is not in the graphs: it compares against the stored reference banks, in NumPy.
Each layer mirrors its torch module in ``models.heads``, ``models.joint`` and ``encoders.text_encoders``;
``tests/test_graphs.py`` holds the graphs to torch's export of the same model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vistext.encoders.minilm_graph import MiniLMGraph, minilm_path, minilm_weights
from vistext.encoders.onnx import FLOAT, INT64, GraphBuilder
from vistext.errors import ModelError

TEXT_ENCODERS = ("minilm", "minilm-gpo")
IMAGE_HEADS = ("pooled-mlp", "grid-gpo", "grid-attn")
TORCH_EPS = 1e-5  # nn.LayerNorm's default
NEG_INF = np.float32(-np.inf)


def has_graphs(card: dict[str, Any]) -> bool:
    """Whether the joint model of this card can be built as ONNX graphs (a GloVe text encoder cannot)."""
    return card.get("text_encoder") in TEXT_ENCODERS and card.get("image_head") in IMAGE_HEADS


class _Weights:
    """The joint model's weights by name (float32), with a clear error for a missing one."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.arrays = weights

    def __call__(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise ModelError(f"joint model weights lack {name!r}")
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays


def _projection(g: GraphBuilder, x: str, w: _Weights, prefix: str) -> str:
    """``heads.Projection``: LayerNorm, a linear map plus (when trained with one) a residual GELU MLP."""
    x = g.layer_norm(x, w(f"{prefix}.norm.weight"), w(f"{prefix}.norm.bias"), TORCH_EPS)
    out = g.linear(x, w(f"{prefix}.linear.weight"), w(f"{prefix}.linear.bias"))
    if f"{prefix}.mlp.0.weight" in w:
        hidden = g.gelu(g.linear(x, w(f"{prefix}.mlp.0.weight"), w(f"{prefix}.mlp.0.bias")))
        out = g.op("Add", out, g.linear(hidden, w(f"{prefix}.mlp.3.weight"), w(f"{prefix}.mlp.3.bias")))
    return out


def _join(g: GraphBuilder, branches: list[str], w: _Weights) -> str:
    """``JointModel.join``: normalised branches, concatenated, reduced to the principal directions."""
    units = [g.normalize(b) for b in branches]
    if len(units) == 1:
        return units[0]
    joined = g.op("Div", g.concat(units), g.constant(np.float32(np.sqrt(len(units)))))
    reducer = w("reducer") if "reducer" in w else np.zeros((0, 0), np.float32)
    return g.normalize(g.op("MatMul", joined, g.constant(reducer))) if reducer.size else joined


def _sorted_weighted_sum(g: GraphBuilder, tokens: str, weights: str) -> str:
    """GPO's core: per dimension, the tokens' values sorted high to low, summed with ``weights`` (N|1, L)."""
    length = g.op("Slice", g.op("Shape", tokens), g.constant([1]), g.constant([2]))
    ordered = g.op("TopK", tokens, length, outputs=2, axis=1, largest=1, sorted=1)[0]
    ordered = g.op("Where", g.op("IsInf", ordered), g.constant(np.float32(0.0)), ordered)
    weighted = g.op("Mul", ordered, g.op("Unsqueeze", weights, g.constant([-1])))
    return g.op("ReduceSum", weighted, g.constant([1]), keepdims=0)


def _text_gpo(g: GraphBuilder, states: str, mask: str, sentence: str, w: _Weights) -> str:
    """``MiniLMTokenPoolingEncoder.pool``: learned GPO over the real tokens, then the sentence vector."""
    normed = g.layer_norm(states, w("text_encoder.norm.weight"), w("text_encoder.norm.bias"), TORCH_EPS)
    tokens = g.gelu(g.linear(normed, w("text_encoder.reduce.weight"), w("text_encoder.reduce.bias")))
    real = g.op("Cast", g.op("Unsqueeze", mask, g.constant([-1])), to=9)  # bool
    tokens = g.op("Where", real, tokens, g.constant(NEG_INF))
    length = g.op("Slice", g.op("Shape", mask), g.constant([1]), g.constant([2]))
    logits = g.op("Slice", g.constant(w("text_encoder.position_logits")), g.constant([0]), length, g.constant([0]))
    positions = g.op(
        "Range", g.constant(np.int64(0)), g.op("Squeeze", length, g.constant([0])), g.constant(np.int64(1))
    )
    count = g.op("ReduceSum", mask, g.constant([1]), keepdims=1)
    logits = g.op("Where", g.op("Less", positions, count), logits, g.constant(NEG_INF))
    pooled = _sorted_weighted_sum(g, tokens, g.op("Softmax", logits, axis=1))
    return g.concat([pooled, sentence])


def text_graph(card: dict[str, Any], weights: dict[str, np.ndarray]) -> GraphBuilder:
    """The text graph of a joint model (its card and float32 weights given) over the installed MiniLM."""
    w = _Weights(weights)
    tuned = {
        k.removeprefix("text_encoder.tuned."): v for k, v in weights.items() if k.startswith("text_encoder.tuned.")
    }
    minilm = minilm_path()
    g = GraphBuilder("joint-text")
    ids = g.input("input_ids", INT64, ["n", "tokens"])
    mask = g.input("attention_mask", INT64, ["n", "tokens"])
    bert = MiniLMGraph(g, minilm, minilm_weights(minilm, tuned))
    states = bert.token_states(ids, mask)
    sentence = bert.mean_pooled(states, mask)
    features = _text_gpo(g, states, mask, sentence, w) if card["text_encoder"] == "minilm-gpo" else sentence
    branches = int(card.get("branches", 1))
    joined = _join(g, [_projection(g, features, w, f"text_projs.{b}") for b in range(branches)], w)
    g.output(joined, "joined", FLOAT, ["n", "dim"])
    g.output(sentence, "minilm", FLOAT, ["n", bert.hidden])
    return g


def _grid_tokens(g: GraphBuilder, grid: str) -> str:
    """(N, D, h, w) -> (N, h*w, D)."""
    return g.op("Transpose", g.op("Reshape", grid, g.constant([0, 0, -1])), perm=[0, 2, 1])


def _attention_pool(g: GraphBuilder, tokens: str, w: _Weights, prefix: str, heads: int = 8) -> str:
    """``heads.AttentionPooling``: one learned query (plus the mean token) attends over the grid positions."""
    query = g.op("Add", g.constant(w(f"{prefix}.query")), g.op("ReduceMean", tokens, axes=[1], keepdims=1))
    packed, bias = w(f"{prefix}.attn.in_proj_weight"), w(f"{prefix}.attn.in_proj_bias")
    width = packed.shape[1]
    parts = [g.linear(x, packed[i * width : (i + 1) * width], bias[i * width : (i + 1) * width])
             for i, x in enumerate((query, tokens, tokens))]  # fmt: skip
    split = g.constant([0, 0, heads, width // heads])
    q, k, v = (g.op("Transpose", g.op("Reshape", p, split), perm=perm)
               for p, perm in zip(parts, ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]), strict=True))  # fmt: skip
    scores = g.op("Mul", g.op("MatMul", q, k), g.constant(np.float32((width // heads) ** -0.5)))
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    merged = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), g.constant([0, -1]))
    return g.linear(merged, w(f"{prefix}.attn.out_proj.weight"), w(f"{prefix}.attn.out_proj.bias"))


def _image_head(g: GraphBuilder, pooled: str, grid: str | None, w: _Weights, kind: str, prefix: str) -> str:
    if kind == "pooled-mlp":
        return _projection(g, pooled, w, f"{prefix}.proj")
    if grid is None:
        raise ModelError(f"image head {kind!r} needs the feature grid")
    tokens = g.layer_norm(_grid_tokens(g, grid), w(f"{prefix}.norm.weight"), w(f"{prefix}.norm.bias"), TORCH_EPS)
    tokens = g.gelu(g.linear(tokens, w(f"{prefix}.reduce.weight"), w(f"{prefix}.reduce.bias")))
    if kind == "grid-gpo":
        weights = g.op("Unsqueeze", g.op("Softmax", g.constant(w(f"{prefix}.pool.logits")), axis=0), g.constant([0]))
        local = _sorted_weighted_sum(g, tokens, weights)
    else:
        local = _attention_pool(g, tokens, w, f"{prefix}.pool")
    return _projection(g, g.concat([local, pooled]), w, f"{prefix}.proj")


def image_graph(card: dict[str, Any], weights: dict[str, np.ndarray]) -> GraphBuilder:
    """The image graph of a joint model (its card and float32 weights given)."""
    w = _Weights(weights)
    kind = str(card["image_head"])
    dim = int(card["image_dim"])
    g = GraphBuilder("joint-image")
    pooled = g.input("pooled", FLOAT, ["n", dim])
    grid = g.input("grid", FLOAT, ["n", dim, "h", "w"]) if kind != "pooled-mlp" else None
    branches = int(card.get("branches", 1))
    joined = _join(g, [_image_head(g, pooled, grid, w, kind, f"image_heads.{b}") for b in range(branches)], w)
    g.output(joined, "joined", FLOAT, ["n", "dim"])
    return g
