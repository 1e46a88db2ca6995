"""GEMM and conv programs from the reference generator, run on the functional model, must
equal the numpy references exactly, for random shapes, data and output stage parameters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemmstone.compiler import reference
from gemmstone.compiler.builder import ALIGNMENT, TOKEN_QUEUES, BuildError, ProgramBuilder
from gemmstone.compiler.kernels import conv2d_output_shape, emit_conv2d, emit_gemm, pack_qparams
from gemmstone.compiler.kernels.gemm import emit_tiled_matmul, row_major_a
from gemmstone.config import preset
from gemmstone.isa import Program, TokenError, decode, encode, make
from gemmstone.sim.functional import run_program
from gemmstone.sim.performance import estimate

SETTINGS = settings(deadline=None, max_examples=40,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(SETTINGS, max_examples=15)
CONFIGS = ["tiny", "small", "rect"]

# Output stage parameters: "scaled" maps the accumulator range onto int8 like a real
# quantized layer; "wild" takes any int32 (bias saturation, negative multipliers, shift
# values with bits above [5:0] set).
STYLES = ["scaled", "wild"]


def random_qparams(rng: np.random.Generator, acc: np.ndarray, style: str):
    n = acc.shape[-1]
    if style == "wild":
        bias = rng.integers(-(1 << 31), 1 << 31, n)
        mult = rng.integers(-(1 << 31), 1 << 31, n)
        shift = rng.integers(-(1 << 31), 1 << 31, n)
        return bias, mult, shift
    bias = rng.integers(-(1 << 12), 1 << 12, n)
    mult = rng.integers(1 << 14, 1 << 15, n)
    peak = int(np.abs(acc.astype(np.int64)).max(initial=0)) + (1 << 12)
    shift = np.full(n, peak.bit_length() + 15 - 7) + rng.integers(-2, 3, n)
    return bias, mult, np.maximum(shift, 0)


@st.composite
def output_stages(draw):
    """(out dtype, style, zp, lo, hi) with lo <= hi; relu and relu6-like clamps included."""
    dtype = draw(st.sampled_from(["int8", "int32"]))
    zp = draw(st.integers(-128, 127))
    kind = draw(st.sampled_from(["none", "relu", "relu6", "clamp"]))
    if kind == "none":
        lo, hi = -128, 127
    elif kind == "relu":
        lo, hi = zp, 127
    elif kind == "relu6":
        lo, hi = zp, min(127, zp + draw(st.integers(0, 100)))
    else:
        lo, hi = sorted(draw(st.lists(st.integers(-128, 127), min_size=2, max_size=2)))
    return dtype, draw(st.sampled_from(STYLES)), zp, lo, hi


def build_and_run(config, inputs, emit, out_dtype, out_shape, acc, stage_style, zp, lo, hi,
                  rng, constants):
    """Allocate the buffers, call ``emit``, run on the model: (output, expected output)."""
    builder = ProgramBuilder(config)
    bufs = {name: builder.buffer(name, value.shape) for name, value in inputs.items()}
    bufs.update({name: builder.buffer(name, value.shape, data=value)
                 for name, value in constants.items()})
    qparams = None
    params = None
    if out_dtype == "int8":
        params = random_qparams(rng, acc, stage_style)
        qparams = builder.buffer("qparams", 3 * out_shape[-1], "int32",
                                 data=pack_qparams(*params, config.cols))
    out = builder.buffer("out", out_shape, out_dtype)
    emit(builder, bufs, out, qparams)
    program = builder.finish()
    # A random interleaving of the units: a missing token shows up as a wrong result.
    result = run_program(program, config, inputs, schedule_seed=int(rng.integers(1 << 31)))
    if params is None:
        return result.outputs["out"], acc
    return result.outputs["out"], reference.requantize(acc, *params, zp, lo, hi)


def block_m_choice(draw, m: int):
    return draw(st.one_of(st.none(), st.integers(1, min(m, 100))))


@st.composite
def gemm_cases(draw, max_dim: int = 70):
    m, n, k = (draw(st.integers(1, max_dim)) for _ in range(3))
    block_m, nbuf = block_m_choice(draw, m), draw(st.integers(1, 3))
    return m, n, k, block_m, nbuf, draw(output_stages()), draw(st.integers(0, 2**32 - 1))


def check_gemm(config, case):
    m, n, k, block_m, nbuf, (dtype, style, zp, lo, hi), seed = case
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    acc = reference.gemm_int8(a, b)

    def emit(builder, bufs, out, qparams):
        emit_gemm(builder, bufs["a"], bufs["b"], out, qparams, zp=zp, lo=lo, hi=hi,
                  block_m=block_m, nbuf=nbuf)

    got, expected = build_and_run(config, {"a": a}, emit, dtype, (m, n), acc, style, zp, lo,
                                  hi, rng, {"b": b})
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", CONFIGS)
@SETTINGS
@given(case=gemm_cases())
def test_gemm_matches_numpy(name, case):
    check_gemm(preset(name), case)


@FEW
@given(case=gemm_cases())
def test_gemm_matches_numpy_on_base(case):
    check_gemm(preset("base"), case)


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    height = draw(st.integers(max(1, kh - 2 * ph), 12))
    width = draw(st.integers(max(1, kw - 2 * pw), 12))
    channels, cout = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    batch = draw(st.sampled_from([None, 1, 2]))
    ho, wo = conv2d_output_shape(height, width, (kh, kw), (sh, sw), (ph, pw))
    m = (batch or 1) * ho * wo
    return ((batch, height, width, channels, cout), (kh, kw), (sh, sw), (ph, pw),
            block_m_choice(draw, m), draw(output_stages()), draw(st.integers(0, 2**32 - 1)))


def check_conv(config, case):
    (batch, height, width, channels, cout), kernel, stride, padding, block_m, stage, seed = case
    dtype, style, zp, lo, hi = stage
    rng = np.random.default_rng(seed)
    x_shape = (height, width, channels) if batch is None else (batch, height, width, channels)
    x = rng.integers(-128, 128, x_shape, dtype=np.int8)
    w = rng.integers(-128, 128, (*kernel, channels, cout), dtype=np.int8)
    acc = reference.conv2d_int8(x, w, stride=stride, padding=padding)

    def emit(builder, bufs, out, qparams):
        emit_conv2d(builder, bufs["x"], bufs["w"], out, qparams, kernel_size=kernel,
                    stride=stride, padding=padding, zp=zp, lo=lo, hi=hi, block_m=block_m)

    got, expected = build_and_run(config, {"x": x}, emit, dtype, acc.shape, acc, style, zp,
                                  lo, hi, rng, {"w": w.reshape(-1, cout)})
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", CONFIGS)
@SETTINGS
@given(case=conv_cases())
def test_conv_matches_numpy(name, case):
    check_conv(preset(name), case)


@FEW
@given(case=conv_cases())
def test_conv_matches_numpy_on_base(case):
    check_conv(preset("base"), case)


def test_conv_rows_wider_than_a_load_pad_field():
    """Output rows of more than 255 pixels take several LOADs per row (pad_lo/pad_hi are
    8-bit fields); the image's left and right padding fall in different LOADs."""
    check_conv(preset("small"), ((None, 2, 600, 3, 5), (3, 3), (1, 1), (2, 2), None,
                                 ("int8", "scaled", 1, -128, 127), 7))


