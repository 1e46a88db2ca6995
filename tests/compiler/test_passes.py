"""Each pass on a small graph: the listing before and after, `verify`, and the interpreter's
outputs before == after on random inputs. Then the pass manager and the whole pipeline."""

import math
from itertools import product

import numpy as np
import pytest

from gemmstone.compiler.errors import IRError, VerifyError
from gemmstone.compiler.interpreter import run
from gemmstone.compiler.ir import Graph
from gemmstone.compiler.ops import DType, Op
from gemmstone.compiler.passes import (
    DEFAULT_PIPELINE,
    PassManager,
    assign_layouts,
    eliminate_common_subexpressions,
    fold_batch_norms,
    fold_constants,
    fold_qdq_into_integer_ops,
    fold_transposes_into_matmul,
    format_reports,
    fuse_accelerator_ops,
    remove_dead_nodes,
    remove_identities,
    simplify_arithmetic,
)
from gemmstone.compiler.passes.im2col import unfold_shallow_convs, unfold_steps
from gemmstone.compiler.passes.mincut import min_cut
from gemmstone.compiler.verify import verify

RNG = np.random.default_rng(1)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def random_inputs(graph):
    return [RNG.standard_normal(n.shape).astype(n.dtype.numpy) if n.dtype.is_float else
            RNG.integers(-100, 100, n.shape).astype(n.dtype.numpy) for n in graph.inputs]


def apply(graph, rewrite, tol=1e-5):
    """Run ``rewrite`` on ``graph``; check verify and equal outputs; return the listing."""
    before = graph.copy()
    rewrite(graph)
    verify(graph)
    inputs = random_inputs(graph)
    for ours, theirs in zip(run(graph, *inputs), run(before, *inputs), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)
    return str(graph)


def listing(*lines):
    return "\n".join(lines)


def test_remove_dead_nodes_keeps_inputs():
    g = Graph("g")
    x, unused = g.input("x", (2, 3)), g.input("unused", (1,))
    g.add(Op.RELU, [g.add(Op.GELU, [x])])
    g.output(g.add(Op.SOFTMAX, [x]))
    assert apply(g, remove_dead_nodes) == listing(
        "graph g(%x: f32[2,3], %unused: f32[1]) {",
        "  %softmax = softmax(%x) : f32[2,3]",
        "  output(%softmax)",
        "}")
    assert unused in g.inputs


def test_remove_identities():
    g = Graph("g")
    x = g.input("x", (2, 3))
    a = g.add(Op.IDENTITY, [x])
    b = g.add(Op.TRANSPOSE, [a], {"perm": (0, 1)})
    c = g.add(Op.RESHAPE, [b], {"shape": (2, 3)})
    d = g.add(Op.CONCAT, [c], {"axis": 0})
    g.output(g.add(Op.RELU, [d]))
    assert apply(g, remove_identities) == listing(
        "graph g(%x: f32[2,3]) {",
        "  %relu = relu(%x) : f32[2,3]",
        "  output(%relu)",
        "}")


def test_fold_constants():
    g = Graph("g")
    x = g.input("x", (3,))
    k = g.add(Op.MUL, [g.constant(np.array([1, 2, 3], np.float32), "a"),
                       g.constant(np.float32(2), "two")])
    w = g.add(Op.TRANSPOSE, [g.constant(np.zeros((2, 3), np.float32), "w")], {"perm": (1, 0)})
    g.output(g.add(Op.ADD, [x, k]), w)
    assert apply(g, fold_constants) == listing(
        "graph g(%x: f32[3]) {",
        "  %mul = constant {value=[2.,4.,6.]} : f32[3]",
        "  %transpose = constant {value=[0.,0.,0.,0.,0.,0.]} : f32[3,2]",
        "  %add = add(%x, %mul) : f32[3]",
        "  output(%add, %transpose)",
        "}")


def test_fold_constants_leaves_large_broadcasts():
    g = Graph("g")
    wide = g.add(Op.ADD, [g.constant(np.zeros((1, 512), np.float32), "row"),
                          g.constant(np.zeros((512, 1), np.float32), "col")])
    g.output(wide)
    fold_constants(g)
    assert wide.op is Op.ADD


