"""Lowering pieces: grouped/depthwise conv, residual and clamp on the array, memory plan,
cost model, errors, serialization, cache and the compile command."""

import model_cache
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gemmstone.cli import main
from gemmstone.compiler.compile import compile_model
from gemmstone.compiler.errors import VerifyError
from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.interpreter import run
from gemmstone.compiler.ir import Graph
from gemmstone.compiler.kernels.cost import choose_tiling, estimate_cycles, residual_rows
from gemmstone.compiler.lowering import CompiledModel, LoweringError, lower, run_compiled
from gemmstone.compiler.lowering.memory import Lifetime, plan_arena
from gemmstone.compiler.models import EncoderBlock
from gemmstone.compiler.ops import DType, Op
from gemmstone.compiler.passes import PassManager
from gemmstone.compiler.passes.im2col import unfold_steps
from gemmstone.compiler.quantization import quantize
from gemmstone.config import preset
from gemmstone.isa import decode

RNG = np.random.default_rng(3)


def int8_conv_graph(groups, cin, cout, *, stride=(1, 1), padding=(1, 1, 1, 1),
                    residual=False, lo=-128, hi=127):
    """x -> qconv2d(+bias, +residual x) -> requantize, NHWC, hand-built (no calibration)."""
    g = Graph("conv")
    x = g.input("x", (1, 6, 7, cin), DType.INT8)
    w = g.constant(RNG.integers(-127, 128, (cout, cin // groups, 3, 3)).astype(np.int8), "w")
    b = g.constant(RNG.integers(-3000, 3000, cout).astype(np.int32), "b")
    inputs = [x, w, b]
    attrs = {"stride": stride, "padding": padding, "groups": groups, "layout": "NHWC",
             "bias": True}
    if residual:
        inputs.append(x)
        attrs.update(residual=True, residual_shift=20,
                     residual_multiplier=RNG.integers(1 << 18, 1 << 22, cout).astype(np.int32))
    acc = g.add(Op.QCONV2D, inputs, attrs, name="acc")
    out = g.add(Op.REQUANTIZE, [acc], {
        "mode": "fixed", "multiplier": RNG.integers(1 << 30, 1 << 31, cout).astype(np.int32),
        "shift": np.full(cout, 40, np.int32), "axis": 3, "lo": lo, "hi": hi}, name="y")
    g.output(out)
    return g


@pytest.mark.parametrize(("groups", "cin", "cout", "stride", "padding", "residual"), [
    (1, 5, 11, (1, 1), (1, 1, 1, 1), False),
    (13, 13, 13, (1, 1), (1, 1, 1, 1), False),       # depthwise, channels not a multiple of 4
    (12, 12, 12, (2, 2), (0, 1, 1, 0), False),       # depthwise, stride 2, asymmetric padding
    (3, 6, 9, (1, 2), (1, 1, 1, 1), False),          # 2 in, 3 out channels per group
    (1, 6, 6, (1, 1), (1, 1, 1, 1), True),           # residual through LOADACC + MULSHR
    (6, 6, 6, (1, 1), (1, 1, 1, 1), True),
])
def test_conv_lowering_equals_the_interpreter(groups, cin, cout, stride, padding, residual):
    graph = int8_conv_graph(groups, cin, cout, stride=stride, padding=padding,
                            residual=residual, lo=-5, hi=100)
    config = preset("tiny")
    compiled = lower(graph, config)
    # A shallow convolution on a graph input runs as im2col on the host + a 1x1 on the array.
    before, after = unfold_steps((3, 3), cin, config.rows)
    unfolded = groups == 1 and after < before
    assert [s.get("op") for s in compiled.steps] == ["im2col"] * unfolded + [None]
    x = RNG.integers(-128, 128, graph.inputs[0].shape).astype(np.int8)
    (got,) = run_compiled(compiled, x)
    expected = run(graph, x)[0]
    np.testing.assert_array_equal(got, expected)
    assert got.min() >= -5 and got.max() <= 100


@pytest.mark.parametrize(("n", "rows", "blocks"), [
    (10, 5, 3),       # 3 column blocks: 3 blocks of 5 multiplier rows (the tile height)
    (160, 3, 40),     # 40 blocks in a quarter of the accumulator: 3 rows, MULSHR in 2 chunks
    (520, 5, 1),      # 130 blocks do not fit: one block, reloaded per column block
])
def test_residual_multipliers_equal_the_interpreter(n, rows, blocks):
    """A residual matmul on tiny (4x4, 512 accumulator rows): its multiplier rows stay on
    chip per column block (`residual_rows`), several MULSHRs per tile reuse them."""
    config = preset("tiny")
    m, k = 5, 6
    assert residual_rows(5, n, config.cols, config.acc_rows) == (rows, blocks)
    g = Graph("mm")
    a, r = g.input("a", (m, k), DType.INT8), g.input("r", (m, n), DType.INT8)
    w = g.constant(RNG.integers(-127, 128, (k, n)).astype(np.int8), "w")
    acc = g.add(Op.QMATMUL, [a, w, r], {
        "residual": True, "residual_shift": 12,
        "residual_multiplier": RNG.integers(-(1 << 16), 1 << 16, n).astype(np.int32)},
        name="acc")
    g.output(g.add(Op.REQUANTIZE, [acc], {"mode": "fixed", "multiplier": 1 << 20,
                                          "shift": 24}, name="y"))
    compiled = lower(g, config)
    assert compiled.report["layers"][0]["block_m"] == [m]
    words = [decode(word) for word in compiled.programs[0].words]
    tiles = -(-n // config.cols)
    assert sum(i.mnemonic == "alu" for i in words) == tiles * -(-m // rows)
    assert sum(i.mnemonic == "loadacc" and i.type.name == "INT32" for i in words) == (
        blocks if blocks > 1 else tiles)
    inputs = [RNG.integers(-128, 128, v.shape).astype(np.int8) for v in g.inputs]
    np.testing.assert_array_equal(run_compiled(compiled, *inputs)[0], run(g, *inputs)[0])


def test_resnet18_is_bit_exact_with_its_stem_unfolded():
    """ResNet-18 (32x32 input) on base (16x16): the 7x7/2 stem on 3 channels is im2col on
    the host + a 1x1 conv of 10 k steps (49 before), every residual add rides on a 3x3 conv
    (not a 1x1 downsample), and the outputs equal the interpreter's on the quantized
    graph."""
    model, x, graph = model_cache.exported("resnet18")
    graph = graph.copy()
    PassManager().run(graph)
    quantized = quantize(graph, [(x.numpy(),)])
    compiled = lower(quantized, preset("base"))
    assert [h["op"] for h in compiled.report["host"]][:3] == ["transpose", "quantize",
                                                             "im2col"]
    stem = compiled.report["layers"][0]
    assert (stem["kind"], stem["steps"] // stem["tiles"]) == ("conv 1x1/1", 10)
    assert stem["macs"] == 16 * 16 * 64 * 147  # the zero channel is not counted
    kinds = {layer["kind"] for layer in compiled.report["layers"] if layer["residual"]}
    assert kinds == {"conv 3x3/1"}
    (got,) = run_compiled(compiled, x.numpy())
    np.testing.assert_array_equal(got, run(quantized, x.numpy())[0])


def test_unsupported_integer_ops_fall_back_to_the_host_with_a_reason():
    graph = int8_conv_graph(1, 4, 4)
    graph.find("acc").attrs["dilation"] = (2, 2)
    graph.retype(graph.find("acc"))
    graph.retype(graph.find("y"))
    graph.output(graph.find("y"))
    compiled = lower(graph, preset("tiny"))
    assert compiled.programs == []
    assert compiled.report["host"][0] == {"name": "acc", "op": "qconv2d",
                                          "reason": "dilated convolution"}
    x = RNG.integers(-128, 128, graph.inputs[0].shape).astype(np.int8)
    np.testing.assert_array_equal(run_compiled(compiled, x)[0], run(graph, x)[0])


def test_float_graphs_and_malformed_graphs_are_rejected_naming_the_node():
    g = Graph("float")
    x = g.input("x", (1, 4, 4, 2))
    w = g.constant(np.ones((3, 2, 1, 1), np.float32), "w")
    g.output(g.add(Op.FUSED_CONV2D, [x, w], {"layout": "NHWC"}, name="conv"))
    with pytest.raises(LoweringError, match=r"^node %conv \(fused_conv2d\): float "
                                            r"accelerator op: quantize the graph first"):
        lower(g, preset("tiny"))
    with pytest.raises(ValueError, match="graph 'float' is float: compile_model needs"):
        compile_model(g, preset("tiny"))
    g.nodes.insert(1, g.nodes.pop(-2))  # the conv before its weight: not topological
    with pytest.raises(VerifyError, match="conv"):
        lower(g, preset("tiny"))


def test_memory_plan_reuses_dead_values_and_never_overlaps_live_ones():
    lifetimes = [Lifetime("a", 100, -1, 0), Lifetime("b", 100, 0, 1),
                 Lifetime("c", 100, 1, 2), Lifetime("d", 40, 2, 3), Lifetime("e", 7, -1, 3)]
    offsets, size = plan_arena(lifetimes)
    for one in lifetimes:
        for two in lifetimes:
            if one.name < two.name and one.start <= two.end and two.start <= one.end:
                a, b = offsets[one.name], offsets[two.name]
                assert a + one.size <= b or b + two.size <= a, (one.name, two.name)
    assert size < sum(v.size for v in lifetimes)
    assert offsets["a"] == offsets["c"]  # a is dead when c is written
    assert all(v % 16 == 0 for v in offsets.values())


def test_cost_model_prefers_overlap_and_picks_the_cheapest_candidate():
    config = preset("small")
    k_sizes = [8] * 9
    one = estimate_cycles(config, m=256, k_sizes=k_sizes, n=64, block_m=128, nbuf=1)
    two = estimate_cycles(config, m=256, k_sizes=k_sizes, n=64, block_m=128, nbuf=2)
    assert two < one
    block_m, nbuf, cycles = choose_tiling(config, m=256, k_sizes=k_sizes, n=64,
                                          spad_free=config.spad_lines,
                                          acc_free=config.acc_rows)
    assert nbuf >= 2 and block_m * nbuf <= config.acc_rows
    assert cycles <= two
    # A tiny accumulator forces short tiles.
    block_m, nbuf, _ = choose_tiling(config, m=256, k_sizes=k_sizes, n=64,
                                     spad_free=config.spad_lines, acc_free=40)
    assert block_m * nbuf <= 40


def encoder_graph():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 16)
    return from_torch(EncoderBlock(16, 2).eval(), (x,)), x


def test_compiled_model_round_trips_and_is_cached(tmp_path):
    graph, x = encoder_graph()
    samples = [(x.numpy(),)]
    compiled = compile_model(graph, preset("tiny"), samples=samples, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.gemsmodel"))
    assert [f.stem for f in files] == [compiled.key]
    again = compile_model(graph, preset("tiny"), samples=samples, cache_dir=tmp_path)
    loaded = CompiledModel.load(files[0])
    first = run_compiled(compiled, x.numpy())[0]
    np.testing.assert_array_equal(run_compiled(again, x.numpy())[0], first)
    np.testing.assert_array_equal(run_compiled(loaded, x.numpy())[0], first)
    assert loaded.report == compiled.report
    other = compile_model(graph, preset("small"), samples=samples, cache_dir=tmp_path)
    assert other.key != compiled.key and len(list(tmp_path.glob("*.gemsmodel"))) == 2
    kinds = {s["op"] for s in compiled.steps if s["kind"] == "host"}
    assert {"softmax", "layer_norm", "gelu"} <= kinds


def test_compile_command_prints_the_report(tmp_path):
    graph, x = encoder_graph()
    torch.manual_seed(0)
    model = EncoderBlock(16, 2).eval()
    path = tmp_path / "enc.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(path))
    result = CliRunner().invoke(main, ["compile", str(path), "--preset", "tiny",
                                       "--no-cache", "-o", str(tmp_path / "enc.gemsmodel")])
    assert result.exit_code == 0, result.output
    assert "est. cycles" in result.output and "softmax" in result.output
    assert "6 accelerator ops" in result.output
    compiled = CompiledModel.load(tmp_path / "enc.gemsmodel")
    assert run_compiled(compiled, x.numpy())[0].shape == (1, 4, 16)
    bad = CliRunner().invoke(main, ["compile", str(path.with_suffix(".txt"))])
    assert bad.exit_code != 0