def test_tiles_in_m_on_a_small_accumulator():
    """The default block_m of a config whose accumulator holds fewer rows than M."""
    config = preset("tiny").replace(acc_kib=1)  # 64 rows: 32-row tiles, double buffered
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (100, 9), dtype=np.int8)
    b = rng.integers(-128, 128, (9, 6), dtype=np.int8)
    builder = ProgramBuilder(config)
    bufs = [builder.buffer("a", a.shape), builder.buffer("b", b.shape, data=b),
            builder.buffer("out", (100, 6), "int32")]
    emit_gemm(builder, *bufs)
    program = builder.finish()
    stores = [decode(word) for word in program.words if decode(word).mnemonic == "store"]
    assert max(store.n for store in stores) <= 32
    got = run_program(program, config, {"a": a}).outputs["out"]
    np.testing.assert_array_equal(got, reference.gemm_int8(a, b))


def test_chained_kernels_share_one_program():
    """A conv's int8 output feeds a GEMM in the same program; the fence between them
    orders the DRAM round trip and resets the on-chip buffers and tokens."""
    config = preset("small")
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (6, 7, 5), dtype=np.int8)
    w1 = rng.integers(-128, 128, (3, 3, 5, 10), dtype=np.int8)
    w2 = rng.integers(-128, 128, (10, 4), dtype=np.int8)
    bias, mult, shift = np.zeros(10), np.full(10, 1 << 14), np.full(10, 24)
    builder = ProgramBuilder(config)
    xb = builder.buffer("x", x.shape)
    w1b = builder.buffer("w1", (45, 10), data=w1.reshape(45, 10))
    w2b = builder.buffer("w2", w2.shape, data=w2)
    qb = builder.buffer("q", 30, "int32", data=pack_qparams(bias, mult, shift, config.cols))
    hidden = builder.buffer("hidden", (6, 7, 10))
    out = builder.buffer("out", (42, 4), "int32")
    emit_conv2d(builder, xb, w1b, hidden, qb, kernel_size=3, padding=1, lo=0)
    emit_gemm(builder, builder.view("hidden_2d", hidden, (42, 10)), w2b, out)
    program = builder.finish()
    words = [decode(word) for word in program.words]
    assert [w.mnemonic for w in words].count("fence") == 1
    outputs = run_program(program, config, {"x": x}).outputs
    expected_hidden = reference.conv2d_int8(x, w1, padding=1, bias=bias, mult=mult,
                                            shift=shift, lo=0)
    np.testing.assert_array_equal(outputs["hidden"], expected_hidden)
    np.testing.assert_array_equal(outputs["out"],
                                  reference.gemm_int8(expected_hidden.reshape(42, 10), w2))


