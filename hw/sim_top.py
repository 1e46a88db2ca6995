"""`SimTop`: the accelerator with the in-simulation DRAM model under its AXI4 port — the
design long RTL runs simulate — and the host side of running programs on it.

The top module ``gemmstone_sim_top`` has the accelerator's clock, reset and register port
(``s_axil_*``, for cocotbext-axi's `AxiLiteMaster`) and the DRAM model's controls
(``dram_*``: latency, bandwidth throttle and bulk load/dump, see `gemmstone.hw.sim_dram`).
No Python runs per cycle: the host writes the DRAM image to a file, the simulation loads
it in one clock edge, runs the program while cocotb waits for the top's ``busy`` output to
fall, and dumps the memory it is asked for to a file.

`run_programs` is the host side: it writes the images, runs `gemmstone.hw.sim_bench` (the
cocotb side) on a model from `build_sim_top`, and returns each run's registers and memory.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw import sim_dram
from gemmstone.hw.accelerator import Accelerator
from gemmstone.hw.axi import AxiLiteSignature, flat_port_names
from gemmstone.hw.register_map import ADDR_WIDTH
from gemmstone.hw.sim_build import (
    DEFAULT_BUILD_ARGS,
    VerilatedModel,
    build_verilated,
    default_cache_dir,
)
from gemmstone.isa.encoding import words_to_bytes
from gemmstone.isa.program import Buffer, Program
from gemmstone.isa.table import isa_hash

__all__ = ["SimTop", "TOP_NAME", "sim_top_verilog", "cached_sim_top_verilog", "build_sim_top",
           "ProgramRun", "RunResult", "run_programs", "program_run", "window_buffer", "INSTR_BASE",
           "DRAM_MEMORY_MEMBER", "merge_reset_branches"]

TOP_NAME = "gemmstone_sim_top"
#: The C++ member of a Verilated `TOP_NAME`'s root (``Vtop___024root``) that holds the DRAM
#: model's memory: the two wrappers' instances are ``wrapped``, SimTop's DRAM submodule is
#: ``dram`` and SimDram's instance ``model``. A native harness reads and writes DRAM there
#: (`gemmstone.driver.backends.rtl_native`).
DRAM_MEMORY_MEMBER = f"{TOP_NAME}__DOT__wrapped__DOT__wrapped__DOT__dram__DOT__model__DOT__mem"


class SimTop(wiring.Component):
    """An `Accelerator` whose AXI4 manager port is served by the simulation DRAM model.

    Parameters
    ----------
    config : AcceleratorConfig
    dram_bytes : int, optional
        Size of the modelled memory (from bus address 0); ``config.dram_bytes`` if not
        given. A multiple of ``config.dram_bytes_per_cycle``.
    outstanding : int
        Read and write bursts the model accepts ahead of their data (a power of two).

    Members
    -------
    s_axil : In(AxiLiteSignature)
        The accelerator's register port (docs/registers.md).
    dram_latency : In(16)
        Cycles from a burst's address to its first read beat or its write response.
    dram_rate : In(16)
        Bytes per cycle reads and writes share; 0 = one beat per cycle each way.
    dram_file : In(8 * FILE_CHARS)
        Path of the image file to load or dump (see `sim_dram.file_port_value`).
    dram_first, dram_last : In(32)
        Word range of a load or dump.
    dram_load, dram_dump : In(1)
        High for one clock edge: load the range from the file / dump it there.
    dram_error : Out(1)
        Sticky: the model saw a burst it does not implement (not INCR, narrow, bad last).
    busy : Out(1)
        A run is in progress: high from the START write's response until the core reports
        its end (or a soft reset). Lets a host wait for the end with one
        value-change trigger instead of polling STATUS.

    Raises
    ------
    TypeError, ValueError
        On a bad parameter, naming it.
    """

    def __init__(self, *, config: AcceleratorConfig, dram_bytes: int | None = None,
                 outstanding: int = sim_dram.DEFAULT_OUTSTANDING) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
        dram_bytes = config.dram_bytes if dram_bytes is None else dram_bytes
        if type(dram_bytes) is not int or dram_bytes < 1:
            raise TypeError(f"'dram_bytes' must be a positive integer, not {dram_bytes!r}")
        if dram_bytes % config.dram_bytes_per_cycle or dram_bytes > 1 << 32:
            raise ValueError(f"'dram_bytes' must be a multiple of the {config.dram_bytes_per_cycle}"
                             f"-byte bus word up to 4 GiB, not {dram_bytes}")
        if type(outstanding) is not int or outstanding < 2 or outstanding & (outstanding - 1):
            raise ValueError(f"'outstanding' must be a power of two of at least 2, not "
                             f"{outstanding!r}")
        self.config = config
        self.dram_bytes = dram_bytes
        self.outstanding = outstanding
        super().__init__({
            "s_axil": In(AxiLiteSignature(addr_width=ADDR_WIDTH)),
            "dram_latency": In(16),
            "dram_rate": In(16),
            "dram_file": In(8 * sim_dram.FILE_CHARS),
            "dram_first": In(32),
            "dram_last": In(32),
            "dram_load": In(1),
            "dram_dump": In(1),
            "dram_error": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.accelerator = accelerator = _ProbedAccelerator(config=c)
        m.submodules.dram = dram = sim_dram.SimDram(
            data_bytes=c.dram_bytes_per_cycle, words=self.dram_bytes // c.dram_bytes_per_cycle,
            addr_width=accelerator.m_axi.signature.addr_width,
            id_width=accelerator.m_axi.signature.id_width, outstanding=self.outstanding)
        wiring.connect(m, wiring.flipped(self.s_axil), accelerator.s_axil)
        wiring.connect(m, accelerator.m_axi, dram.axi)
        for name in ("latency", "rate", "file", "first", "last", "load", "dump"):
            m.d.comb += getattr(dram, name).eq(getattr(self, f"dram_{name}"))
        m.d.comb += [self.dram_error.eq(dram.error), self.busy.eq(accelerator.running)]
        return m


class _ProbedAccelerator(Accelerator):
    """`Accelerator` with ``running``: a run is in progress, from the register block's
    start pulse to the core's end of run (or a soft reset). Simulation only."""

    def __init__(self, *, config: AcceleratorConfig) -> None:
        super().__init__(config=config)
        self.running = Signal()

    def elaborate(self, platform):
        m = super().elaborate(platform)
        ctl = m.submodules.registers.core
        started = Signal()
        with m.If(ctl.start):
            m.d.sync += started.eq(1)
        with m.If(ctl.done | ctl.soft_reset):
            m.d.sync += started.eq(0)
        # The start pulse (a register) counts too: it is high when the START write's
        # response reaches the host, so a host sees the run busy as soon as it started it.
        m.d.comb += self.running.eq(started | ctl.start)
        return m


