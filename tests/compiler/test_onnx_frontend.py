"""ONNX frontend: float graphs against ONNX Runtime (allclose), integer operators against
the ONNX reference evaluator and ONNX Runtime (exactly), and the error messages."""

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx_quantized import ort_qdq_model

from gemmstone.compiler.errors import FrontendError
from gemmstone.compiler.frontends.onnx_model import SUPPORTED_OPS, from_onnx
from gemmstone.compiler.interpreter import run
from gemmstone.compiler.models import DigitsCNN, EncoderBlock
from gemmstone.compiler.ops import Op
from gemmstone.compiler.passes import optimize

RNG = np.random.default_rng(2)
F32, U8, I8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def model(nodes, inputs, outputs, inits=None, opset=21, check=True):
    """A (checked) ModelProto; inputs/outputs are (name, elem type, shape)."""
    graph = helper.make_graph(
        nodes, "test", [helper.make_tensor_value_info(*i) for i in inputs],
        [helper.make_tensor_value_info(*o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 10
    if check:
        onnx.checker.check_model(proto, full_check=True)
    return proto


def onnxruntime(proto, feeds):
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def ours(proto, feeds, passes=False):
    graph = from_onnx(proto)
    if passes:
        optimize(graph)
    return run(graph, **feeds)


def assert_matches_runtime(proto, feeds, tol=1e-5):
    expected = onnxruntime(proto, feeds)
    for passes in (False, True):
        for got, want in zip(ours(proto, feeds, passes), expected, strict=True):
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_cnn_operators_match_onnxruntime():
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 0, 2, 1], strides=[2, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn"],
                         epsilon=1e-3),
        helper.make_node("Clip", ["bn", "zero", "six"], ["r6"]),
        helper.make_node("Conv", ["r6", "w2"], ["c2"], group=4, pads=[2, 2, 2, 2],
                         dilations=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], ceil_mode=1),
        helper.make_node("AveragePool", ["r"], ["ap"], kernel_shape=[2, 2], strides=[2, 2],
                         pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("AveragePool", ["r"], ["ap2"], kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Concat", ["mp", "ap"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["y"], transB=1, alpha=0.5, beta=2.0),
    ]
    inits = {"w1": rand(8, 3, 3, 3), "b1": rand(8), "g": rand(8), "be": rand(8), "m": rand(8),
             "v": np.abs(rand(8)) + 0.5, "zero": np.float32(0), "six": np.float32(6),
             "w2": rand(8, 2, 3, 3), "fc": rand(5, 16), "fcb": rand(5)}
    proto = model(nodes, [("x", F32, [2, 3, 11, 10])],
                  [("y", F32, [2, 5]), ("ap2", F32, [2, 8, 6, 9])], inits)
    assert_matches_runtime(proto, {"x": rand(2, 3, 11, 10)}, tol=1e-4)


def test_transformer_operators_match_onnxruntime():
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("Add", ["q", "bq"], ["qb"]),
        helper.make_node("Reshape", ["qb", "heads"], ["qh"]),
        helper.make_node("Transpose", ["qh"], ["qt"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["qh"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["qt", "kt"], ["s"]),
        helper.make_node("Div", ["s", "scale"], ["sd"]),
        helper.make_node("Softmax", ["sd"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "qt"], ["ctx"]),
        helper.make_node("Transpose", ["ctx"], ["ct"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ct", "flat"], ["cr"]),
        helper.make_node("Sub", ["cr", "x"], ["res"]),
        helper.make_node("LayerNormalization", ["res", "lg", "lb"], ["ln"], epsilon=1e-6),
        helper.make_node("Gelu", ["ln"], ["ge"]),
        helper.make_node("Mul", ["ge", "ln"], ["mu"]),
        helper.make_node("Unsqueeze", ["mu", "ax"], ["un"]),
        helper.make_node("Squeeze", ["un", "ax"], ["y"]),
    ]
    inits = {"wq": rand(16, 16), "bq": rand(16), "heads": np.array([0, 0, 2, 8]),
             "scale": np.float32(2.8), "flat": np.array([0, -1, 16]), "lg": rand(16),
             "lb": rand(16), "ax": np.array([1])}
    proto = model(nodes, [("x", F32, [2, 5, 16])], [("y", F32, [2, 5, 16])], inits)
    assert_matches_runtime(proto, {"x": rand(2, 5, 16)})


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad, strides=[2, 3])]
    out = {"VALID": [1, 2, 4, 3]}.get(auto_pad, [1, 2, 6, 4])
    proto = model(nodes, [("x", F32, [1, 3, 11, 10])], [("y", F32, out)],
                  {"w": rand(2, 3, 4, 2)})
    assert_matches_runtime(proto, {"x": rand(1, 3, 11, 10)})


@pytest.mark.parametrize("opset", [17, 18])
def test_reduce_mean(opset):
    axes = {"axes": [-1, 2]} if opset < 18 else {}
    inputs = ["x", "ax"] if opset >= 18 else ["x"]
    nodes = [helper.make_node("ReduceMean", inputs, ["pool"], **axes),
             helper.make_node("ReduceMean", inputs, ["flat"], keepdims=0, **axes)]
    proto = model(nodes, [("x", F32, [2, 3, 4, 5])],
                  [("pool", F32, [2, 3, 1, 1]), ("flat", F32, [2, 3])],
                  {"ax": np.array([-1, 2])} if opset >= 18 else {}, opset=opset)
    graph = from_onnx(proto)
    assert graph.count(Op.ADAPTIVE_AVG_POOL2D) == 1 and graph.count(Op.MEAN) == 1
    assert_matches_runtime(proto, {"x": rand(2, 3, 4, 5)})


def test_softmax_before_opset_13_flattens_from_axis():
    nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=1)]
    proto = model(nodes, [("x", F32, [2, 3, 4])], [("y", F32, [2, 3, 4])], opset=11)
    assert_matches_runtime(proto, {"x": rand(2, 3, 4)})


def legacy_export(test):
    """The legacy TorchScript exporter is 10x faster here than the torch.export-based one;
    silence its deprecation warnings."""
    for message in ("You are using the legacy TorchScript", "The feature will be removed"):
        test = pytest.mark.filterwarnings(f"ignore:{message}")(test)
    return test


@legacy_export
def test_torch_exported_cnn_matches_torch():
    torch.manual_seed(0)
    net = DigitsCNN().eval()
    x = torch.randn(4, 1, 8, 8)
    buffer = io.BytesIO()
    torch.onnx.export(net, (x,), buffer, dynamo=False)
    graph = from_onnx(onnx.load_from_string(buffer.getvalue()))
    optimize(graph)
    assert graph.count(Op.FUSED_CONV2D) == 2 and graph.count(Op.FUSED_MATMUL) == 2
    with torch.no_grad():
        np.testing.assert_allclose(run(graph, x.numpy())[0], net(x).numpy(), rtol=1e-4,
                                   atol=1e-5)


@legacy_export
def test_torch_exported_encoder_gelu_pattern_is_recognized():
    torch.manual_seed(0)
    block = EncoderBlock(32, 2).eval()
    x = torch.randn(1, 6, 32)
    buffer = io.BytesIO()
    torch.onnx.export(block, (x,), buffer, dynamo=False, opset_version=17)
    proto = onnx.load_from_string(buffer.getvalue())
    assert "Erf" in {n.op_type for n in proto.graph.node}
    graph = from_onnx(proto)
    optimize(graph)
    assert graph.count(Op.GELU) == 1 and graph.count(Op.ERF) == 0
    assert graph.count(Op.FUSED_MATMUL) == 8
    with torch.no_grad():
        np.testing.assert_allclose(run(graph, x.numpy())[0], block(x).numpy(), rtol=1e-4,
                                   atol=1e-4)


# -- integer operators -------------------------------------------------------------------------

def exact(proto, feeds, runtime=True):
    """Our integers == the ONNX reference evaluator's (and ONNX Runtime's) exactly."""
    got = ours(proto, feeds)
    reference = ReferenceEvaluator(proto).run(None, feeds)
    expected = [reference] + ([onnxruntime(proto, feeds)] if runtime else [])
    for want_all in expected:
        for g, w in zip(got, want_all, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def test_matmul_integer_with_zero_points():
    a = RNG.integers(0, 256, (2, 4, 12)).astype(np.uint8)
    # 7-bit weights: ONNX Runtime's u8 x s8 kernel saturates otherwise (see below).
    b = RNG.integers(-64, 64, (12, 6)).astype(np.int8)
    nodes = [helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])]
    inits = {"b": b, "az": np.uint8(131), "bz": RNG.integers(-3, 3, 6).astype(np.int8)}
    proto = model(nodes, [("a", U8, a.shape)], [("y", I32, [2, 4, 6])], inits)
    # ONNX Runtime has no per-column b_zero_point kernel for this type pair: reference only.
    exact(proto, {"a": a}, runtime=False)
    inits["bz"] = np.int8(2)
    exact(model(nodes, [("a", U8, a.shape)], [("y", I32, [2, 4, 6])], inits), {"a": a})


