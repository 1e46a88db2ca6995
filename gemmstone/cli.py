"""The `gemmstone` command line: inspect configs, assemble, disassemble and run programs,
compile models and run them on a device backend.

Each command is a thin layer over the library; anything bigger than argument handling and
printing lives in the package it belongs to (the demo in `gemmstone.demo`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Column, Table

from gemmstone.config import PRESETS, AcceleratorConfig, ConfigError
from gemmstone.driver.backend import BACKENDS
from gemmstone.driver.errors import DriverError
from gemmstone.isa.assembly import assemble
from gemmstone.isa.errors import ExecutionError
from gemmstone.isa.program import Buffer, Program
from gemmstone.isa.reference import render
from gemmstone.isa.table import isa_hash
from gemmstone.sim.performance import ENGINES
from gemmstone.sim.sweep.cli import sweep_command

__all__ = ["main"]

# Expected failures (bad input files, programs that fault, a device that times out or
# lacks memory) print their message and exit 1; anything else is a bug and keeps its
# traceback.
_USER_ERRORS = (ValueError, ExecutionError, OSError, DriverError)
_DERIVED = ("line_bytes", "spad_lines", "spad_addr_bits", "acc_row_bytes", "acc_rows",
            "acc_addr_bits", "macs_per_cycle", "dram_bytes")


class _Integer(click.ParamType):
    """An integer in any Python literal base (16, 0x10, 0b10000), like the assembler."""

    name = "integer"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(value, 0)
        except ValueError:
            self.fail(f"{value!r} is not an integer (decimal, 0x hex or 0b binary)", param, ctx)


def _console() -> Console:
    # Created per call so output goes to whatever sys.stdout is now (click's test runner
    # swaps it); no highlighting, so numbers print as plain text.
    return Console(highlight=False, soft_wrap=True)


def _reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except _USER_ERRORS as error:
            raise click.ClickException(str(error)) from None
    return wrapper


def _config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--config", "config_path", type=click.Path(exists=True, dir_okay=False),
        help="Accelerator config TOML file (an [accelerator] table).")(command)
    return click.option(
        "--preset", type=click.Choice(sorted(PRESETS)),
        help="Named accelerator config (default: small, or the one a program was built for).",
    )(command)


def _resolve_config(preset: str | None, config_path: str | None, *,
                    default: str | None = "small") -> AcceleratorConfig | None:
    """The config from --preset or --config, else the ``default`` preset (or None)."""
    if preset and config_path:
        raise click.UsageError("give --preset or --config, not both")
    if config_path:
        return AcceleratorConfig.load(config_path)
    name = preset or default
    return PRESETS[name] if name else None


@click.group("gemmstone", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gemmstone")
def main() -> None:
    """gemmstone: an open tensor accelerator and its software stack.

    Configs are named presets (--preset) or TOML files (--config); programs are .gem
    containers built for one config. `gemmstone COMMAND --help` explains each command.
    """


@main.command()
@_config_options
@_reports_errors
def info(preset: str | None, config_path: str | None) -> None:
    """Describe a config: parameters, sizes, hashes.

    Prints every parameter of the accelerator config, the sizes derived from them, the
    config hash (the hardware ID a program is checked against) and the ISA hash.
    """
    config = _resolve_config(preset, config_path)
    console = _console()
    console.print(f"[bold]{config.describe()}[/bold]")
    table = Table("parameter", "value", title="parameters")
    for name, value in config.to_dict().items():
        table.add_row(name, str(value))
    derived = Table("derived", "value", title="derived sizes")
    for name in _DERIVED:
        derived.add_row(name, str(getattr(config, name)))
    console.print(table, derived)
    console.print(f"config hash  {config.content_hash}")
    console.print(f"ISA hash     {isa_hash()}")


def _parse_buffer(text: str) -> Buffer:
    """NAME=OFFSET:SHAPE[:DTYPE], shape as 16x8, e.g. x=0x100:16x8:int8."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not (sep and name and len(parts) in (2, 3)):
        raise click.BadParameter(f"{text!r} is not NAME=OFFSET:SHAPE[:DTYPE]",
                                 param_hint="--buffer")
    try:
        offset = int(parts[0], 0)
        shape = tuple(int(dim) for dim in parts[1].split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: offset and shape must be integers "
                                 f"(shape like 16x8)", param_hint="--buffer") from None
    dtype = parts[2] if len(parts) == 3 else "int8"
    if dtype not in ("int8", "uint8", "int32"):
        raise click.BadParameter(f"{text!r}: dtype must be int8, uint8 or int32",
                                 param_hint="--buffer")
    return Buffer(name, offset, shape, dtype)


