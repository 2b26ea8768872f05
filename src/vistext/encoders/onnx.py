"""ONNX in one place: exporting a torch module over pixels, and opening an ONNX Runtime session on CPU.

Every graph vistext exports takes ``pixels`` (N, 3, size, size) float32 with a dynamic batch axis, and is
exported with the TorchScript exporter (``dynamo=False``) at opset 17. Neither torch nor onnxruntime is imported
until used: a tagger that brings its own network runs without PyTorch.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vistext.paths import atomic_write

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch

INPUT = "pixels"
OPSET = 17


def export_onnx(
    module: torch.nn.Module,
    size: int,
    path: Path | None = None,
    *,
    outputs: Sequence[str] = ("output",),
    batch: int = 2,
) -> bytes:
    """Export ``module`` (``pixels`` (N, 3, size, size) -> ``outputs``, all with a dynamic batch axis) and return
    the ONNX file's bytes; with ``path``, also write it there atomically (a half-written file is never left
    behind). The module is exported from a copy in eval mode, so the caller's stays as it was. ``batch`` is the
    traced example's batch size."""
    import torch

    module = copy.deepcopy(module).eval()
    dummy = torch.zeros(batch, 3, size, size)
    with tempfile.TemporaryDirectory(prefix="vistext-onnx-") as folder:
        tmp = Path(folder) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's constant-folding notes are not the user's concern
            torch.onnx.export(
                module,
                (dummy,),
                str(tmp),
                input_names=[INPUT],
                output_names=list(outputs),
                dynamic_axes={name: {0: "n"} for name in (INPUT, *outputs)},
                opset_version=OPSET,
                dynamo=False,
            )
        data = tmp.read_bytes()
    if path is not None:
        atomic_write(path, data)
    return data


def open_session(
    path: str | Path, *, threads: int | None = None, inter_op_threads: int | None = None, spinning: bool = True
) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for ``path``: ``threads`` intra-op threads (default: every core), quiet logs.
    ``spinning=False`` keeps idle intra-op threads from busy-waiting on cores other threads need (indexing's
    decode threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
