"""The compiled core (gemmstone.sim.performance_core) against the Python reference model
(`engine="python"`): identical cycles, every counter and the arbiter grant, and the same
exception (type, message, instruction index and text) on every fault path."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_performance_calibration import calibration_cases, conv_case

from gemmstone.config import AcceleratorConfig, preset
from gemmstone.isa import assemble
from gemmstone.isa.encoding import decode, words_to_bytes
from gemmstone.isa.errors import IllegalInstructionError, ProgramEndError, TokenError
from gemmstone.isa.table import BY_MNEMONIC, BY_OPCODE, OPCODE_FIELD, TOKEN_FIELDS, Unit
from gemmstone.sim import performance
from gemmstone.sim import performance_core as core
from gemmstone.sim.performance import ENGINES, PerformanceModel, _Run, estimate
from gemmstone.sim.performance_core import _simulate, run_compiled, words_to_code
from gemmstone.sim.performance_memory import AXI_RAM, MemoryTiming, sim_dram
from gemmstone.sim.random_programs import random_program

MEMORIES = {"axi-ram": AXI_RAM, "dram2": sim_dram(2), "dram20": sim_dram(20),
            "dram60": sim_dram(60)}

#: Programs that fault on tokens or end without halt (shared with the analytic engine's
#: tests, tests/sim/test_performance_analytic.py).
BAD_PROGRAMS = [
    "load len=1\nmatmul n=1 pop_prev\nhalt",
    "load len=1 push_next\nhalt",
    "load len=1",
    "load n=3 len=4\nfence\nmatmul n=2 pop_prev\nstore n=1 len=4 pop_prev\nhalt",
    "matmul n=2 push_prev\nmatmul n=2 push_prev\nmatmul n=2 push_prev\nhalt",
]
#: Words that do not decode, one of each kind of check (shared likewise).
ILLEGAL_WORDS = [
    0,                                             # reserved opcode
    15 | 1 << 40,                                  # reserved opcode
    BY_MNEMONIC["halt"].opcode | 1 << 100,         # reserved bit
    BY_MNEMONIC["store"].opcode | 3 << 100,        # store mode 3: no member
    BY_MNEMONIC["alu"].opcode | 15 << 8,           # alu func 15: no member
    BY_MNEMONIC["load"].opcode | 1 << 4,           # load pop_prev: no previous unit
    BY_MNEMONIC["store"].opcode | 1 << 7,          # store push_next: no next unit
    1 << 128,                                      # not a 128-bit value
    -1,
]


def _run(engine: str, config: AcceleratorConfig, memory: MemoryTiming, words, **addresses):
    """``engine``'s result for ``words`` (run cache off), or the exception it raised."""
    model = PerformanceModel(config, memory, cache=False, engine=engine)
    try:
        return model.run(words, **addresses)
    except (TokenError, ProgramEndError, IllegalInstructionError) as error:
        return error


def _both(config: AcceleratorConfig, memory: MemoryTiming, words, **addresses):
    """(compiled, python) results, or the exceptions they raised."""
    return [_run(engine, config, memory, words, **addresses)
            for engine in ("compiled", "python")]


def _assert_same(compiled, python) -> None:
    if isinstance(python, Exception):
        assert type(compiled) is type(python), (compiled, python)
        assert str(compiled) == str(python)
        assert (compiled.index, compiled.text, compiled.reason) == \
            (python.index, python.text, python.reason)
    else:
        assert not isinstance(compiled, Exception), compiled
        assert compiled.counters == python.counters
        assert compiled.grant == python.grant


@pytest.mark.parametrize("name", ["tiny", "rect", "small", "base"])
@pytest.mark.parametrize("memory", list(MEMORIES))
def test_random_programs_give_identical_results(name, memory):
    config = preset(name)
    for seed in range(6):
        program = random_program(config, seed, length=150)
        compiled, python = _both(config, MEMORIES[memory], program.words,
                                 instr_base=0x40 * (seed % 3), window_base=0x10 * (seed % 5),
                                 grant=seed % 4)
        _assert_same(compiled, python)
        assert compiled.cycles > 0


@pytest.mark.parametrize("name", ["tiny", "rect", "small"])
@pytest.mark.parametrize("memory", list(MEMORIES))
def test_calibration_programs_give_identical_results(name, memory):
    config = preset(name)
    grant = 0
    for _, program, _ in calibration_cases(config):
        compiled, python = _both(config, MEMORIES[memory], program.words,
                                 instr_base=0x100, window_base=0x8000, grant=grant)
        _assert_same(compiled, python)
        grant = python.grant


