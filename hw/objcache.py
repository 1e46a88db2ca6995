"""A compiler wrapper that reuses Verilator's runtime objects across builds.

Every Verilated model compiles the same design-independent runtime (``verilated.cpp``,
``verilated_vpi.cpp``, ...): about 25 s of CPU per build on the reference machine, more than
the model itself for small designs. Verilator's makefile runs each compile as
``$(OBJCACHE) $(CXX) ... -c -o name.o source.cpp``; `sim_build` points ``OBJCACHE`` at a
small script that calls `main`. Compiles of sources under the given roots are stored by a
hash of the command line and the compiler's identity, and copied on a hit; every other
compile runs unchanged. (With ``ccache`` installed, `sim_build` uses ccache instead, which
also caches the model's own objects.)

This module imports nothing from gemmstone: it runs once per compile and must start fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["main", "wrapper_script"]


def _output(args: list[str]) -> str | None:
    if "-c" not in args or "-o" not in args:
        return None
    index = args.index("-o") + 1
    return args[index] if index < len(args) else None


def main(args: list[str], *, store: str, roots: list[str], identity: str) -> int:
    """Run the compile ``args`` (compiler first), from ``store`` when it holds the result.

    Only compiles whose last argument (the source) lies under one of ``roots`` are cached;
    ``identity`` names the compiler and anything else the objects depend on.
    """
    output = _output(args)
    source = args[-1] if args else ""
    if output is None or not any(source.startswith(root + os.sep) for root in roots):
        return subprocess.call(args)
    # Where the object goes does not change what it holds (make passes a relative path).
    named = [Path(arg).name if arg == output else arg for arg in args]
    key = hashlib.sha256("\0".join([identity, *named]).encode()).hexdigest()[:32]
    cached = Path(store) / f"{key}.o"
    depfile = Path(output).with_suffix(".d")  # written next to the object by -MMD
    cached_depfile = Path(store) / f"{key}.d"
    if cached.is_file():
        shutil.copyfile(cached, output)
        if cached_depfile.is_file():
            shutil.copyfile(cached_depfile, depfile)
        return 0
    status = subprocess.call(args)
    if status == 0:
        Path(store).mkdir(parents=True, exist_ok=True)
        for produced, kept in ((Path(output), cached), (depfile, cached_depfile)):
            if produced.is_file():
                partial = kept.with_name(f"{kept.name}.{os.getpid()}.tmp")
                shutil.copyfile(produced, partial)
                os.replace(partial, kept)  # atomic: concurrent builds never see half a file
    return status


def wrapper_script(*, store: Path, roots: list[str], identity: str) -> str:
    """Text of an executable script that calls `main` with these settings."""
    # The module is loaded from its file, not through the gemmstone package: faster.
    return (
        f"#!{sys.executable}\n"
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('objcache', {__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        f"sys.exit(module.main(sys.argv[1:], store={str(store)!r}, roots={roots!r}, "
        f"identity={identity!r}))\n"
    )
