"""The gemmstone instruction set, as one declarative table.

Everything that knows about instruction bits is generated from `INSTRUCTIONS`: the
encoder/decoder, the assembler and disassembler, the RTL decoder's layouts, the functional
model's dispatch and the Markdown reference (docs/isa.md). The table is checked when this
module is imported: fields of an instruction tile its 128 bits exactly (no overlap, no
uncovered bit), every opcode and enum value fits its field, names are unique.

Instructions are 128 bits, little-endian in memory. Bits [0, 8) are the same for all:
the opcode and the four dependency-token flags. A unit (load, compute or store) executes
its instructions in order; tokens order work *between* units (VTA style): an instruction
first pops the tokens it names (waiting until they are there), executes, then pushes.
"prev" and "next" name the neighbouring unit in the pipeline load -> compute -> store.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field

__all__ = [
    "WORD_BITS", "WORD_BYTES", "Unit", "AccLoadType", "StoreMode", "AluFunc", "FieldSpec",
    "InstructionSpec", "INSTRUCTIONS", "BY_MNEMONIC", "BY_OPCODE", "RESERVED_OPCODES",
    "HEADER_FIELDS", "OPCODE_FIELD", "TOKEN_FIELDS", "ISA_VERSION", "isa_hash", "TableError",
    "check_table",
]

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8
ISA_VERSION = 1


class TableError(Exception):
    """The instruction table itself is inconsistent (a bug in this file, found at import)."""


class Unit(enum.IntEnum):
    """Which queue executes an instruction. DISPATCH instructions run in the fetch stage."""

    LOAD = 0
    COMPUTE = 1
    STORE = 2
    DISPATCH = 3

    @property
    def has_prev(self) -> bool:
        return self in (Unit.COMPUTE, Unit.STORE)

    @property
    def has_next(self) -> bool:
        return self in (Unit.LOAD, Unit.COMPUTE)

    def allows(self, token_flag: str) -> bool:
        """Whether this unit's instructions may set ``token_flag`` (``pop_prev``, ...): only
        towards a neighbour the unit has."""
        return self.has_prev if token_flag.endswith("_prev") else self.has_next


class AccLoadType(enum.IntEnum):
    """Element type of DRAM data loaded into the accumulator (int8 is sign-extended)."""

    INT32 = 0
    INT8 = 1


class StoreMode(enum.IntEnum):
    """How accumulator rows are written to DRAM."""

    INT8 = 0   # bias, per-column requantization, zero point, clamp -> int8
    INT32 = 1  # raw accumulator values


class AluFunc(enum.IntEnum):
    """Element-wise accumulator ALU functions: d = f(d, b), b = src row element or imm."""

    ADD = 0     # sat32(d + b)
    SUB = 1     # sat32(d - b)
    MAX = 2     # max(d, b)
    MIN = 3     # min(d, b)
    SHR = 4     # round-half-up arithmetic shift right by (b & 31)
    SHL = 5     # sat32(d << (b & 31))
    MOV = 6     # b
    MULSHR = 7  # sat32(round-half-up((d * b) >> shift)), 64-bit product


@dataclass(frozen=True)
class FieldSpec:
    """One bit field of an instruction word.

    ``kind`` is "uint", "int" (two's complement), "flag" (one bit), "reserved" (must be
    zero) or an `enum.IntEnum` class whose values are stored.
    """

    name: str
    lsb: int
    width: int
    kind: str | type[enum.IntEnum] = "uint"
    doc: str = ""

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    @property
    def signed(self) -> bool:
        return self.kind == "int"

    @property
    def is_enum(self) -> bool:
        return isinstance(self.kind, type) and issubclass(self.kind, enum.IntEnum)

    @property
    def min(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def accepts(self, value: int) -> bool:
        if self.is_enum:
            return value in {int(v) for v in self.kind}
        return self.min <= value <= self.max


@dataclass(frozen=True)
class InstructionSpec:
    """One instruction: mnemonic, opcode, executing unit, operand fields and semantics."""

    mnemonic: str
    opcode: int
    unit: Unit
    operands: tuple[FieldSpec, ...]
    semantics: str
    summary: str
    all_fields: tuple[FieldSpec, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "all_fields", HEADER_FIELDS + self.operands)

    @property
    def operand_names(self) -> tuple[str, ...]:
        """Names the assembler accepts: tokens and operands, not opcode or reserved bits."""
        return tuple(f.name for f in self.all_fields if f.name != "opcode"
                     and f.kind != "reserved")


OPCODE_FIELD = FieldSpec("opcode", 0, 4, doc="instruction opcode")
TOKEN_FIELDS = (
    FieldSpec("pop_prev", 4, 1, "flag", "wait for and take a token from the previous unit"),
    FieldSpec("pop_next", 5, 1, "flag", "wait for and take a token from the next unit"),
    FieldSpec("push_prev", 6, 1, "flag", "after executing, give a token to the previous unit"),
    FieldSpec("push_next", 7, 1, "flag", "after executing, give a token to the next unit"),
)
HEADER_FIELDS = (OPCODE_FIELD, *TOKEN_FIELDS)


def _f(name: str, lsb: int, width: int, kind: str | type[enum.IntEnum] = "uint",
       doc: str = "") -> FieldSpec:
    return FieldSpec(name, lsb, width, kind, doc)


def _reserved(lsb: int, msb_exclusive: int = WORD_BITS) -> FieldSpec:
    return FieldSpec("reserved", lsb, msb_exclusive - lsb, "reserved", "must be zero")


_DRAM = "DRAM byte offset from the DMA window base"
_STRIDE = "bytes between the starts of consecutive DRAM lines"

INSTRUCTIONS: tuple[InstructionSpec, ...] = (
    InstructionSpec(
        "load", 1, Unit.LOAD,
        (
            _f("dram", 8, 32, doc=_DRAM),
            _f("stride", 40, 24, doc=_STRIDE),
            _f("spad", 64, 16, doc="first scratchpad line written"),
            _f("n", 80, 12, doc="lines read from DRAM"),
            _f("len", 92, 8, doc="bytes read per line, 1..line_bytes; the rest is zero"),
            _f("pad_lo", 100, 8, doc="all-zero lines written before the DRAM lines"),
            _f("pad_hi", 108, 8, doc="all-zero lines written after the DRAM lines"),
            _reserved(116),
        ),
        "spad[spad + pad_lo + i][:len] = dram[dram + i*stride :+ len], i < n; "
        "all other bytes of the pad_lo + n + pad_hi lines = 0",
        "DRAM -> scratchpad, 2-D strided, with zero padding",
    ),
    InstructionSpec(
        "loadacc", 2, Unit.COMPUTE,
        (
            _f("dram", 8, 32, doc=_DRAM),
            _f("stride", 40, 24, doc=_STRIDE),
            _f("acc", 64, 16, doc="first accumulator row written"),
            _f("n", 80, 12, doc="rows read from DRAM"),
            _f("len", 92, 8, doc="elements per row, 1..cols; the rest is zero"),
            _f("type", 100, 1, AccLoadType, doc="DRAM element type (int8 sign-extends)"),
            _f("accumulate", 101, 1, "flag", doc="add to the rows instead of overwriting"),
            _reserved(102),
        ),
        "acc[acc + i][:len] (+)= dram[dram + i*stride] as type[len], i < n; "
        "elements >= len become 0 (or are kept with accumulate)",
        "DRAM -> accumulator (bias, residual), optionally adding in place",
    ),
    InstructionSpec(
        "loadq", 3, Unit.STORE,
        (
            _f("dram", 8, 32, doc=_DRAM),
            _f("len", 40, 8, doc="columns given, 1..cols; the others get bias=mult=shift=0"),
            _reserved(48),
        ),
        "bias, mult, shift[:len] = int32 arrays dram[dram :+ 4*len], [+4*len], [+8*len]; "
        "shift uses bits [5:0]",
        "load the per-column output stage parameters (bias, multiplier, shift)",
    ),
    InstructionSpec(
        "store", 4, Unit.STORE,
        (
            _f("dram", 8, 32, doc=_DRAM),
            _f("stride", 40, 24, doc=_STRIDE),
            _f("acc", 64, 16, doc="first accumulator row read"),
            _f("n", 80, 12, doc="rows written to DRAM"),
            _f("len", 92, 8, doc="elements written per row, 1..cols"),
            _f("mode", 100, 2, StoreMode, doc="int8 through the output stage, or raw int32"),
            _reserved(102),
        ),
        "int8: dram[dram + i*stride + j] = clamp(rshr(sat32(acc + bias[j]) * mult[j], "
        "shift[j]) + zp, lo, hi); int32: raw acc[acc + i][j], j < len",
        "accumulator -> DRAM through bias, requantization and activation",
    ),
    InstructionSpec(
        "config", 5, Unit.STORE,
        (
            _f("zp", 8, 8, "int", doc="output zero point added after requantization"),
            _f("lo", 16, 8, "int", doc="lower clamp (zp for ReLU)"),
            _f("hi", 24, 8, "int", doc="upper clamp (127, or zp + q(6) for ReLU6)"),
            _reserved(32),
        ),
        "out_zp, clamp_lo, clamp_hi = zp, lo, hi (lo <= hi); reset values 0, -128, 127",
        "configure the output stage: zero point and activation clamp",
    ),
    InstructionSpec(
        "preload", 6, Unit.COMPUTE,
        (
            _f("spad", 8, 16, doc="first scratchpad line holding a weight row"),
            _f("k", 24, 8, doc="weight rows, 1..rows; rows >= k are zero"),
            _reserved(32),
        ),
        "W[i][:] = spad[spad + i][:cols] for i < k, W[i][:] = 0 for k <= i < rows",
        "preload the stationary weights into the array",
    ),
    InstructionSpec(
        "matmul", 7, Unit.COMPUTE,
        (
            _f("spad", 8, 16, doc="first scratchpad line holding an input row"),
            _f("acc", 24, 16, doc="first accumulator row written"),
            _f("n", 40, 12, doc="input rows streamed through the array (0: none)"),
            _f("accumulate", 52, 1, "flag", doc="add to the rows instead of overwriting"),
            _reserved(53),
        ),
        "acc[acc + i] = (accumulate ? acc[acc + i] : 0) + spad[spad + i][:rows] @ W "
        "(int32, wrapping), i < n",
        "stream input rows through the array into the accumulator",
    ),
    InstructionSpec(
        "alu", 8, Unit.COMPUTE,
        (
            _f("func", 8, 4, AluFunc, doc="element-wise function"),
            _f("dst", 12, 16, doc="first accumulator row read and written"),
            _f("src", 28, 16, doc="first accumulator row of operand b (unless use_imm)"),
            _f("n", 44, 12, doc="rows processed (0: none)"),
            _f("use_imm", 56, 1, "flag", doc="operand b is imm instead of src rows"),
            _f("shift", 57, 6, doc="right shift of MULSHR"),
            _reserved(63, 64),
            _f("imm", 64, 32, "int", doc="immediate operand b"),
            _reserved(96),
        ),
        "acc[dst + i] = func(acc[dst + i], use_imm ? imm : acc[src + i]), i < n; "
        "src rows must be the dst rows or disjoint from them",
        "element-wise ALU on accumulator rows (residual add, pooling, rescaling)",
    ),
    InstructionSpec(
        "fence", 9, Unit.DISPATCH, (_reserved(8),),
        "wait until every queue is empty and every unit idle",
        "order all units: nothing after starts before everything before ends",
    ),
    InstructionSpec(
        "halt", 10, Unit.DISPATCH, (_reserved(8),),
        "wait until every unit is idle, then stop; no token may be left in a queue",
        "end of program",
    ),
)

# Opcodes with no instruction yet. 11-14 are kept for inter-core transfers (send, recv,
# barrier, collective); 0 and 15 stay illegal so zeroed or erased memory never executes.
RESERVED_OPCODES = {
    0: "illegal (zeroed memory)",
    11: "inter-core: reserved",
    12: "inter-core: reserved",
    13: "inter-core: reserved",
    14: "inter-core: reserved",
    15: "illegal (erased memory)",
}

BY_MNEMONIC = {spec.mnemonic: spec for spec in INSTRUCTIONS}
BY_OPCODE = {spec.opcode: spec for spec in INSTRUCTIONS}


def check_table(instructions: tuple[InstructionSpec, ...],
                reserved_opcodes: dict[int, str]) -> None:
    """Raise `TableError` unless ``instructions`` form a consistent instruction table.

    Mnemonics and opcodes are unique; opcodes and ``reserved_opcodes`` partition the opcode
    space; the fields of each instruction tile its word exactly and every flag and enum fits
    its field. Run on `INSTRUCTIONS` at import; taking the table as an argument lets the
    tests show that each broken table is rejected.
    """
    by_mnemonic = {spec.mnemonic for spec in instructions}
    by_opcode = {spec.opcode for spec in instructions}
    if len(by_mnemonic) != len(instructions):
        raise TableError("duplicate mnemonic in the instruction table")
    if len(by_opcode) != len(instructions):
        raise TableError("duplicate opcode in the instruction table")
    for opcode in sorted(by_opcode) + sorted(reserved_opcodes):
        if not 0 <= opcode <= OPCODE_FIELD.max:
            raise TableError(f"opcode {opcode} does not fit the {OPCODE_FIELD.width}-bit field")
    overlap = by_opcode & set(reserved_opcodes)
    if overlap or by_opcode | set(reserved_opcodes) != set(range(1 << OPCODE_FIELD.width)):
        raise TableError("opcodes and reserved opcodes must partition the opcode space")
    for spec in instructions:
        owner: list[str | None] = [None] * WORD_BITS
        names = [f.name for f in spec.all_fields if f.kind != "reserved"]
        if len(names) != len(set(names)):
            raise TableError(f"{spec.mnemonic}: a field name is used twice")
        for f in spec.all_fields:
            if f.width < 1:
                raise TableError(f"{spec.mnemonic}.{f.name}: width {f.width} is not positive")
            if f.lsb < 0 or f.msb >= WORD_BITS:
                raise TableError(f"{spec.mnemonic}.{f.name}: bits [{f.lsb}, {f.msb}] "
                                 f"do not fit in {WORD_BITS}")
            if f.kind == "flag" and f.width != 1:
                raise TableError(f"{spec.mnemonic}.{f.name}: a flag is one bit wide")
            if f.is_enum and max(f.kind) > f.max:
                raise TableError(f"{spec.mnemonic}.{f.name}: enum {f.kind.__name__} "
                                 f"does not fit {f.width} bits")
            for bit in range(f.lsb, f.msb + 1):
                if owner[bit] is not None:
                    raise TableError(f"{spec.mnemonic}: bit {bit} belongs to both "
                                     f"{owner[bit]} and {f.name}")
                owner[bit] = f.name
        uncovered = [bit for bit, name in enumerate(owner) if name is None]
        if uncovered:
            raise TableError(f"{spec.mnemonic}: bits {uncovered} are not covered by any field")


check_table(INSTRUCTIONS, RESERVED_OPCODES)


def isa_hash() -> str:
    """SHA-256 of the table's content: changes whenever any encoding or meaning changes."""
    parts = [f"v{ISA_VERSION}"]
    for spec in INSTRUCTIONS:
        parts.append(f"{spec.mnemonic}:{spec.opcode}:{spec.unit.name}:{spec.semantics}")
        for f in spec.all_fields:
            kind = (f"{f.kind.__name__}{[(m.name, int(m)) for m in f.kind]}"
                    if f.is_enum else f.kind)
            parts.append(f"{f.name}:{f.lsb}:{f.width}:{kind}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
