"""The graph IR: construction, type inference errors, the listing, and `verify`."""

import numpy as np
import pytest

from gemmstone.compiler.errors import IRError, VerifyError
from gemmstone.compiler.ir import Graph
from gemmstone.compiler.ops import SPECS, DType, Op
from gemmstone.compiler.verify import verify


def small_graph():
    g = Graph("tiny")
    x = g.input("x", (1, 3, 8, 8))
    w = g.constant(np.zeros((8, 3, 3, 3), np.float32), "w")
    b = g.constant(np.arange(2, dtype=np.float32), "b")
    conv = g.add(Op.CONV2D, [x, w], {"padding": (1, 1, 1, 1)})
    relu = g.add(Op.RELU, [conv])
    pool = g.add(Op.MAX_POOL2D, [relu], {"kernel": (2, 2), "stride": (2, 2)})
    g.output(pool, b)
    return g


def test_listing_is_readable_and_omits_default_attributes():
    assert str(small_graph()) == "\n".join([
        "graph tiny(%x: f32[1,3,8,8]) {",
        "  %w = constant : f32[8,3,3,3]",
        "  %b = constant {value=[0.,1.]} : f32[2]",
        "  %conv2d = conv2d(%x, %w) {padding=(1,1,1,1)} : f32[1,8,8,8]",
        "  %relu = relu(%conv2d) : f32[1,8,8,8]",
        "  %max_pool2d = max_pool2d(%relu) {kernel=(2,2), stride=(2,2)} : f32[1,8,4,4]",
        "  output(%max_pool2d, %b)",
        "}"])


def test_every_op_has_a_spec_and_names_are_unique():
    assert set(SPECS) == set(Op)
    g = Graph()
    x = g.input("x", (2, 2))
    names = {g.add(Op.RELU, [x]).name for _ in range(3)}
    assert names == {"relu", "relu_1", "relu_2"}


def test_nodes_are_added_before_the_output_and_inputs_first():
    g = small_graph()
    extra = g.add(Op.RELU, [g.find("relu")])
    assert g.nodes[-2] is extra and g.nodes[-1].op is Op.OUTPUT
    y = g.input("y", (4,))
    assert [n.name for n in g.nodes[:2]] == ["x", "y"] and g.inputs == [g.find("x"), y]
    verify(g)


@pytest.mark.parametrize("op, shapes, attrs, message", [
    (Op.CONV2D, [(1, 4, 8, 8), (8, 3, 3, 3)], {},
     "weight shape [8, 3, 3, 3] expects 3 input channels with groups=1, the input has 4"),
    (Op.CONV2D, [(1, 4, 8, 8), (6, 1, 3, 3)], {"groups": 4},
     "groups=4 must divide input channels 4 and output channels 6"),
    (Op.MATMUL, [(2, 3), (4, 5)], {}, "inner dimensions differ: [2, 3] @ [4, 5]"),
    (Op.MATMUL, [(2, 3), (5, 3), (4,)], {"transpose_b": True}, "bias shape [4] must be [5]"),
    (Op.ADD, [(2, 3), (4,)], {}, "shapes [2, 3] and [4] do not broadcast"),
    (Op.RESHAPE, [(2, 3)], {"shape": (4, 2)}, "cannot reshape [2, 3] (6 elements) to [4, 2]"),
    (Op.TRANSPOSE, [(2, 3)], {"perm": (0, 0)}, "perm [0, 0] is not a permutation of the 2 axes"),
    (Op.CONCAT, [(2, 3), (2, 4)], {"axis": 0}, "shapes [2, 3] and [2, 4] differ outside axis 0"),
    (Op.MAX_POOL2D, [(1, 1, 2, 2)], {"kernel": (3, 3), "stride": (1, 1)},
     "window of 3 (dilation 1) is larger than the padded input of 2"),
    (Op.SOFTMAX, [(2, 3)], {"axis": 2}, "axis 2 is out of range for rank 2"),
])
def test_type_errors_name_the_node_and_the_reason(op, shapes, attrs, message):
    g = Graph()
    inputs = [g.input(f"i{k}", s) for k, s in enumerate(shapes)]
    with pytest.raises(IRError) as info:
        g.add(op, inputs, attrs)
    assert str(info.value) == f"%{op.value} = {op.value}: {message}"


