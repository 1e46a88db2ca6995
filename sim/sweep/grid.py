"""The sweep grid: a base config, axes over `AcceleratorConfig` fields, workloads, batches.

A grid comes from a TOML file, from command-line options, or both (options add to and
override the file)::

    preset = "base"                       # base config: a preset name ...
    config = "my_accelerator.toml"        # ... or a config TOML, relative to this file
    workloads = ["gemm:512x512x512", "resnet18-conv:sum", "bert-gemm:sum"]
    batches = [1]                         # optional: batch sizes (serving latency model)
    memory = "dram"                       # optional: "dram" or "axi-ram"
    engine = "compiled"                   # optional: "compiled", "python" or "analytic"

    [base]                                # optional: fields changed in the base config
    spad_kib = 256

    [grid]                                # each field: the values to sweep
    dram_bytes_per_cycle = [4, 8, 16, 32]
    array = ["8x8", "16x16"]              # rows x cols together

The points are the Cartesian product of the axes, in file order (the last axis varies
fastest). A point whose config is invalid is kept: the sweep reports its `ConfigError`
message in the table instead of results.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gemmstone.config import PRESETS, AcceleratorConfig, ConfigError
from gemmstone.sim.performance import ENGINES
from gemmstone.sim.performance_memory import MEMORIES
from gemmstone.sim.sweep.workloads import Workload, WorkloadError, parse_workload

__all__ = ["Grid", "GridError", "Point", "FIELDS", "load_grid", "parse_grid",
           "parse_param", "parse_batches"]

#: Config fields a grid may sweep, with their types.
FIELDS: dict[str, type] = {f.name: int if f.type in ("int", int) else str
                           for f in fields(AcceleratorConfig)}
#: Axis that sets ``rows`` and ``cols`` together ("16x16").
ARRAY = "array"
#: Fields that describe the interconnect between cores: no effect while a config has one
#: core (`AcceleratorConfig` refuses more until the interconnect exists).
INTERCONNECT = ("topology", "link_bytes_per_cycle")
_TOP_KEYS = ("preset", "config", "workloads", "batches", "memory", "engine", "base",
             "grid")


class GridError(ValueError):
    """A sweep grid that cannot be read: unknown parameter, bad value, bad file."""


@dataclass(frozen=True)
class Point:
    """One config point of a grid.

    Members
    -------
    index : int
        Position in the grid's product order.
    params : dict
        Every `AcceleratorConfig` field as this point asks for it (even when invalid).
    config : AcceleratorConfig or None
        The validated config; None if invalid.
    error : str or None
        The `ConfigError` message of an invalid point.
    """

    index: int
    params: dict[str, Any]
    config: AcceleratorConfig | None
    error: str | None


@dataclass(frozen=True)
class Grid:
    """A sweep: the points are ``base`` with every combination of ``axes`` applied.

    Members
    -------
    base : AcceleratorConfig
    axes : dict of str to tuple
        Field name (or ``"array"``) to the values it takes, in sweep order.
    workloads : tuple of Workload
    batches : tuple of int
    memory : str
        The DRAM timing (`gemmstone.sim.performance_memory.MEMORIES`).
    engine : str
        The performance model's engine (`gemmstone.sim.performance.ENGINES`): ``"compiled"``
        (exact, the default), ``"python"`` (the exact reference, slow) or ``"analytic"``
        (approximate, faster).
    """

    base: AcceleratorConfig
    axes: dict[str, tuple] = field(default_factory=dict)
    workloads: tuple[Workload, ...] = ()
    batches: tuple[int, ...] = (1,)
    memory: str = "dram"
    engine: str = "compiled"

    def __post_init__(self) -> None:
        # A grid built in Python is refused here, before any task fails on the same name.
        _choice(self.memory, "memory", MEMORIES, "Grid")
        _choice(self.engine, "engine", ENGINES, "Grid")

    def points(self) -> list[Point]:
        """Every config point, invalid ones included (with their error)."""
        names = list(self.axes)
        points = []
        for index, values in enumerate(itertools.product(*self.axes.values())):
            params = self.base.to_dict()
            for name, value in zip(names, values, strict=True):
                if name == ARRAY:
                    params["rows"], params["cols"] = _array(value)
                else:
                    params[name] = value
            try:
                config, error = AcceleratorConfig(**params), None
            except ConfigError as exc:
                config, error = None, str(exc)
            points.append(Point(index, params, config, error))
        return points

    @property
    def swept(self) -> list[str]:
        """Axes with more than one value, in order."""
        return [name for name, values in self.axes.items() if len(values) > 1]

    @property
    def without_effect(self) -> list[str]:
        """Swept axes that cannot change a result: the interconnect's, on one core."""
        return [name for name in self.swept if name in INTERCONNECT]


def _array(value: str) -> tuple[int, int]:
    rows, _, cols = value.partition("x")
    return int(rows), int(cols)


def _convert(name: str, value: Any, where: str) -> Any:
    """One grid value checked against its field's type (range checks are per point)."""
    if name == ARRAY:
        text = str(value).lower()
        rows, sep, cols = text.partition("x")
        if not (sep and rows.isdigit() and cols.isdigit()):
            raise GridError(f"{where}: 'array' takes ROWSxCOLS values like '16x16', "
                            f"not {value!r}")
        return f"{int(rows)}x{int(cols)}"
    kind = FIELDS[name]
    if kind is int:
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                pass
        elif type(value) is int:
            return value
        raise GridError(f"{where}: {name!r} takes integers, not {value!r}")
    if not isinstance(value, str):
        raise GridError(f"{where}: {name!r} takes strings, not {value!r}")
    return value


