"""`AcceleratorConfig`: the one object every part of gemmstone is parameterized by.

The RTL generator, the functional and performance models, the compiler and the driver all
take an `AcceleratorConfig`. Every derived quantity (line widths, buffer depths, address
widths) is a property computed here, never restated elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["AcceleratorConfig", "ConfigError", "PRESETS", "preset"]

# Value sets accepted for the enumerated fields. Only int8 x int8 -> int32 arithmetic is
# implemented by the ISA semantics today; the fields exist so the contract does not change
# when wider types arrive.
#: Choices of the fields that have one value today: what no part implements yet (an
#: output-stationary array, several cores on an interconnect) is refused here, so that no
#: simulator, sweep or compiler can silently run a weight-stationary single core instead.
DATAFLOWS = ("ws",)
INPUT_TYPES = ("int8",)
ACC_TYPES = ("int32",)
TOPOLOGIES = ("ring", "mesh", "crossbar")

# Bounds that keep every operand inside the fixed ISA field widths (see gemmstone.isa).
MAX_ARRAY_DIM = 128
MAX_SPAD_LINES = 1 << 16
MAX_ACC_ROWS = 1 << 16
MAX_DRAM_BYTES = 1 << 32


class ConfigError(ValueError):
    """An `AcceleratorConfig` parameter has a value the accelerator cannot be built with."""


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True, kw_only=True)
class AcceleratorConfig:
    """Every parameter of one gemmstone accelerator.

    Parameters
    ----------
    rows, cols : int
        Systolic array shape. ``rows`` is the reduction (K) dimension: an input vector has
        ``rows`` elements. ``cols`` is the output (N) dimension: a weight row and an
        accumulator row have ``cols`` elements. Powers of two from 2 to 128.
    dataflow : {"ws"}
        Weight-stationary (output-stationary, "os", is not implemented yet). The ISA
        semantics do not depend on it; timing would.
    input_type, weight_type, acc_type : str
        Element types of inputs, weights and accumulators ("int8", "int8", "int32").
    spad_kib, spad_banks : int
        Scratchpad capacity in KiB and number of banks.
    acc_kib, acc_banks : int
        Accumulator capacity in KiB and number of banks.
    dram_bytes_per_cycle : int
        DRAM bus width: bytes per cycle the DMA can move (the AXI4 data width).
    dram_latency : int
        Cycles from a DRAM read request to its first data beat.
    dram_mib : int
        Size of the DRAM address space the models allocate, in MiB.
    queue_depth : int
        Depth of each unit's instruction queue (load, compute, store).
    token_depth : int
        Capacity of each dependency-token queue; a push into a full queue stalls.
    cores : int
        Number of accelerator tiles on the interconnect: 1 (the multi-core interconnect is
        not implemented yet).
    topology : {"ring", "mesh", "crossbar"}
        On-chip interconnect joining the cores (no effect on one core).
    link_bytes_per_cycle : int
        Width of one interconnect link (no effect on one core).

    Raises
    ------
    ConfigError
        If any parameter is out of range; the message names the parameter and the value.
    """

    rows: int = 8
    cols: int = 8
    dataflow: str = "ws"
    input_type: str = "int8"
    weight_type: str = "int8"
    acc_type: str = "int32"
    spad_kib: int = 64
    spad_banks: int = 4
    acc_kib: int = 32
    acc_banks: int = 2
    dram_bytes_per_cycle: int = 8
    dram_latency: int = 20
    dram_mib: int = 64
    queue_depth: int = 16
    token_depth: int = 8
    cores: int = 1
    topology: str = "ring"
    link_bytes_per_cycle: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = int if f.type in ("int", int) else str
            if type(value) is not expected:
                raise ConfigError(
                    f"'{f.name}' must be {'an integer' if expected is int else 'a string'}, "
                    f"not {value!r}"
                )
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not (_is_power_of_two(value) and 2 <= value <= MAX_ARRAY_DIM):
                raise ConfigError(
                    f"'{name}' must be a power of two from 2 to {MAX_ARRAY_DIM}, not {value}"
                )
        self._check_choice("dataflow", DATAFLOWS)
        self._check_choice("input_type", INPUT_TYPES)
        self._check_choice("weight_type", INPUT_TYPES)
        self._check_choice("acc_type", ACC_TYPES)
        self._check_choice("topology", TOPOLOGIES)
        for name in ("spad_banks", "acc_banks", "dram_bytes_per_cycle"):
            value = getattr(self, name)
            if not _is_power_of_two(value):
                raise ConfigError(f"'{name}' must be a positive power of two, not {value}")
        for name in ("spad_kib", "acc_kib", "dram_mib", "queue_depth", "token_depth",
                     "cores", "link_bytes_per_cycle"):
            if getattr(self, name) < 1:
                raise ConfigError(f"'{name}' must be at least 1, not {getattr(self, name)}")
        if self.cores != 1:
            raise ConfigError(f"'cores' must be 1 (the multi-core interconnect is not "
                              f"implemented yet), not {self.cores}")
        if self.dram_latency < 0:
            raise ConfigError(f"'dram_latency' must not be negative, not {self.dram_latency}")
        if not 1 <= self.dram_bytes_per_cycle <= 128:
            raise ConfigError(
                f"'dram_bytes_per_cycle' must be from 1 to 128, not {self.dram_bytes_per_cycle}"
            )
        if self.token_depth > 255:
            raise ConfigError(f"'token_depth' must be at most 255, not {self.token_depth}")
        self._check_buffer("spad", self.spad_bytes, self.line_bytes, self.spad_banks,
                           MAX_SPAD_LINES)
        self._check_buffer("acc", self.acc_bytes, self.acc_row_bytes, self.acc_banks,
                           MAX_ACC_ROWS)
        if self.dram_bytes > MAX_DRAM_BYTES:
            raise ConfigError(
                f"'dram_mib' must be at most {MAX_DRAM_BYTES >> 20} (32-bit addresses), "
                f"not {self.dram_mib}"
            )

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise ConfigError(
                f"'{name}' must be one of {', '.join(map(repr, choices))}, not {value!r}"
            )

    @staticmethod
    def _check_buffer(name: str, size: int, row_bytes: int, banks: int, max_rows: int) -> None:
        rows = size // row_bytes
        if size % (row_bytes * banks):
            raise ConfigError(
                f"'{name}_kib' ({size} bytes) must be a multiple of {name}_banks x row width "
                f"({banks} x {row_bytes} bytes)"
            )
        if rows > max_rows:
            raise ConfigError(
                f"'{name}_kib' gives {rows} rows of {row_bytes} bytes; at most {max_rows} "
                f"are addressable"
            )

    # -- derived quantities -------------------------------------------------------------

    @property
    def input_bytes(self) -> int:
        """Bytes per input/weight element."""
        return 1

    @property
    def acc_elem_bytes(self) -> int:
        """Bytes per accumulator element."""
        return 4

    @property
    def line_bytes(self) -> int:
        """Width of one scratchpad line: an input vector (``rows``) or a weight row (``cols``)."""
        return max(self.rows, self.cols) * self.input_bytes

    @property
    def spad_bytes(self) -> int:
        return self.spad_kib * 1024

    @property
    def spad_lines(self) -> int:
        """Scratchpad depth in lines."""
        return self.spad_bytes // self.line_bytes

    @property
    def acc_row_bytes(self) -> int:
        """Width of one accumulator row: ``cols`` accumulator elements."""
        return self.cols * self.acc_elem_bytes

    @property
    def acc_bytes(self) -> int:
        return self.acc_kib * 1024

    @property
    def acc_rows(self) -> int:
        """Accumulator depth in rows."""
        return self.acc_bytes // self.acc_row_bytes

    @property
    def dram_bytes(self) -> int:
        return self.dram_mib << 20

    @property
    def spad_addr_bits(self) -> int:
        return max(1, (self.spad_lines - 1).bit_length())

    @property
    def acc_addr_bits(self) -> int:
        return max(1, (self.acc_rows - 1).bit_length())

    @property
    def macs_per_cycle(self) -> int:
        """Peak multiply-accumulates per cycle per core."""
        return self.rows * self.cols

    # -- identity and persistence -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AcceleratorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config parameter(s): {', '.join(unknown)}")
        return cls(**values)

    def to_toml(self) -> str:
        lines = ["[accelerator]"]
        for name, value in self.to_dict().items():
            lines.append(f"{name} = {json.dumps(value)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str) -> AcceleratorConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config TOML does not parse: {error}") from None
        if "accelerator" not in data:
            raise ConfigError("config TOML has no [accelerator] table")
        return cls.from_dict(data["accelerator"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> AcceleratorConfig:
        return cls.from_toml(Path(path).read_text())

    def replace(self, **changes: Any) -> AcceleratorConfig:
        """A copy with some parameters changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical parameter set: equal configs hash equal, always."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def describe(self) -> str:
        """One line a person can read: shape, buffers and bandwidth."""
        return (
            f"{self.rows}x{self.cols} {self.dataflow.upper()} {self.input_type}->"
            f"{self.acc_type}, spad {self.spad_kib} KiB/{self.spad_banks} banks "
            f"({self.spad_lines} lines x {self.line_bytes} B), acc {self.acc_kib} KiB/"
            f"{self.acc_banks} banks ({self.acc_rows} rows), DRAM {self.dram_bytes_per_cycle} "
            f"B/cycle, latency {self.dram_latency}, {self.cores} core(s) {self.topology}"
        )


PRESETS: dict[str, AcceleratorConfig] = {
    "tiny": AcceleratorConfig(rows=4, cols=4, spad_kib=16, acc_kib=8, dram_bytes_per_cycle=4),
    "small": AcceleratorConfig(rows=8, cols=8, spad_kib=64, acc_kib=32),
    "rect": AcceleratorConfig(rows=4, cols=8, spad_kib=32, acc_kib=16),
    "base": AcceleratorConfig(rows=16, cols=16, spad_kib=256, acc_kib=64,
                              dram_bytes_per_cycle=16),
}


def preset(name: str) -> AcceleratorConfig:
    """The named preset configuration ("tiny" 4x4, "small" 8x8, "rect" 4x8, "base" 16x16)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