def test_eliminate_common_subexpressions():
    g = Graph("g")
    x, y = g.input("x", (2, 3)), g.input("y", (2, 3))
    one_a = g.constant(np.ones(3, np.float32), "one_a")
    one_b = g.constant(np.ones(3, np.float32), "one_b")
    s1, s2 = g.add(Op.ADD, [x, y]), g.add(Op.ADD, [y, x])  # commutative
    m1, m2 = g.add(Op.MUL, [s1, one_a]), g.add(Op.MUL, [s2, one_b])
    sm1 = g.add(Op.SOFTMAX, [m1], {"axis": 0})
    sm2 = g.add(Op.SOFTMAX, [m2], {"axis": 1})  # different attribute: stays
    g.output(sm1, sm2)
    assert apply(g, eliminate_common_subexpressions) == listing(
        "graph g(%x: f32[2,3], %y: f32[2,3]) {",
        "  %one_a = constant {value=[1.,1.,1.]} : f32[3]",
        "  %add = add(%x, %y) : f32[2,3]",
        "  %mul = mul(%add, %one_a) : f32[2,3]",
        "  %softmax = softmax(%mul) {axis=0} : f32[2,3]",
        "  %softmax_1 = softmax(%mul) {axis=1} : f32[2,3]",
        "  output(%softmax, %softmax_1)",
        "}")


def test_simplify_neutral_and_absorbing_elements():
    g = Graph("g")
    x = g.input("x", (2, 3))
    zero, one = g.constant(np.float32(0), "zero"), g.constant(np.ones(3, np.float32), "one")
    a = g.add(Op.MUL, [one, g.add(Op.ADD, [x, zero])])
    b = g.add(Op.DIV, [g.add(Op.SUB, [a, zero]), one])
    wide = g.add(Op.ADD, [g.input("v", (3,)), g.constant(np.zeros((2, 3), np.float32))])
    keep = g.add(Op.MUL, [x, zero])  # float x * 0 is not 0 for inf/nan
    i = g.input("i", (4,), DType.INT32)
    gone = g.add(Op.MUL, [i, g.constant(np.int32(0), "izero")])
    g.output(b, wide, keep, gone)
    assert apply(g, simplify_arithmetic) == listing(
        "graph g(%x: f32[2,3], %v: f32[3], %i: i32[4]) {",
        "  %zero = constant {value=0.} : f32[]",
        "  %const = constant {value=[0.,0.,0.,0.,0.,0.]} : f32[2,3]",
        "  %add_1 = add(%v, %const) : f32[2,3]",
        "  %mul_1 = mul(%x, %zero) : f32[2,3]",
        "  %mul_2_zero = constant {value=[0,0,0,0]} : i32[4]",
        "  output(%x, %add_1, %mul_1, %mul_2_zero)",
        "}")


def test_simplify_transpose_and_reshape_chains():
    g = Graph("g")
    x = g.input("x", (2, 3, 4))
    t = g.add(Op.TRANSPOSE, [g.add(Op.TRANSPOSE, [x], {"perm": (1, 0, 2)})],
              {"perm": (2, 1, 0)})
    back = g.add(Op.TRANSPOSE, [g.add(Op.TRANSPOSE, [x], {"perm": (0, 2, 1)})],
                 {"perm": (0, 2, 1)})
    r = g.add(Op.RESHAPE, [g.add(Op.RESHAPE, [x], {"shape": (6, 4)})], {"shape": (24,)})
    unit = g.add(Op.TRANSPOSE, [g.input("u", (5, 1, 1))], {"perm": (1, 0, 2)})
    g.output(t, back, r, unit)
    assert apply(g, simplify_arithmetic) == listing(
        "graph g(%x: f32[2,3,4], %u: f32[5,1,1]) {",
        "  %transpose_1_1 = transpose(%x) {perm=(2,0,1)} : f32[4,2,3]",
        "  %reshape_1_1 = reshape(%x) {shape=(24)} : f32[24]",
        "  %transpose_4_1 = reshape(%u) {shape=(1,5,1)} : f32[1,5,1]",
        "  output(%transpose_1_1, %x, %reshape_1_1, %transpose_4_1)",
        "}")