def _wrappers(top: wiring.Component, *, name: str, design: str) -> str:
    # Verilator re-evaluates, at every change of any input (both clock edges), all logic
    # that depends combinationally on an input or on a public variable, and ports-only
    # builds make every variable of the top module public. Amaranth's top module holds the
    # nets between its submodules, and its synchronous reset is a mux in front of every
    # register's next value: nearly the whole design would be re-evaluated twice a cycle.
    # So the top holds nothing but ports and a module that gives the design the reset
    # through a register (one cycle later, which no test can tell).
    ports = [("input", 1, "clk"), ("input", 1, "rst")]
    for path, member, _value in top.signature.flatten(top):
        ports.append(("input" if member.flow == In else "output",
                      Shape.cast(member.shape).width, "_".join(map(str, path))))
    declarations = ",\n".join(f"    {direction} wire {f'[{width - 1}:0] ' if width > 1 else ''}"
                              f"{port}" for direction, width, port in ports)

    def connections(reset: str) -> str:
        return ",\n".join(f"        .{port}({reset if port == 'rst' else port})"
                           for _, _, port in ports)

    return (f"\nmodule {name} (\n{declarations}\n);\n"
            f"    {name}_reset wrapped (\n{connections('rst')}\n    );\nendmodule\n"
            f"\nmodule {name}_reset (\n{declarations}\n);\n"
            f"    reg rst_q = 1'b1;\n    always @(posedge clk) rst_q <= rst;\n"
            f"    {design} wrapped (\n{connections('rst_q')}\n    );\nendmodule\n")