def test_a_larger_conv_on_base_gives_identical_results():
    config = preset("base")
    _, program, _ = conv_case(config, np.random.default_rng(3), 14, 14, 24, 40, 3, 1, 1)
    for memory in (AXI_RAM, sim_dram(20)):
        _assert_same(*_both(config, memory, program.words))


def test_the_reference_drops_line_ends_it_cannot_look_up_again(monkeypatch):
    """The Python reference's STALL_DMA bookkeeping (`_Run._dma_counted`) keeps only the
    line ends the readers' in-flight records still hold once it passes
    `DMA_COUNTED_KEEP` (here: at every command): the same results as the compiled core
    (the calibration cases include units waiting for DRAM together), in less memory."""
    monkeypatch.setattr(performance, "DMA_COUNTED_KEEP", 0)
    for name in ("tiny", "small"):
        config = preset(name)
        for memory in (AXI_RAM, sim_dram(20)):
            for _, program, _ in calibration_cases(config):
                run = _Run(config, memory, program.words, 0x100, 0x8000, 0)
                _assert_same(_run("compiled", config, memory, program.words,
                                  instr_base=0x100, window_base=0x8000), run.result())
                held = {end for lines in run.read.in_flight for end in lines}
                assert len(run._dma_counted) <= len(held) + 4 * 32


def _flip_token_flags(words: list[int], rng: np.random.Generator) -> list[int]:
    """Set one token flag the instruction's unit allows on a few instructions (programs
    that deadlock, leave tokens or still run)."""
    words = list(words)
    for index in rng.choice(len(words) - 1, size=3, replace=False):
        opcode = words[index] & 15
        unit = next(spec.unit for spec in BY_MNEMONIC.values() if spec.opcode == opcode)
        allowed = [bit for bit, flag in enumerate(("pop_prev", "pop_next", "push_prev",
                                                   "push_next")) if unit.allows(flag)]
        if allowed:
            words[index] ^= 1 << (4 + int(rng.choice(allowed)))
    return words


def test_token_faults_raise_identical_errors():
    config = preset("tiny")
    rng = np.random.default_rng(7)
    kinds = set()
    for seed in range(60):
        words = _flip_token_flags(random_program(config, seed, length=40).words, rng)
        compiled, python = _both(config, AXI_RAM, words)
        _assert_same(compiled, python)
        kinds.add(python.reason.split(":")[0] if isinstance(python, Exception) else "ok")
    assert {"deadlock", "tokens left in queues at halt", "ok"} <= kinds


@pytest.mark.parametrize("text", BAD_PROGRAMS)
def test_bad_programs_raise_identical_errors(text):
    compiled, python = _both(preset("tiny"), AXI_RAM, assemble(text))
    assert isinstance(python, Exception)
    _assert_same(compiled, python)


@pytest.mark.parametrize("word", ILLEGAL_WORDS)
def test_illegal_words_raise_identical_errors(word):
    words = assemble("load n=2 len=4\nhalt") + [word]
    compiled, python = _both(preset("tiny"), AXI_RAM, words)
    assert isinstance(python, IllegalInstructionError)
    _assert_same(compiled, python)


def test_the_code_as_bytes_gives_the_result_of_the_words():
    config = preset("small")
    program = random_program(config, 3, length=80)
    model = PerformanceModel(config, cache=False)
    assert model.run(words_to_bytes(program.words)).counters == \
        model.run(program.words).counters
    with pytest.raises(ValueError, match="17 bytes is not a whole number of 16-byte"):
        model.run(bytes(17))


def test_a_numpy_array_is_words_never_split_halves():
    config = preset("tiny")
    words = assemble("load n=2 len=4\nhalt")
    model = PerformanceModel(config, cache=False)
    assert model.run(np.array(words, dtype=object)).counters == model.run(words).counters
    # Three int64 values are three words (the second is zeroed memory), not one and a half
    # words of halves.
    compiled, python = _both(config, AXI_RAM, np.array([0xA, 0, 0xA], np.int64))
    assert isinstance(python, IllegalInstructionError)
    assert python.index == 1
    _assert_same(compiled, python)


def test_every_input_compiles_one_specialization():
    config = preset("tiny")
    words = assemble("load n=2 len=4\nhalt")
    model = PerformanceModel(config, cache=False)
    for code in (words, words_to_bytes(words), memoryview(words_to_bytes(words)),
                 np.array(words, dtype=object)):
        assert words_to_code(code).flags.writeable
        model.run(code)
    with pytest.raises(ValueError, match="'code' must be a 1-D int64 array of word halves"):
        run_compiled(config, AXI_RAM, np.zeros(3, np.int64), 0, 0, 0)
    assert len(_simulate.signatures) == 1