def test_kernel_arguments_are_checked():
    config = preset("tiny")
    builder = ProgramBuilder(config)
    a, b = builder.buffer("a", (3, 4)), builder.buffer("b", (5, 2))
    out8, out32 = builder.buffer("out8", (3, 2)), builder.buffer("out32", (3, 2), "int32")
    b4 = builder.buffer("b4", (4, 2))
    q = builder.buffer("q", 6, "int32")
    with pytest.raises(ValueError, match=r"^emit_gemm: 'a' \[3, 4\] and 'b' \[5, 2\] are not "
                                         r"\[M, K\] and \[K, N\]$"):
        emit_gemm(builder, a, b, out32)
    with pytest.raises(ValueError, match=r"^an int8 output needs 'qparams' \(int32 \[3 \* N\] "
                                         r"from pack_qparams\)$"):
        emit_gemm(builder, a, b4, out8)
    with pytest.raises(ValueError, match=r"^'lo' \(5\) must not be greater than 'hi' \(4\)$"):
        emit_gemm(builder, a, b4, out8, q, lo=5, hi=4)
    with pytest.raises(ValueError, match="^'qparams' is only used with an int8 output; an "
                                         "int32 output receives the raw accumulators$"):
        emit_gemm(builder, a, b4, out32, q)
    with pytest.raises(BuildError, match=r"^'block_m' must be from 1 to \d+ for 2 slots on "
                                         r"this config, not 100000$"):
        emit_gemm(builder, a, b4, out32, block_m=100000)
    x = builder.buffer("x", (5, 5, 2))
    w = builder.buffer("w", (18, 3))
    with pytest.raises(ValueError, match=r"^'out' must have shape \[3, 3, 3\], not \[3, 2\]$"):
        emit_conv2d(builder, x, w, out32, kernel_size=3)
    with pytest.raises(ValueError, match=r"^'w' must be \[KH \* KW \* C, Cout\] = \[8, Cout\], "
                                         r"not \[18, 3\]$"):
        emit_conv2d(builder, x, w, out32, kernel_size=2)