def test_simplify_activation_chains():
    g = Graph("g")
    x = g.input("x", (8,))
    double = g.add(Op.RELU, [g.add(Op.RELU, [x])])
    six = g.add(Op.CLAMP, [x], {"min": 0.0, "max": 6.0})
    relu = g.add(Op.CLAMP, [x], {"min": 0.0})
    other = g.add(Op.CLAMP, [x], {"min": -1.0, "max": 1.0})
    g.output(double, six, relu, other)
    text = apply(g, simplify_arithmetic)
    assert g.count(Op.RELU) == 2 and g.count(Op.RELU6) == 1 and g.count(Op.CLAMP) == 1
    assert "relu(%x)" in text and "relu6(%x)" in text


def test_fold_transposes_into_matmul():
    g = Graph("g")
    a, b = g.input("a", (2, 5, 4)), g.input("b", (2, 6, 5))
    ta = g.add(Op.TRANSPOSE, [a], {"perm": (0, 2, 1)})
    tb = g.add(Op.TRANSPOSE, [b], {"perm": (0, 2, 1)})
    other = g.add(Op.TRANSPOSE, [g.input("c", (5, 2, 6))], {"perm": (1, 0, 2)})
    g.output(g.add(Op.MATMUL, [ta, tb]), g.add(Op.MATMUL, [ta, other]))
    assert apply(g, fold_transposes_into_matmul) == listing(
        "graph g(%a: f32[2,5,4], %b: f32[2,6,5], %c: f32[5,2,6]) {",
        "  %transpose_2 = transpose(%c) {perm=(1,0,2)} : f32[2,5,6]",
        "  %matmul = matmul(%a, %b) {transpose_a=True, transpose_b=True} : f32[2,4,6]",
        "  %matmul_1 = matmul(%a, %transpose_2) {transpose_a=True} : f32[2,4,6]",
        "  output(%matmul, %matmul_1)",
        "}")


def test_fold_qdq_into_integer_ops():
    g = Graph("qdq")
    x = g.input("x", (1, 2, 4, 4))

    def qdq(value, scale, zero, name):
        params = {"scale": np.float32([scale]), "zero_point": np.array([zero])}
        q = g.add(Op.QUANTIZE, [value], params, name=f"{name}_q")
        return g.add(Op.DEQUANTIZE, [q], params, name=f"{name}_dq")

    weight = g.add(Op.DEQUANTIZE, [g.constant(RNG.integers(-9, 9, (3, 2, 3, 3)).astype(np.int8),
                                              "w")],
                   {"scale": np.float32([0.5, 0.25, 1.0]), "zero_point": np.zeros(3, np.int64),
                    "axis": 0})
    conv = g.add(Op.CONV2D, [qdq(x, 0.5, 3, "x"), weight,
                             g.constant(np.float32([1.0, -2.5, 0.5]), "b")], name="conv")
    flat = g.add(Op.RESHAPE, [qdq(conv, 2.0, -5, "y")], {"shape": (1, 3, 4)}, name="flat")
    g.output(qdq(flat, 2.0, -5, "z"))
    # Power-of-two scales and a bias on the accumulator's grid: the float path before is
    # exact, so the outputs match bit for bit.
    assert apply(g, fold_qdq_into_integer_ops, tol=0) == listing(
        "graph qdq(%x: f32[1,2,4,4]) {",
        "  %x_q = quantize(%x) {scale=[0.5], zero_point=[3]} : i8[1,2,4,4]",
        "  %w_1 = constant : i8[3,2,3,3]",
        "  %conv_bias_q = constant {value=[4,-20,1]} : i32[3]",
        "  %conv_1 = qconv2d(%x_q, %w_1, %conv_bias_q) {bias=True, x_zero_point=3} : "
        "i32[1,3,2,2]",
        "  %y_q_1 = requantize(%conv_1) {mode='float', scale=[0.125,0.0625,0.25], "
        "zero_point=-5, axis=1} : i8[1,3,2,2]",
        "  %flat_1 = reshape(%y_q_1) {shape=(1,3,4)} : i8[1,3,4]",
        "  %z_dq = dequantize(%flat_1) {scale=[2.], zero_point=[-5]} : f32[1,3,4]",
        "  output(%z_dq)",
        "}")


def bn_params(g, channels, tag):
    return [g.constant(rand(channels), f"{tag}_gamma"), g.constant(rand(channels), f"{tag}_beta"),
            g.constant(rand(channels), f"{tag}_mean"),
            g.constant(np.abs(rand(channels)) + 0.5, f"{tag}_var")]


