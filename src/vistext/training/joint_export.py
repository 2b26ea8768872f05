"""torch's export of a joint model's text side and image heads to ONNX: the workshop's reference (needs torch).

The runtime builds the same two graphs from the weights without torch (``vistext.models.joint_graphs``);
``tests/test_graphs.py`` holds them to this export, output for output, on real photos and captions.

The text graph takes MiniLM's ``input_ids`` and ``attention_mask`` and returns the joined text embeddings:
MiniLM token states, the text encoder's pooling (plain mean or the learned ``minilm-gpo`` pooling), every
branch's projection, the join and the PCA reduction, normalised; and, as a second output ``minilm``, the plain
sentence embedding (mean-pooled, normalised MiniLM: what ``MiniLMEncoder.encode`` gives and what the concept
space of ``models.concepts`` is built on) from the same token states, so a query runs the transformer once.
The image graph takes the bundled encoder's pooled features (and the grid, for grid heads) and returns the
joined image embeddings. The CSLS hubness correction is not in the graphs: it compares against the stored
reference banks, which ``joint_onnx`` does in NumPy.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vistext.encoders.onnx import OPSET
from vistext.encoders.text_encoders import MiniLMEncoder, MiniLMTokenPoolingEncoder
from vistext.errors import ModelError
from vistext.models.joint import JointModel


class TextGraph(nn.Module):
    """input_ids, attention_mask (N, L) -> joined, uncorrected text embeddings (N, joined_dim)."""

    def __init__(self, model: JointModel) -> None:
        super().__init__()
        encoder = model.text_encoder
        if not isinstance(encoder, MiniLMEncoder):
            raise ModelError(f"no ONNX export for text encoder {encoder.name!r} (only MiniLM-based ones)")
        self.model = model
        self.encoder = encoder
        self.backbone = encoder._load()  # noqa: SLF001 - the frozen MiniLM (with any fine-tuned top layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0), dim=-1)
        if isinstance(self.encoder, MiniLMTokenPoolingEncoder):
            features = torch.cat([hidden, mask], dim=-1)
            # pad to the pooling's fixed token count, as frozen_features does (a traced, shape-dependent pad)
            features = F.pad(features, (0, 0, 0, self.encoder.max_tokens - features.shape[1]))
            text = self.encoder.pool(features)
        else:
            text = mean
        return self.model.join(self.model.text_branches(text)), mean


class ImageGraph(nn.Module):
    """pooled (N, D) [+ grid (N, D, h, w)] -> joined, uncorrected image embeddings (N, joined_dim)."""

    def __init__(self, model: JointModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pooled: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.join(self.model.image_branches(pooled, grid))


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    names: list[str],
    outputs: tuple[str, ...] = ("joined",),
) -> None:
    """Export to ``path`` with the weights in ``path.data`` beside it: ONNX Runtime maps an external weights
    file instead of copying it out of the protobuf, which halves the text graph's load time."""
    import onnx

    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    axes = {name: {0: "n", 1: "tokens"} if name in ("input_ids", "attention_mask") else {0: "n"} for name in names}
    axes.update({name: {0: "n"} for name in outputs})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape-dependent Python values are expected here
        torch.onnx.export(
            module,
            args,
            str(tmp),
            input_names=names,
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    graph = onnx.load(str(tmp))
    onnx.save_model(
        graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=f"{path.name}.data"
    )
    tmp.unlink()


def export_text_graph(model: JointModel, path: Path) -> Path:
    """Write the text graph to ``path`` (+ ``path.data``)."""
    graph = TextGraph(model).eval()
    backbone_config: Any = graph.backbone.config
    previous = backbone_config._attn_implementation  # noqa: SLF001
    # eager attention always applies the padding mask; SDPA's "no padding, skip the mask" shortcut would be
    # traced as a constant and break batches of texts of different lengths
    backbone_config._attn_implementation = "eager"  # noqa: SLF001
    try:
        ids = torch.tensor([[101, 1037, 3899, 2652, 102, 0], [101, 1037, 3899, 102, 0, 0]], dtype=torch.long)
        mask = (ids > 0).long()
        mask[:, 0] = 1
        _export(graph, (ids, mask), path, ["input_ids", "attention_mask"], ("joined", "minilm"))
    finally:
        backbone_config._attn_implementation = previous  # noqa: SLF001
    return path


def export_image_graph(model: JointModel, path: Path) -> Path:
    """Write the image-heads graph to ``path`` (+ ``path.data``)."""
    graph = ImageGraph(model).eval()
    dim = int(model.config["image_dim"])
    pooled = torch.zeros(2, dim)
    if model.needs_grid:
        _export(graph, (pooled, torch.zeros(2, dim, 7, 7)), path, ["pooled", "grid"])
    else:
        _export(graph, (pooled,), path, ["pooled"])
    return path
