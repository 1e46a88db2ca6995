"""The functional model against independent Python/numpy statements of the ISA semantics,
and its error reporting (type, message, index, address) for every kind of bad program."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemmstone import preset
from gemmstone.isa import (
    AddressError,
    DmaWindowError,
    ErrorCode,
    IllegalInstructionError,
    OperandError,
    ProgramEndError,
    TokenError,
    assemble,
    encode,
    make,
)
from gemmstone.sim.functional import FunctionalModel, requantize

TINY = preset("tiny")
WINDOW = 4096


def run(model, text, **kwargs):
    return model.run(assemble(text), window_size=kwargs.pop("window_size", WINDOW), **kwargs)


def put(model, offset, array):
    data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    model.dram[offset:offset + data.size] = data


def get(model, offset, shape, dtype):
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return model.dram[offset:offset + count].view(dtype).reshape(shape)


def python_requantize(acc, bias, mult, shift, zp, lo, hi):
    """The STORE output stage with Python integers: no overflow, no numpy tricks."""
    x = max(-(1 << 31), min((1 << 31) - 1, acc + bias))
    p = x * mult
    s = shift & 63
    y = p if s == 0 else (p + (1 << (s - 1))) >> s
    return max(lo, min(hi, y + zp))


int32s = st.integers(-(1 << 31), (1 << 31) - 1)


@settings(max_examples=300, deadline=None)
@given(acc=int32s, bias=int32s, mult=int32s, shift=int32s,
       zp=st.integers(-128, 127), bounds=st.tuples(st.integers(-128, 127),
                                                    st.integers(-128, 127)).map(sorted))
def test_requantize_matches_python_integers(acc, bias, mult, shift, zp, bounds):
    lo, hi = bounds
    got = requantize(np.array([acc], np.int32), np.array([bias], np.int32),
                     np.array([mult], np.int32), np.array([shift], np.int32), zp, lo, hi)
    assert int(got[0]) == python_requantize(acc, bias, mult, shift, zp, lo, hi)


def test_load_with_padding_and_stride():
    model = FunctionalModel(TINY)
    image = np.arange(64, dtype=np.int8).reshape(16, 4)
    put(model, 0, image)
    model.spad[:] = 99  # padding must overwrite stale lines with zeros
    run(model, "load dram=4 stride=8 spad=3 n=4 len=3 pad_lo=2 pad_hi=1\nhalt")
    expected = np.zeros((7, 4), np.int8)
    expected[2:6, :3] = image[1::2][:4, :3]
    np.testing.assert_array_equal(model.spad[3:10], expected)
    assert (model.spad[:3] == 99).all() and (model.spad[10] == 99).all()


def test_matmul_overwrite_accumulate_and_partial_weights():
    model = FunctionalModel(TINY)
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (5, 4), dtype=np.int8)
    w = rng.integers(-128, 128, (3, 4), dtype=np.int8)
    put(model, 0, a)
    put(model, 64, w)
    model.acc[:] = 7
    run(model, """
        load dram=0 stride=4 spad=0 n=5 len=4
        load dram=64 stride=4 spad=8 n=3 len=4 push_next
        preload spad=8 k=3 pop_prev
        matmul spad=0 acc=2 n=5
        matmul spad=0 acc=2 n=5 accumulate
        halt""")
    expected = 2 * (a[:, :3].astype(np.int64) @ w.astype(np.int64))
    np.testing.assert_array_equal(model.acc[2:7], expected)
    assert (model.acc[:2] == 7).all() and (model.acc[7:] == 7).all()


def test_matmul_wraps_like_32_bit_adders():
    model = FunctionalModel(TINY)
    model.acc[0] = (1 << 31) - 1
    model.spad[0, :4] = [1, 0, 0, 0]
    model.spad[1, :4] = [1, 1, 1, 1]
    run(model, "preload spad=1 k=1\nmatmul spad=0 acc=0 n=1 accumulate\nhalt")
    assert model.acc[0, 0] == -(1 << 31)


def test_loadacc_int8_int32_and_accumulate():
    model = FunctionalModel(TINY)
    put(model, 0, np.array([[1, -2, 3, -4], [5, 6, 7, 8]], np.int32))
    put(model, 64, np.array([-1, 2, -128], np.int8))
    run(model, """
        loadacc dram=0 stride=16 acc=0 n=2 len=4 type=int32
        loadacc dram=64 stride=0 acc=0 n=2 len=3 type=int8 accumulate
        loadacc dram=64 stride=0 acc=4 n=1 len=2 type=int8
        halt""")
    np.testing.assert_array_equal(model.acc[:2], [[0, 0, -125, -4], [4, 8, -121, 8]])
    np.testing.assert_array_equal(model.acc[4], [-1, 2, 0, 0])


def test_store_int8_through_output_stage():
    model = FunctionalModel(TINY)
    rng = np.random.default_rng(2)
    acc = rng.integers(-50000, 50000, (3, 4)).astype(np.int32)
    bias = np.array([100, -100, 0, 5], np.int32)
    mult = np.array([1 << 20, 3 << 18, 12345, 1], np.int32)
    shift = np.array([24, 22, 16, 0], np.int32)
    model.acc[10:13] = acc
    put(model, 0, np.concatenate([bias, mult, shift]))
    run(model, """
        loadq dram=0 len=4
        config zp=3 lo=3 hi=90
        store dram=256 stride=5 acc=10 n=3 len=4 mode=int8
        halt""")
    got = np.stack([get(model, 256 + 5 * i, (4,), np.int8) for i in range(3)])
    expected = [[python_requantize(int(acc[i, j]), int(bias[j]), int(mult[j]), int(shift[j]),
                                   3, 3, 90) for j in range(4)] for i in range(3)]
    np.testing.assert_array_equal(got, expected)


def test_loadq_zeroes_columns_beyond_len():
    model = FunctionalModel(TINY)
    model.acc[0] = [1000, 1000, 1000, 1000]
    put(model, 0, np.array([0, 0, 1, 1, 0, 0], np.int32))  # bias, mult, shift for 2 columns
    run(model, "loadq dram=0 len=2\nstore dram=64 stride=4 acc=0 n=1 len=4\nhalt")
    np.testing.assert_array_equal(get(model, 64, (4,), np.int8), [127, 127, 0, 0])


@pytest.mark.parametrize("func", ["add", "sub", "max", "min", "shr", "shl", "mov", "mulshr"])
@pytest.mark.parametrize("use_imm", [False, True])
def test_alu_functions(func, use_imm):
    model = FunctionalModel(TINY)
    rng = np.random.default_rng(3)
    d = rng.integers(-(1 << 31), 1 << 31, (6, 4), dtype=np.int64)
    b = rng.integers(-(1 << 31), 1 << 31, (6, 4), dtype=np.int64)
    d[0, :2] = [(1 << 31) - 1, -(1 << 31)]  # saturation corners
    imm = -123457
    model.acc[0:6] = d
    model.acc[8:14] = b
    flags = f"use_imm imm={imm}" if use_imm else "src=8"
    run(model, f"alu func={func} dst=0 n=6 shift=9 {flags}\nhalt")
    operand = np.full_like(d, imm) if use_imm else b

    def expect(x, y):
        sat = lambda v: max(-(1 << 31), min((1 << 31) - 1, v))  # noqa: E731
        rshr = lambda v, s: v if s == 0 else (v + (1 << (s - 1))) >> s  # noqa: E731
        return {"add": sat(x + y), "sub": sat(x - y), "max": max(x, y), "min": min(x, y),
                "shr": rshr(x, y & 31), "shl": sat(x << (y & 31)), "mov": y,
                "mulshr": sat(rshr(x * y, 9))}[func]

    expected = [[expect(int(x), int(y)) for x, y in zip(dr, br, strict=True)]
                for dr, br in zip(d, operand, strict=True)]
    np.testing.assert_array_equal(model.acc[0:6], expected)


def test_window_base_relocates_every_dram_access():
    def run_at(base):
        model = FunctionalModel(TINY)
        put(model, base, np.arange(16, dtype=np.int8))
        model.run(assemble("""
            load dram=0 stride=4 spad=0 n=4 len=4 push_next
            preload spad=0 k=4 pop_prev
            matmul spad=0 acc=0 n=4 push_next
            store dram=64 stride=16 acc=0 n=4 len=4 mode=int32 pop_prev
            halt"""), window_base=base, window_size=128)
        return model.dram[base:base + 128].copy(), np.count_nonzero(model.dram)

    first, written_first = run_at(0)
    second, written_second = run_at(1 << 20)
    np.testing.assert_array_equal(first, second)
    assert written_first == written_second


def test_tokens_order_units_through_full_token_queues():
    config = preset("tiny").replace(token_depth=2, queue_depth=2)
    model = FunctionalModel(config)
    put(model, 0, np.arange(64, dtype=np.int8))
    loads = "\n".join(f"load dram={16 * i} stride=4 spad={4 * i} n=4 len=4 push_next"
                      for i in range(4))
    computes = "\n".join(f"preload spad={4 * i} k=4 pop_prev\nmatmul spad=0 acc={4 * i} n=4"
                         for i in range(4))
    counters = run(model, f"{loads}\n{computes}\nhalt")
    assert counters.instructions == {"load": 4, "compute": 8, "store": 0, "dispatch": 1}
    for i in range(4):
        w = np.arange(16 * i, 16 * i + 16, dtype=np.int64).reshape(4, 4)
        a = np.arange(16, dtype=np.int64).reshape(4, 4)
        np.testing.assert_array_equal(model.acc[4 * i:4 * i + 4], a @ w)


RACE = """
    load dram=0 stride=4 spad=0 n=4 len=4 {push}
    preload spad=0 k=4 {pop}
    matmul spad=0 acc=0 n=4
    halt"""


def race_results(push, pop):
    results = set()
    for seed in range(12):
        model = FunctionalModel(TINY)
        put(model, 0, np.arange(1, 17, dtype=np.int8))
        run(model, RACE.format(push=push, pop=pop), schedule_seed=seed)
        results.add(model.acc[:4].tobytes())
    return results


def test_random_schedules_expose_a_missing_token():
    assert len(race_results("", "")) > 1  # compute may run before the load: a race
    assert len(race_results("push_next", "pop_prev")) == 1


def test_fence_waits_for_all_units():
    model = FunctionalModel(TINY)
    model.acc[0] = [1, 2, 3, 4]
    counters = run(model, """
        store dram=0 stride=16 acc=0 n=1 len=4 mode=int32
        fence
        loadacc dram=0 stride=16 acc=1 n=1 len=4
        halt""")
    np.testing.assert_array_equal(model.acc[1], [1, 2, 3, 4])
    assert counters.instructions["dispatch"] == 2


# -- bad programs: each error names the instruction, the reason and the address ----------

def error_of(text=None, words=None, config=TINY, window_size=WINDOW):
    model = FunctionalModel(config)
    with pytest.raises(Exception) as info:
        model.run(words if words is not None else assemble(text), window_size=window_size)
    return info.value


def test_illegal_opcode():
    error = error_of(words=[encode(make("fence")), 0xC])
    assert type(error) is IllegalInstructionError and error.code is ErrorCode.ILLEGAL_INSTRUCTION
    assert str(error) == ("instruction 1 (.word 0x0000000000000000000000000000000c): "
                          "illegal opcode 12 (inter-core: reserved)")


def test_reserved_bits_set():
    error = error_of(words=[encode(make("halt")) | 1 << 100])
    assert type(error) is IllegalInstructionError and error.index == 0
    assert error.reason == f"halt: reserved bits set ({1 << 100:#x})"


def test_token_flag_the_unit_does_not_have():
    error = error_of(words=[encode(make("load", len=1)) | 1 << 4])
    assert type(error) is IllegalInstructionError
    assert error.reason == "load: pop_prev set, but the load unit has no prev neighbour"


@pytest.mark.parametrize("text, reason", [
    ("load len=0", "len = 0 is outside 1..4"),
    ("load len=5", "len = 5 is outside 1..4"),
    ("preload k=5", "k = 5 is outside 1..4"),
    ("store len=5 n=1", "len = 5 is outside 1..4"),
    ("config lo=5 hi=4", "clamp lo = 5 is above hi = 4"),
    ("alu dst=4 src=6 n=3", "src rows 6..8 partly overlap dst rows 4..6"),
    ("alu dst=7 src=6 n=3", "src rows 6..8 partly overlap dst rows 7..9"),
])
def test_operand_errors(text, reason):
    error = error_of(f"{text}\nhalt")
    assert type(error) is OperandError and error.code is ErrorCode.OPERAND
    assert error.index == 0 and error.reason == reason


def test_scratchpad_out_of_range():
    lines = TINY.spad_lines
    error = error_of(f"load spad={lines - 2} n=2 len=4 pad_hi=1\nhalt")
    assert type(error) is AddressError and error.code is ErrorCode.SPAD_RANGE
    assert error.address == lines
    assert error.reason == (f"scratchpad lines {lines - 2}..{lines} exceed the {lines} lines")


def test_accumulator_out_of_range():
    rows = TINY.acc_rows
    error = error_of(f"fence\nalu func=add dst=0 src={rows - 1} n=2\nhalt")
    assert type(error) is AddressError and error.code is ErrorCode.ACC_RANGE
    assert error.index == 1 and error.address == rows
    assert error.reason == f"accumulator rows {rows - 1}..{rows} exceed the {rows} rows"


@pytest.mark.parametrize("text, last", [
    ("load dram=0xff8 stride=4 n=3 len=4", 0xFF8 + 8 + 3),
    ("store dram=0x1000 n=1 len=1", 0x1000),
    ("loadacc dram=0 stride=4096 n=2 len=1", 4096 + 3),
    ("loadq dram=0xffc len=1", 0xFFC + 11),
])
def test_dma_window(text, last):
    error = error_of(f"{text}\nhalt")
    assert type(error) is DmaWindowError and error.code is ErrorCode.DMA_WINDOW
    assert error.address == last
    assert error.reason == (f"DRAM access up to offset {last:#x} leaves the DMA window of "
                            f"{WINDOW:#x} bytes")


def test_dma_window_protects_memory_outside():
    model = FunctionalModel(TINY.replace(dram_mib=1))
    model.acc[:4] = 0x01010101
    before = model.dram.copy()
    with pytest.raises(DmaWindowError):
        model.run(assemble("store dram=0 stride=64 acc=0 n=4 len=4 mode=int32\nhalt"),
                  window_base=1024, window_size=200)
    np.testing.assert_array_equal(model.dram, before)  # checked before any byte moves


def test_token_underflow():
    error = error_of("load len=1\nmatmul n=1 pop_prev\nhalt")
    assert type(error) is TokenError and error.index == 1
    assert error.reason == ("token underflow: pops a token from load->compute that no "
                            "remaining instruction pushes")


def test_token_deadlock_between_units():
    error = error_of("""
        load len=1 pop_next
        matmul n=1 pop_prev push_prev
        halt""")
    assert type(error) is TokenError and error.index == 0
    assert error.reason == ("deadlock: waits for a token from compute->load, but every "
                            "instruction that could push it is blocked")


def test_deadlock_from_a_full_instruction_queue():
    # The load at index 0 waits for the matmul at index 2, which cannot be dispatched while
    # the load at index 1 waits for room in the load queue: the hardware would hang here.
    text = "load len=1 pop_next\nload len=1\nmatmul n=1 push_prev\nhalt"
    error = error_of(text, config=TINY.replace(queue_depth=1))
    assert type(error) is TokenError and error.index == 0
    assert error.reason == ("deadlock: waits for a token from compute->load that instruction 2 "
                            "would push, but it cannot be dispatched while the load queue is "
                            "full (depth 1)")
    FunctionalModel(TINY.replace(queue_depth=2)).run(assemble(text), window_size=WINDOW)


def test_tokens_left_at_halt():
    error = error_of("load len=1 push_next\nhalt")
    assert type(error) is TokenError and error.index == 1
    assert error.reason == "tokens left in queues at halt: 1 in load->compute"


def test_program_without_halt():
    error = error_of("load len=1")
    assert type(error) is ProgramEndError and error.code is ErrorCode.PROGRAM_END
    assert error.reason == "the program ended after 1 instructions without halt"