def test_conv_integer():
    x = RNG.integers(0, 256, (1, 4, 7, 7)).astype(np.uint8)
    w = RNG.integers(-64, 64, (6, 2, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("ConvInteger", ["x", "w", "xz"], ["y"], pads=[1, 1, 1, 1],
                              strides=[2, 2], group=2)]
    proto = model(nodes, [("x", U8, x.shape)], [("y", I32, [1, 6, 4, 4])],
                  {"w": w, "xz": np.uint8(120)})
    exact(proto, {"x": x})


@pytest.mark.parametrize("trial", range(3))
def test_qlinear_matmul(trial):
    a = RNG.integers(-128, 128, (5, 32)).astype(np.int8)
    inits = {"sa": np.float32(RNG.uniform(0.01, 0.1)), "za": np.int8(RNG.integers(-5, 5)),
             "b": RNG.integers(-128, 128, (32, 12)).astype(np.int8),
             "sb": np.float32(RNG.uniform(0.001, 0.02)), "zb": np.int8(0),
             "sy": np.float32(RNG.uniform(0.05, 0.5)), "zy": np.int8(RNG.integers(-9, 9))}
    nodes = [helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"],
                              ["y"])]
    exact(model(nodes, [("a", I8, a.shape)], [("y", I8, [5, 12])], inits), {"a": a})