def test_fold_batch_norms_into_conv_and_linear():
    g = Graph("g")
    x = g.input("x", (2, 3, 5, 5))
    conv = g.add(Op.CONV2D, [x, g.constant(rand(4, 3, 3, 3), "w")], name="conv")
    bn = g.add(Op.BATCH_NORM, [conv, *bn_params(g, 4, "bn")], name="bn")
    flat = g.add(Op.RESHAPE, [bn], {"shape": (2, 36)})
    fc = g.add(Op.MATMUL, [flat, g.constant(rand(7, 36), "fc_w"), g.constant(rand(7), "fc_b")],
               {"transpose_b": True}, name="fc")
    bn1d = g.add(Op.BATCH_NORM, [fc, *bn_params(g, 7, "bn1d")], name="bn1d")
    g.output(bn1d)
    text = apply(g, fold_batch_norms, tol=1e-4)
    assert g.count(Op.BATCH_NORM) == 0
    assert "%conv = conv2d(%x, %w_bn, %bn_bias) : f32[2,4,3,3]" in text
    assert "%fc = matmul(%reshape, %fc_w_bn, %bn1d_bias) {transpose_b=True} : f32[2,7]" in text


def test_fold_batch_norms_skips_shared_or_non_constant_producers():
    g = Graph("g")
    x = g.input("x", (1, 3, 4, 4))
    conv = g.add(Op.CONV2D, [x, g.constant(rand(3, 3, 1, 1), "w")])
    bn = g.add(Op.BATCH_NORM, [conv, *bn_params(g, 3, "bn")])
    runtime_weight = g.add(Op.CONV2D, [x, g.input("w2", (3, 3, 1, 1))])
    bn2 = g.add(Op.BATCH_NORM, [runtime_weight, *bn_params(g, 3, "bn2")])
    g.output(bn, conv, bn2)
    apply(g, fold_batch_norms)
    assert g.count(Op.BATCH_NORM) == 2


def test_fuse_conv_bias_residual_activation():
    g = Graph("block")
    x, r = g.input("x", (1, 4, 6, 6)), g.input("r", (1, 8, 6, 6))
    conv = g.add(Op.CONV2D, [x, g.constant(rand(8, 4, 3, 3), "w")], {"padding": (1, 1, 1, 1)},
                 name="conv")
    biased = g.add(Op.ADD, [conv, g.constant(np.arange(8, dtype=np.float32).reshape(8, 1, 1),
                                             "b")])
    g.output(g.add(Op.RELU, [g.add(Op.ADD, [r, biased])]))
    assert apply(g, fuse_accelerator_ops) == listing(
        "graph block(%x: f32[1,4,6,6], %r: f32[1,8,6,6]) {",
        "  %w = constant : f32[8,4,3,3]",
        "  %conv_bias = constant {value=[0.,1.,2.,3.,4.,5.,6.,7.]} : f32[8]",
        "  %conv = fused_conv2d(%x, %w, %conv_bias, %r) {padding=(1,1,1,1), bias=True, "
        "residual=True, clamp=(0,inf)} : f32[1,8,6,6]",
        "  output(%conv)",
        "}")


def test_fuse_matmul_chain_stops_at_a_shared_value():
    g = Graph("g")
    x = g.input("x", (3, 5))
    mm = g.add(Op.MATMUL, [x, g.constant(rand(5, 4), "w"), g.constant(rand(4), "b")])
    biased = g.add(Op.ADD, [mm, g.constant(rand(1, 4), "b2")])
    clamp = g.add(Op.CLAMP, [biased], {"min": -1.0, "max": 1.0})
    g.output(clamp, g.add(Op.RELU6, [mm]))
    apply(g, fuse_accelerator_ops)
    (fused,) = [n for n in g.nodes if n.op is Op.FUSED_MATMUL]
    assert fused.attrs["clamp"] is None and g.count(Op.CLAMP) == 1  # mm has two users


def test_fuse_merges_constant_adds_into_an_existing_bias():
    g = Graph("g")
    x = g.input("x", (3, 5))
    mm = g.add(Op.MATMUL, [x, g.constant(rand(5, 4), "w"), g.constant(np.ones(4, np.float32))])
    out = g.add(Op.RELU6, [g.add(Op.ADD, [g.constant(np.full(4, 2, np.float32)), mm])])
    g.output(out)
    apply(g, fuse_accelerator_ops)
    (fused,) = [n for n in g.nodes if n.op is Op.FUSED_MATMUL]
    assert fused.inputs[2].value.tolist() == [3.0] * 4 and fused.attrs["clamp"] == (0.0, 6.0)


