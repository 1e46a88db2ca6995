"""The default pass pipeline on seeded random CNN-like graphs: outputs unchanged (against
the interpreter on the original graph), the result verified, and layout assignment left
with at most one layout change per graph input and output."""

import math

import numpy as np
import pytest

from gemmstone.compiler.interpreter import run
from gemmstone.compiler.ir import Graph
from gemmstone.compiler.ops import Op
from gemmstone.compiler.passes import PassManager
from gemmstone.compiler.verify import verify

C, H, W = 4, 6, 6


def random_graph(seed: int) -> Graph:
    rng = np.random.default_rng(seed)

    def const(*shape):
        return g.constant(rng.standard_normal(shape).astype(np.float32), "k")

    g = Graph(f"random{seed}")
    values = [g.input(name, (1, C, H, W)) for name in ("x", "y")[:rng.integers(1, 3)]]
    for _ in range(rng.integers(4, 14)):
        a = values[rng.integers(len(values))]
        kind = rng.integers(12)
        if kind == 0:
            out = g.add(Op.CONV2D, [a, const(C, C, 3, 3), const(C)], {"padding": (1,) * 4})
        elif kind == 1:
            out = g.add(Op.CONV2D, [a, const(C, 1, 3, 3)], {"padding": (1,) * 4, "groups": C})
        elif kind == 2:
            out = g.add([Op.RELU, Op.RELU6, Op.IDENTITY][rng.integers(3)], [a])
        elif kind == 3:
            out = g.add(Op.ADD, [a, values[rng.integers(len(values))]])
        elif kind == 4:
            out = g.add(Op.ADD, [a, const(C, 1, 1)])
        elif kind == 5:
            scalar = g.constant(np.float32(rng.choice([0.0, 1.0, 2.0])), "s")
            out = g.add(Op.MUL if rng.integers(2) else Op.ADD, [a, scalar])
        elif kind == 6:
            t = g.add(Op.TRANSPOSE, [a], {"perm": (0, 2, 3, 1)})
            out = g.add(Op.TRANSPOSE, [g.add(Op.RELU, [t])], {"perm": (0, 3, 1, 2)})
        elif kind == 7:
            r = g.add(Op.RESHAPE, [a], {"shape": (1, C, H * W)})
            out = g.add(Op.RESHAPE, [r], {"shape": (1, C, H, W)})
        elif kind == 8:
            out = g.add(Op.MAX_POOL2D, [a], {"kernel": (3, 3), "stride": (1, 1),
                                              "padding": (1,) * 4})
        elif kind == 9:
            stats = [const(C), const(C), const(C),
                     g.constant(np.abs(rng.standard_normal(C)).astype(np.float32) + 0.5, "v")]
            out = g.add(Op.BATCH_NORM, [a, *stats])
        elif kind == 10:
            cat = g.add(Op.CONCAT, [a, values[rng.integers(len(values))]], {"axis": 1})
            out = g.add(Op.CONV2D, [cat, const(C, 2 * C, 1, 1)])
        else:
            out = g.add(Op.CLAMP, [a], {"min": -0.5, "max": math.inf})
        values.append(out)
    outputs = [values[-1]]
    if rng.integers(2):
        outputs.append(values[rng.integers(len(values))])
    g.output(*outputs)
    return g


@pytest.mark.parametrize("seed", range(40))
def test_pipeline_preserves_random_graphs(seed):
    graph = random_graph(seed)
    verify(graph)
    before = graph.copy()
    PassManager().run(graph)
    data = np.random.default_rng(seed + 1000).standard_normal((2, 1, C, H, W))
    inputs = list(data.astype(np.float32)[:len(graph.inputs)])
    for got, want in zip(run(graph, *inputs), run(before, *inputs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert all(n.op is Op.INPUT for n in graph.nodes[:len(graph.inputs)])
    transposes = graph.count(Op.TRANSPOSE)
    assert transposes <= len(graph.inputs) + len(graph.outputs), str(graph)