def sim_top_verilog(config: AcceleratorConfig, *, dram_bytes: int | None = None,
                    outstanding: int = sim_dram.DEFAULT_OUTSTANDING) -> str:
    """Verilog of `SimTop`: module `TOP_NAME` (only ports and one instance), a module that
    registers the reset, the design, and the DRAM model's module."""
    top = SimTop(config=config, dram_bytes=dram_bytes, outstanding=outstanding)
    header = (f"// gemmstone simulation top: {config.describe()}, {top.dram_bytes} B of "
              f"simulated DRAM\n// config {config.content_hash}\n// isa {isa_hash()}\n")
    design = f"{TOP_NAME}_design"
    text = verilog.convert(top, name=design, ports=flat_port_names(top), emit_src=False)
    return (header + _wrappers(top, name=TOP_NAME, design=design) + text
            + sim_dram.SIM_DRAM_VERILOG)


# One `if (c) begin <target> = <literal>; end` of Amaranth's Verilog (an escaped identifier
# ends at a space, so the statement is kept verbatim).
_RESET_BRANCH = re.compile(r"(?P<indent>[ \t]+)if \((?P<condition>[^\n]*)\) begin\n"
                           r"(?P=indent)  (?P<statement>[^\n]*? = \d+'[bodh][0-9a-fA-F_]+;)\n"
                           r"(?P=indent)end\n")


def merge_reset_branches(verilog: str) -> str:
    """``verilog`` with each run of adjacent ``if (c1) x = K; if (c2) x = K; ...`` (the same
    target and constant) merged into one ``if ((c1) | (c2) | ...) x = K;``: the same
    behaviour, since assigning a constant twice equals assigning it once.

    Amaranth writes every register's next value as its logic followed by one such branch
    per reset that applies to it (a unit's START reset, the soft reset, the domain reset):
    about 2,200 runs of three in the 16x16 design. Merged, Verilator converts that design
    in 11 s instead of 211 s (measured on 2 cores), and the model executes about 4% more
    instructions per clock edge (callgrind: the OR is computed where the separate tests
    mostly fell through), a price paid for a first build of minutes less.
    """
    out, last, run = [], 0, []

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0].group(0))
        elif run:
            first = run[0]
            condition = " | ".join(f"({match.group('condition')})" for match in run)
            out.append(f"{first.group('indent')}if ({condition}) begin\n"
                       f"{first.group('indent')}  {first.group('statement')}\n"
                       f"{first.group('indent')}end\n")
        run.clear()

    for match in _RESET_BRANCH.finditer(verilog):
        if run and not (match.start() == run[-1].end()
                        and match.group("indent") == run[-1].group("indent")
                        and match.group("statement") == run[-1].group("statement")):
            flush()
        if not run:
            out.append(verilog[last:match.start()])
        run.append(match)
        last = match.end()
    flush()
    out.append(verilog[last:])
    return "".join(out)


@functools.cache
def _sources_digest() -> str:
    # The Verilog is a function of the config, the top's parameters, the sources of the
    # hardware, the ISA and the config class, and Amaranth (which hw imports nothing else of
    # gemmstone from).
    from gemmstone import config as config_module
    from gemmstone import isa

    digest = hashlib.sha256(importlib.metadata.version("amaranth").encode())
    for path in sorted([*Path(__file__).resolve().parent.glob("*.py"),
                        *Path(isa.__file__).resolve().parent.glob("*.py"),
                        Path(config_module.__file__).resolve()]):
        digest.update(f"\0{path.parent.name}/{path.name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_sim_top_verilog(config: AcceleratorConfig, *, dram_bytes: int | None = None,
                           outstanding: int = sim_dram.DEFAULT_OUTSTANDING,
                           cache_dir: str | Path | None = None) -> str:
    """`sim_top_verilog`, kept on disk (``<cache_dir>/verilog``, the Verilator build cache
    by default) under a hash of the config, the parameters and the sources it is generated
    from: generating it takes 5-20 s, reading it back milliseconds, so a new process (a
    device opened on the rtl backend) does not pay for it again."""
    dram_bytes = config.dram_bytes if dram_bytes is None else dram_bytes
    key = hashlib.sha256(f"{config.content_hash}\0{dram_bytes}\0{outstanding}\0"
                         f"{_sources_digest()}".encode()).hexdigest()[:32]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / "verilog" / f"{TOP_NAME}-{key}.v"
    if path.is_file():
        return path.read_text()
    text = sim_top_verilog(config, dram_bytes=dram_bytes, outstanding=outstanding)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)  # whole or not at all, for concurrent readers
    return text


