"""Differential testing at scale: random valid programs on the Verilated accelerator vs the
functional model.

Seeds ``first .. first + count - 1`` give programs of `gemmstone.sim.random_programs` (20 to
150 instructions; a random half run under random AXI pauses), played back to back in
batches, one cocotb simulation per batch, through tests/hw/accelerator_runs.py (the
helpers of test_differential.py). A program passes when the final memory is identical
over the whole RAM and the retired-instruction and written-byte counters equal the
model's. Before a program goes to the RTL, the model checks the generator's promise: the
same memory under three random unit schedules and with garbage on-chip state.

Prints pass/fail counts per preset, and for the first failure its seed, what differed, the
program text and the command that plays that seed alone. Exits 1 if any program failed.
Commands::

    .venv/bin/python benchmarks/differential.py                     # 1000 per preset
    .venv/bin/python benchmarks/differential.py --count 5000 --first 100000
    .venv/bin/python benchmarks/differential.py --preset tiny --first 17 --count 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hw"))

from accelerator_runs import mismatch, play, random_expectation, verilated  # noqa: E402

from gemmstone.hw.sim_build import CocotbTestError  # noqa: E402
from gemmstone.sim.functional import FunctionalModel  # noqa: E402


@dataclass
class Tally:
    """Outcome of one preset's programs."""

    passed: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    cycles: int = 0
    seconds: float = 0.0


def model_problem(config, program) -> str | None:
    """Whether the generator broke its promise (then the RTL is not to blame)."""
    def final(schedule=None, garbage=None):
        model = FunctionalModel(config.replace(dram_mib=1))
        model.dram[:program.window_size] = np.frombuffer(program.segments[0].data, np.uint8)
        if garbage is not None:
            rng = np.random.default_rng(garbage)
            model.spad[:] = rng.integers(-128, 128, model.spad.shape)
            model.acc[:] = rng.integers(-(1 << 31), 1 << 31, model.acc.shape)
        model.run(program.words, window_size=program.window_size, schedule_seed=schedule)
        return model.dram[:program.window_size]

    reference = final()
    for schedule in range(3):
        if (final(schedule=schedule) != reference).any():
            return f"generator: the result depends on the schedule (seed {schedule})"
    if (final(garbage=1) != reference).any():
        return "generator: the result depends on on-chip state it did not write"
    return None


def play_batch(name: str, seeds: list[int], tally: Tally) -> list[int]:
    """Play ``seeds``; the seeds left unplayed after a hung run (to retry in a new batch)."""
    config, model = verilated(name)
    expectations = []
    for seed in seeds:
        program, expected = random_expectation(name, seed)
        problem = model_problem(config, program)
        if problem:
            tally.failed.append((seed, problem))
        else:
            expectations.append((seed, expected))
    if not expectations:
        return []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gemmstone-differential-") as scratch:
        try:
            results = play(model, [expected.run for _, expected in expectations], Path(scratch))
        except CocotbTestError as error:
            # The simulation itself failed (e.g. a bus model's protocol assertion): blame
            # the batch's first program and retry the others one by one.
            tally.seconds += time.perf_counter() - start
            tally.failed.append((expectations[0][0], f"simulation failed: {error}"))
            if len(expectations) == 1:
                return []
            return [seed for seed, _ in expectations[1:]]
    tally.seconds += time.perf_counter() - start
    for (seed, expected), result in zip(expectations, results, strict=False):
        tally.cycles += result["CYCLES"]
        problem = mismatch(result, expected)
        if problem:
            tally.failed.append((seed, problem))
        else:
            tally.passed += 1
    return [seed for seed, _ in expectations[len(results):]]


def run_preset(name: str, first: int, count: int, batch: int) -> Tally:
    tally = Tally()
    pending = list(range(first, first + count))
    while pending:
        seeds, pending = pending[:batch], pending[batch:]
        retry = play_batch(name, seeds, tally)
        pending = retry + pending
        print(f"  {name}: {tally.passed} passed, {len(tally.failed)} failed of "
              f"{tally.passed + len(tally.failed)}", flush=True)
    return tally


def report_failure(name: str, seed: int, problem: str) -> None:
    program, _ = random_expectation(name, seed)
    print(f"\nfirst failure: preset {name}, seed {seed}")
    print(f"  {problem}")
    print(f"  reproduce: .venv/bin/python benchmarks/differential.py --preset {name} "
          f"--first {seed} --count 1")
    print(program.text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", choices=("tiny", "small", "rect", "base"),
                        help="config preset (repeatable; default tiny and rect)")
    parser.add_argument("--first", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--count", type=int, default=1000,
                        help="programs per preset (default 1000)")
    parser.add_argument("--batch", type=int, default=200,
                        help="programs per cocotb simulation (default 200)")
    args = parser.parse_args()
    presets = args.preset or ["tiny", "rect"]
    print(f"random programs {args.first}..{args.first + args.count - 1} on "
          f"{', '.join(presets)}, {args.batch} per simulation")
    tallies = {}
    wall = time.perf_counter()
    for name in presets:
        verilated(name)  # build (or find the cached build) before the clock starts
        tallies[name] = run_preset(name, args.first, args.count, args.batch)
    print(f"\n{'preset':<8}{'programs':>10}{'passed':>8}{'failed':>8}{'RTL cycles':>12}"
          f"{'sim s':>8}{'programs/s':>12}")
    for name, tally in tallies.items():
        total = tally.passed + len(tally.failed)
        rate = total / tally.seconds if tally.seconds else 0.0
        print(f"{name:<8}{total:>10}{tally.passed:>8}{len(tally.failed):>8}"
              f"{tally.cycles:>12}{tally.seconds:>8.1f}{rate:>12.1f}")
    print(f"wall time {time.perf_counter() - wall:.0f} s")
    failures = [(name, seed, problem) for name, tally in tallies.items()
                for seed, problem in sorted(tally.failed)]
    passed = sum(tally.passed for tally in tallies.values())
    if failures:
        report_failure(*failures[0])
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