@pytest.mark.parametrize("weight_bits", [7, 8])
def test_qlinear_conv_per_channel(weight_bits):
    x = RNG.integers(0, 256, (1, 8, 9, 9)).astype(np.uint8)
    half = 1 << (weight_bits - 1)
    inits = {"sx": np.float32(0.05), "zx": np.uint8(120),
             "w": RNG.integers(-half, half, (16, 8, 3, 3)).astype(np.int8),
             "sw": RNG.uniform(0.001, 0.02, 16).astype(np.float32), "zw": np.zeros(16, np.int8),
             "sy": np.float32(0.2), "zy": np.uint8(100),
             "b": RNG.integers(-5000, 5000, 16).astype(np.int32)}
    nodes = [helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"],
                              ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    proto = model(nodes, [("x", U8, x.shape)], [("y", U8, [1, 16, 5, 5])], inits)
    # ONNX Runtime's u8 x s8 kernels on AVX2 without VNNI saturate pairs of products to
    # int16, so with full 8-bit weights only the reference evaluator is exact.
    exact(proto, {"x": x}, runtime=weight_bits == 7)


def test_quantize_and_dequantize_linear():
    x = rand(2, 3, 4) * 4
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1),
             helper.make_node("QuantizeLinear", ["x", "s1"], ["u"])]
    inits = {"s": np.array([0.05, 0.1, 0.02], np.float32), "z": np.array([3, -2, 0], np.int8),
             "s1": np.float32(0.03)}
    proto = model(nodes, [("x", F32, x.shape)],
                  [("q", I8, [2, 3, 4]), ("y", F32, [2, 3, 4]), ("u", U8, [2, 3, 4])], inits)
    exact(proto, {"x": x})


# -- errors -----------------------------------------------------------------------------------

def test_supported_ops_cover_the_issue_list():
    assert {"Conv", "Gemm", "MatMul", "Relu", "Clip", "Add", "Mul", "MaxPool", "AveragePool",
            "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "Concat",
            "BatchNormalization", "Softmax", "LayerNormalization", "Gelu", "Erf",
            "MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv", "QuantizeLinear",
            "DequantizeLinear"} <= SUPPORTED_OPS


def convert(nodes, inputs, outputs, inits=None, opset=21):
    return from_onnx(model(nodes, inputs, outputs, inits, opset, check=False))


