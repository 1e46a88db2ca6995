"""Encode and decode instruction words, generated from the table in `table.py`.

This module (with `table.py`) is the only place in gemmstone that shifts or masks
instruction bits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gemmstone.isa.errors import EncodingError, IllegalInstructionError
from gemmstone.isa.table import (
    BY_MNEMONIC,
    BY_OPCODE,
    OPCODE_FIELD,
    RESERVED_OPCODES,
    WORD_BITS,
    WORD_BYTES,
    FieldSpec,
    InstructionSpec,
)

__all__ = ["Instruction", "make", "encode", "decode", "words_to_bytes", "bytes_to_words"]

_WORD_MASK = (1 << WORD_BITS) - 1


@dataclass(frozen=True)
class Instruction:
    """A decoded instruction: its table entry and the value of every named field.

    Fields read as attributes (``instr.n``) or items (``instr["n"]``). Enum fields hold
    the enum member.
    """

    spec: InstructionSpec
    values: Mapping[str, int]

    @property
    def mnemonic(self) -> str:
        return self.spec.mnemonic

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __str__(self) -> str:
        from gemmstone.isa.assembly import format_instruction

        return format_instruction(self)


# Per mnemonic: the assembler-visible fields as (field, low, high), precomputed because
# compilers build millions of instructions through `make`.
_MAKE_FIELDS = {
    spec.mnemonic: [(f, f.name, f.min, f.max, f.is_enum) for f in spec.all_fields
                    if f.name in spec.operand_names]
    for spec in BY_MNEMONIC.values()
}


def make(mnemonic: str, **values: int | str) -> Instruction:
    """Build an instruction; fields not given are zero. Enum fields take a member, its
    integer value or its name (case-insensitive).

    Raises
    ------
    EncodingError
        Unknown mnemonic or field, or a value that does not fit its field.
    """
    try:
        spec = BY_MNEMONIC[mnemonic]
    except KeyError:
        raise EncodingError(f"unknown instruction {mnemonic!r}") from None
    fields = _MAKE_FIELDS[mnemonic]
    checked: dict[str, int] = {}
    given = 0
    for f, name, low, high, is_enum in fields:
        if name in values:
            value = values[name]
            given += 1
        else:
            value = 0
        # The common case, a plain in-range integer of a non-enum field, is checked inline.
        if type(value) is int and low <= value <= high and not is_enum:
            checked[name] = value
        else:
            checked[name] = _check_value(spec, f, value)
    if given != len(values):
        known = spec.operand_names
        unknown = [name for name in values if name not in known]
        raise EncodingError(
            f"{mnemonic}: unknown field(s) {', '.join(unknown)}; fields are {', '.join(known)}"
        )
    bad_token = _token_not_allowed(spec, checked)
    if bad_token:
        raise EncodingError(bad_token)
    return Instruction(spec, checked)


def _token_not_allowed(spec: InstructionSpec, values: Mapping[str, int]) -> str | None:
    unit = spec.unit
    for flag in ("pop_prev", "push_prev", "pop_next", "push_next"):
        if values[flag] and not unit.allows(flag):
            return (f"{spec.mnemonic}: {flag} set, but the {unit.name.lower()} unit has no "
                    f"{flag.split('_')[1]} neighbour")
    return None


def _check_value(spec: InstructionSpec, f: FieldSpec, value: int | str):
    if f.is_enum:
        if isinstance(value, str) and value.upper() in f.kind.__members__:
            return f.kind[value.upper()]
        if isinstance(value, int) and not isinstance(value, bool) and f.accepts(value):
            return f.kind(value)
        raise EncodingError(_not_a_member(spec, f.name, value, f.kind))
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise EncodingError(f"{spec.mnemonic}.{f.name} must be an integer, not {value!r}")
    if not f.accepts(value):
        raise EncodingError(
            f"{spec.mnemonic}.{f.name} = {value} does not fit its {f.width}-bit field "
            f"({f.min}..{f.max})"
        )
    return value


def _not_a_member(spec: InstructionSpec, name: str, value, kind) -> str:
    """The one message for an enum field value that names no member (make and decode)."""
    choices = ", ".join(f"{member.name.lower()} ({int(member)})" for member in kind)
    return f"{spec.mnemonic}.{name}: {value!r} is not one of {choices}"


# Per mnemonic: (opcode, [(name, lsb, mask)]) of the fields `encode` packs.
_ENCODE_FIELDS = {
    spec.mnemonic: (spec.opcode, [(f.name, f.lsb, (1 << f.width) - 1) for f in spec.all_fields
                                  if f.name != "opcode" and f.kind != "reserved"])
    for spec in BY_MNEMONIC.values()
}


def encode(instr: Instruction) -> int:
    """The 128-bit instruction word of ``instr``."""
    word, fields = _ENCODE_FIELDS[instr.spec.mnemonic]
    values = instr.values
    for name, lsb, mask in fields:
        word |= (int(values[name]) & mask) << lsb
    return word


# Per opcode: (spec, [(name, lsb, mask, sign_bit or 0, enum or None)], reserved mask),
# precomputed so decoding a whole model's program stays cheap.
def _decoder_entry(spec: InstructionSpec):
    extract = []
    reserved = 0
    for f in spec.all_fields:
        mask = (1 << f.width) - 1
        if f.kind == "reserved":
            reserved |= mask << f.lsb
        elif f.name != "opcode":
            sign = 1 << (f.width - 1) if f.signed else 0
            extract.append((f.name, f.lsb, mask, sign, f.kind if f.is_enum else None))
    return spec, extract, reserved


_DECODERS = {opcode: _decoder_entry(spec) for opcode, spec in BY_OPCODE.items()}
_OPCODE_MASK = (1 << OPCODE_FIELD.width) - 1


def decode(word: int, *, index: int | None = None) -> Instruction:
    """Decode a 128-bit word.

    Raises
    ------
    IllegalInstructionError
        Unknown or reserved opcode, a reserved bit set, an enum value with no meaning, or a
        token flag naming a neighbour the instruction's unit does not have.
    """
    if not 0 <= word <= _WORD_MASK:
        raise IllegalInstructionError(f"word {word:#x} is not a {WORD_BITS}-bit value",
                                      index=index, text=f"{word:#034x}")
    opcode = word & _OPCODE_MASK
    entry = _DECODERS.get(opcode)
    if entry is None:
        raise IllegalInstructionError(
            f"illegal opcode {opcode} ({RESERVED_OPCODES[opcode]})",
            index=index, text=f".word {word:#034x}",
        )
    spec, extract, reserved = entry
    if word & reserved:
        raise IllegalInstructionError(
            f"{spec.mnemonic}: reserved bits set ({word & reserved:#x})",
            index=index, text=f".word {word:#034x}",
        )
    values: dict[str, int] = {}
    for name, lsb, mask, sign, enum_type in extract:
        value = (word >> lsb) & mask
        if sign and value & sign:
            value -= sign << 1
        if enum_type is not None:
            try:
                value = enum_type(value)
            except ValueError:
                raise IllegalInstructionError(
                    _not_a_member(spec, name, value, enum_type),
                    index=index, text=f".word {word:#034x}",
                ) from None
        values[name] = value
    bad_token = _token_not_allowed(spec, values)
    if bad_token:
        raise IllegalInstructionError(bad_token, index=index, text=f".word {word:#034x}")
    return Instruction(spec, values)


def words_to_bytes(words: Iterable[int]) -> bytes:
    """Instruction words as they lie in memory (little-endian, 16 bytes each)."""
    return b"".join(int(w).to_bytes(WORD_BYTES, "little") for w in words)


def bytes_to_words(data: bytes) -> list[int]:
    if len(data) % WORD_BYTES:
        raise EncodingError(f"{len(data)} bytes is not a whole number of {WORD_BYTES}-byte words")
    return [int.from_bytes(data[i:i + WORD_BYTES], "little")
            for i in range(0, len(data), WORD_BYTES)]
