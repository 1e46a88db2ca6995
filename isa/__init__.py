"""gemmstone.isa: the instruction set as one table, and everything generated from it."""

from gemmstone.isa.assembly import assemble, disassemble, format_instruction
from gemmstone.isa.encoding import Instruction, decode, encode, make
from gemmstone.isa.errors import *  # noqa: F403 (the error types are part of the ISA API)
from gemmstone.isa.errors import __all__ as _error_names
from gemmstone.isa.program import Buffer, Program, Segment
from gemmstone.isa.table import (
    BY_MNEMONIC,
    BY_OPCODE,
    INSTRUCTIONS,
    WORD_BYTES,
    AccLoadType,
    AluFunc,
    StoreMode,
    Unit,
    isa_hash,
)

__all__ = [
    "assemble", "disassemble", "format_instruction", "Instruction", "decode", "encode", "make",
    "Buffer", "Program", "Segment", "BY_MNEMONIC", "BY_OPCODE", "INSTRUCTIONS", "WORD_BYTES",
    "AccLoadType", "AluFunc", "StoreMode", "Unit", "isa_hash", *_error_names,
]