@main.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Program file to write (default: SOURCE with the suffix .gem).")
@_config_options
@click.option("--window", type=_Integer(), default=None,
              help="DMA window size in bytes (default: the config's whole DRAM).")
@click.option("--buffer", "buffers", multiple=True, metavar="NAME=OFFSET:SHAPE[:DTYPE]",
              help="Declare a named tensor in the window, e.g. x=0x100:16x8:int8 "
                   "(`run --input` fills it, `run` prints it). Repeatable.")
@_reports_errors
def asm(source: str, output: str | None, preset: str | None, config_path: str | None,
        window: int | None, buffers: tuple[str, ...]) -> None:
    """Assemble a program.

    Reads SOURCE (assembly text, syntax in docs/isa.md) and writes a program container
    for one config. Example:

        gemmstone asm gemm.s -o gemm.gem --preset small --buffer x=0x40:16x8
    """
    config = _resolve_config(preset, config_path)
    words = assemble(Path(source).read_text())
    declared = [_parse_buffer(text) for text in buffers]
    program = Program(config_hash=config.content_hash, words=words,
                      window_size=config.dram_bytes if window is None else window,
                      buffers={b.name: b for b in declared})
    program.validate_layout()
    target = Path(output) if output else Path(source).with_suffix(".gem")
    program.save(target)
    click.echo(f"{target}: {len(words)} instructions, window {program.window_size:#x} bytes, "
               f"config {config.content_hash[:12]} ({config.describe()})")


@main.command()
@click.argument("program_path", metavar="PROGRAM", type=click.Path(exists=True, dir_okay=False))
@_reports_errors
def disasm(program_path: str) -> None:
    """Print a program as assembly.

    Header, buffers and segments come first as comments; `gemmstone asm` reads the
    listing back into the same instruction words.
    """
    click.echo(Program.load(program_path).text(), nl=False)


def _program_config(program: Program, given: AcceleratorConfig | None) -> AcceleratorConfig:
    """The config to run ``program`` on: the one given, else the preset it was built for."""
    if given is not None:
        return given
    for config in PRESETS.values():
        if config.content_hash == program.config_hash:
            return config
    raise ConfigError(f"the program was built for config {program.config_hash[:12]}, which "
                      f"is no preset; pass its config with --config FILE.toml")


def _roles(program: Program, given: dict[str, np.ndarray]) -> dict[str, str]:
    """Each buffer's role: an input given on the command line, a constant (its bytes come
    from one of the program's segments), or an output."""
    roles = {}
    for name, buf in program.buffers.items():
        if name in given:
            roles[name] = "input"
        elif any(seg.offset <= buf.offset and buf.offset + buf.nbytes <= seg.offset
                 + len(seg.data) for seg in program.segments):
            roles[name] = "constant"
        else:
            roles[name] = "output"
    return roles


def _parse_input(text: str) -> tuple[str, np.ndarray]:
    name, sep, path = text.partition("=")
    if not (sep and name and path):
        raise click.BadParameter(f"{text!r} is not NAME=FILE.npy", param_hint="--input")
    return name, np.load(path, allow_pickle=False)


@main.command()
@click.argument("target", metavar="MODEL|PROGRAM.gem")
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), default="func", show_default=True,
              help="Device backend the model or program runs on.")
@click.option("--batch", type=click.IntRange(min=1),
              help="Model inputs per run (default: 50 for digits, 1 otherwise).")
@click.option("--samples", type=click.IntRange(min=1),
              help="Model inputs to evaluate (default: all 450 held-out digits; one batch "
                   "otherwise).")
@click.option("--size", type=click.IntRange(min=1),
              help="Image size of resnet18/mobilenetv2 (default 224), sequence length of "
                   "encoder (default 128).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of weights, inputs, calibration data and digits training.")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds one program may run on the device (perf and rtl backends).")
@click.option("--engine", type=click.Choice(ENGINES),
              help="(perf backend) Performance-model engine: compiled (cycle-exact, the "
                   "default), python (the same results, slower) or analytic (approximate, "
                   "faster).")
