"""all-MiniLM-L6-v2 (a 6-layer BERT) as ONNX graph nodes, from the float16 safetensors that ship in
``models/pretrained/minilm-l6-v2``, with NumPy: what ``transformers.BertModel`` computes in eval mode with eager
attention, token states and the sentence-transformers mean pooling. No torch, no transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vistext.encoders.onnx import GraphBuilder
from vistext.errors import ModelError

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory that ships inside vistext (float16 weights; see its NOTICE.md).

    The one source of MiniLM for the runtime's graphs and the workshop's torch encoder alike, so a graph built
    here and a model trained there see the same weights."""
    path = Path(__file__).resolve().parents[1] / "models" / "pretrained" / "minilm-l6-v2"
    if not (path / WEIGHTS_FILE).is_file():
        raise ModelError(f"{path / WEIGHTS_FILE}: MiniLM's weights are missing from this install (reinstall vistext)")
    return path


def minilm_weights(directory: Path, tuned: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """MiniLM's weights as float32 arrays; ``tuned`` (``{i}.rest`` -> array) replaces the top ``i``-th layers
    (a joint model that fine-tuned them keeps only those, as ``MiniLMEncoder.tuned``)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        weights = {k: v.astype(np.float32, copy=False) for k, v in load_file(str(directory / WEIGHTS_FILE)).items()}
    except (OSError, SafetensorError) as error:
        raise ModelError(f"{directory / WEIGHTS_FILE}: unreadable MiniLM weights ({error})") from None
    layers = int(_config(directory)["num_hidden_layers"])
    tuned = tuned or {}
    count = len({key.split(".", 1)[0] for key in tuned})
    for key, value in tuned.items():
        index, rest = key.split(".", 1)
        weights[f"encoder.layer.{layers - count + int(index)}.{rest}"] = np.asarray(value, np.float32)
    return weights


def _config(directory: Path) -> dict:
    try:
        return json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{directory / 'config.json'}: unreadable MiniLM config ({error})") from None


class MiniLMGraph:
    """Adds MiniLM's nodes to ``graph``: ``token_states(ids, mask)`` and ``mean_pooled(states, mask)``."""

    def __init__(self, graph: GraphBuilder, directory: Path, weights: dict[str, np.ndarray]) -> None:
        config = _config(directory)
        self.graph = graph
        self.weights = weights
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config["layer_norm_eps"])
        if config.get("hidden_act", "gelu") != "gelu":
            raise ModelError(f"{directory}: MiniLM with activation {config['hidden_act']!r} is not supported")

    def w(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise ModelError(f"MiniLM weights lack {name!r}")
        return self.weights[name]

    def _norm(self, x: str, prefix: str) -> str:
        return self.graph.layer_norm(x, self.w(f"{prefix}.weight"), self.w(f"{prefix}.bias"), self.eps)

    def _dense(self, x: str, prefix: str) -> str:
        return self.graph.linear(x, self.w(f"{prefix}.weight"), self.w(f"{prefix}.bias"))

    def embeddings(self, ids: str) -> str:
        g = self.graph
        words = g.op("Gather", g.constant(self.w("embeddings.word_embeddings.weight")), ids, axis=0)
        length = g.op("Slice", g.op("Shape", ids), g.constant([1]), g.constant([2]))
        table = g.constant(self.w("embeddings.position_embeddings.weight"))
        positions = g.op("Slice", table, g.constant([0]), length, g.constant([0]))
        token_type = g.constant(self.w("embeddings.token_type_embeddings.weight")[0])
        summed = g.op("Add", g.op("Add", words, token_type), positions)
        return self._norm(summed, "embeddings.LayerNorm")

    def _heads(self, x: str, keys: bool = False) -> str:
        """(N, L, H) -> (N, heads, L, H/heads), or (N, heads, H/heads, L) for the keys."""
        g = self.graph
        split = g.op("Reshape", x, g.constant([0, 0, self.heads, self.hidden // self.heads]))
        return g.op("Transpose", split, perm=[0, 2, 3, 1] if keys else [0, 2, 1, 3])

    def _attention(self, x: str, bias: str, prefix: str) -> str:
        g = self.graph
        query = self._heads(self._dense(x, f"{prefix}.self.query"))
        key = self._heads(self._dense(x, f"{prefix}.self.key"), keys=True)
        value = self._heads(self._dense(x, f"{prefix}.self.value"))
        scale = g.constant(np.float32((self.hidden // self.heads) ** -0.5))
        scores = g.op("Add", g.op("Mul", g.op("MatMul", query, key), scale), bias)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), value)
        merged = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), g.constant([0, 0, self.hidden]))
        return self._norm(g.op("Add", self._dense(merged, f"{prefix}.output.dense"), x), f"{prefix}.output.LayerNorm")

    def _layer(self, x: str, bias: str, index: int) -> str:
        prefix = f"encoder.layer.{index}"
        attended = self._attention(x, bias, f"{prefix}.attention")
        inner = self.graph.gelu(self._dense(attended, f"{prefix}.intermediate.dense"))
        out = self.graph.op("Add", self._dense(inner, f"{prefix}.output.dense"), attended)
        return self._norm(out, f"{prefix}.output.LayerNorm")

    def token_states(self, ids: str, mask: str) -> str:
        """input_ids, attention_mask (N, L) int64 -> the last layer's token states (N, L, hidden)."""
        g = self.graph
        # padding keys get the most negative float added to their scores, as transformers does
        keep = g.op("Cast", g.op("Unsqueeze", mask, g.constant([1, 2])), to=1)
        lowest = g.constant(np.float32(np.finfo(np.float32).min))
        bias = g.op("Mul", g.op("Sub", g.constant(np.float32(1.0)), keep), lowest)
        x = self.embeddings(ids)
        for index in range(self.layers):
            x = self._layer(x, bias, index)
        return x

    def mean_pooled(self, states: str, mask: str) -> str:
        """The sentence embedding: the mean of the real tokens' states, L2-normalised (N, hidden)."""
        g = self.graph
        weights = g.op("Cast", g.op("Unsqueeze", mask, g.constant([-1])), to=1)
        total = g.op("ReduceSum", g.op("Mul", states, weights), g.constant([1]), keepdims=0)
        count = g.op("Max", g.op("ReduceSum", weights, g.constant([1]), keepdims=0), g.constant(np.float32(1.0)))
        return g.normalize(g.op("Div", total, count))