def conv_chain():
    """conv -> pool -> (conv, conv) -> add -> relu -> global pool -> flatten -> linear."""
    g = Graph("net")
    x = g.input("x", (1, 3, 8, 8))
    c1 = g.add(Op.FUSED_CONV2D, [x, g.constant(rand(8, 3, 3, 3), "w1")],
               {"padding": (1, 1, 1, 1), "clamp": (0.0, math.inf)})
    p = g.add(Op.MAX_POOL2D, [c1], {"kernel": (2, 2), "stride": (2, 2)})
    c2 = g.add(Op.FUSED_CONV2D, [p, g.constant(rand(8, 8, 1, 1), "w2")])
    c3 = g.add(Op.FUSED_CONV2D, [p, g.constant(rand(8, 8, 3, 3), "w3")],
               {"padding": (1, 1, 1, 1)})
    s = g.add(Op.RELU, [g.add(Op.ADD, [c2, c3])])
    s = g.add(Op.ADD, [s, g.constant(rand(8, 1, 1), "shift")])
    cat = g.add(Op.CONCAT, [s, c3], {"axis": 1})
    gp = g.add(Op.ADAPTIVE_AVG_POOL2D, [cat], {"output_size": (1, 1)})
    flat = g.add(Op.RESHAPE, [gp], {"shape": (1, 16)})
    g.output(g.add(Op.MATMUL, [flat, g.constant(rand(16, 10), "fc")]))
    return g


def test_assign_layouts_leaves_one_layout_change():
    g = conv_chain()
    apply(g, lambda graph: (assign_layouts(graph), simplify_arithmetic(graph)))
    spatial = [n for n in g.nodes if n.op in (Op.FUSED_CONV2D, Op.MAX_POOL2D,
                                               Op.ADAPTIVE_AVG_POOL2D)]
    assert all(n.attrs["layout"] == "NHWC" for n in spatial)
    transposes = [n for n in g.nodes if n.op is Op.TRANSPOSE]
    assert [(t.inputs[0].name, t.attrs["perm"]) for t in transposes] == [("x", (0, 2, 3, 1))]


def test_assign_layouts_folds_a_flatten_into_linear_weights():
    g = Graph("g")
    x = g.input("x", (2, 3, 4, 5))
    conv = g.add(Op.FUSED_CONV2D, [x, g.constant(rand(6, 3, 1, 1), "w")])
    flat = g.add(Op.RESHAPE, [conv], {"shape": (2, 120)})
    g.output(g.add(Op.FUSED_MATMUL, [flat, g.constant(rand(7, 120), "fc")],
                   {"transpose_b": True}),
             g.add(Op.MATMUL, [g.add(Op.RESHAPE, [g.add(Op.MAX_POOL2D, [conv], {
                 "kernel": (2, 2), "stride": (2, 2)})], {"shape": (2, 24)}),
                 g.constant(rand(24, 3), "fc2")]))
    apply(g, lambda graph: (assign_layouts(graph), simplify_arithmetic(graph)))
    assert [n.inputs[0].name for n in g.nodes if n.op is Op.TRANSPOSE] == ["x"]
    assert {n.name for n in g.nodes if n.is_constant} >= {"fc_nhwc", "fc2_nhwc"}


def test_pass_manager_reports_and_verifies():
    g = Graph("g")
    x = g.input("x", (1, 2, 4, 4))
    conv = g.add(Op.CONV2D, [x, g.constant(rand(3, 2, 1, 1), "w")])
    k = g.add(Op.MUL, [g.constant(rand(3), "a"), g.constant(rand(3), "b")])
    g.add(Op.RELU, [x])  # dead
    g.output(g.add(Op.RELU, [conv]), k)
    reports = PassManager([remove_dead_nodes, fold_constants, fuse_accelerator_ops]).run(g)
    # fold: the mul becomes a constant in place, its operands go; fuse: the conv absorbs
    # the relu, and the output node now takes the conv.
    assert [(r.name, r.removed, r.added, r.rewritten, r.nodes) for r in reports] == [
        ("remove_dead_nodes", 1, 0, 0, 8), ("fold_constants", 2, 0, 1, 6),
        ("fuse_accelerator_ops", 1, 0, 2, 5)]
    assert format_reports(reports).splitlines()[1].split()[:5] == [
        "remove_dead_nodes", "1", "0", "0", "8"]

    def break_types(graph):
        graph.find("max_pool2d").attrs["stride"] = (1, 1)
    with pytest.raises(VerifyError, match=r"^after pass break_types: %max_pool2d = max_pool2d: "
                                          r"recorded type"):
        PassManager([break_types]).run(conv_chain())


