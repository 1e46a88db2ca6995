"""ONNX integer models compiled for the array and run on the functional model
(`run_compiled`): exactly the ONNX reference evaluator's outputs, with the integer ops on
the accelerator; the fixed-point proof of `exact_multiplier`; errors naming the node."""

import math
from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from gemmstone.compiler.compile import compile_model
from gemmstone.compiler.errors import FrontendError
from gemmstone.compiler.frontends.onnx_model import from_onnx
from gemmstone.compiler.lowering import run_compiled
from gemmstone.compiler.quantization.integer import exact_multiplier
from gemmstone.config import preset

U8, I8, I32, F32 = TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.FLOAT
NP = {U8: np.uint8, I8: np.int8}
CONFIG = preset("tiny")


def model(nodes, inputs, outputs, inits, check=True):
    """A ModelProto (opset 21); inputs/outputs are (name, elem type, shape)."""
    graph = helper.make_graph(
        nodes, "int", [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    proto.ir_version = 10
    if check:
        onnx.checker.check_model(proto, full_check=True)
    return proto


def compile_and_compare(proto, feeds):
    """Compile for the array, run on the functional model, compare with the reference
    evaluator exactly; returns the compiled model."""
    compiled = compile_model(from_onnx(proto), CONFIG)
    got = run_compiled(compiled, *feeds.values())
    want = ReferenceEvaluator(proto).run(None, feeds)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    return compiled


def assert_on_array(compiled, layers, raw=0):
    """``layers`` accelerator ops (``raw`` of them storing int32) and no integer op, and no
    requantize unless ``raw``, on the host."""
    report = compiled.report
    assert len(report["layers"]) == layers
    assert sum(layer["raw_int32"] for layer in report["layers"]) == raw
    host = {h["op"] for h in report["host"]}
    assert not host & {"qconv2d", "qmatmul"}
    if not raw:
        assert "requantize" not in host


def rand_int(rng, dtype, shape=()):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


def zero_point(rng, dtype, kind, channels):
    """A zero point: 'zero', 'tensor' (one random value) or 'channel' (one per channel)."""
    if kind == "zero":
        return np.zeros((), dtype) if dtype is np.int8 else np.full((), 128, np.uint8)
    return rand_int(rng, dtype, () if kind == "tensor" else (channels,))


def output_scale(rng, in_scale, w_scale, k):
    """A y_scale that leaves most outputs unclipped: accumulators of ``k`` products of
    random 8-bit values (zero points anywhere) spread over about 160 * 110 * sqrt(k)."""
    spread = 160 * 110 * math.sqrt(k) * float(np.mean(in_scale * w_scale))
    return np.float32(spread / 60 * rng.uniform(0.7, 1.4))


def conv_out(size, k, stride, lo, hi):
    return (size + lo + hi - k) // stride + 1


# -- QLinearConv / QLinearMatMul ----------------------------------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_random_qlinear_conv_is_exact_on_the_array(seed):
    rng = np.random.default_rng(100 + seed)
    x_t, w_t, y_t = (rng.choice([U8, I8]) for _ in range(3))
    groups = int(rng.choice([1, 1, 2, 3]))
    cin_g, cout_g = int(rng.integers(1, 9)), int(rng.integers(1, 7))
    if seed in (2, 3):  # depthwise
        groups, cin_g, cout_g = 6, 1, 1
    cin, cout = groups * cin_g, groups * cout_g
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    pads = [int(p) for p in rng.integers(0, 3, 4)]
    pads = [min(p, k - 1) for p, k in zip(pads, (kh, kw, kh, kw), strict=True)]
    strides = [int(s) for s in rng.integers(1, 3, 2)]
    n, h, w = int(rng.integers(1, 3)), int(rng.integers(kh, 12)), int(rng.integers(kw, 12))
    ho = conv_out(h, kh, strides[0], pads[0], pads[2])
    wo = conv_out(w, kw, strides[1], pads[1], pads[3])
    # Even seeds keep w - w_zero_point within int8 (the array's weight); odd ones do not.
    w_kind = "zero" if seed % 2 == 0 else ["tensor", "channel"][seed // 2 % 2]
    inits = {
        "sx": np.float32(rng.uniform(0.01, 0.1)), "zx": rand_int(rng, NP[x_t]),
        "w": rand_int(rng, NP[w_t], (cout, cin_g, kh, kw)),
        "sw": (np.float32(rng.uniform(0.001, 0.02)) if seed % 4 < 2 else
               rng.uniform(0.001, 0.02, cout).astype(np.float32)),
        "zw": zero_point(rng, NP[w_t], w_kind, cout),
        "zy": rand_int(rng, NP[y_t]), "b": rng.integers(-20000, 20000, cout).astype(np.int32)}
    inits["sy"] = output_scale(rng, inits["sx"], inits["sw"], cin_g * kh * kw)
    names = ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy"] + (["b"] if seed % 3 else [])
    nodes = [helper.make_node("QLinearConv", names, ["y"], pads=pads, strides=strides,
                              group=groups, kernel_shape=[kh, kw])]
    proto = model(nodes, [("x", x_t, [n, cin, h, w])], [("y", y_t, [n, cout, ho, wo])], inits)
    x = rand_int(rng, NP[x_t], (n, cin, h, w))
    compiled = compile_and_compare(proto, {"x": x})
    if seed % 2 == 0:  # the whole op, requantization included, on the array
        assert_on_array(compiled, 1)
    else:  # two raw products (w' and the zero points) on the array, the rest on the host
        assert_on_array(compiled, 2, raw=2)


@pytest.mark.parametrize("seed", range(6))
def test_random_qlinear_matmul_is_exact_on_the_array(seed):
    rng = np.random.default_rng(200 + seed)
    a_t, b_t, y_t = (rng.choice([U8, I8]) for _ in range(3))
    lead = [int(d) for d in rng.integers(1, 4, seed % 2 + 1)]  # [M, K] or [B, M, K]
    k, n = int(rng.integers(1, 40)), int(rng.integers(1, 11))
    b_kind = ["zero", "zero", "zero", "tensor", "channel", "channel"][seed]
    inits = {
        "sa": np.float32(rng.uniform(0.01, 0.1)), "za": rand_int(rng, NP[a_t]),
        "b": rand_int(rng, NP[b_t], (k, n)),
        "sb": (np.float32(rng.uniform(0.001, 0.02)) if seed % 2 else
               rng.uniform(0.001, 0.02, n).astype(np.float32)),
        "zb": zero_point(rng, NP[b_t], b_kind, n),
        "zy": rand_int(rng, NP[y_t])}
    inits["sy"] = output_scale(rng, inits["sa"], inits["sb"], k)
    nodes = [helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"],
                              ["y"])]
    proto = model(nodes, [("a", a_t, [*lead, k])], [("y", y_t, [*lead[:-1], lead[-1], n])],
                  inits)
    a = rand_int(rng, NP[a_t], (*lead, k))
    compiled = compile_and_compare(proto, {"a": a})
    assert_on_array(compiled, 1) if seed < 3 else assert_on_array(compiled, 2, raw=2)


def test_uint8_chain_stays_int8_between_array_ops():
    """QLinearConv -> QLinearConv (uint8 in between) -> QLinearMatMul: the uint8 values
    between the ops are produced in int8 form by the output stage, so the only host ops
    are the layout changes, the input/output offsets and the zero-point padding."""
    rng = np.random.default_rng(7)
    inits = {"sx": np.float32(0.04), "zx": np.uint8(131), "sy": np.float32(0.3),
             "zy": np.uint8(120), "sy2": np.float32(0.2), "zy2": np.uint8(90),
             "w1": rand_int(rng, np.int8, (6, 3, 3, 3)), "s1": np.float32(0.01),
             "z1": np.int8(0), "w2": rand_int(rng, np.int8, (6, 6, 3, 3)),
             "s2": rng.uniform(0.002, 0.01, 6).astype(np.float32),
             "z2": np.zeros(6, np.int8), "b2": rng.integers(-900, 900, 6).astype(np.int32),
             "shape": np.array([2, 6 * 4 * 4]), "w3": rand_int(rng, np.int8, (96, 5)),
             "s3": np.float32(0.003), "z3": np.int8(0), "sz": np.float32(0.25),
             "zz": np.int8(-3)}
    nodes = [
        helper.make_node("QLinearConv", ["x", "sx", "zx", "w1", "s1", "z1", "sy", "zy"],
                         ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("QLinearConv", ["c1", "sy", "zy", "w2", "s2", "z2", "sy2", "zy2",
                                         "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c2", "shape"], ["flat"]),
        helper.make_node("QLinearMatMul", ["flat", "sy2", "zy2", "w3", "s3", "z3", "sz", "zz"],
                         ["y"]),
    ]
    proto = model(nodes, [("x", U8, [2, 3, 8, 8])], [("y", I8, [2, 5]), ("c1", U8,
                                                                          [2, 6, 4, 4])], inits)
    compiled = compile_and_compare(proto, {"x": rand_int(rng, np.uint8, (2, 3, 8, 8))})
    assert_on_array(compiled, 3)
    assert len(compiled.programs) >= 1


@pytest.mark.parametrize(("b_scale", "zy"), [
    (0.5, 4), (0.5, 5), (0.375, -7), ([0.5, 0.25, 0.125, 0.75], 3)])
def test_exact_ties_need_a_raw_store_and_the_host_requantize(b_scale, zy):
    """Scales with few mantissa bits (1/2: every odd acc is a tie) have no multiplier
    reproducing round-half-to-even with the ISA's round-half-up, so the array stores int32
    and the host requantizes with ONNX's rounding (zero point added before rounding, so an
    odd zero point turns the ties the other way)."""
    rng = np.random.default_rng(8)
    inits = {"sa": np.float32(1.0), "za": np.int8(0), "b": rand_int(rng, np.int8, (16, 4)),
             "sb": np.asarray(b_scale, np.float32), "zb": np.int8(0), "sy": np.float32(1.0),
             "zy": np.int8(zy)}
    nodes = [helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"],
                              ["y"])]
    proto = model(nodes, [("a", I8, [64, 16])], [("y", I8, [64, 4])], inits)
    a = rng.integers(-3, 4, (64, 16)).astype(np.int8)  # small: outputs not all clipped
    compiled = compile_and_compare(proto, {"a": a})
    assert_on_array(compiled, 1, raw=1)
    requant = [h for h in compiled.report["host"] if h["op"] == "requantize"]
    assert len(requant) == 1 and "raw int32 result" in requant[0]["reason"]
    assert "no fixed-point multiplier" in requant[0]["reason"]
    acc = a.astype(np.int64) @ inits["b"].astype(np.int64)
    assert np.any((acc * np.asarray(b_scale)) % 1 == 0.5)  # ties do occur


def test_compiled_integer_model_survives_the_cache(tmp_path):
    """Raw int32 ops and the host steps around them (split products, tie rounding) are
    saved and loaded with the compiled model."""
    rng = np.random.default_rng(11)
    inits = {"sa": np.float32(1.0), "za": np.uint8(77), "b": rand_int(rng, np.uint8, (8, 3)),
             "sb": np.float32(0.5), "zb": np.uint8(90), "sy": np.float32(16.0),
             "zy": np.uint8(101)}
    nodes = [helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"],
                              ["y"])]
    proto = model(nodes, [("a", U8, [5, 8])], [("y", U8, [5, 3])], inits)
    a = rand_int(rng, np.uint8, (5, 8))
    first = compile_model(from_onnx(proto), CONFIG, cache_dir=tmp_path)
    again = compile_model(from_onnx(proto), CONFIG, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    assert_on_array(again, 2, raw=2)
    want = ReferenceEvaluator(proto).run(None, {"a": a})[0]
    for compiled in (first, again):
        np.testing.assert_array_equal(run_compiled(compiled, a)[0], want)


def test_float_layers_of_an_integer_model_stay_on_the_host():
    rng = np.random.default_rng(12)
    inits = {"s": np.float32(0.05), "z": np.uint8(128), "w": rand_int(rng, np.int8,
                                                                      (4, 3, 3, 3)),
             "sw": np.float32(0.01), "zw": np.int8(0), "wf": rng.standard_normal(
                 (2, 4, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("QLinearConv", ["x", "s", "z", "w", "sw", "zw", "s", "z"], ["c"],
                              pads=[1, 1, 1, 1]),
             helper.make_node("DequantizeLinear", ["c", "s", "z"], ["f"]),
             helper.make_node("Conv", ["f", "wf"], ["y"])]
    proto = model(nodes, [("x", U8, [1, 3, 5, 5])], [("y", F32, [1, 2, 5, 5])], inits)
    x = rand_int(rng, np.uint8, (1, 3, 5, 5))
    compiled = compile_model(from_onnx(proto), CONFIG)
    assert_on_array(compiled, 1)
    assert "conv2d" in {h["op"] for h in compiled.report["host"]}
    want = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    np.testing.assert_allclose(run_compiled(compiled, x)[0], want, rtol=1e-5, atol=1e-5)


def test_large_qlinear_conv_and_matmul_are_exact():
    """Thousands of mostly unclipped outputs: any rounding difference would show."""
    rng = np.random.default_rng(9)
    inits = {"sx": np.float32(0.03), "zx": np.uint8(140), "w": rand_int(rng, np.int8,
                                                                         (24, 12, 3, 3)),
             "sw": rng.uniform(0.001, 0.02, 24).astype(np.float32), "zw": np.zeros(24, np.int8),
             "zy": np.uint8(128), "b": rng.integers(-3000, 3000, 24).astype(np.int32),
             "w2": rand_int(rng, np.int8, (24, 40)), "s2": np.float32(0.004),
             "z2": np.int8(0), "sz": np.float32(0.2), "zz": np.int8(-7)}
    inits["sy"] = np.float32(output_scale(rng, inits["sx"], inits["sw"], 108) / 3)
    nodes = [helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy",
                                              "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QLinearMatMul", ["y", "sy", "zy", "w2", "s2", "z2", "sz", "zz"],
                              ["z"])]
    proto = model(nodes, [("x", U8, [2, 12, 16, 24])],
                  [("y", U8, [2, 24, 16, 24]), ("z", I8, [2, 24, 16, 40])], inits)
    x = rand_int(rng, np.uint8, (2, 12, 16, 24))
    compiled = compile_and_compare(proto, {"x": x})
    assert_on_array(compiled, 2)
    y = run_compiled(compiled, x)[0]
    assert np.mean((y > 0) & (y < 255)) > 0.8


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("activations", ["QInt8", "QUInt8"])
def test_onnxruntime_qdq_model_runs_on_the_array(tmp_path, activations):
    """A QDQ model from ONNX Runtime's quantizer (per-channel int8 weights): every conv and
    linear layer on the array with its output stage, equal to the interpreter's integer
    kernels and to the reference evaluator."""
    import torch
    from onnx_quantized import ort_qdq_model

    from gemmstone.compiler.interpreter import run
    from gemmstone.compiler.models import DigitsCNN
    from gemmstone.compiler.passes import optimize

    rng = np.random.default_rng(10)
    torch.manual_seed(0)
    model, example = DigitsCNN(), torch.randn(4, 1, 8, 8)
    samples = [rng.standard_normal((4, 1, 8, 8)).astype(np.float32) for _ in range(3)]
    proto = ort_qdq_model(model, example, samples, tmp_path, activations=activations)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    compiled = compile_and_compare(proto, {"x": x})
    assert_on_array(compiled, 4)
    graph = from_onnx(proto)
    optimize(graph)
    np.testing.assert_array_equal(run_compiled(compiled, x)[0], run(graph, x)[0])


def test_qdq_convs_sharing_one_bias_tensor_are_folded():
    """Exporters share equal bias tensors between layers; the quantizer then dequantizes
    the shared int32 bias with the first layer's scale, and the fold rounds it to each
    layer's accumulator scale instead of leaving the layer in float."""
    from gemmstone.compiler.interpreter import run
    from gemmstone.compiler.passes import optimize

    rng = np.random.default_rng(13)
    q = {"sx": np.float32(0.05), "zx": np.int8(3), "s1": np.float32(0.08), "z1": np.int8(-2),
         "s2": np.float32(0.1), "z2": np.int8(0), "bq": np.array([500, -300, 20], np.int32),
         "sb": np.float32(0.05 * 0.01), "zb": np.int32(0)}
    for i in (1, 2):
        q[f"w{i}q"] = rand_int(rng, np.int8, (3, 3, 3, 3))
        q[f"sw{i}"] = np.full(3, 0.01 if i == 1 else 0.02, np.float32)
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"])]
    source = "xd"
    for i in (1, 2):
        nodes += [helper.make_node("DequantizeLinear", [f"w{i}q", f"sw{i}"], [f"w{i}"],
                                   axis=0),
                  helper.make_node("Conv", [source, f"w{i}", "b"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("QuantizeLinear", [f"c{i}", f"s{i}", f"z{i}"], [f"q{i}"]),
                  helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", f"z{i}"], [f"d{i}"])]
        source = f"d{i}"
    proto = model(nodes, [("x", F32, [1, 3, 6, 6])], [("d2", F32, [1, 3, 6, 6])], q)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    compiled = compile_model(from_onnx(proto), CONFIG)
    assert_on_array(compiled, 2)
    graph = from_onnx(proto)
    optimize(graph)
    np.testing.assert_array_equal(run_compiled(compiled, x)[0], run(graph, x)[0])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_onnxruntime_qdq_resnet18_runs_on_the_array(tmp_path):
    """ResNet-18 (32x32) quantized by ONNX Runtime (uint8 activations, per-channel int8
    weights): every conv and the classifier on the array; the residual adds stay in float
    on the host, as the QDQ graph defines them."""
    import torch
    from onnx_quantized import ort_qdq_model

    from gemmstone.compiler.interpreter import run
    from gemmstone.compiler.models import resnet18
    from gemmstone.compiler.quantization import prepare_integer_graph

    rng = np.random.default_rng(14)
    torch.manual_seed(0)
    model, example = resnet18(num_classes=10), torch.randn(1, 3, 32, 32)
    samples = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(2)]
    proto = ort_qdq_model(model, example, samples, tmp_path, activations="QUInt8")
    compiled = compile_model(from_onnx(proto), preset("small"))
    assert_on_array(compiled, 21)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    (got,) = run_compiled(compiled, x)
    graph = from_onnx(proto)
    prepare_integer_graph(graph)
    np.testing.assert_array_equal(got, run(graph, x)[0])
    want = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, atol=0.02)
    assert got.argmax() == want.argmax()


# -- MatMulInteger / ConvInteger ----------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_random_matmul_integer_is_exact_on_the_array(seed):
    rng = np.random.default_rng(300 + seed)
    a_t, b_t = rng.choice([U8, I8]), rng.choice([U8, I8])
    m, k, n = int(rng.integers(1, 9)), int(rng.integers(1, 30)), int(rng.integers(1, 9))
    b_kind = ["zero", "tensor", "channel", "zero"][seed]
    inits = {"b": rand_int(rng, NP[b_t], (k, n)), "az": rand_int(rng, NP[a_t]),
             "bz": zero_point(rng, NP[b_t], b_kind, n)}
    nodes = [helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])]
    proto = model(nodes, [("a", a_t, [2, m, k])], [("y", I32, [2, m, n])], inits)
    compiled = compile_and_compare(proto, {"a": rand_int(rng, NP[a_t], (2, m, k))})
    assert_on_array(compiled, 1 if b_kind == "zero" else 2, raw=1 if b_kind == "zero" else 2)


@pytest.mark.parametrize("seed", range(4))
def test_random_conv_integer_is_exact_on_the_array(seed):
    rng = np.random.default_rng(400 + seed)
    x_t, w_t = rng.choice([U8, I8]), rng.choice([U8, I8])
    groups = [1, 2, 4, 1][seed]
    cin, cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    pads = [int(p) for p in rng.integers(0, 2, 4)]
    strides = [int(s) for s in rng.integers(1, 3, 2)]
    h, w = int(rng.integers(3, 8)), int(rng.integers(3, 8))
    ho, wo = conv_out(h, 3, strides[0], pads[0], pads[2]), conv_out(w, 2, strides[1],
                                                                     pads[1], pads[3])
    w_kind = ["zero", "tensor", "channel", "zero"][seed]
    inits = {"w": rand_int(rng, NP[w_t], (cout, cin // groups, 3, 2)),
             "xz": rand_int(rng, NP[x_t]), "wz": zero_point(rng, NP[w_t], w_kind, cout)}
    nodes = [helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=pads,
                              strides=strides, group=groups)]
    proto = model(nodes, [("x", x_t, [1, cin, h, w])], [("y", I32, [1, cout, ho, wo])], inits)
    compiled = compile_and_compare(proto, {"x": rand_int(rng, NP[x_t], (1, cin, h, w))})
    split = w_kind != "zero"
    assert_on_array(compiled, 2 if split else 1, raw=2 if split else 1)


# -- the fixed-point proof ---------------------------------------------------------------------

def onnx_requantize(acc, scale, zp, lo, hi):
    """The reference evaluator's QLinearConv output stage."""
    r = np.clip(acc.astype(np.int32) * np.float32(scale) + zp, lo, hi)
    return np.round(r).astype(np.int64)


def isa_requantize(acc, mult, shift, zp, lo, hi):
    p = acc.astype(np.int64) * mult
    y = p if shift == 0 else (p >> shift) + ((p >> (shift - 1)) & 1)
    return np.clip(y + zp, lo, hi)


@pytest.mark.parametrize("seed", range(6))
def test_exact_multiplier_agrees_with_onnx_on_every_reachable_accumulator(seed):
    rng = np.random.default_rng(500 + seed)
    found = 0
    for _ in range(40):
        scale = np.float32(math.exp(rng.uniform(math.log(1e-5), math.log(4.0))))
        if rng.random() < 0.3:  # few mantissa bits: ties within reach
            scale = np.float32(int(rng.integers(1, 4096)) * 2.0 ** -int(rng.integers(1, 30)))
        bound = int(rng.integers(1, 1 << 20))
        zp, (lo, hi) = int(rng.integers(-128, 128)), sorted(rng.integers(-128, 128, 2))
        pair = exact_multiplier(scale, bound)
        if pair is None:  # only if some |acc| <= bound makes acc * scale an unclipped tie
            tie = Fraction(float(scale)).denominator // 2
            assert 0 < tie <= bound and tie * Fraction(float(scale)) % 1 == Fraction(1, 2)
            assert tie * Fraction(float(scale)) < 512
            continue
        found += 1
        # Every accumulator that can give an unclipped output (a random million of them
        # for small scales), and both ends.
        reach = min(bound, int(600 / scale) + 2)
        acc = (np.arange(-reach, reach + 1, dtype=np.int64) if reach < 1 << 20 else
               rng.integers(-reach, reach + 1, 1 << 20))
        acc = np.concatenate([acc, [-bound, bound]])
        np.testing.assert_array_equal(isa_requantize(acc, *pair, zp, lo, hi),
                                      onnx_requantize(acc, scale, zp, lo, hi))
    assert found >= 20


def test_exact_multiplier_refuses_reachable_ties():
    assert exact_multiplier(0.5, 10) is None  # 1 * 0.5 is a tie
    assert exact_multiplier(0.75, 1) == (3, 2)  # 3/4: the first tie is at acc = 2
    assert exact_multiplier(0.75, 2) is None
    assert exact_multiplier(0.2, 1) == (0, 0)  # always rounds to 0
    assert exact_multiplier(3.0, 100) == (3, 0)  # integer scale, no rounding
    # float32(0.1) = 13421773 / 2**27: the first tie, acc = 2**26, gives 6710886.5.
    assert exact_multiplier(np.float32(0.1), 1 << 30) == (13421773, 27)
    assert exact_multiplier(np.float32(1.5), 1000) is None  # 3/2: ties at every odd acc
    assert exact_multiplier(np.float32(1025 / 2 ** 11), 1 << 30) == (1025, 11)  # tie >= 512
    assert exact_multiplier(np.float32(1023 / 2 ** 11), 1 << 30) is None  # tie 511.5
    assert exact_multiplier(2.0 ** -30, 1 << 30) is None  # the tie at 2**29 is reachable


# -- errors ------------------------------------------------------------------------------------

def convert(nodes, inputs, outputs, inits):
    return from_onnx(model(nodes, inputs, outputs, inits, check=False))


QLM = ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"]


def qlm_inits(**changes):
    inits = {"sa": np.float32(0.1), "za": np.int8(0), "b": np.ones((4, 3), np.int8),
             "sb": np.float32(0.1), "zb": np.int8(0), "sy": np.float32(0.1),
             "zy": np.int8(0)}
    inits.update(changes)
    return inits


@pytest.mark.parametrize(("inits", "message"), [
    (qlm_inits(sa=np.full(2, 0.1, np.float32)),
     r"a_scale has 2 values; only per-tensor is supported"),
    (qlm_inits(sb=np.full(2, 0.1, np.float32)),
     r"b_scale has 2 values; only per-tensor or 3 per-channel values are supported"),
    (qlm_inits(sy=np.float32(-1)), r"y_scale must be positive and finite"),
    (qlm_inits(sa=np.float32(0)), r"a_scale must be positive and finite"),
    (qlm_inits(za=np.uint8(3)), r"a_zero_point dtype uint8 differs from its tensor's int8"),
    (qlm_inits(zy=np.int32(0)), r"y_zero_point must be int8 or uint8, not i32"),
])
def test_bad_integer_parameters_are_named(inits, message):
    node = helper.make_node("QLinearMatMul", QLM, ["y"], name="qmm")
    with pytest.raises(FrontendError, match=r"^onnx node 'qmm' \(QLinearMatMul\): " + message):
        convert([node], [("a", I8, [2, 4])], [("y", I8, [2, 3])], inits)


def test_wrong_dtype_bad_attribute_and_unsupported_op_are_named():
    with pytest.raises(FrontendError, match=r"^onnx node 'mmi' \(MatMulInteger\): operand %a "
                                            r"must be int8 or uint8, not i32$"):
        convert([helper.make_node("MatMulInteger", ["a", "b"], ["y"], name="mmi")],
                [("a", I32, [2, 4])], [("y", I32, [2, 3])], {"b": np.ones((4, 3), np.int8)})
    with pytest.raises(FrontendError, match=r"^onnx node 'ci' \(ConvInteger\): groups=3 must "
                                            r"divide input channels 4 and output channels 4$"):
        convert([helper.make_node("ConvInteger", ["x", "w"], ["y"], group=3, name="ci")],
                [("x", U8, [1, 4, 5, 5])], [("y", I32, [1, 4, 3, 3])],
                {"w": np.ones((4, 1, 3, 3), np.int8)})
    with pytest.raises(FrontendError, match=r"^onnx node 'ci' \(ConvInteger\): auto_pad "
                                            r"'SIDEWAYS' is not supported$"):
        convert([helper.make_node("ConvInteger", ["x", "w"], ["y"], auto_pad="SIDEWAYS",
                                  name="ci")],
                [("x", U8, [1, 4, 5, 5])], [("y", I32, [1, 4, 3, 3])],
                {"w": np.ones((4, 4, 3, 3), np.int8)})
    with pytest.raises(FrontendError, match=r"^onnx node 'qc' \(QLinearConv\): needs 8 inputs,"
                                            r" got 7$"):
        convert([helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "z", "s"], ["y"],
                                  name="qc")],
                [("x", U8, [1, 1, 3, 3])], [("y", U8, [1, 1, 1, 1])],
                {"s": np.float32(1), "z": np.uint8(0), "w": np.ones((1, 1, 3, 3), np.uint8)})
    with pytest.raises(FrontendError, match=r"^onnx node 'dq' \(DynamicQuantizeLinear\): "
                                            r"unsupported operator$"):
        convert([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"], name="dq")],
                [("x", F32, [4])], [("y", U8, [4])], {})