# -- builder ------------------------------------------------------------------------------

def token_counts(words: list[int]) -> dict[str, tuple[int, int]]:
    decoded = [decode(word) for word in words]
    return {queue: (sum(1 for i in decoded if i.spec.unit is producer and i[push]),
                    sum(1 for i in decoded if i.spec.unit is consumer and i[pop]))
            for queue, (producer, push, consumer, pop) in TOKEN_QUEUES.items()}


def small_gemm_program(config, out_dtype="int8", nbuf=2):
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (23, 13), dtype=np.int8)
    b = rng.integers(-128, 128, (13, 11), dtype=np.int8)
    params = (rng.integers(-500, 500, 11), rng.integers(1 << 14, 1 << 15, 11),
              np.full(11, 22))
    builder = ProgramBuilder(config)
    bufs = [builder.buffer("a", a.shape), builder.buffer("b", b.shape, data=b),
            builder.buffer("out", (23, 11), out_dtype)]
    q = builder.buffer("q", 33, "int32", data=pack_qparams(*params, config.cols))
    emit_gemm(builder, *bufs, q, zp=-5, block_m=5, nbuf=nbuf)
    expected = reference.gemm_int8(a, b, *params, zp=-5)
    return builder.finish(), a, expected


@pytest.mark.parametrize("name", CONFIGS)
def test_builder_balances_tokens(name):
    config = preset(name)
    program, a, expected = small_gemm_program(config)
    counts = token_counts(program.words)
    assert all(pushes == pops and pops > 0 for pushes, pops in counts.values()), counts
    result = run_program(program, config, {"a": a})  # TokenError if one were left at halt
    np.testing.assert_array_equal(result.outputs["out"], expected)


def test_finish_clears_pushes_no_pop_consumes():
    config = preset("tiny")
    builder = ProgramBuilder(config)
    src = builder.buffer("src", 4)
    builder.emit("load", dram=src.offset, n=1, len=4, push_next=1)
    builder.emit("load", dram=src.offset, n=1, len=4, push_next=1)
    builder.emit("preload", spad=0, k=1, pop_prev=1, push_next=1)
    program = builder.finish()
    assert token_counts(program.words)["load->compute"] == (1, 1)
    assert token_counts(program.words)["compute->store"] == (0, 0)
    run_program(program, config, {})
    # The same words with the extra push kept do leave a token at halt.
    raw = list(program.words)
    raw[1] = encode(make("load", dram=src.offset, n=1, len=4, push_next=1))
    with pytest.raises(TokenError, match="tokens left in queues at halt: 1 in load->compute"):
        run_program(dataclasses.replace(program, words=raw), config, {})


def test_pop_without_earlier_push_is_a_build_error():
    builder = ProgramBuilder(preset("tiny"))
    builder.emit("preload", spad=0, k=1, pop_prev=1)
    builder.emit("load", dram=0, n=0, len=1, push_next=1)
    with pytest.raises(BuildError, match=r"^token queue load->compute: instruction 0 "
                       r"\(preload .* pop_prev\) pops token 0 since the last fence, but no "
                       r"earlier instruction pushes it$"):
        builder.finish()


def test_tokens_in_flight_are_limited_to_the_token_depth():
    builder = ProgramBuilder(preset("tiny").replace(token_depth=1))
    builder.emit("load", dram=0, n=0, len=1, push_next=1)
    builder.emit("load", dram=0, n=0, len=1, push_next=1)
    builder.emit("preload", spad=0, k=1, pop_prev=1)
    builder.emit("preload", spad=0, k=1, pop_prev=1)
    with pytest.raises(BuildError, match=r"^token queue load->compute: instruction 1 \(load .*"
                       r"push_next\) would be push number 2 in flight, more than the config's "
                       r"token_depth of 1$"):
        builder.finish()
    with pytest.raises(ValueError, match=r"^'nbuf' must be from 1 to the config's "
                                         r"token_depth \(1\), not 2$"):
        small_gemm_program(preset("tiny").replace(token_depth=1))