def test_default_pipeline_on_a_conv_net():
    g = Graph("net")
    x = g.input("x", (2, 3, 8, 8))
    y = g.add(Op.CONV2D, [x, g.constant(rand(6, 3, 3, 3), "w"), g.constant(rand(6), "b")],
              {"padding": (1, 1, 1, 1)})
    y = g.add(Op.RELU6, [g.add(Op.BATCH_NORM, [y, *bn_params(g, 6, "bn")])])
    y = g.add(Op.IDENTITY, [g.add(Op.MAX_POOL2D, [y], {"kernel": (2, 2), "stride": (2, 2)})])
    y = g.add(Op.RESHAPE, [g.add(Op.ADAPTIVE_AVG_POOL2D, [y], {"output_size": (1, 1)})],
              {"shape": (2, 6)})
    w = g.add(Op.TRANSPOSE, [g.constant(rand(5, 6), "fc")], {"perm": (1, 0)})
    g.output(g.add(Op.MATMUL, [y, w]))
    apply(g, PassManager(DEFAULT_PIPELINE).run, tol=1e-4)
    assert [n.op for n in g.nodes if not n.is_constant] == [
        Op.INPUT, Op.TRANSPOSE, Op.FUSED_CONV2D, Op.MAX_POOL2D, Op.ADAPTIVE_AVG_POOL2D,
        Op.RESHAPE, Op.FUSED_MATMUL, Op.OUTPUT]


def test_min_cut_matches_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(30):
        count = int(rng.integers(3, 8))
        edges = [(int(u), int(v), int(rng.integers(1, 6))) for u, v in
                 rng.integers(0, count, (int(rng.integers(2, 14)), 2)) if u != v]
        value, side = min_cut(count, edges, 0, count - 1)
        best = min(sum(c for u, v, c in edges if (u == 0 or bits[u - 1]) and
                       not (v == 0 or bits[v - 1]))
                   for bits in product([0, 1], repeat=count - 1) if not bits[-1])
        assert value == best
        assert 0 in side and count - 1 not in side
        assert sum(c for u, v, c in edges if u in side and v not in side) == value


