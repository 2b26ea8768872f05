"""ONNX in one place for the runtime: building graphs from NumPy weights, and opening ONNX Runtime sessions.

``GraphBuilder`` writes the graphs vistext runs (EfficientNet-Lite0, the joint model's text and image sides)
straight from their weights (``onnx_proto`` encodes the file; neither torch nor the ``onnx`` package is
needed), in about a second per graph. ``open_session`` is the one way anything in vistext opens a graph.
Exporting a torch module is the workshop's job (``vistext.training.export``). onnxruntime is imported only
when a session is opened.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vistext.encoders.onnx_proto import Node, value_info, write_model
from vistext.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime as ort

OPSET = 17
FLOAT, UINT8, INT64 = 1, 2, 7  # onnx.TensorProto element types


class GraphBuilder:
    """An ONNX graph assembled node by node; weights are added as NumPy arrays and named automatically."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[Node] = []
        self.weights: dict[str, np.ndarray] = {}
        self.inputs: list[bytes] = []
        self.outputs: list[bytes] = []
        self._count = 0

    def _fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, value: np.ndarray | np.generic | float | Sequence[int], name: str | None = None) -> str:
        """A weight (float arrays are stored as float32), by its name in the graph."""
        array = np.asarray(value)
        if array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        elif array.dtype.kind in "iu" and array.dtype != np.uint8:
            array = array.astype(np.int64, copy=False)
        key = name or self._fresh("w")
        self.weights[key] = np.ascontiguousarray(array)
        return key

    def op(self, kind: str, *inputs: str, outputs: int = 1, **attributes: Any) -> Any:
        """Add one node; its output name (or names, when ``outputs`` > 1)."""
        names = [self._fresh(kind.lower()) for _ in range(outputs)]
        self.nodes.append(Node(kind, list(inputs), names, attributes))
        return names[0] if outputs == 1 else names

    def input(self, name: str, element: int, shape: Sequence[int | str]) -> str:
        self.inputs.append(value_info(name, element, shape))
        return name

    def output(self, value: str, name: str, element: int, shape: Sequence[int | str]) -> None:
        self.nodes.append(Node("Identity", [value], [name]))
        self.outputs.append(value_info(name, element, shape))

    # ---- the few layers every vistext graph is made of -------------------------------------------------------
    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None = None) -> str:
        """``x @ weight.T + bias`` (a torch ``nn.Linear``'s weight layout)."""
        out = self.op("MatMul", x, self.constant(np.asarray(weight, np.float32).T))
        return out if bias is None else self.op("Add", out, self.constant(bias))

    def layer_norm(self, x: str, weight: np.ndarray, bias: np.ndarray, eps: float) -> str:
        return self.op("LayerNormalization", x, self.constant(weight), self.constant(bias), axis=-1, epsilon=eps)

    def gelu(self, x: str) -> str:
        """The exact (erf) GELU, as torch's ``nn.GELU()`` and BERT's ``gelu``."""
        erf = self.op("Erf", self.op("Div", x, self.constant(np.float32(np.sqrt(2.0)))))
        return self.op("Mul", self.op("Mul", x, self.op("Add", erf, self.constant(np.float32(1.0)))), self.half)

    @property
    def half(self) -> str:
        if "half" not in self.weights:
            self.constant(np.float32(0.5), "half")
        return "half"

    def normalize(self, x: str) -> str:
        """Unit rows along the last axis, as torch's ``F.normalize`` (norms clamped at 1e-12)."""
        norm = self.op("ReduceL2", x, axes=[-1], keepdims=1)
        return self.op("Div", x, self.op("Max", norm, self.constant(np.float32(1e-12))))

    def concat(self, values: Sequence[str], axis: int = -1) -> str:
        return values[0] if len(values) == 1 else self.op("Concat", *values, axis=axis)

    # ---- writing ---------------------------------------------------------------------------------------------
    def save(self, path: Path, external: bool = False) -> Path:
        """Write the graph to ``path``; ``external``: the weights in ``path.data`` beside it, which ONNX
        Runtime maps instead of copying out of the protobuf (halves a large graph's load time)."""
        return write_model(path, self.name, self.nodes, self.inputs, self.outputs, self.weights, OPSET, external)


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """A scratch directory beside ``out`` that becomes ``out`` when the block ends without error: a half-built
    set of graphs is never seen, and of two processes building the same one, the first to finish wins."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        try:
            tmp.rename(out)
        except OSError:
            if not out.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bulk_streams(cores: int | None = None) -> int:
    """How many batches a bulk pass (indexing) runs through an image graph at once: two wherever there are two
    cores, each run on ``bulk_threads`` of them. Two single-threaded runs side by side cost less CPU per photo
    than one run split over two threads, which waits at every layer for its slower half while decode threads
    share the cores (measured on 2 cores, 1,000 photos: 9.8 against 11.0 ms of CPU per photo for the graph
    alone, 14.0 against 15.3 ms for the whole ``vistext index``)."""
    cores = cores or os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def bulk_threads(streams: int, cores: int | None = None) -> int:
    """ONNX Runtime's intra-op threads for each of ``streams`` concurrent runs: the cores shared out."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, streams))


def open_session(
    path: str | Path,
    *,
    threads: int | None = None,
    inter_op_threads: int | None = None,
    spinning: bool = True,
    optimise: bool = True,
) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for ``path``: ``threads`` intra-op threads (default: every core), quiet logs.
    ``spinning=False`` keeps idle intra-op threads from busy-waiting on cores other threads need (indexing's
    decode threads). ``optimise=False`` skips graph rewrites and weight prepacking: quicker to open, for a
    graph run only a few times (a query). A graph ONNX Runtime cannot load is a ModelError naming the file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.disable_prepacking", "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        message = " ".join(str(error).split())
        raise ModelError(f"{path}: cannot load this ONNX graph ({message})") from None
