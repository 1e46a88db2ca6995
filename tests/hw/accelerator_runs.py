"""Runs of whole programs on the Verilated accelerator, and their comparison with the
functional model; shared by test_accelerator.py, test_differential.py and
benchmarks/differential.py.

A run is a dict the cocotb side (cocotb_accelerator.py) plays: the whole initial RAM image
(instructions at `INSTR_BASE`, the program's DMA window at `WINDOW_BASE` unless a run
says otherwise), the register
settings, and the bus-stall probability. `make_run` also runs the program on the
functional model and returns an `Expectation`; `check` compares the RTL's results with it:
final memory byte for byte over the whole RAM, the error registers, STATUS and the
counters that must agree with the model.
"""

from __future__ import annotations

import functools
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemmstone.config import AcceleratorConfig, preset
from gemmstone.hw.accelerator import TOP_NAME, accelerator_verilog
from gemmstone.hw.register_map import STATUS_BUSY, STATUS_DONE, STATUS_ERROR
from gemmstone.hw.sim_build import VerilatedModel, build_verilated
from gemmstone.isa import ErrorCode, ExecutionError, Program
from gemmstone.isa.encoding import words_to_bytes
from gemmstone.sim.functional import Counters, FunctionalModel
from gemmstone.sim.random_programs import random_program

HERE = Path(__file__).parent
RAM_BYTES = 1 << 18
INSTR_BASE = 0x100
WINDOW_BASE = 0x8000
MAX_CYCLES = 2_000_000
RANDOM_MAX_CYCLES = 200_000  # a random program takes some thousands of cycles

DONE = 1 << STATUS_DONE.lsb
ERRORED = 1 << STATUS_ERROR.lsb
BUSY = 1 << STATUS_BUSY.lsb


@functools.cache
def verilated(name: str) -> tuple[AcceleratorConfig, VerilatedModel]:
    """The preset ``name`` and its Verilated accelerator (built once, cached on disk by the
    Verilog's content hash, so every test module and script shares one build)."""
    config = preset(name)
    return config, build_verilated(accelerator_verilog(config), toplevel=TOP_NAME)


@dataclass
class Expectation:
    """What the functional model says a run must leave.

    Members
    -------
    run : dict
        The run as the cocotb side plays it.
    memory : numpy.ndarray
        The whole RAM after the run (uint8, `RAM_BYTES`); only the bytes outside the DMA
        window are checked when the run faults.
    error : gemmstone.isa.ExecutionError or None
        The fault the run must end with; its index and address are checked unless None.
    counters : Counters or None
        The model's counters of a run that ends without a fault.
    """

    run: dict
    memory: np.ndarray
    error: ExecutionError | None
    counters: Counters | None

    @property
    def name(self) -> str:
        return self.run["name"]


def image(program: Program, inputs: dict | None = None, *,
          window_base: int = WINDOW_BASE) -> np.ndarray:
    """The initial RAM: instruction words, the program's constants and ``inputs``."""
    ram = np.zeros(RAM_BYTES, np.uint8)
    code = np.frombuffer(words_to_bytes(program.words), np.uint8)
    if INSTR_BASE + code.size > window_base:
        raise ValueError(f"{len(program.words)} instructions do not fit below the window")
    ram[INSTR_BASE:INSTR_BASE + code.size] = code
    for segment in program.segments:
        start = window_base + segment.offset
        ram[start:start + len(segment.data)] = np.frombuffer(segment.data, np.uint8)
    for buffer_name, value in (inputs or {}).items():
        buffer = program.buffers[buffer_name]
        start = window_base + buffer.offset
        ram[start:start + buffer.nbytes] = np.ascontiguousarray(value).view(np.uint8).ravel()
    return ram


def make_run(name: str, config: AcceleratorConfig, program: Program, inputs=None, *,
             window_size: int | None = None, stall: float = 0.0, seed: int = 0,
             watchdog: int = 0, max_cycles: int = MAX_CYCLES,
             window_base: int = WINDOW_BASE) -> Expectation:
    """The RTL run of ``program`` and the functional model's expectation for it."""
    window_size = program.window_size if window_size is None else window_size
    ram = image(program, inputs, window_base=window_base)
    model = FunctionalModel(config.replace(dram_mib=1) if config.dram_mib > 1 else config)
    model.dram[:RAM_BYTES] = ram
    counters, error = None, None
    try:
        counters = model.run(program.words, window_base=window_base, window_size=window_size)
    except ExecutionError as raised:
        error = raised
    run = {"name": name, "ram": ram.tobytes(), "instr_base": INSTR_BASE,
           "instr_count": len(program.words), "window_base": window_base,
           "window_limit": window_base + window_size, "watchdog": watchdog, "stall": stall,
           "seed": seed, "max_cycles": max_cycles}
    return Expectation(run, model.dram[:RAM_BYTES].copy(), error, counters)