@click.option("--no-cache", is_flag=True, help="Do not read or write the compile cache.")
@click.option("--input", "inputs", multiple=True, metavar="NAME=FILE.npy",
              help="(.gem) Fill the program's buffer NAME from a .npy file. Repeatable.")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="(.gem) Write every output buffer (not an input, not a constant) to "
                   "DIR/NAME.npy.")
@_config_options
@_reports_errors
def run(target: str, backend: str, batch: int | None, samples: int | None, size: int | None,
        seed: int, timeout: float, engine: str | None, no_cache: bool, inputs: tuple[str, ...],
        output_dir: str | None, preset: str | None, config_path: str | None) -> None:
    """Run a model or a .gem program on a backend.

    MODEL is one of the repo's models (digits, resnet18, mobilenetv2, encoder) or an
    .onnx / .pt2 file: it is compiled (int8, cached), run on the --backend device and
    compared with PyTorch float (accuracy / top-1 agreement, cosine); prints the device's
    cycles, array utilization and the ops run on the host. Example:

        gemmstone run digits --backend func --preset base

    PROGRAM.gem is a program container: its constants and the --input arrays are loaded
    into its DMA window (every other byte is zero) and it runs on the --backend device:
    func runs it on the functional model (counters: instructions, DRAM bytes, MACs), perf
    and rtl through the driver (the device's counters: cycles, busy and stall cycles,
    bytes, instructions retired). Every buffer's range is printed (config: the one given,
    else the preset the program was built for). A program that faults prints the fault
    and exits with status 1. Example:

        gemmstone run gemm.gem --backend perf --input x=x.npy --output-dir out

    On the perf backend, --engine analytic times long models faster, approximately.
    """
    if engine is not None and backend != "perf":
        raise click.UsageError(f"--engine is for the perf backend, not {backend}")
    device_options = {"engine": engine} if engine is not None else {}
    if target.endswith(".gem"):
        if any(v is not None for v in (batch, samples, size)):
            raise click.UsageError("--batch, --samples and --size are for models, not .gem "
                                   "programs")
        if not Path(target).is_file():
            raise click.BadParameter(f"file {target!r} does not exist", param_hint="PROGRAM")
        _run_program(target, inputs, output_dir, preset, config_path, backend=backend,
                     timeout=timeout, device_options=device_options)
        return
    if inputs or output_dir:
        raise click.UsageError("--input and --output-dir are for .gem programs, not models")
    _run_model(target, backend=backend, batch=batch, samples=samples, size=size, seed=seed,
               timeout=timeout, cache=not no_cache, device_options=device_options,
               config=_resolve_config(preset, config_path))


