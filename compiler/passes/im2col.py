"""Shallow convolutions as host im2col + a 1x1 convolution (fewer k steps on the array).

The convolution kernel (`gemmstone.compiler.kernels.conv`) runs one k step per kernel tap
and chunk of ``rows`` input channels, so a convolution on few channels leaves most array
rows idle: ResNet-18's first layer (7x7, stride 2, 3 channels) fills 3 of 16 rows in each
of its 49 steps. With the patches gathered on the host (``im2col``, the graph input is
there anyway), the same products are a 1x1 convolution over KH * KW * C channels: 10 steps
of 16 rows instead of 49 (the TPU's space-to-depth trick, taken all the way).

Exact in integers: the patches are the input's int8 values and zero padding, the weights
are the same int8 values in the (kh, kw, c) order of the patches, and the int32 sums add
the same products (two's complement addition is associative).
"""

from __future__ import annotations

import numpy as np

from gemmstone.compiler.ir import Graph, Node
from gemmstone.compiler.ops import Op

__all__ = ["unfold_shallow_convs", "unfold_steps"]


def unfold_steps(kernel: tuple[int, int], channels: int, rows: int) -> tuple[int, int]:
    """k steps of a convolution on the array (one per tap and chunk of ``rows`` channels)
    and of its im2col form (chunks of the KH * KW * C patch)."""
    taps = kernel[0] * kernel[1]
    return taps * -(-channels // rows), -(-(taps * channels) // rows)


def _on_array(node: Node) -> bool:
    """Whether ``node``'s value comes out of an accelerator program (an im2col of it would
    cut the program in two and copy the value to the host and back)."""
    if node.op is Op.REQUANTIZE:
        node = node.inputs[0]
    return node.op in (Op.QCONV2D, Op.QMATMUL)


def unfold_shallow_convs(graph: Graph, rows: int) -> None:
    """``qconv2d(x, W)`` -> ``qconv2d(im2col(x), W')`` (1x1, stride 1, no padding) for a
    convolution that runs on an array of ``rows`` rows with fewer k steps so: on the array
    (`gemmstone.compiler.lowering.partition.accelerator_reason`), NHWC, one group, kernel
    larger than 1x1, and its input computed on the host (a graph input, its quantization,
    a layout change...). The patches are zero-padded to whole k steps (``channels`` a
    multiple of ``rows``), so every DRAM line of them starts on a bus beat; ``W'`` is
    [O, channels, 1, 1] with zero rows there. Bias, residual and requantize are kept."""
    # Lowering runs this pass: its module imports the passes, so import it here.
    from gemmstone.compiler.lowering.partition import accelerator_reason

    users = graph.users()
    for node in list(graph.nodes):
        if node.op is not Op.QCONV2D or node.attrs["groups"] != 1:
            continue
        x, weight = node.inputs[0], node.inputs[1]
        out_c, channels, kh, kw = weight.shape
        before, after = unfold_steps((kh, kw), channels, rows)
        if (after >= before or _on_array(x) or x.op is Op.IM2COL
                or accelerator_reason(node, users[node])):
            continue
        patch = kh * kw * channels
        width = after * rows
        cols = graph.add(Op.IM2COL, [x], {"kernel": (kh, kw), "stride": node.attrs["stride"],
                                          "padding": node.attrs["padding"],
                                          "channels": width},
                         name=f"{node.name}_im2col", before=node)
        dense = np.zeros((out_c, width), weight.value.dtype)
        dense[:, :patch] = weight.value.transpose(0, 2, 3, 1).reshape(out_c, patch)
        w = graph.constant(dense.reshape(out_c, width, 1, 1), f"{weight.name}_im2col",
                           before=node)
        node.inputs = [cols, w, *node.inputs[2:]]
        node.attrs.update(stride=(1, 1), padding=(0, 0, 0, 0))
        graph.retype(node)
    graph.sweep()