@pytest.mark.parametrize(("token_depth", "queue_depth"), [(1, 1), (2, 1), (3, 2)])
def test_pipelines_run_on_shallow_queues(token_depth, queue_depth):
    """With nbuf = token_depth and one-entry instruction queues nothing deadlocks."""
    config = preset("tiny").replace(token_depth=token_depth, queue_depth=queue_depth)
    check_gemm(config, (19, 10, 9, 4, token_depth, ("int8", "scaled", 0, -128, 127), 5))
    check_conv(config, ((2, 7, 9, 5, 6), (3, 3), (1, 2), (1, 1), 6,
                        ("int32", "scaled", 0, -128, 127), 6))


def test_buffers_are_aligned_and_checked():
    builder = ProgramBuilder(preset("tiny"))
    first = builder.buffer("a", (3,))
    second = builder.buffer("b", (2, 2), "int32", data=np.array([[1, -2], [3, 4]]))
    assert (first.offset, second.offset) == (0, ALIGNMENT)
    assert builder.window_size == ALIGNMENT + 16
    with pytest.raises(BuildError, match="^buffer 'a' is already allocated$"):
        builder.buffer("a", 1)
    with pytest.raises(BuildError, match=r"^buffer 'c': data has shape \(3,\), the buffer "
                                         r"\(2,\)$"):
        builder.buffer("c", 2, data=np.arange(3))
    with pytest.raises(BuildError, match=r"^buffer 'd': data does not fit int8 \(0..200\)$"):
        builder.buffer("d", 2, data=np.array([0, 200]))
    program = builder.finish()
    assert program.segments[0].data == np.array([1, -2, 3, 4], "<i4").tobytes()