def test_unsupported_operator_is_named():
    with pytest.raises(FrontendError, match=r"^onnx node 'topk0' \(TopK\): unsupported "
                                            r"operator$"):
        convert([helper.make_node("TopK", ["x", "k"], ["y", "i"], name="topk0")],
                [("x", F32, [4])], [("y", F32, [2])], {"k": np.array([2])})


def test_dynamic_input_dimension():
    with pytest.raises(FrontendError, match=r"^onnx node 'x' \(input\): dimension 'batch' "
                                            r"is not static$"):
        convert([helper.make_node("Relu", ["x"], ["y"])], [("x", F32, ["batch", 3])],
                [("y", F32, ["batch", 3])])


def test_reshape_needs_a_constant_shape():
    with pytest.raises(FrontendError, match=r"^onnx node 'y' \(Reshape\): shape \(input 1\) "
                                            r"must be a constant$"):
        convert([helper.make_node("Reshape", ["x", "s"], ["y"])],
                [("x", F32, [2, 3]), ("s", TensorProto.INT64, [1])], [("y", F32, [6])])


def test_unused_optional_outputs_are_fine_but_used_ones_are_not():
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], name="mp"),
             helper.make_node("Identity", ["idx"], ["z"], name="use")]
    with pytest.raises(FrontendError, match=r"^onnx node 'use' \(Identity\): input 'idx' comes "
                                            r"from an operator output that is not supported$"):
        convert(nodes, [("x", F32, [1, 1, 4, 4])],
                [("z", TensorProto.INT64, [1, 1, 3, 3])])


def test_malformed_graph_and_bad_types_are_named():
    unsorted = helper.make_graph(
        [helper.make_node("Relu", ["t"], ["y"], name="late"),
         helper.make_node("Relu", ["x"], ["t"], name="early")], "g",
        [helper.make_tensor_value_info("x", F32, [2])],
        [helper.make_tensor_value_info("y", F32, [2])])
    with pytest.raises(FrontendError, match=r"^onnx node 'late' \(Relu\): input 't' is not "
                                            r"defined before this node"):
        from_onnx(helper.make_model(unsorted))
    with pytest.raises(FrontendError, match=r"^onnx node 'y' \(MatMul\): inner dimensions "
                                            r"differ: \[2, 3\] @ \[4, 5\]$"):
        convert([helper.make_node("MatMul", ["a", "b"], ["y"])],
                [("a", F32, [2, 3]), ("b", F32, [4, 5])], [("y", F32, [2, 5])])
    with pytest.raises(FrontendError, match=r"^onnx node 'bn' \(BatchNormalization\): "
                                            r"training_mode=1 is not supported$"):
        convert([helper.make_node("BatchNormalization", ["x", "s", "s", "s", "s"], ["y"],
                                  training_mode=1, name="bn")],
                [("x", F32, [1, 2, 2, 2])], [("y", F32, [1, 2, 2, 2])],
                {"s": np.ones(2, np.float32)})
    with pytest.raises(FrontendError, match=r"operand %x must be int8 or uint8, not f32"):
        convert([helper.make_node("MatMulInteger", ["x", "x"], ["y"])],
                [("x", F32, [2, 2])], [("y", I32, [2, 2])])


@legacy_export
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_qdq_model_from_onnxruntime_quantizer_becomes_integer_ops(tmp_path):
    torch.manual_seed(0)
    model, example = DigitsCNN(), torch.randn(4, 1, 8, 8)
    samples = [rand(4, 1, 8, 8) for _ in range(3)]
    proto = ort_qdq_model(model, example, samples, tmp_path)
    graph = from_onnx(proto)
    optimize(graph)
    assert graph.count(Op.QCONV2D) == 2 and graph.count(Op.QMATMUL) == 2
    assert graph.count(Op.CONV2D) + graph.count(Op.FUSED_CONV2D) == 0
    assert graph.count(Op.TRANSPOSE) == 0
    x = rand(4, 1, 8, 8)
    (got,) = run(graph, x)
    # The spec's float Q/DQ semantics (reference evaluator; ONNX Runtime unoptimized) equal
    # the integer kernels exactly. ONNX Runtime's own fused int8 kernels are not exact on
    # this CPU (see test_qlinear_conv_per_channel).
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(got, session.run(None, {"x": x})[0])
    np.testing.assert_array_equal(got, ReferenceEvaluator(proto).run(None, {"x": x})[0])
