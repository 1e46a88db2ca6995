"""Differential tests of the whole accelerator on Verilator against the functional model.

- Random valid programs (`gemmstone.sim.random_programs`: every instruction kind, random
  tokens that follow the protocol, race-free and self-contained) run back to back on one
  simulation, some under random AXI pauses; the final memory must be identical over the
  whole RAM and the retired-instruction and written-byte counters must equal the model's.
  More seeds: ``python benchmarks/differential.py``.
- Ordering regressions: short programs for the ordering bugs the random programs found.
- The watchdog ends a long program, leaves nothing outside the window written, and the
  core runs the next program correctly; so it does after a token deadlock, without a soft
  reset.

The Verilator builds are those of test_accelerator.py (cached by the Verilog's hash).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from accelerator_runs import (
    Expectation,
    check,
    make_run,
    play,
    random_expectation,
    verilated,
)

from gemmstone.isa import ErrorCode, Program, Segment, WatchdogError, assemble
from gemmstone.sim.functional import FunctionalModel

CONFIGS = ("tiny", "rect")
PROGRAMS = 50  # per config: seeds 0..49 (each seed fixes program, window and bus stalls)
WINDOW = 0x4000
IDENTITY_QPARAMS = 0x3000  # LOADQ parameters that make an int8 STORE copy int8 values


def program_of(config, text: str, *, seed: int = 0) -> Program:
    """``text`` assembled, with a window of random bytes but for identity output-stage
    parameters (bias 0, multiplier 1, shift 0) at `IDENTITY_QPARAMS`."""
    data = np.random.default_rng(seed).integers(0, 256, WINDOW, dtype=np.uint8)
    cols = config.cols
    qparams = np.concatenate([np.zeros(cols), np.ones(cols), np.zeros(cols)]).astype("<i4")
    data[IDENTITY_QPARAMS:IDENTITY_QPARAMS + qparams.nbytes] = qparams.view(np.uint8)
    return Program(config.content_hash, assemble(text), WINDOW,
                   segments=[Segment("data", 0, data.tobytes())])


def assert_race_free(config, program: Program) -> None:
    """The program's final memory does not depend on the units' interleaving."""
    finals = []
    for schedule in (None, 1, 2, 3, 4):
        model = FunctionalModel(config.replace(dram_mib=1))
        model.dram[:WINDOW] = np.frombuffer(program.segments[0].data, np.uint8)
        model.run(program.words, window_size=WINDOW, schedule_seed=schedule)
        finals.append(model.dram[:WINDOW].copy())
    assert all((final == finals[0]).all() for final in finals)


@pytest.mark.parametrize("name", CONFIGS)
def test_random_programs_match_the_functional_model(name, tmp_path):
    _, model = verilated(name)
    expectations = [random_expectation(name, seed)[1] for seed in range(PROGRAMS)]
    assert sum(expected.run["stall"] > 0 for expected in expectations) >= PROGRAMS // 4
    check(play(model, [expected.run for expected in expectations], tmp_path), expectations)


def ordering_programs(config) -> dict[str, str]:
    """Programs whose tokens order work that the RTL once let overlap. Each reads what it
    waits for as soon as it can: the last row an instruction writes."""
    rows, cols, line = config.rows, config.cols, config.line_bytes
    row_bytes = 4 * cols
    # The marker makes a read of row 11 before the matmul writes it differ from the model,
    # whatever an earlier run left there.
    matmul = ("alu func=mov dst=11 n=1 use_imm imm=0x5a5a5a5a\n"
              f"load dram=0 stride={line} spad=0 n=12 len={line} push_next\n"
              f"preload spad=0 k={rows} pop_prev\n"
              "matmul spad=0 acc=0 n=12\n")
    last_row = f"store dram=0x1000 acc=11 n=1 len={cols} mode=int32 pop_prev\nhalt"
    # Int8 rows (copied by identity output-stage parameters): a store that pushes, right
    # behind sixteen unaligned rows of one that does not, so its writes wait behind those.
    stored = (f"loadacc dram=0 stride={cols} acc=0 n=16 len={cols} type=int8 push_next\n"
              f"loadq dram={IDENTITY_QPARAMS:#x} len={cols}\n"
              f"store dram=0x1801 stride={cols + 1} acc=0 n=16 len={cols} mode=int8 pop_prev\n"
              f"store dram=0x1001 stride={cols + 1} acc=8 n=2 len={cols} mode=int8 push_prev\n")
    last_stored = 0x1001 + (cols + 1) + cols
    return {
        # The output path followed the running STORE's mode while rows of an earlier
        # STORE of the other mode were still in the output stage: wrong bytes, or a hang.
        "int8 store, then int32 store": (
            f"loadacc dram=0 stride={row_bytes} acc=0 n=4 len={cols} type=int32 push_next\n"
            f"store dram=0x1000 stride=8 acc=0 n=2 len=1 mode=int8 pop_prev\n"
            f"store dram=0x1100 stride={row_bytes} acc=0 n=3 len={cols} mode=int32\n"
            f"store dram=0x1200 stride=9 acc=1 n=3 len=2 mode=int8\n"
            "halt"),
        # A PRELOAD pushed to the store unit before the rows of the MATMUL before it were
        # in the accumulator.
        "preload pushes after an earlier matmul": matmul + "preload spad=4 k=1 push_next\n"
                                                  + last_row,
        # So did a MATMUL with n = 0.
        "empty matmul pushes after an earlier matmul": matmul + "matmul acc=20 n=0 push_next\n"
                                                       + last_row,
        # A STORE pushed once its rows were read, before its DRAM writes were done: a
        # LOADACC ordered after it, or a LOAD ordered after it through the compute unit,
        # read the old bytes (the last DRAM lines the store writes).
        "loadacc reads what a store wrote": stored + (
            f"loadacc dram={last_stored - cols} acc=16 n=1 len={cols} type=int8 pop_next "
            "push_next\n"
            f"store dram=0x2000 acc=16 n=1 len={cols} mode=int8 pop_prev\n"
            "halt"),
        "load reads what a store wrote": stored + (
            "alu func=add n=0 use_imm pop_next push_prev\n"
            f"load dram={last_stored - line} stride=0 spad=0 n={rows} len={line} pop_next "
            "push_next\n"
            f"preload spad=0 k={rows} pop_prev\n"
            "matmul spad=0 acc=16 n=1 push_next\n"
            f"store dram=0x2000 acc=16 n=1 len={cols} mode=int32 pop_prev\n"
            "halt"),
    }


@pytest.mark.parametrize("name", CONFIGS)
def test_tokens_order_what_the_rtl_once_overlapped(name, tmp_path):
    config, model = verilated(name)
    expectations = []
    for title, text in ordering_programs(config).items():
        program = program_of(config, text)
        assert_race_free(config, program)
        for stall, seed in ((0.0, 0), (0.3, 1), (0.3, 2), (0.5, 3)):
            expectations.append(make_run(f"{title}, stall {stall} seed {seed}", config,
                                         program, stall=stall, seed=seed,
                                         max_cycles=100_000))
    assert all(expected.error is None for expected in expectations)
    check(play(model, [expected.run for expected in expectations], tmp_path), expectations)


def long_program(config, groups: int = 4) -> str:
    """A valid program of some thousands of cycles: load, matmul, store, again."""
    rows, cols, line = config.rows, config.cols, config.line_bytes
    text = []
    for group in range(groups):
        text += [
            f"load dram={group * 0x40} stride={line} spad=0 n=256 len={line} push_next",
            f"preload spad=0 k={rows} pop_prev",
            "matmul spad=0 acc=0 n=256 push_next",
            f"store dram=0x1000 stride={4 * cols} acc=0 n=256 len={cols} mode=int32 pop_prev",
            "fence",
        ]
    return "\n".join(text + ["halt"])


def watchdog_expectation(config, program: Program, watchdog: int, *,
                         stall: float = 0.0) -> Expectation:
    run = make_run(f"watchdog {watchdog}, stall {stall}", config, program, stall=stall,
                   seed=watchdog, watchdog=watchdog)
    assert run.error is None  # the program is valid: only the watchdog ends it
    return dataclasses.replace(run, error=WatchdogError("runs too long", address=0),
                               counters=None)


@pytest.mark.parametrize("name", CONFIGS)
def test_watchdog_ends_a_long_program_and_the_core_recovers(name, tmp_path):
    config, model = verilated(name)
    program = program_of(config, long_program(config))
    assert_race_free(config, program)
    full = make_run("the long program without a watchdog", config, program)
    assert full.error is None
    watchdogs = [watchdog_expectation(config, program, cycles) for cycles in (60, 700, 2500)]
    watchdogs.append(watchdog_expectation(config, program, 1500, stall=0.3))
    after = random_expectation(name, 1000)[1]
    expectations = [*watchdogs, full, watchdogs[0], after]
    results = play(model, [expected.run for expected in expectations], tmp_path)
    check(results, expectations)
    for result, expected in zip(results, expectations, strict=True):
        if any(expected is watchdog for watchdog in watchdogs):
            # Stopped soon after the limit (the running instructions finish their
            # transfers), at an instruction of the program.
            limit = expected.run["watchdog"]
            assert limit <= result["CYCLES"] < limit + 3000, (expected.name, result["CYCLES"])
            assert result["ERROR_INDEX"] <= len(program.words), expected.name
    # The full run takes longer than every watchdog above, so each one cut it short.
    assert results[len(watchdogs)]["CYCLES"] > max(w.run["watchdog"] for w in watchdogs)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_core_recovers_from_a_token_deadlock_without_a_reset(name, tmp_path):
    config, model = verilated(name)
    deadlocks = {
        # Tokens left in a counter and a STORE queued behind a pop nobody feeds.
        "token underflow": "load len=1 n=1 push_next\n"
                           "load len=1 n=1 push_next\n"
                           "matmul n=0 pop_prev pop_next\n"
                           "store len=1 n=1 mode=int32\n"
                           "halt",
        # Load and compute wait for each other, with work queued behind both.
        "token cycle": "load len=1 n=1 pop_next push_next\n"
                       "matmul n=1 pop_prev push_prev\n"
                       "load len=4 n=4 stride=4\n"
                       "matmul n=4 acc=4\n"
                       "halt",
    }
    expectations = []
    for seed, (title, text) in enumerate(deadlocks.items()):
        expected = make_run(title, config, program_of(config, text))
        assert expected.error is not None and expected.error.code == ErrorCode.TOKEN
        expectations += [expected, random_expectation(name, 2000 + seed)[1]]
    check(play(model, [expected.run for expected in expectations], tmp_path), expectations)
