"""The accelerator's AXI4-Lite register map, defined once.

`REGISTERS` is the one table: the RTL register block (`gemmstone.hw.registers`) is generated
from it, the driver reads and writes by its names, and docs/registers.md is rendered from
it (``python -m gemmstone.hw.register_map > docs/registers.md``; a test fails when the
committed file is stale). This module is plain Python, so the driver imports it without
Amaranth.

Registers are 32-bit words at byte offsets. A 64-bit counter takes two words, the low half
at its offset and the high half 4 bytes above; reading the low half latches the high half,
so reading low then high gives one consistent 64-bit value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gemmstone.config import AcceleratorConfig
from gemmstone.isa.errors import ErrorCode
from gemmstone.isa.table import isa_hash

__all__ = [
    "ADDR_WIDTH", "MAGIC", "MAP_VERSION", "Access", "Kind", "BitField", "Register",
    "REGISTERS", "BY_NAME", "CONTROL_START", "CONTROL_SOFT_RESET", "STATUS_BUSY",
    "STATUS_DONE", "STATUS_ERROR", "check_map", "hash_id", "config_id", "isa_id",
    "reset_value", "render",
]

#: Byte-address bits of the register interface (a 4 KiB page).
ADDR_WIDTH = 12
#: Value of MAGIC: "GEMS" in ASCII, so a driver can tell it found a gemmstone.
MAGIC = 0x47454D53
#: Value of MAP_VERSION; bumped whenever a register moves or changes meaning.
MAP_VERSION = 1


class Access(enum.Enum):
    """What the host may do with a register."""

    RW = "RW"  # read and write; reads return the last value written
    RO = "RO"  # read only; writes are ignored
    WO = "WO"  # write only (command bits); reads return 0


class Kind(enum.Enum):
    """Where a register's value comes from, which decides its hardware."""

    CONSTANT = "constant"  # fixed when the hardware is generated
    CONTROL = "control"    # written bits become one-cycle pulses to the core
    STATUS = "status"      # state kept by the register block from the core's reports
    CONFIG = "config"      # host-written setting, an output to the core
    COUNTER = "counter"    # 64-bit performance counter, cleared at start


@dataclass(frozen=True)
class BitField:
    """A named bit field of a register."""

    name: str
    lsb: int
    width: int
    doc: str


@dataclass(frozen=True)
class Register:
    """One entry of the register map.

    Parameters
    ----------
    name : str
        Upper-case name; lower-cased it names the core port of CONFIG and COUNTER registers.
    offset : int
        Byte offset (a multiple of 4; of 8 for 64-bit registers).
    access : Access
    kind : Kind
    reset : int or str
        Value after reset, or the name of a value computed from the config
        (``"config_id"``, ``"isa_id"``); see `reset_value`.
    doc : str
        One-line meaning.
    width : int
        32, or 64 for counters.
    fields : tuple of BitField
        Named bits, for registers that are bit sets.
    increment : str
        For counters, what may be added per cycle: ``"1"`` (an event input), ``"bus"``
        (up to ``dram_bytes_per_cycle`` bytes) or ``"running"`` (every cycle while busy).
    """

    name: str
    offset: int
    access: Access
    kind: Kind
    reset: int | str
    doc: str
    width: int = 32
    fields: tuple[BitField, ...] = ()
    increment: str = "1"

    @property
    def words(self) -> int:
        return self.width // 32

    @property
    def port(self) -> str:
        """Name of the core port of a CONFIG or COUNTER register."""
        return self.name.lower()


CONTROL_START = BitField("START", 0, 1, "start the program at INSTR_BASE (ignored while busy)")
CONTROL_SOFT_RESET = BitField(
    "SOFT_RESET", 1, 1, "reset the core; clears STATUS, the error registers and the counters")
STATUS_BUSY = BitField("BUSY", 0, 1, "a program is running")
STATUS_DONE = BitField("DONE", 1, 1, "the last program ended (halt, or stopped on an error)")
STATUS_ERROR = BitField("ERROR", 2, 1, "the last program faulted; see ERROR_CODE")


def _counter(name: str, offset: int, doc: str, increment: str = "1") -> Register:
    return Register(name, offset, Access.RO, Kind.COUNTER, 0, doc, width=64,
                    increment=increment)


