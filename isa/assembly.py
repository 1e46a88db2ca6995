"""Text form of programs: an assembler and a disassembler generated from the table.

Syntax, one instruction per line::

    # comments run to the end of the line
    load    dram=0x1000 stride=64 spad=0 n=16 len=8 push_next
    matmul  spad=0 acc=0 n=16 accumulate pop_prev
    store   dram=0x2000 stride=8 acc=0 n=16 len=8 mode=int8
    .word   0x0000000000000000000000000000000a   # a raw 128-bit word

Fields are ``name=value`` (decimal, 0x hex, 0b binary, negative where signed; enum fields
take the member name). A flag (token or 1-bit option) may be written bare to set it.
Fields not given are zero. The disassembler prints every operand, so
``assemble(disassemble(words)) == words`` for every decodable program.
"""

from __future__ import annotations

from collections.abc import Iterable

from gemmstone.isa.encoding import Instruction, decode, encode, make
from gemmstone.isa.errors import AssemblyError, EncodingError, IllegalInstructionError
from gemmstone.isa.table import BY_MNEMONIC, WORD_BITS

__all__ = ["assemble", "disassemble", "format_instruction", "parse_line"]

_HEX_FIELDS = {"dram"}


def format_instruction(instr: Instruction) -> str:
    """Canonical text of one instruction."""
    parts = [f"{instr.mnemonic:<8}"]
    flags = []
    for f in instr.spec.all_fields:
        if f.name == "opcode" or f.kind == "reserved":
            continue
        value = instr.values[f.name]
        if f.kind == "flag":
            if value:
                flags.append(f.name)
        elif f.is_enum:
            parts.append(f"{f.name}={value.name.lower()}")
        elif f.name in _HEX_FIELDS:
            parts.append(f"{f.name}={value:#x}")
        else:
            parts.append(f"{f.name}={value}")
    # Token flags come first in the table; print them last, where a reader looks for them.
    tokens = [name for name in flags if name.startswith(("pop_", "push_"))]
    options = [name for name in flags if name not in tokens]
    return " ".join(parts + options + tokens).rstrip()


def _parse_int(text: str) -> int:
    return int(text, 0)


def parse_line(line: str, *, lineno: int = 1) -> int | None:
    """The word for one line of assembly, or None for a blank or comment line."""
    code = line.split("#", 1)[0].strip()
    if not code:
        return None
    mnemonic, *tokens = code.split()
    try:
        if mnemonic == ".word":
            if len(tokens) != 1:
                raise AssemblyError(f"line {lineno}: .word takes exactly one value")
            try:
                word = _parse_int(tokens[0])
            except ValueError:
                raise AssemblyError(f"line {lineno}: .word {tokens[0]!r} is not an integer "
                                    f"(decimal, 0x hex or 0b binary)") from None
            if not 0 <= word < 1 << WORD_BITS:
                raise AssemblyError(f"line {lineno}: .word {tokens[0]} is not a "
                                    f"{WORD_BITS}-bit value")
            return word
        if mnemonic not in BY_MNEMONIC:
            raise AssemblyError(f"line {lineno}: unknown instruction {mnemonic!r}")
        values: dict[str, int | str] = {}
        for token in tokens:
            name, sep, text = token.partition("=")
            if name in values:
                raise AssemblyError(f"line {lineno}: field {name!r} given twice")
            if not sep:
                spec = BY_MNEMONIC[mnemonic]
                kinds = {f.name: f.kind for f in spec.all_fields}
                if kinds.get(name, "flag") != "flag":  # unknown names: make() says so
                    raise AssemblyError(f"line {lineno}: {name} needs a value ({name}=...); "
                                        f"only flags may be written bare")
                values[name] = 1
                continue
            try:
                values[name] = _parse_int(text)
            except ValueError:
                values[name] = text  # an enum member name; make() checks it
        return encode(make(mnemonic, **values))
    except (EncodingError, ValueError) as error:
        if isinstance(error, AssemblyError):
            raise
        raise AssemblyError(f"line {lineno}: {error}") from None


def assemble(text: str) -> list[int]:
    """Assemble program text into instruction words.

    Raises
    ------
    AssemblyError
        The message names the line and what is wrong with it.
    """
    words = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        word = parse_line(line, lineno=lineno)
        if word is not None:
            words.append(word)
    return words


def disassemble(words: Iterable[int]) -> str:
    """Program text for ``words``; an undecodable word becomes a commented ``.word``."""
    lines = []
    for index, word in enumerate(words):
        try:
            lines.append(format_instruction(decode(word, index=index)))
        except IllegalInstructionError as error:
            lines.append(f".word {word:#034x}  # illegal: {error.reason}")
    return "\n".join(lines) + ("\n" if lines else "")