def build_sim_top(config: AcceleratorConfig, *, dram_bytes: int | None = None,
                  public: bool = False, optimize: bool = False,
                  cache_dir: str | Path | None = None) -> VerilatedModel:
    """The Verilated `SimTop` for ``config``, built once and cached by content hash (see
    `gemmstone.hw.sim_build.build_verilated` for ``public``, ``optimize``, ``cache_dir``);
    its Verilog comes from `cached_sim_top_verilog`."""
    verilog_text = cached_sim_top_verilog(config, dram_bytes=dram_bytes, cache_dir=cache_dir)
    return build_verilated(verilog_text, toplevel=TOP_NAME, build_args=DEFAULT_BUILD_ARGS,
                           public=public, optimize=optimize, cache_dir=cache_dir)


@dataclass(frozen=True)
class ProgramRun:
    """One program run on `SimTop`.

    Attributes
    ----------
    name : str
    image : bytes
        DRAM contents from bus address 0: instructions, constants and inputs.
    instr_base, instr_count, window_base, window_limit, watchdog : int
        The register settings of the run (docs/registers.md).
    latency : int
        DRAM latency in cycles.
    rate : int
        DRAM bytes per cycle shared by reads and writes; 0 = not throttled.
    readback : (int, int), optional
        (bus address, bytes) of DRAM to return after the run; the image's extent if None.
    max_cycles : int
        The run fails if the accelerator is still busy after this many cycles.
    """

    name: str
    image: bytes
    instr_base: int
    instr_count: int
    window_base: int
    window_limit: int
    watchdog: int = 0
    latency: int = 20
    rate: int = 0
    readback: tuple[int, int] | None = None
    max_cycles: int = 50_000_000


#: Where `program_run` puts the instructions; the DMA window follows at a 4 KiB boundary.
INSTR_BASE = 0x1000
_WINDOW_ALIGN = 0x1000


