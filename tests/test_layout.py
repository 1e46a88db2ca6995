"""The package layout: import direction between packages, pyproject's package list and
dependency reasons.

Imports are read from the source with `ast` (function-level imports included), so a
violation fails here even in a module no other test imports.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
# Package name -> its folder, as pyproject maps them.
PACKAGE_DIRS = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]

# What each package must not import. config <- isa <- {hw, sim, compiler, driver};
# fpga <- hw. The RTL (hw) and the golden model (sim) never import each other: a
# differential test between them would otherwise check code against itself. The driver
# sits on top and may import any package.
FORBIDDEN = {
    "gemmstone.hw": ("gemmstone.sim", "gemmstone.compiler", "gemmstone.driver",
                     "gemmstone.fpga", "torch"),
    "gemmstone.sim": ("gemmstone.hw", "gemmstone.driver", "gemmstone.fpga"),
    "gemmstone.compiler": ("gemmstone.hw", "gemmstone.driver", "gemmstone.fpga"),
    "gemmstone.fpga": ("gemmstone.compiler", "gemmstone.driver"),
}
# The lowest layers import only the standard library and the layers below them.
# gemmstone/__init__.py runs on every `import gemmstone.*`, so it stays as small as config.
ONLY_STDLIB_AND = {
    "gemmstone.config": ("gemmstone.config",),
    "gemmstone": ("gemmstone.config",),
    "gemmstone.isa": ("gemmstone.config", "gemmstone.isa"),
}


def _module_name(path: Path) -> str:
    """Dotted name of a source file under one of the mapped package folders."""
    for package, folder in PACKAGE_DIRS.items():
        base = ROOT / folder
        if path.is_relative_to(base):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise AssertionError(f"{path} is in no package folder")


def _sources(package: str) -> list[Path]:
    """Every module of ``package``, subpackages included; for "gemmstone", only its own
    folder (the others are mapped in from their own folders)."""
    return sorted((ROOT / PACKAGE_DIRS[package]).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in the file."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module
            names.add(base)
            # `from gemmstone import sim` imports gemmstone.sim.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _direction_violations(package: str) -> list[str]:
    found = []
    for path in _sources(package):
        for name in sorted(_imports(path)):
            for prefix in FORBIDDEN[package]:
                if _matches(name, prefix):
                    found.append(f"{path.relative_to(ROOT)} imports {name}: {package} must "
                                 f"not import {prefix}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    assert _direction_violations(package) == []


def _layer_violation(package: str, name: str) -> str | None:
    allowed = ONLY_STDLIB_AND[package]
    top = name.split(".")[0]
    if top == "gemmstone":
        # `from gemmstone.x import y` also yields gemmstone.x.y; its parent decides.
        if name == "gemmstone" or any(_matches(name, prefix) for prefix in allowed):
            return None
        return f"{package} may import only {', '.join(allowed)} of gemmstone"
    if top not in sys.stdlib_module_names and top != "__future__":
        return f"{package} may import only the standard library"
    return None


def _layer_violations(package: str) -> list[str]:
    if package == "gemmstone.config":
        paths = [ROOT / PACKAGE_DIRS["gemmstone"] / "config.py"]
    elif package == "gemmstone":
        paths = [ROOT / PACKAGE_DIRS["gemmstone"] / "__init__.py"]
    else:
        paths = _sources(package)
    return [f"{path.relative_to(ROOT)} imports {name}: {problem}"
            for path in paths for name in sorted(_imports(path))
            if (problem := _layer_violation(package, name))]


@pytest.mark.parametrize("package", sorted(ONLY_STDLIB_AND))
def test_lowest_layers_import_only_stdlib_and_lower_layers(package: str) -> None:
    assert _layer_violations(package) == []


def test_violations_are_reported(tmp_path, monkeypatch) -> None:
    """The checks find a forbidden import when there is one (not just pass on the tree)."""
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "bad.py").write_text("import numpy\nfrom gemmstone.sim import functional\n"
                                   "def f():\n    import torch\n")
    monkeypatch.setitem(PACKAGE_DIRS, "gemmstone.hw", str(folder))
    monkeypatch.setitem(PACKAGE_DIRS, "gemmstone.isa", str(folder))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _direction_violations("gemmstone.hw") == [
        "pkg/bad.py imports gemmstone.sim: gemmstone.hw must not import gemmstone.sim",
        "pkg/bad.py imports gemmstone.sim.functional: gemmstone.hw must not import "
        "gemmstone.sim",
        "pkg/bad.py imports torch: gemmstone.hw must not import torch",
    ]
    assert _layer_violations("gemmstone.isa") == [
        "pkg/bad.py imports gemmstone.sim: gemmstone.isa may import only gemmstone.config, "
        "gemmstone.isa of gemmstone",
        "pkg/bad.py imports gemmstone.sim.functional: gemmstone.isa may import only "
        "gemmstone.config, gemmstone.isa of gemmstone",
        "pkg/bad.py imports numpy: gemmstone.isa may import only the standard library",
        "pkg/bad.py imports torch: gemmstone.isa may import only the standard library",
    ]


def test_checker_sees_relative_and_lazy_imports(tmp_path, monkeypatch) -> None:
    """The import reader resolves relative imports and finds imports inside functions:
    without that, the direction tests could pass on code that breaks the layering."""
    monkeypatch.setitem(PACKAGE_DIRS, "gemmstone.fake", str(tmp_path / "fake"))
    (tmp_path / "fake").mkdir()
    source = tmp_path / "fake" / "mod.py"
    source.write_text("from . import sibling\nfrom ..hw import top\n"
                      "def f():\n    import torch.nn\n")
    assert _imports(source) == {"gemmstone.fake", "gemmstone.fake.sibling", "gemmstone.hw",
                                "gemmstone.hw.top", "torch.nn"}


def test_every_subpackage_is_listed_in_pyproject() -> None:
    """A folder with __init__.py that pyproject does not list is missing from installs."""
    listed = set(tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(init) for package in PACKAGE_DIRS for init in _sources(package)
             if init.name == "__init__.py"}
    assert found - listed == set()


def test_every_dependency_has_a_reason() -> None:
    """Each requirement line in pyproject's dependency lists ends in a `#` comment."""
    text = PYPROJECT.read_text()
    project = tomllib.loads(text)["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    assert requirements
    missing = []
    for requirement in requirements:
        lines = [line for line in text.splitlines()
                 if re.match(rf'\s*"{re.escape(requirement)}",?\s*(#|$)', line)]
        assert lines, f"requirement {requirement!r} is not on a line of its own"
        missing += [requirement for line in lines if not re.search(r'",?\s*#\s*\S', line)]
    assert missing == []