def test_on_chip_space_is_checked():
    config = preset("tiny")
    builder = ProgramBuilder(config)
    builder.acc_slots(2, config.acc_rows // 2)
    with pytest.raises(BuildError, match=rf"^accumulator: 1 slots of 1 rows need 1 rows, "
                                         rf"only 0 of {config.acc_rows} are free$"):
        builder.acc_slots(1, 1)
    builder.emit("config")
    builder.fence()  # frees everything
    assert builder.acc_free == config.acc_rows


def test_program_survives_serialization():
    config = preset("rect")
    program, a, expected = small_gemm_program(config)
    loaded = Program.from_bytes(program.to_bytes(), config=config)
    assert loaded.words == program.words
    result = run_program(loaded, config, {"a": a})
    np.testing.assert_array_equal(result.outputs["out"], expected)


def test_pipeline_overlaps_units():
    """Double buffering: the weight LOAD of a tile (both k steps in one LOAD) waits for its
    scratchpad slot from the third tile on, compute waits for an accumulator slot from the
    third tile on; the releases of the last two tiles are pushes nobody pops, so finish()
    cleared them. The A tiles of an m tile are loaded once and stay on chip for its second
    column block; their slots were released long before, so they wait for nothing. With two
    resident panels, the A tiles of m tile t + 1 load during m tile t's second column block
    (prefetch): only the first m tile's first column block waits for its A tiles."""
    program, _, _ = small_gemm_program(preset("small"))  # 5 m x 2 n tiles, 2 k steps each
    decoded = [decode(word) for word in program.words]
    b = program.buffers["b"]
    loads = [i for i in decoded if i.mnemonic == "load"]
    weight_loads = [i for i in loads if b.offset <= i.dram < b.offset + b.nbytes]
    a_loads = [i for i in loads if not b.offset <= i.dram < b.offset + b.nbytes]
    preloads = [i for i in decoded if i.mnemonic == "preload"]
    matmuls = [i for i in decoded if i.mnemonic == "matmul"]
    stores = [i for i in decoded if i.mnemonic == "store"]
    assert len(a_loads) == 5 * 2 and len(weight_loads) == 10
    assert [i.n for i in weight_loads] == [13] * 10
    assert [i.pop_next for i in weight_loads] == [0, 0] + [1] * 8
    assert not any(i.pop_next for i in a_loads)
    assert [i.push_prev for i in matmuls] == [0, 1] * 8 + [0, 0] * 2
    # The second step of the first column block also waits for its own A tile; later m
    # tiles' A tiles are there before their first step.
    assert [i.pop_prev for i in preloads] == [1, 1, 1, 0] + [1, 0, 1, 0] * 4
    a_steps = [index for index, word in enumerate(decoded) if word in a_loads]
    second_blocks = [index for index, word in enumerate(decoded)
                     if word.mnemonic == "preload" and word.spad == 36]
    assert [a_steps[2 * t] > second_blocks[t - 1] for t in range(1, 5)] == [True] * 4
    assert [i.pop_next for i in matmuls] == [0] * 4 + [1, 0] * 8
    assert [i.push_next for i in matmuls] == [0, 1] * 10
    assert [i.pop_prev for i in stores] == [1] * 10
    assert [i.push_prev for i in stores] == [1] * 8 + [0, 0]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("a_panels", [0, 1, 2])
def test_a_panels_match_numpy(name, a_panels):
    """Each way of holding A (reloaded per column block, one or two resident panels) with
    several m tiles and column blocks, under random unit interleavings."""
    config = preset(name)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        m, n, k = 37, 3 * config.cols + 1, 3 * config.rows - 1
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        b = rng.integers(-128, 128, (k, n), dtype=np.int8)
        builder = ProgramBuilder(config)
        bufs = [builder.buffer("a", a.shape), builder.buffer("b", b.shape, data=b),
                builder.buffer("out", (m, n), "int32")]
        plan = emit_tiled_matmul(builder, m=m, k_steps=[(k0, min(config.rows, k - k0))
                                                        for k0 in range(0, k, config.rows)],
                                 load_a=row_major_a(bufs[0], config.rows), w=bufs[1],
                                 out=bufs[2], block_m=10, nbuf=1 + seed, a_panels=a_panels)
        assert plan["a_panels"] == a_panels
        program = builder.finish()
        result = run_program(program, config, {"a": a}, schedule_seed=seed)
        np.testing.assert_array_equal(result.outputs["out"], reference.gemm_int8(a, b))


def test_conv_rows_join_into_one_load():
    """A 1x1 convolution's A tile is contiguous in DRAM: one LOAD per k step and m tile."""
    config = preset("small")
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (9, 7, 8), dtype=np.int8)
    w = rng.integers(-128, 128, (1, 1, 8, 5), dtype=np.int8)
    builder = ProgramBuilder(config)
    xb, wb = builder.buffer("x", x.shape), builder.buffer("w", (8, 5), data=w.reshape(8, 5))
    out = builder.buffer("out", (9, 7, 5), "int32")
    plan = emit_conv2d(builder, xb, wb, out, kernel_size=1)
    program = builder.finish()
    a_loads = [i for i in map(decode, program.words)
               if i.mnemonic == "load" and i.dram < xb.offset + xb.nbytes]
    assert len(a_loads) == plan["tiles"] and a_loads[0].n == plan["block_m"]
    got = run_program(program, config, {"x": x}, schedule_seed=1).outputs["out"]
    np.testing.assert_array_equal(got, reference.conv2d_int8(x, w))


# -- the references themselves, against hand-worked values --------------------------------

def test_requantize_rounds_half_up_and_saturates():
    acc = np.array([[5, -5, 7, -7, 2**31 - 1, 100]])
    bias = np.array([0, 0, 0, 0, 10, 0])
    mult = np.array([1, 1, 1, 1, 1, 3])
    shift = np.array([1, 1, 1, 1, 24, 64])  # 64 & 63 == 0: no shift
    # 2.5 -> 3, -2.5 -> -2, 3.5 -> 4, -3.5 -> -3, (2^31 - 1) >> 24 = 127.99.. -> 128 -> 127
    expected = [[3, -2, 4, -3, 127, 127]]
    np.testing.assert_array_equal(reference.requantize(acc, bias, mult, shift), expected)
    np.testing.assert_array_equal(
        reference.requantize(acc, bias, mult, shift, zp=10, lo=0, hi=12),
        [[12, 8, 12, 7, 12, 12]])