def play(model: VerilatedModel, runs: list[dict], tmp_path: Path) -> list[dict]:
    """Play ``runs`` in order on one simulation of ``model`` (no reset between them); the
    registers and final RAM of each."""
    runs_file, results_file = tmp_path / "runs.pkl", tmp_path / "results.pkl"
    runs_file.write_bytes(pickle.dumps(runs))
    model.run_cocotb("cocotb_accelerator", module_dir=HERE, test_dir=tmp_path,
                     extra_env={"GEMMSTONE_RUNS": str(runs_file),
                                "GEMMSTONE_RESULTS": str(results_file)})
    return pickle.loads(results_file.read_bytes())


def mismatch(result: dict, expected: Expectation) -> str | None:
    """How the RTL's ``result`` differs from ``expected``, or None when it does not."""
    name, run = expected.name, expected.run
    if result["hung"]:
        return (f"{name}: still busy after {run['max_cycles']} cycles (dispatch at "
                f"instruction {result['ERROR_INDEX']} if the watchdog fired)")
    got = np.frombuffer(result["ram"], np.uint8)
    code, index, status = result["ERROR_CODE"], result["ERROR_INDEX"], result["STATUS"]
    if expected.error is None:
        if code != ErrorCode.NONE or status != DONE:
            return (f"{name}: ended with error {code} at instruction {index} "
                    f"(STATUS {status:#x}); the model ran it without a fault")
        differ = np.flatnonzero(got != expected.memory)
        if differ.size:
            first = differ[0]
            return (f"{name}: {differ.size} bytes differ, first at {first:#x} (window offset "
                    f"{first - run['window_base']:#x}): RTL {got[first]}, model "
                    f"{expected.memory[first]}")
        for unit in ("load", "compute", "store"):
            register = f"RETIRED_{unit.upper()}"
            if result[register] != expected.counters.instructions[unit]:
                return (f"{name}: {register} = {result[register]}, the model ran "
                        f"{expected.counters.instructions[unit]} {unit} instructions")
        if result["BYTES_WRITTEN"] != expected.counters.dram_bytes_written:
            return (f"{name}: BYTES_WRITTEN = {result['BYTES_WRITTEN']}, the model wrote "
                    f"{expected.counters.dram_bytes_written}")
        return None
    error = expected.error
    if code != error.code or status != DONE | ERRORED:
        return (f"{name}: ended with error {code} (STATUS {status:#x}), expected "
                f"{error.code!r} ({error})")
    if error.index is not None and index != error.index:
        return f"{name}: ERROR_INDEX = {index}, expected {error.index} ({error})"
    if error.address is not None and result["ERROR_ADDR"] != error.address & 0xFFFF_FFFF:
        return f"{name}: ERROR_ADDR = {result['ERROR_ADDR']:#x}, expected {error.address:#x}"
    outside = np.ones(RAM_BYTES, bool)
    outside[run["window_base"]:run["window_limit"]] = False
    changed = np.flatnonzero(outside & (got != np.frombuffer(run["ram"], np.uint8)))
    if changed.size:
        return f"{name}: {changed.size} bytes outside the DMA window changed, first at " \
               f"{changed[0]:#x}"
    return None


def check(results: list[dict], expectations: list[Expectation]) -> None:
    """Assert that every result matches its expectation (runs after a hung one are not
    played, and count as failed)."""
    problems = [problem for result, expected in zip(results, expectations, strict=False)
                if (problem := mismatch(result, expected))]
    problems += [f"{expected.name}: not played" for expected in expectations[len(results):]]
    assert not problems, "\n".join(problems)


def random_expectation(preset_name: str, seed: int, *, length: int | None = None,
                       stall: float | None = None) -> tuple[Program, Expectation]:
    """The random program of ``seed`` (`gemmstone.sim.random_programs`) for a preset, and
    its run. Its length (20..150 instructions, unless given), the bus-stall probability
    (none for half of the seeds, unless given), the window size (2, 4 or 8 KiB: small
    windows share more bytes, 8 KiB ones have transfers across a 4 KiB page) and the
    window base (page-aligned or not) follow from the seed, so a seed alone reproduces a
    run."""
    config = preset(preset_name)
    draw = random.Random(seed)
    length = draw.randint(20, 150) if length is None else length
    stall = draw.choice((0.0, 0.0, 0.2, 0.5)) if stall is None else stall
    window_size = draw.choice((2048, 4096, 4096, 8192))
    window_base = WINDOW_BASE + draw.choice((0, 0, 0x7F3, 0xFFD))
    program = random_program(config, seed, length=length, window_size=window_size)
    expected = make_run(f"{preset_name} seed {seed}", config, program, stall=stall, seed=seed,
                        max_cycles=RANDOM_MAX_CYCLES, window_base=window_base)
    if expected.error is not None:
        raise AssertionError(f"random program {seed} faults on the functional model: "
                             f"{expected.error}")
    return program, expected