REGISTERS: tuple[Register, ...] = (
    Register("MAGIC", 0x000, Access.RO, Kind.CONSTANT, MAGIC,
             'identifies a gemmstone accelerator ("GEMS")'),
    Register("MAP_VERSION", 0x004, Access.RO, Kind.CONSTANT, MAP_VERSION,
             "version of this register map"),
    Register("CONFIG_ID", 0x008, Access.RO, Kind.CONSTANT, "config_id",
             "first 32 bits of the AcceleratorConfig content hash the hardware was built from"),
    Register("ISA_ID", 0x00C, Access.RO, Kind.CONSTANT, "isa_id",
             "first 32 bits of the ISA hash the hardware decodes"),
    Register("CONTROL", 0x010, Access.WO, Kind.CONTROL, 0, "command bits; reads as 0",
             fields=(CONTROL_START, CONTROL_SOFT_RESET)),
    Register("STATUS", 0x014, Access.RO, Kind.STATUS, 0, "run state",
             fields=(STATUS_BUSY, STATUS_DONE, STATUS_ERROR)),
    Register("ERROR_CODE", 0x018, Access.RO, Kind.STATUS, 0,
             "first fault of the last run (ErrorCode; 0 = none)"),
    Register("ERROR_INDEX", 0x01C, Access.RO, Kind.STATUS, 0,
             "index of the faulting instruction in the program"),
    Register("ERROR_ADDR", 0x020, Access.RO, Kind.STATUS, 0,
             "faulting address (DRAM offset, scratchpad line or accumulator row)"),
    Register("INSTR_BASE", 0x030, Access.RW, Kind.CONFIG, 0,
             "bus address of instruction 0 (16-byte words); read at START"),
    Register("INSTR_COUNT", 0x034, Access.RW, Kind.CONFIG, 0,
             "number of instructions; running past the last is an error; read at START"),
    Register("WINDOW_BASE", 0x038, Access.RW, Kind.CONFIG, 0,
             "bus address of DRAM offset 0: instruction DRAM operands are relative to it"),
    Register("WINDOW_LIMIT", 0x03C, Access.RW, Kind.CONFIG, 0,
             "first bus address past the DMA window; every access outside faults"),
    Register("WATCHDOG", 0x040, Access.RW, Kind.CONFIG, 0,
             "cycles a run may take before it is aborted with a WATCHDOG error; 0 = off"),
    _counter("CYCLES", 0x100, "cycles while busy", increment="running"),
    _counter("BUSY_LOAD", 0x108, "cycles the load unit executes an instruction"),
    _counter("BUSY_COMPUTE", 0x110, "cycles the compute unit executes an instruction"),
    _counter("BUSY_STORE", 0x118, "cycles the store unit executes an instruction"),
    _counter("STALL_TOKEN", 0x120, "cycles some unit waits for a dependency token"),
    _counter("STALL_DMA", 0x128, "cycles some unit waits for DRAM (AXI) transfers"),
    _counter("STALL_QUEUE", 0x130, "cycles dispatch or a token push waits on a full queue"),
    _counter("BYTES_READ", 0x138, "bytes read from DRAM (instructions included)",
             increment="bus"),
    _counter("BYTES_WRITTEN", 0x140, "bytes written to DRAM", increment="bus"),
    _counter("RETIRED_LOAD", 0x148, "instructions the load unit finished"),
    _counter("RETIRED_COMPUTE", 0x150, "instructions the compute unit finished"),
    _counter("RETIRED_STORE", 0x158, "instructions the store unit finished"),
)

BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}