def test_gemm_reference_wraps_like_int32():
    a = np.full((1, 140000), -128, dtype=np.int8)
    b = np.full((140000, 1), -128, dtype=np.int8)
    assert reference.gemm_int8(a, b)[0, 0] == 140000 * 16384 - 2**32


def test_conv_reference_matches_a_direct_loop():
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (5, 6, 3), dtype=np.int8)
    w = rng.integers(-128, 128, (3, 2, 3, 4), dtype=np.int8)
    got = reference.conv2d_int8(x, w, stride=(2, 1), padding=(1, 2))
    padded = np.pad(x.astype(np.int64), ((1, 1), (2, 2), (0, 0)))
    ho, wo = (5 + 2 - 3) // 2 + 1, (6 + 4 - 2) + 1
    expected = np.zeros((ho, wo, 4), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            for co in range(4):
                expected[oy, ox, co] = sum(
                    int(padded[oy * 2 + i, ox + j, c]) * int(w[i, j, c, co])
                    for i in range(3) for j in range(2) for c in range(3))
    np.testing.assert_array_equal(got, expected)


def test_batch_one_matmul_keeps_the_array_busy():
    """M = 1 (a classifier at batch 1): each 16x16 weight tile serves one row, so the
    array's weight bank turnaround bounds a k step ((1 + 16 + 16 + 16 - 1) / 2 = 24
    cycles). The weight LOADs (rows padded to 1008 bytes: every line on a bus beat) are
    handed over early enough that the run stays within 5% of that bound."""
    config = preset("base")
    rng = np.random.default_rng(5)
    m, k, n = 1, 512, 1000
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    builder = ProgramBuilder(config)
    a_buf = builder.buffer("a", a.shape)
    w = builder.buffer("b", (k, 1008), data=np.pad(b, ((0, 0), (0, 8))))
    out = builder.buffer("out", (m, n), "int32")
    plan = emit_tiled_matmul(builder, m=m, k_steps=[(k0, 16) for k0 in range(0, k, 16)],
                             load_a=row_major_a(a_buf, 16), w=w, out=out, n=n)
    program = builder.finish()
    result = run_program(program, config, {"a": a}, schedule_seed=1)
    np.testing.assert_array_equal(result.outputs["out"], reference.gemm_int8(a, b))
    cycles = estimate(program, config).cycles
    assert plan["steps"] == 32 * 63 and cycles <= 1.05 * 24 * plan["steps"], cycles


def test_first_column_blocks_interleave_in_parts_of_k():
    """One resident A panel and three slots: an m tile's first three column blocks run in
    three parts of k, block after block within a part, so each A tile serves three
    blocks before the next part's A tiles are needed (those load during this part)."""
    config = preset("small")  # 8x8
    rng = np.random.default_rng(7)
    m, k, n = 20, 6 * 8, 5 * 8
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    builder = ProgramBuilder(config)
    bufs = [builder.buffer("a", a.shape), builder.buffer("b", b.shape, data=b),
            builder.buffer("out", (m, n), "int32")]
    emit_gemm(builder, *bufs, block_m=10, nbuf=3, a_panels=1)
    program = builder.finish()
    matmuls = [decode(word) for word in program.words if decode(word).mnemonic == "matmul"]
    # Accumulator slot per step (tile tau uses slot tau % 3): blocks 0-2 of each m tile
    # interleaved in parts of two k steps, then blocks 3 and 4 one after the other.
    slots = [matmul.acc // 10 for matmul in matmuls]
    assert slots == ([0, 0, 1, 1, 2, 2] * 3 + [0] * 6 + [1] * 6
                     + [2, 2, 0, 0, 1, 1] * 3 + [2] * 6 + [0] * 6)
    assert [matmul.spad // 10 for matmul in matmuls[:6]] == [0, 1, 0, 1, 0, 1]
    for seed in range(3):
        result = run_program(program, config, {"a": a}, schedule_seed=seed)
        np.testing.assert_array_equal(result.outputs["out"], reference.gemm_int8(a, b))