def program_run(name: str, program: Program, inputs: Mapping[str, np.ndarray] | None = None,
                **settings) -> ProgramRun:
    """A `ProgramRun` of ``program``: its instructions at `INSTR_BASE`, its DMA window at
    the next 4 KiB boundary holding the constant segments and ``inputs`` (by buffer name).
    The run reads the window back, so ``result.memory`` is the window (see
    `window_buffer`). ``settings`` are further `ProgramRun` fields (latency, rate, ...).

    Raises
    ------
    KeyError
        If an input names no buffer of the program.
    ValueError
        If an input's size differs from its buffer's.
    """
    code = words_to_bytes(program.words)
    window_base = -(-(INSTR_BASE + len(code)) // _WINDOW_ALIGN) * _WINDOW_ALIGN
    image = np.zeros(window_base + program.window_size, np.uint8)
    image[INSTR_BASE:INSTR_BASE + len(code)] = np.frombuffer(code, np.uint8)
    for segment in program.segments:
        start = window_base + segment.offset
        image[start:start + len(segment.data)] = np.frombuffer(segment.data, np.uint8)
    for buffer_name, value in (inputs or {}).items():
        if buffer_name not in program.buffers:
            raise KeyError(f"input {buffer_name!r} is not a buffer of the program "
                           f"({', '.join(program.buffers)})")
        buffer = program.buffers[buffer_name]
        raw = np.ascontiguousarray(value).view(np.uint8).ravel()
        if raw.size != buffer.nbytes:
            raise ValueError(f"input {buffer_name!r} has {raw.size} bytes, its buffer "
                             f"{buffer.nbytes}")
        image[window_base + buffer.offset:window_base + buffer.offset + raw.size] = raw
    return ProgramRun(name=name, image=image.tobytes(), instr_base=INSTR_BASE,
                      instr_count=len(program.words), window_base=window_base,
                      window_limit=window_base + program.window_size,
                      readback=(window_base, program.window_size), **settings)


def window_buffer(window: bytes, buffer: Buffer) -> np.ndarray:
    """The contents of ``buffer`` (shape and dtype) in a copy of its program's DMA window."""
    raw = np.frombuffer(window, np.uint8, count=buffer.nbytes, offset=buffer.offset)
    return raw.view(np.dtype(buffer.dtype)).reshape(buffer.shape)


@dataclass(frozen=True)
class RunResult:
    """What a `ProgramRun` left: every readable register (STATUS, the error registers,
    the counters and the IDs, by name), the DRAM read back, and timing.

    Attributes
    ----------
    name : str
    registers : dict of str to int
    memory : bytes
        The ``readback`` range of DRAM after the run.
    wall_seconds : float
        Wall time of the run in the simulator, loads and dumps included.
    sim_cycles : int
        Clock cycles the simulator ran for it (including register accesses and the DRAM
        load and dump; the CYCLES register counts only the accelerator's busy cycles).
    run_seconds, run_cycles : float, int
        Wall time and clock cycles from the START write until the run ended (``busy``
        fell; a few cycles more than CYCLES): what simulation speed is measured on.
    run_cpu_seconds : float
        CPU time of the simulator process over the same span (unlike wall time, not
        stretched by other processes on a busy machine).
    dram_error : bool
        The DRAM model saw a burst it does not implement.
    """

    name: str
    registers: dict[str, int] = field(repr=False)
    memory: bytes = field(repr=False)
    wall_seconds: float
    sim_cycles: int
    run_seconds: float
    run_cycles: int
    run_cpu_seconds: float
    dram_error: bool


def run_programs(model: VerilatedModel, config: AcceleratorConfig, runs: Sequence[ProgramRun],
                 workdir: str | Path) -> list[RunResult]:
    """Run ``runs`` one after the other in one simulation of ``model`` (a `build_sim_top`
    model for ``config``); files and logs go to ``workdir``.

    Raises
    ------
    gemmstone.hw.sim_build.CocotbTestError
        If the simulation failed (a run over its ``max_cycles``, a crash).
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_bytes = config.dram_bytes_per_cycle
    plan = []
    for index, run in enumerate(runs):
        image_file = workdir / f"image{index}.bin"
        words = sim_dram.write_image(image_file, run.image, data_bytes=data_bytes)
        start, size = run.readback if run.readback is not None else (0, len(run.image))
        first, last = start // data_bytes, -(-(start + size) // data_bytes) - 1
        plan.append({
            "name": run.name, "image_file": str(image_file), "image_words": words,
            "dump_file": str(workdir / f"dump{index}.bin"), "dump_first": first,
            "dump_last": last, "instr_base": run.instr_base, "instr_count": run.instr_count,
            "window_base": run.window_base, "window_limit": run.window_limit,
            "watchdog": run.watchdog, "latency": run.latency, "rate": run.rate,
            "max_cycles": run.max_cycles, "data_bytes": data_bytes,
        })
    plan_file, results_file = workdir / "runs.pkl", workdir / "results.pkl"
    plan_file.write_bytes(pickle.dumps(plan))
    results_file.unlink(missing_ok=True)
    model.run_cocotb("gemmstone.hw.sim_bench", module_dir=Path(__file__).parent,
                     test_dir=workdir, extra_env={"GEMMSTONE_SIM_RUNS": str(plan_file),
                                                  "GEMMSTONE_SIM_RESULTS": str(results_file)})
    raw_results = pickle.loads(results_file.read_bytes())
    results = []
    for run, entry, raw in zip(runs, plan, raw_results, strict=True):
        start, size = run.readback if run.readback is not None else (0, len(run.image))
        words = entry["dump_last"] - entry["dump_first"] + 1
        memory = sim_dram.read_image(entry["dump_file"], data_bytes=data_bytes, words=words)
        offset = start - entry["dump_first"] * data_bytes
        results.append(RunResult(name=run.name, registers=raw["registers"],
                                 memory=memory[offset:offset + size],
                                 wall_seconds=raw["wall_seconds"], sim_cycles=raw["sim_cycles"],
                                 run_seconds=raw["run_seconds"], run_cycles=raw["run_cycles"],
                                 run_cpu_seconds=raw["run_cpu_seconds"],
                                 dram_error=raw["dram_error"]))
    return results