def check_map(registers: tuple[Register, ...]) -> None:
    """Raise `ValueError` unless ``registers`` form a consistent map: aligned, in the page,
    not overlapping, uniquely named, counters 64-bit and nothing else. Run on `REGISTERS`
    at import; taking the map as an argument lets tests show each broken map is rejected."""
    used: dict[int, str] = {}
    for reg in registers:
        if reg.width not in (32, 64) or (reg.width == 64) != (reg.kind is Kind.COUNTER):
            raise ValueError(f"register {reg.name}: counters are 64-bit, others 32-bit")
        if reg.offset % (reg.width // 8) or not 0 <= reg.offset < 1 << ADDR_WIDTH:
            raise ValueError(f"register {reg.name}: offset {reg.offset:#x} is not aligned "
                             f"or outside the {1 << ADDR_WIDTH}-byte page")
        for word in range(reg.words):
            address = reg.offset + 4 * word
            if address in used:
                raise ValueError(f"registers {used[address]} and {reg.name} overlap at "
                                 f"{address:#x}")
            used[address] = reg.name
        bits = [b for f in reg.fields for b in range(f.lsb, f.lsb + f.width)]
        if len(bits) != len(set(bits)) or any(not 0 <= b < 32 for b in bits):
            raise ValueError(f"register {reg.name}: bit fields overlap or exceed 32 bits")
        if reg.increment not in ("1", "bus", "running"):
            raise ValueError(f"register {reg.name}: unknown increment {reg.increment!r}")
    if len({reg.name for reg in registers}) != len(registers):
        raise ValueError("two registers have the same name")


check_map(REGISTERS)


def hash_id(hexdigest: str) -> int:
    """The 32-bit ID of a SHA-256 hex digest: its first 8 hex digits, as an integer."""
    return int(hexdigest[:8], 16)


def config_id(config: AcceleratorConfig) -> int:
    """Value of CONFIG_ID for hardware built from ``config``."""
    return hash_id(config.content_hash)


def isa_id() -> int:
    """Value of ISA_ID."""
    return hash_id(isa_hash())


def reset_value(register: Register, config: AcceleratorConfig) -> int:
    """The value ``register`` reads after reset on hardware built from ``config``."""
    if register.reset == "config_id":
        return config_id(config)
    if register.reset == "isa_id":
        return isa_id()
    return register.reset


def render() -> str:
    """docs/registers.md: the register map as Markdown."""
    out = [
        "# gemmstone register map",
        "",
        "Generated from `hw/register_map.py` by `python -m gemmstone.hw.register_map`; "
        "do not edit by hand.",
        "",
        f"AXI4-Lite, 32-bit data, {ADDR_WIDTH}-bit byte addresses, map version "
        f"{MAP_VERSION}. Registers are 32-bit words; a 64-bit counter's low half is at its "
        "offset and its high half 4 bytes above. Reading the low half latches the high "
        "half, so read low then high. Writes to read-only registers are ignored (response "
        "OKAY); accesses to unmapped offsets answer SLVERR. Byte strobes apply to RW "
        "registers.",
        "",
        "| offset | name | access | reset | meaning |",
        "|---:|---|---|---|---|",
    ]
    for reg in REGISTERS:
        reset = "hash (see below)" if isinstance(reg.reset, str) else f"`{reg.reset:#x}`"
        size = "" if reg.width == 32 else " (64-bit)"
        out.append(f"| `{reg.offset:#05x}` | `{reg.name}` | {reg.access.value} | {reset} | "
                   f"{reg.doc}{size} |")
    for reg in (r for r in REGISTERS if r.fields):
        out += ["", f"### {reg.name} bits", "", "| bit | name | meaning |", "|---:|---|---|"]
        out += [f"| {f.lsb} | `{f.name}` | {f.doc} |" for f in reg.fields]
    out += ["", "### ERROR_CODE values", "", "| value | name |", "|---:|---|"]
    out += [f"| {int(code)} | `{code.name}` |" for code in ErrorCode]
    out += [
        "",
        "### Identification",
        "",
        "`CONFIG_ID` is `int(config.content_hash[:8], 16)` and `ISA_ID` is "
        "`int(isa_hash()[:8], 16)`: the first 32 bits of each SHA-256. The driver compares "
        "them with the program's config and ISA before it starts anything.",
        "",
        "### Running a program",
        "",
        "Write `INSTR_BASE`, `INSTR_COUNT`, `WINDOW_BASE`, `WINDOW_LIMIT` and `WATCHDOG`, "
        "then `CONTROL.START`. `START` clears `STATUS.DONE`/`ERROR`, the error registers "
        "and the counters, and sets `STATUS.BUSY`. The run ends when the core has stopped: "
        "`BUSY` clears and `DONE` sets (and `ERROR` too after a fault, with the first "
        "fault's code, instruction index and address). When `WATCHDOG` is not 0 and the "
        "run reaches that many cycles, the core is told to abort and the error is "
        "`WATCHDOG` unless an earlier fault was recorded.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