def test_fuse_gives_a_residual_add_to_the_longer_reduction():
    """add(conv1x1(x), conv3x3(y)): the 3x3 carries the residual (the array pays for it
    per output tile), whichever conv comes first in the graph."""
    for downsample_first in (True, False):
        g = Graph("block")
        x, y = g.input("x", (1, 4, 6, 6)), g.input("y", (1, 8, 6, 6))
        convs = {}
        for name in ("down", "main") if downsample_first else ("main", "down"):
            kernel, source = (1, x) if name == "down" else (3, y)
            convs[name] = g.add(Op.CONV2D, [source, g.constant(rand(8, source.shape[1],
                                                                    kernel, kernel))],
                                {"padding": (kernel // 2,) * 4}, name=name)
        g.output(g.add(Op.RELU, [g.add(Op.ADD, [convs["down"], convs["main"]])]))
        apply(g, fuse_accelerator_ops)
        down, main = g.find("down"), g.find("main")
        assert (down.attrs["residual"], main.attrs["residual"]) == (False, True)
        assert main.inputs[-1] is down and main.attrs["clamp"] == (0.0, math.inf)
        assert g.outputs == [main]


def int8_conv(g, x, cout, kernel, *, stride=(1, 1), padding=(0, 0, 0, 0), name="conv",
              x_zero_point=0):
    """qconv2d(x, random int8 weights, int32 bias) -> fixed-point requantize, NHWC."""
    w = g.constant(RNG.integers(-127, 128, (cout, x.shape[-1], *kernel)).astype(np.int8),
                   f"{name}_w")
    b = g.constant(RNG.integers(-3000, 3000, cout).astype(np.int32), f"{name}_b")
    acc = g.add(Op.QCONV2D, [x, w, b], {"stride": stride, "padding": padding,
                                        "layout": "NHWC", "bias": True,
                                        "x_zero_point": x_zero_point}, name=name)
    return g.add(Op.REQUANTIZE, [acc], {
        "mode": "fixed", "multiplier": RNG.integers(1 << 29, 1 << 30, cout).astype(np.int32),
        "shift": np.full(cout, 38, np.int32), "axis": 3}, name=f"{name}_q")


def test_unfold_shallow_convs_gathers_patches_on_the_host():
    # A 3x3 / 2 on 3 channels takes 9 k steps of 4 rows; as patches of 27 (+1 zero)
    # channels, 7.
    g = Graph("stem")
    x = g.input("x", (1, 9, 10, 3), DType.INT8)
    g.output(int8_conv(g, x, 5, (3, 3), stride=(2, 2), padding=(1, 1, 0, 1)))
    assert unfold_steps((3, 3), 3, 4) == (9, 7)
    text = apply(g, lambda graph: unfold_shallow_convs(graph, 4))
    assert text.splitlines()[2:5] == [
        "  %conv_im2col = im2col(%x) {kernel=(3,3), stride=(2,2), padding=(1,1,0,1), "
        "channels=28} : i8[1,4,5,28]",
        "  %conv_w_im2col = constant : i8[5,28,1,1]",
        "  %conv = qconv2d(%conv_im2col, %conv_w_im2col, %conv_b) {layout='NHWC', "
        "bias=True} : i32[1,4,5,5]"]
    conv = g.find("conv")
    assert conv.inputs[0] is g.find("conv_im2col") and conv.shape == (1, 4, 5, 5)
    assert conv.attrs["stride"] == (1, 1) and conv.attrs["padding"] == (0, 0, 0, 0)
    weights = conv.inputs[1].value
    assert not weights[:, 27:].any()  # the padding channel multiplies zeros


def test_unfold_shallow_convs_leaves_other_convs():
    g = Graph("net")
    x = g.input("x", (1, 6, 6, 3), DType.INT8)
    first = int8_conv(g, x, 3, (3, 3), padding=(1, 1, 1, 1), name="first")
    second = int8_conv(g, first, 4, (3, 3), padding=(1, 1, 1, 1), name="second")
    deep = int8_conv(g, g.input("d", (1, 6, 6, 8), DType.INT8), 4, (3, 3), name="deep")
    point = int8_conv(g, x, 4, (1, 1), name="point")
    shifted = int8_conv(g, x, 4, (3, 3), name="shifted", x_zero_point=3)
    g.output(second, deep, point, shifted)
    apply(g, lambda graph: unfold_shallow_convs(graph, 4))
    # Only the first: the second reads an array output (the program would be cut in two),
    # 8 channels take 18 k steps either way, a 1x1 has nothing to gather, and a zero point
    # keeps the convolution on the host.
    assert [n.inputs[0].name for n in g.nodes if n.op is Op.IM2COL] == ["x"]
    assert g.find("first").inputs[0].op is Op.IM2COL
    assert all(g.find(n).inputs[0].op is not Op.IM2COL
               for n in ("second", "deep", "point", "shifted"))


def test_im2col_op_gathers_patches_in_kernel_tap_order():
    g = Graph("g")
    x = g.input("x", (2, 4, 5, 3), DType.INT8)
    g.output(g.add(Op.IM2COL, [x], {"kernel": (2, 3), "stride": (2, 1),
                                    "padding": (1, 0, 0, 2), "channels": 20}))
    value = RNG.integers(-128, 128, x.shape).astype(np.int8)
    (got,) = run(g, value)
    padded = np.pad(value, ((0, 0), (1, 0), (0, 2), (0, 0)))
    assert got.shape == (2, 2, 5, 20) and got.dtype == np.int8
    for oy, ox, i, j in product(range(2), range(5), range(2), range(3)):
        tap = (i * 3 + j) * 3
        np.testing.assert_array_equal(got[:, oy, ox, tap:tap + 3],
                                      padded[:, oy * 2 + i, ox + j])
    assert not got[..., 18:].any()
    with pytest.raises(IRError, match=r"^%im2col_1 = im2col: channels=17 is fewer than the "
                                      r"18 of a 2x3 patch of 3 channels$"):
        g.add(Op.IM2COL, [x], {"kernel": (2, 3), "channels": 17})