def test_the_numba_cache_directory_is_keyed_by_the_constants_from_other_files(monkeypatch):
    assert core.CACHE_DIR.name == f"performance_core-{core.core_key()}"
    assert _simulate.stats.cache_path == str(core.CACHE_DIR)
    key = core.core_key()
    monkeypatch.setattr(core, "READER_LINES_IN_FLIGHT", core.READER_LINES_IN_FLIGHT + 1)
    assert core.core_key() != key


def test_an_unwritable_numba_cache_root_falls_back(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert core.cache_dir([blocked, tmp_path / "ok"]) == \
        tmp_path / "ok" / f"performance_core-{core.core_key()}"
    fallback = core.cache_dir([blocked])
    assert fallback.name.startswith("gemmstone-numba-")
    assert fallback.is_dir()


def test_estimate_and_the_engine_switch(monkeypatch):
    config = preset("tiny")
    program = random_program(config, 5)
    assert estimate(program, config).counters == \
        estimate(program, config, engine="python").counters
    # The run cache keeps the engines apart: with the compiled result cached, the python
    # engine still runs (and here fails).
    def broken(self):
        raise RuntimeError("python engine ran")

    monkeypatch.setattr(_Run, "result", broken)
    other = random_program(config, 6)
    estimate(other, config)
    with pytest.raises(RuntimeError, match="python engine ran"):
        estimate(other, config, engine="python")
    # Every engine is named (ENGINES grows: sim/performance_analytic.py).
    with pytest.raises(ValueError, match=re.escape(
            f"'engine' must be one of {', '.join(ENGINES)}, not 'rust'")):
        PerformanceModel(config, engine="rust")
    assert ENGINES[:2] == ("compiled", "python")


def _long_streams(config: AcceleratorConfig) -> list[str]:
    """Programs whose DMA commands run for hundreds of lines: the read channel's streams
    with their rings of burst ends, its steady-state jumps (several line patterns:
    strides of every period, lines of one and more beats) and, with the front end
    fetching during a load, lines of two clients taken one by one."""
    bus, cols = config.dram_bytes_per_cycle, config.cols
    alone = "\n".join([
        f"load n=1500 len=3 stride={bus + 6} dram=0x13 pad_lo=1",
        f"loadacc n=900 len={cols} stride={2 * bus + 4} type=int8 dram=0x7",
        f"load n=1200 len={bus + 1} stride={3 * bus} dram=0x40 pad_hi=2",
        f"loadacc n=700 len={cols} stride={4 * cols}",
        f"store n=300 len={cols} stride={bus + 3} mode=int8",
        "loadq len=8",
        "halt"])
    fetching = "\n".join(["load n=2000 len=5 stride=7 dram=0x21"]
                         + ["preload k=2", "matmul n=3"] * 60
                         + [f"load n=800 len={bus} stride={bus}", "halt"])
    return [alone, fetching]


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
@pytest.mark.parametrize("memory", list(MEMORIES))
def test_long_streams_give_identical_results(name, memory):
    config = preset(name)
    for text in _long_streams(config):
        compiled, python = _both(config, MEMORIES[memory], assemble(text),
                                 instr_base=0x30, window_base=0x8)
        _assert_same(compiled, python)
        assert compiled.counters["BYTES_READ"] > 1000 * config.dram_bytes_per_cycle


# -- the decoder both compiled engines use (performance_core.decode_chunk) -------------------

def _random_word(rng: np.random.Generator, opcode: int, fault: str | None = None) -> int:
    """A word of ``opcode``, every field random within its width, enum fields a member,
    only the token flags its unit has, reserved bits clear; but for one ``fault``:
    ``"reserved"`` one reserved bit set, ``"enum"`` enum fields a value with no member
    (where the field has room for one), ``"token"`` any token flags. A reserved opcode's
    other bits are all random."""
    spec = BY_OPCODE.get(opcode)
    if spec is None:
        return opcode | int(rng.integers(1 << 62)) << 4 | int(rng.integers(1 << 62)) << 66
    word = opcode
    for f in spec.all_fields:
        if f.name == "opcode" or f.kind == "reserved":
            continue
        if f.is_enum:
            members = [int(member) for member in f.kind]
            others = [value for value in range(1 << f.width) if value not in members]
            value = int(rng.choice(others if fault == "enum" and others else members))
        elif f in TOKEN_FIELDS:
            value = int((fault == "token" or spec.unit.allows(f.name)) and rng.random() < 0.5)
        else:
            value = int(rng.integers(1 << f.width))
        word |= value << f.lsb
    if fault == "reserved":
        reserved = [f for f in spec.all_fields if f.kind == "reserved"]
        f = reserved[int(rng.integers(len(reserved)))]
        word |= 1 << (f.lsb + int(rng.integers(f.width)))
    return word


def _isa_row(word: int) -> list[int] | None:
    """The decoded row `gemmstone.isa.encoding.decode` gives for ``word`` (None: it raises):
    the operand fields the model reads (0 where the instruction has none), the kind, the
    unit as the model's actor and the token flags as bits."""
    try:
        instr = decode(word)
    except IllegalInstructionError:
        return None
    actors = {Unit.LOAD: 1, Unit.COMPUTE: 2, Unit.STORE: 3}
    flags = sum(int(instr[f.name]) << bit for bit, f in enumerate(TOKEN_FIELDS))
    return [int(instr.values.get(name, 0)) for name in core.FIELDS] + \
        [core.KINDS.index(instr.mnemonic), actors.get(instr.spec.unit, -1), flags]


def _decode_chunk(code, start, stop, ins, row0) -> int:
    return core.decode_chunk(code, start, stop, ins, row0)


def test_the_decoder_gives_the_isa_decoders_fields_on_every_opcode():
    rng = np.random.default_rng(11)
    words = [_random_word(rng, opcode) for opcode in BY_OPCODE for _ in range(300)]
    # A field's top and bottom bits (random values seldom reach both ends).
    for spec in BY_OPCODE.values():
        for f in spec.all_fields:
            if f.name in core.FIELDS and not f.is_enum:
                words += [spec.opcode | ((1 << f.width) - 1) << f.lsb, spec.opcode | 1 << f.lsb]
    expected = np.array([_isa_row(word) for word in words], np.int64)
    assert expected.shape == (len(words), core.ROW_COLUMNS)    # every word decodes
    # Columns past ROW_COLUMNS are the caller's (the exact engine's positions): untouched.
    rows = np.full((len(words), core.ROW_COLUMNS + 1), -7, np.int64)
    assert _decode_chunk(words_to_code(words), 0, len(words), rows, 0) == -1
    assert np.array_equal(rows[:, :core.ROW_COLUMNS], expected)
    assert (rows[:, core.ROW_COLUMNS] == -7).all()


def test_the_decoder_rejects_the_words_the_isa_decoder_rejects_at_their_index():
    rng = np.random.default_rng(5)
    opcodes = range(1 << OPCODE_FIELD.width)
    # One fault at a time (or none), so each check of the decoder decides on its own.
    faults = [None, None, "reserved", "enum", "token"]
    words = [_random_word(rng, int(rng.choice(opcodes)), faults[int(rng.integers(5))])
             for _ in range(6000)]
    reasons = set()
    for word in words:
        try:
            decode(word)
        except IllegalInstructionError as error:
            reasons.add(next(kind for kind, text in (
                ("opcode", "illegal opcode"), ("reserved", "reserved bits set"),
                ("enum", "is not one of"), ("token", "set, but the")) if text in error.reason))
    assert reasons == {"opcode", "reserved", "enum", "token"}
    expected = [_isa_row(word) for word in words]
    code = words_to_code(words)
    rows = np.zeros((len(words), core.ROW_COLUMNS), np.int64)
    # Word by word: rejected exactly where the ISA's decoder raises, else its row.
    for i, row in enumerate(expected):
        assert _decode_chunk(code, i, i + 1, rows, i) == (-1 if row else i), hex(words[i])
        if row:
            assert rows[i].tolist() == row, hex(words[i])
    # Chunks from any word into any place of a ring: the first word rejected, the rows
    # before it written.
    for _ in range(300):
        start = int(rng.integers(len(words)))
        stop = min(len(words), start + int(rng.integers(1, 12)))
        row0 = int(rng.integers(len(words) - (stop - start) + 1))
        bad = next((i for i in range(start, stop) if expected[i] is None), -1)
        ring = np.zeros_like(rows)
        assert _decode_chunk(code, start, stop, ring, row0) == bad
        for i in range(start, stop if bad < 0 else bad):
            assert ring[row0 + i - start].tolist() == expected[i]