def test_attribute_errors():
    g = Graph()
    x = g.input("x", (2, 3))
    with pytest.raises(IRError, match=r"^relu: relu has no attribute alpha$"):
        g.add(Op.RELU, [x], {"alpha": 1})
    with pytest.raises(IRError, match=r"^reshape: reshape needs attribute 'shape'$"):
        g.add(Op.RESHAPE, [x])
    with pytest.raises(IRError, match=r"^%relu = relu: takes 1 to 1 inputs, got 2$"):
        g.add(Op.RELU, [x, x])


def test_quantized_ops_type_their_results():
    g = Graph()
    x = g.input("x", (1, 4, 5, 5), DType.INT8)
    w = g.constant(np.ones((6, 4, 3, 3), np.int8), "w")
    b = g.constant(np.zeros(6, np.int32), "b")
    acc = g.add(Op.QCONV2D, [x, w, b], {"bias": True, "w_zero_point": (0,) * 6})
    assert (acc.shape, acc.dtype) == ((1, 6, 3, 3), DType.INT32)
    q = g.add(Op.REQUANTIZE, [acc], {"mode": "fixed", "multiplier": np.ones(6, np.int32),
                                     "shift": np.zeros(6, np.int32), "axis": 1})
    assert q.dtype is DType.INT8
    with pytest.raises(IRError, match="'multiplier' has 5 values; requantize mode=fixed along "
                                      "axis 1 needs 1 or 6"):
        g.add(Op.REQUANTIZE, [acc], {"mode": "fixed", "multiplier": np.ones(5, np.int32),
                                     "shift": np.zeros(1, np.int32), "axis": 1})
    with pytest.raises(IRError, match="input must be i8/u8, not f32"):
        g.add(Op.QCONV2D, [g.input("f", (1, 4, 5, 5)), w])


def test_replace_remove_sweep_and_copy():
    g = small_graph()
    relu = g.find("relu")
    with pytest.raises(IRError, match=r"cannot remove %relu: used by %max_pool2d"):
        g.remove(relu)
    ident = g.add(Op.IDENTITY, [relu], before=g.find("max_pool2d"))
    assert g.replace_uses(relu, ident, users=[g.find("max_pool2d")]) == 1
    copy = g.copy()
    g.add(Op.RELU, [relu])  # dead
    assert g.sweep() == 1 and len(copy.nodes) == len(g.nodes)
    assert str(copy) == str(g)
    assert copy.find("relu") is not relu
    with pytest.raises(IRError, match=r"cannot replace %relu \(f32\[1,8,8,8\]\) by %x"):
        g.replace_uses(relu, g.find("x"))


def test_verify_accepts_a_good_graph():
    verify(small_graph())


def test_verify_rejects_a_duplicate_name():
    g = small_graph()
    g.find("relu").name = "conv2d"
    with pytest.raises(VerifyError, match=r"^%conv2d = relu: name %conv2d is defined twice$"):
        verify(g)


def test_verify_rejects_use_before_definition():
    g = small_graph()
    relu = g.find("relu")
    g.nodes.remove(relu)
    g.nodes.insert(1, relu)
    with pytest.raises(VerifyError,
                       match=r"^%relu = relu: operand %conv2d is defined after its use$"):
        verify(g)


def test_verify_rejects_a_dangling_operand():
    g = small_graph()
    stranger = Graph().input("ghost", (1, 8, 8, 8))
    g.find("relu").inputs[0] = stranger
    with pytest.raises(VerifyError, match=r"^%relu = relu: operand %ghost is not in the graph$"):
        verify(g)


def test_verify_rejects_a_stale_type():
    g = small_graph()
    g.find("conv2d").attrs["stride"] = (2, 2)
    with pytest.raises(VerifyError, match=r"^%conv2d = conv2d: recorded type f32\[1,8,8,8\], "
                                          r"operands give f32\[1,8,4,4\]$"):
        verify(g)


def test_verify_rejects_bad_signature_and_missing_output():
    g = small_graph()
    g.find("relu").attrs["alpha"] = 0.1
    with pytest.raises(VerifyError, match=r"attributes missing \[\], unknown \['alpha'\]"):
        verify(g)
    g = small_graph()
    g.nodes.pop()
    with pytest.raises(VerifyError, match=r"^graph 'tiny' has no output node$"):
        verify(g)
    g = small_graph()
    g.find("conv2d").inputs.pop()
    with pytest.raises(VerifyError, match=r"^%conv2d = conv2d: has 1 inputs, the operator "
                                          r"takes 2 to 3$"):
        verify(g)
