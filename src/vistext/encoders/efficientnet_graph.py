"""EfficientNet-Lite0 as an ONNX graph, written from its PyTorch weights file with NumPy and ``onnx.helper``.

The network of the ``efficientnet-lite-pytorch`` package in eval mode, layer for layer: TensorFlow-style
"same" padding (fixed for 224-pixel inputs), batch norms folded into the convolutions (as torch's exporter
folds them), ReLU6, no squeeze-and-excitation. Outputs: ``pooled`` (N, 1280), ``logits`` (N, 1000) and
``grid`` (N, 1280, 7, 7). The input is ``pixels``: float32 NCHW already normalised, or (``uint8=True``) uint8
NHWC ``pixels_u8`` that the graph casts, transposes and normalises itself (indexing's path). Building takes well
under a second; ``tests/test_graphs.py`` checks the outputs against torch's export.
"""

from __future__ import annotations

import math

import numpy as np

from vistext.encoders.base import Preprocessing
from vistext.encoders.onnx import FLOAT, UINT8, GraphBuilder
from vistext.errors import ModelError

BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, output channels) of the seven stages of EfficientNet-Lite0
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))  # fmt: skip
STEM, HEAD = 32, 1280


def _same_padding(size: int, kernel: int, stride: int) -> tuple[list[int], int]:
    """TensorFlow "same" padding for a square input of ``size``: ONNX pads (top, left, bottom, right) and the
    output size (the extra pixel goes after, as ``Conv2dStaticSamePadding`` puts it)."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2], out


class _Network:
    """Adds EfficientNet-Lite0's layers to a ``GraphBuilder`` from a state dict of NumPy arrays."""

    def __init__(self, graph: GraphBuilder, state: dict[str, np.ndarray]) -> None:
        self.graph = graph
        self.state = state

    def weight(self, name: str) -> np.ndarray:
        if name not in self.state:
            raise ModelError(f"EfficientNet-Lite0 weights lack {name!r}")
        return np.asarray(self.state[name], np.float32)

    def conv_bn(self, x: str, conv: str, bn: str, size: int, stride: int = 1, groups: int = 1) -> tuple[str, int]:
        """Convolution (no bias) + batch norm folded into one Conv; (output name, output size)."""
        weight = self.weight(f"{conv}.weight")
        scale = self.weight(f"{bn}.weight") / np.sqrt(self.weight(f"{bn}.running_var") + np.float32(BN_EPS))
        bias = self.weight(f"{bn}.bias") - self.weight(f"{bn}.running_mean") * scale
        kernel = weight.shape[-1]
        pads, out = _same_padding(size, kernel, stride)
        g = self.graph
        y = g.op(
            "Conv",
            x,
            g.constant(weight * scale[:, None, None, None]),
            g.constant(bias),
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=pads,
            group=groups,
        )
        return y, out

    def relu6(self, x: str) -> str:
        return self.graph.op("Clip", x, self.graph.constant(np.float32(0.0)), self.graph.constant(np.float32(6.0)))

    def block(self, x: str, index: int, size: int, stride: int, skip: bool) -> tuple[str, int]:
        """One mobile inverted bottleneck: expand (1x1), depthwise (k x k), project (1x1), + input when shapes
        agree."""
        prefix = f"_blocks.{index}"
        y = x
        if f"{prefix}._expand_conv.weight" in self.state:
            y, _ = self.conv_bn(y, f"{prefix}._expand_conv", f"{prefix}._bn0", size)
            y = self.relu6(y)
        channels = self.weight(f"{prefix}._depthwise_conv.weight").shape[0]
        y, out = self.conv_bn(y, f"{prefix}._depthwise_conv", f"{prefix}._bn1", size, stride, groups=channels)
        y = self.relu6(y)
        y, _ = self.conv_bn(y, f"{prefix}._project_conv", f"{prefix}._bn2", out)
        return (self.graph.op("Add", y, x) if skip else y), out

    def features(self, pixels: str, size: int) -> str:
        """Normalised pixels -> the last feature map (N, 1280, size/32, size/32)."""
        x, size = self.conv_bn(pixels, "_conv_stem", "_bn0", size, stride=2)
        x = self.relu6(x)
        index, channels = 0, STEM
        for repeats, _kernel, stride, _expand, out_channels in STAGES:
            for r in range(repeats):
                step = stride if r == 0 else 1
                skip = step == 1 and channels == out_channels
                x, size = self.block(x, index, size, step, skip)
                index, channels = index + 1, out_channels
        x, _ = self.conv_bn(x, "_conv_head", "_bn1", size)
        return self.relu6(x)


def _normalising_input(graph: GraphBuilder, preprocessing: Preprocessing) -> str:
    """uint8 NHWC ``pixels`` -> float NCHW ``(x/255 - mean)/std``, as ``Preprocessing.normalise`` does."""
    size = preprocessing.size
    raw = graph.input("pixels_u8", UINT8, ["n", size, size, 3])
    nchw = graph.op("Transpose", graph.op("Cast", raw, to=FLOAT), perm=[0, 3, 1, 2])
    scaled = graph.op("Mul", nchw, graph.constant(np.float32(1.0 / (255.0 * preprocessing.std))))
    return graph.op("Sub", scaled, graph.constant(np.float32(preprocessing.mean / preprocessing.std)))


def efficientnet_graph(state: dict[str, np.ndarray], preprocessing: Preprocessing, uint8: bool) -> GraphBuilder:
    """The three-output EfficientNet-Lite0 graph of the weights ``state`` (a ``state_dict`` as NumPy arrays)."""
    size = preprocessing.size
    graph = GraphBuilder("efficientnet-lite0")
    if uint8:
        pixels = _normalising_input(graph, preprocessing)
    else:
        pixels = graph.input("pixels", FLOAT, ["n", 3, size, size])
    network = _Network(graph, state)
    grid = network.features(pixels, size)
    pooled = graph.op("ReduceMean", grid, axes=[2, 3], keepdims=0)
    logits = graph.op(
        "Gemm",
        pooled,
        graph.constant(network.weight("_fc.weight")),
        graph.constant(network.weight("_fc.bias")),
        transB=1,
    )
    cells = math.ceil(size / 32)
    graph.output(pooled, "pooled", FLOAT, ["n", HEAD])
    graph.output(logits, "logits", FLOAT, ["n", int(network.weight("_fc.bias").shape[0])])
    graph.output(grid, "grid", FLOAT, ["n", HEAD, cells, cells])
    return graph