def _check_name(name: str, where: str) -> None:
    if name not in FIELDS and name != ARRAY:
        raise GridError(f"{where}: unknown parameter {name!r}; sweepable: "
                        f"{', '.join([*FIELDS, ARRAY])}")


def _axis(name: str, values: Any, where: str) -> tuple:
    _check_name(name, where)
    values = values if isinstance(values, list) else [values]
    if not values:
        raise GridError(f"{where}: {name!r} has no values")
    return tuple(_convert(name, value, where) for value in values)


def parse_param(option: str) -> tuple[str, tuple]:
    """A ``--param NAME=V1,V2,...`` option as (name, values).

    Raises
    ------
    GridError
        No ``=``, an unknown name or a value of the wrong type.
    """
    name, sep, text = option.partition("=")
    name = name.strip()
    where = f"--param {option}"
    if not sep or not name or not text.strip():
        raise GridError(f"{where}: expected NAME=VALUE[,VALUE...], e.g. "
                        f"dram_bytes_per_cycle=4,8,16")
    return name, _axis(name, [v.strip() for v in text.split(",")], where)


def parse_batches(text: str) -> tuple[int, ...]:
    """``--batches`` as batch sizes: ``8`` (1 to 8), ``1-8`` or ``1,2,4,8``."""
    where = f"--batches {text}"
    try:
        if "," in text:
            values = [int(v) for v in text.split(",")]
        elif "-" in text:
            first, last = (int(v) for v in text.split("-"))
            values = list(range(first, last + 1))
        else:
            values = list(range(1, int(text) + 1))
    except ValueError:
        raise GridError(f"{where}: expected N (1..N), FIRST-LAST or a list like "
                        f"1,2,4,8") from None
    return _batches(values, where)


def _batches(values: Any, where: str) -> tuple[int, ...]:
    if not isinstance(values, list) or not values or any(
            type(v) is not int or v < 1 for v in values):
        raise GridError(f"{where}: batches must be a non-empty list of positive integers, "
                        f"not {values!r}")
    return tuple(sorted(set(values)))


def _workloads(specs: Any, where: str) -> tuple[Workload, ...]:
    if not isinstance(specs, list):
        raise GridError(f"{where}: 'workloads' must be a list of strings, not {specs!r}")
    found = []
    for spec in specs:
        try:
            found += parse_workload(spec)
        except WorkloadError as error:
            raise GridError(f"{where}: {error}") from None
    return tuple(found)


def _base(preset: str | None, config_path: str | Path | None, changes: dict,
          where: str) -> AcceleratorConfig:
    if preset is not None and config_path is not None:
        raise GridError(f"{where}: give a preset or a config file, not both")
    if config_path is not None:
        try:
            base = AcceleratorConfig.load(config_path)
        except (OSError, ConfigError) as error:
            raise GridError(f"{where}: config {str(config_path)!r}: {error}") from None
    elif preset is not None:
        if preset not in PRESETS:
            raise GridError(f"{where}: unknown preset {preset!r}; choose one of "
                            f"{', '.join(PRESETS)}")
        base = PRESETS[preset]
    else:
        base = PRESETS["small"]
    for name, value in changes.items():
        _check_name(name, f"{where} [base]")
        if name == ARRAY:
            raise GridError(f"{where} [base]: set rows and cols, not 'array'")
        changes[name] = _convert(name, value, f"{where} [base]")
    try:
        return base.replace(**changes)
    except ConfigError as error:
        raise GridError(f"{where} [base]: {error}") from None


def parse_grid(data: dict, *, where: str = "grid", root: Path | None = None) -> Grid:
    """A `Grid` from the parsed TOML tables (module docstring); ``root`` resolves a
    relative ``config`` path.

    Raises
    ------
    GridError
        Unknown keys or parameters, values of the wrong type, bad workloads; the message
        starts with ``where``.
    """
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise GridError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected "
                        f"{', '.join(_TOP_KEYS)}")
    for table in ("base", "grid"):
        if not isinstance(data.get(table, {}), dict):
            raise GridError(f"{where}: [{table}] must be a table")
    config_path = data.get("config")
    if config_path is not None and root is not None:
        config_path = root / config_path
    base = _base(data.get("preset"), config_path, dict(data.get("base", {})), where)
    axes = {name: _axis(name, values, f"{where} [grid]")
            for name, values in data.get("grid", {}).items()}
    if ARRAY in axes and ({"rows", "cols"} & set(axes)):
        raise GridError(f"{where} [grid]: sweep 'array' or rows/cols, not both")
    memory = _choice(data.get("memory", "dram"), "memory", MEMORIES, where)
    engine = _choice(data.get("engine", "compiled"), "engine", ENGINES, where)
    batches = _batches(data["batches"], where) if "batches" in data else (1,)
    return Grid(base, axes, _workloads(data.get("workloads", []), where), batches, memory,
                engine)


def _choice(value: Any, key: str, choices: tuple[str, ...], where: str) -> str:
    """``value`` of the setting ``key``, checked to be one of ``choices``."""
    if value not in choices:
        raise GridError(f"{where}: {key} must be one of {', '.join(map(repr, choices))}, "
                        f"not {value!r}")
    return value


def load_grid(path: str | Path) -> Grid:
    """The `Grid` of a sweep TOML file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise GridError(f"cannot read sweep file {str(path)!r}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise GridError(f"{path}: TOML does not parse: {error}") from None
    return parse_grid(data, where=str(path), root=path.parent)
