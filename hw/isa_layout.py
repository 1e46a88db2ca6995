"""Amaranth layouts of instruction words, generated from the ISA table.

The RTL never slices instruction bits by hand: a 128-bit word is viewed through the layout
of its instruction (``INSTRUCTION_LAYOUTS["load"]``) and fields are read by name.
"""

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from gemmstone.isa.table import HEADER_FIELDS, INSTRUCTIONS, WORD_BITS, FieldSpec

__all__ = ["field_shape", "instruction_layout", "HEADER_LAYOUT", "INSTRUCTION_LAYOUTS",
           "OPCODES"]


def field_shape(spec: FieldSpec) -> Shape:
    """The hardware shape of a field: signed for "int", unsigned otherwise (enum fields
    hold the enum's integer value)."""
    return signed(spec.width) if spec.signed else unsigned(spec.width)


def _layout(fields: tuple[FieldSpec, ...]) -> data.FlexibleLayout:
    return data.FlexibleLayout(WORD_BITS, {
        f.name: data.Field(field_shape(f), f.lsb) for f in fields if f.kind != "reserved"
    })


def instruction_layout(mnemonic: str) -> data.FlexibleLayout:
    """Every named field of one instruction at its bit offset in the 128-bit word."""
    spec = next(s for s in INSTRUCTIONS if s.mnemonic == mnemonic)
    return _layout(spec.all_fields)


HEADER_LAYOUT = _layout(HEADER_FIELDS)
INSTRUCTION_LAYOUTS = {spec.mnemonic: instruction_layout(spec.mnemonic)
                       for spec in INSTRUCTIONS}
OPCODES = {spec.mnemonic: spec.opcode for spec in INSTRUCTIONS}


def reserved_mask(mnemonic: str) -> int:
    """Bits of the word that must be zero for ``mnemonic`` (checked by the decoder)."""
    spec = next(s for s in INSTRUCTIONS if s.mnemonic == mnemonic)
    return sum(((1 << f.width) - 1) << f.lsb for f in spec.all_fields if f.kind == "reserved")