def _run_model(target: str, *, config: AcceleratorConfig, **options: Any) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from gemmstone.driver.run_model import check_model, run_model

    check_model(target)
    console = _console()
    console.print(f"[bold]{target}[/bold] on {_where(options['backend'], options)}, "
                  f"{config.describe()}")
    if console.is_terminal:
        with Progress("running", BarColumn(), MofNCompleteColumn(), "programs",
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("run", total=None)
            result = run_model(target, config=config, **options,
                               progress=lambda done, total: bar.update(task, completed=done,
                                                                       total=total))
    else:
        result = run_model(target, config=config, **options)
    totals = result.report["totals"]
    console.print(f"compiled: {totals['accelerator_ops']} accelerator ops in "
                  f"{totals['programs']} programs, {totals['host_ops']} host steps, "
                  f"{totals['macs']:,} MACs per batch of {result.batch} "
                  f"({result.compile_seconds:.1f} s)")
    table = Table("", Column("value", justify="right", overflow="fold"), title=f"{result.name}: "
                  f"{_count(result.samples, 'input')} in {_count(result.calls, 'run')} of "
                  f"batch {result.batch}")
    if result.labels is not None:
        table.add_row("accuracy int8 (held-out)", f"{result.accuracy(result.outputs):.2%}")
        table.add_row("accuracy float (PyTorch)", f"{result.accuracy(result.reference):.2%}")
    if result.top1_agreement is not None:
        table.add_row("top-1 agreement", f"{result.top1_agreement:.2%}")
    table.add_row("cosine to float", f"{result.cosine:.5f}")
    table.add_row("max error / max |float|", f"{result.max_error:.4f}")
    counters = result.counters
    cycles = counters.get("cycles", 0)
    table.add_row("cycles (counter)",
                  f"{cycles:,}" if cycles else f"- ({result.backend}: no clock)")
    table.add_row("array utilization",
                  f"{result.utilization:.1%}" if result.utilization is not None else "-")
    table.add_row("utilization (estimate)", f"{result.estimated_utilization:.1%}")
    retired = sum(counters.get(f"retired_{unit}", 0) for unit in ("load", "compute", "store"))
    table.add_row("instructions retired", f"{retired:,}")
    table.add_row("DRAM bytes read / written",
                  f"{counters.get('bytes_read', 0):,} / {counters.get('bytes_written', 0):,}")
    table.add_row("wall time (run)", f"{result.run_seconds:.1f} s "
                  f"({1000 * result.run_seconds / result.samples:.0f} ms per input)")
    table.add_row("wall time (open + load)", f"{result.open_seconds:.1f} s")
    console.print(table)
    console.print("host steps per run: " + (", ".join(
        f"{op} x{n}" for op, n in sorted(result.host_ops.items())) or "none"))


def _where(backend: str, options: dict[str, Any]) -> str:
    """``backend perf`` (and the engine if one was chosen) for the reports."""
    engine = options.get("device_options", {}).get("engine")
    return f"backend {backend}" + (f" (engine {engine})" if engine else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _run_program(program_path: str, inputs: tuple[str, ...], output_dir: str | None,
                 preset: str | None, config_path: str | None, *, backend: str = "func",
                 timeout: float = 600.0, device_options: dict[str, Any] | None = None) -> None:
    program = Program.load(program_path)
    config = _program_config(program, _resolve_config(preset, config_path, default=None))
    given = dict(_parse_input(text) for text in inputs)
    table = Table("counter", "value", title="counters")
    if backend == "func":
        # The functional model itself: it also counts the array's MACs.
        from gemmstone.sim.functional import run_program

        result = run_program(program, config, given)
        outputs, counters = result.outputs, result.counters
        where = "the functional model"
        for unit, count in counters.instructions.items():
            table.add_row(f"{unit} instructions", str(count))
        table.add_row("DRAM bytes read", str(counters.dram_bytes_read))
        table.add_row("DRAM bytes written", str(counters.dram_bytes_written))
        table.add_row("MACs", str(counters.macs))
    else:
        device_options = device_options or {}
        outputs, device_counters = _run_on_device(program, config, given, backend, timeout,
                                                  device_options)
        where = _where(backend, {"device_options": device_options})
        for name, value in device_counters.items():
            table.add_row(name.replace("_", " "), f"{value:,}")
    roles = _roles(program, given)
    console = _console()
    console.print(f"{program_path}: ran on {where}, {config.describe()}")
    console.print(table)
    if outputs:
        buffers = Table("buffer", "role", "dtype", "shape", "min", "max", title="buffers")
        for name, array in outputs.items():
            buffers.add_row(name, roles[name], str(array.dtype),
                            "x".join(map(str, array.shape)),
                            str(array.min()) if array.size else "-",
                            str(array.max()) if array.size else "-")
        console.print(buffers)
    if output_dir:
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in outputs.items():
            if roles[name] == "output":
                np.save(folder / f"{name}.npy", array)
        console.print(f"outputs written to {folder}/")


def _run_on_device(program: Program, config: AcceleratorConfig, given: dict[str, np.ndarray],
                   backend: str, timeout: float, device_options: dict[str, Any]
                   ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Run ``program`` through the driver on ``backend`` (opened with ``device_options``):
    every buffer read back, and the device's counters."""
    from gemmstone.driver.device import Device
    from gemmstone.driver.errors import OutOfDeviceMemoryError

    with Device(config, backend, timeout=timeout, **device_options) as device:
        try:
            loaded = device.load(program)
        except OutOfDeviceMemoryError as error:
            # `asm` gives a program the whole DRAM as its window unless told otherwise.
            raise OutOfDeviceMemoryError(
                f"{error}; the program's window is {program.window_size:#x} bytes: assemble "
                f"it with a smaller --window to run it on backend {backend}") from None
        for name, value in given.items():
            loaded.write(name, value)
        counters = loaded.run()
        return {name: loaded.read(name) for name in program.buffers}, counters


@main.command()
@_config_options
@click.option("--seed", type=int, default=0, show_default=True, help="Random data seed.")
@click.option("--save", "save_dir", type=click.Path(file_okay=False),
              help="Also write the programs and their inputs to DIR (for `gemmstone run`).")
@_reports_errors
def demo(preset: str | None, config_path: str | None, seed: int, save_dir: str | None) -> None:
    """Run a GEMM and a convolution; check them against numpy.

    Generates both programs for the config (default: the small preset), runs them on
    the functional model, compares every output element with a numpy reference and
    prints a report. Exits with status 1 if any output differs.
    """
    from gemmstone.demo import run_demo, save_case

    config = _resolve_config(preset, config_path)
    cases = run_demo(config, seed=seed)
    console = _console()
    console.print(f"[bold]gemmstone demo[/bold] on the functional model: {config.describe()}")
    for case in cases:
        console.print(f"{case.name}: {case.shapes}")
    table = Table("", *(Column(case.name, justify="right") for case in cases))
    units = cases[0].counters.instructions
    rows = {f"{unit} instructions": [c.counters.instructions[unit] for c in cases]
            for unit in units}
    rows |= {
        "instructions": [c.counters.total_instructions for c in cases],
        "DRAM bytes read": [c.counters.dram_bytes_read for c in cases],
        "DRAM bytes written": [c.counters.dram_bytes_written for c in cases],
        "array MACs": [c.counters.macs for c in cases],
        "useful MACs": [c.useful_macs for c in cases],
    }
    for label, values in rows.items():
        table.add_row(label, *(str(value) for value in values))
    table.add_row("result", *("[green]PASS[/green]" if case.passed else
                              f"[red]FAIL[/red]: {case.mismatches} differ" for case in cases))
    console.print(table)
    if save_dir:
        for case in cases:
            paths = save_case(case, Path(save_dir))
            console.print("saved " + ", ".join(str(path) for path in paths))
    failed = [case.name for case in cases if not case.passed]
    if failed:
        raise click.ClickException(f"outputs differ from numpy: {', '.join(failed)}")
    console.print("all outputs equal numpy exactly")


@main.command("compile")
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False))
@_config_options
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Compiled model file to write (default: MODEL with suffix .gemsmodel).")
@click.option("--calibration", type=int, default=4, show_default=True,
              help="Random standard-normal calibration inputs for a float model.")
@click.option("--seed", type=int, default=0, show_default=True, help="Calibration seed.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the compile cache.")
@_reports_errors
def compile_command(model_path: str, preset: str | None, config_path: str | None,
                    output: str | None, calibration: int, seed: int, no_cache: bool) -> None:
    """Compile an .onnx or .pt2 model to gemmstone programs plus a host plan.

    A float model is optimized, quantized to int8 (calibrated on random inputs) and
    lowered; prints the per-layer report (ops, MACs, tiles, estimated cycles, host ops).
    """
    from gemmstone.compiler.compile import compile_file, default_cache_dir
    from gemmstone.compiler.lowering import format_report

    config = _resolve_config(preset, config_path)
    compiled = compile_file(model_path, config, calibration=calibration, seed=seed,
                            cache_dir=None if no_cache else default_cache_dir())
    path = compiled.save(output or Path(model_path).with_suffix(".gemsmodel"))
    click.echo(format_report(compiled))
    click.echo(f"wrote {path}")


@main.command("isa-doc")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="File to write (default: standard output), e.g. docs/isa.md.")
@_reports_errors
def isa_doc(output: str | None) -> None:
    """Generate the Markdown ISA reference from the instruction table."""
    text = render()
    if output:
        Path(output).write_text(text)
    else:
        click.echo(text, nl=False)


@main.group("hw")
def hw_group() -> None:
    """The accelerator RTL: Verilog generation (needs the `hw` extra)."""


@hw_group.command("verilog")
@_config_options
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="File to write (default: standard output).")
@_reports_errors
def hw_verilog(preset: str | None, config_path: str | None, output: str | None) -> None:
    """Generate the accelerator's Verilog for a config.

    The top module `gemmstone_accelerator` has ports clk, rst (active high), s_axil_* (the
    AXI4-Lite register port, docs/registers.md) and m_axi_* (the AXI4 DRAM port).
    """
    # Imported here: Amaranth is an optional dependency (the `hw` extra).
    from gemmstone.hw.accelerator import accelerator_verilog

    config = _resolve_config(preset, config_path, default="small")
    text = accelerator_verilog(config)
    if output:
        Path(output).write_text(text)
        _console().print(f"wrote {output}: {config.describe()}, {len(text.splitlines())} lines")
    else:
        click.echo(text, nl=False)


# Defined with the sweep package it drives (its heavy imports happen only when a sweep runs).
main.add_command(sweep_command)
