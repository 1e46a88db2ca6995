"""The Markdown ISA reference (docs/isa.md), generated from the instruction table.

``python -m gemmstone.isa.reference > docs/isa.md`` (or ``gemmstone isa-doc``) rewrites the
committed file; a test fails when the committed text differs from `render()`, so the
reference can never drift from the table.
"""

from __future__ import annotations

import enum
import inspect
import re

from gemmstone.isa.assembly import assemble, disassemble
from gemmstone.isa.errors import ERROR_TYPES, ErrorCode
from gemmstone.isa.table import (
    HEADER_FIELDS,
    INSTRUCTIONS,
    ISA_VERSION,
    RESERVED_OPCODES,
    WORD_BITS,
    WORD_BYTES,
    FieldSpec,
    InstructionSpec,
    Unit,
    isa_hash,
)

__all__ = ["EXAMPLE", "render", "member_comments"]

_MEMBER_LINE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*[^#]*?#\s*(.*?)\s*$")

EXAMPLE = """\
# y[16x8] = x[16x8] @ w[8x8] on an 8x8 array, requantized to int8
load    dram=0x0 stride=8 spad=0 n=8 len=8 push_next     # weights w -> spad 0..7
load    dram=0x40 stride=8 spad=8 n=16 len=8 push_next   # inputs x -> spad 8..23
preload spad=0 k=8 pop_prev
matmul  spad=8 acc=0 n=16 pop_prev push_next
loadq   dram=0xc0 len=8                                  # bias, mult, shift
config  zp=0 lo=-128 hi=127
store   dram=0x120 stride=8 acc=0 n=16 len=8 mode=int8 pop_prev
halt
"""


def member_comments(kind: type[enum.IntEnum]) -> dict[str, str]:
    """The end-of-line comment of each member in the enum's source: the table documents
    each value's meaning there, beside the value."""
    comments = {}
    for line in inspect.getsource(kind).splitlines():
        match = _MEMBER_LINE.match(line)
        if match:
            comments[match.group(1)] = match.group(2)
    return comments


def _code(text: str) -> str:
    return f"`{text}`"


def _cell(text: str) -> str:
    """Table cells may hold ``|``; Markdown needs it escaped."""
    return text.replace("|", "\\|")


def _kind(f: FieldSpec) -> str:
    if f.name == "opcode":
        return "opcode"
    if f.is_enum:
        return f.kind.__name__
    if f.kind in ("uint", "int"):
        return f"{f.kind} ({f.min}..{f.max})"
    return str(f.kind)


def _field_table(spec: InstructionSpec) -> list[str]:
    lines = ["| field | lsb | msb | width | kind | meaning |",
             "|---|---:|---:|---:|---|---|"]
    for f in sorted(spec.all_fields, key=lambda f: f.lsb):
        doc = f.doc
        if f.name == "opcode":
            doc = f"{spec.opcode}"
        elif f in HEADER_FIELDS and not spec.unit.allows(f.name):
            doc = (f"must be zero: the {spec.unit.name.lower()} unit has no "
                   f"{f.name.split('_')[1]} neighbour")
        lines.append(f"| {_code(f.name)} | {f.lsb} | {f.msb} | {f.width} | {_kind(f)} | "
                     f"{_cell(doc)} |")
    return lines


def _syntax(spec: InstructionSpec) -> str:
    """The assembly form: every operand with its type, optional flags in brackets."""
    parts = [spec.mnemonic]
    flags = []
    for f in spec.operands:
        if f.kind == "reserved":
            continue
        if f.kind == "flag":
            flags.append(f"[{f.name}]")
        elif f.is_enum:
            parts.append(f"{f.name}={'|'.join(m.name.lower() for m in f.kind)}")
        else:
            parts.append(f"{f.name}=<{f.kind}{f.width}>")
    tokens = [f"[{f.name}]" for f in HEADER_FIELDS[1:] if spec.unit.allows(f.name)]
    return " ".join(parts + flags + tokens)


def _enum_tables(spec: InstructionSpec) -> list[str]:
    lines = []
    for f in spec.operands:
        if not f.is_enum:
            continue
        comments = member_comments(f.kind)
        lines += ["", f"{_code(f.name)} values ({f.kind.__name__}): {f.kind.__doc__}", ""]
        if comments:
            lines += ["| value | name | meaning |", "|---:|---|---|"]
            lines += [f"| {int(m)} | {_code(m.name.lower())} | "
                      f"{_cell(comments.get(m.name, ''))} |" for m in f.kind]
        else:
            lines += ["| value | name |", "|---:|---|"]
            lines += [f"| {int(m)} | {_code(m.name.lower())} |" for m in f.kind]
    return lines


def _tokens(unit: Unit) -> str:
    allowed = [f.name for f in HEADER_FIELDS[1:] if unit.allows(f.name)]
    return ", ".join(_code(name) for name in allowed) if allowed else "none"


def _instruction(spec: InstructionSpec) -> list[str]:
    return [
        f"### {spec.mnemonic}", "",
        f"{spec.summary[0].upper()}{spec.summary[1:]}. Opcode {spec.opcode}, "
        f"{spec.unit.name.lower()} unit; token flags allowed: {_tokens(spec.unit)}.", "",
        "Semantics:", "", "```", spec.semantics, "```", "",
        "Assembly:", "", "```", _syntax(spec), "```", "",
        *_field_table(spec),
        *_enum_tables(spec),
        "",
    ]


def _overview() -> list[str]:
    units = ", ".join(f"{u.name.lower()} ({u.value})" for u in Unit)
    header = ["| field | lsb | msb | width | meaning |", "|---|---:|---:|---:|---|"]
    header += [f"| {_code(f.name)} | {f.lsb} | {f.msb} | {f.width} | {f.doc} |"
               for f in HEADER_FIELDS]
    summary = ["| opcode | mnemonic | unit | summary |", "|---:|---|---|---|"]
    summary += [f"| {s.opcode} | [{_code(s.mnemonic)}](#{s.mnemonic}) | {s.unit.name.lower()} "
                f"| {s.summary} |" for s in INSTRUCTIONS]
    return [
        "## Overview", "",
        f"- Instruction words are {WORD_BITS} bits ({WORD_BYTES} bytes), stored little-endian: "
        "bit 0 is the least significant bit of the first byte.",
        "- Every bit belongs to exactly one field. Bits marked `reserved` must be zero; a "
        "word with a reserved bit set, an unknown opcode or an enum value with no meaning "
        "is an illegal instruction.",
        "- `uint` fields are unsigned, `int` fields two's complement, `flag` fields one bit.",
        "- DRAM addresses are byte offsets from the DMA window base; every access must lie "
        "in `[0, window_size)`.",
        "- `n = 0` is allowed: the instruction reads, writes and computes no row (LOAD "
        "still writes its `pad_lo + pad_hi` zero lines) and pops and pushes its tokens as "
        "usual. Its other operands are still checked (`len` must be in range); an empty "
        "row range is never out of bounds.",
        "",
        "### Common header", "",
        "Bits [0, 8) are the same in every instruction:", "",
        *header, "",
        "### Units and dependency tokens", "",
        f"Units: {units}. Each of load, compute and store executes its own instructions in "
        "order; `dispatch` instructions (fence, halt) run in the fetch stage. Tokens order "
        "work *between* units: \"prev\" and \"next\" name the neighbouring unit in the "
        "pipeline load -> compute -> store. An instruction first pops the tokens it names "
        "(waiting until they are there), executes, then pushes. A token queue holds at most "
        "`config.token_depth` tokens; a push into a full queue stalls. A token flag naming "
        "a neighbour the unit does not have makes the instruction illegal; tokens left in a "
        "queue at `halt` are an error.", "",
        "### Instructions", "",
        *summary, "",
        "### Notation", "",
        "The semantics lines below use:", "",
        "- `x[a :+ n]`: the `n` bytes (or elements) starting at `a`; `x[:n]`: the first `n`.",
        "- `sat32(x)`: `x` saturated to the int32 range.",
        "- `rshr(p, s)`: shift right rounding half up: `p` if `s == 0`, else "
        "`(p >> s) + ((p >> (s - 1)) & 1)`, on the 64-bit product `p`.",
        "- `clamp(x, lo, hi)`: `min(max(x, lo), hi)`, stored as int8.",
        "- `(+)=`: `=`, or `+=` when the instruction's `accumulate` flag is set.", "",
        "### Assembly syntax", "",
        "One instruction per line: the mnemonic, then `name=value` fields (decimal, `0x` "
        "hex, `0b` binary, negative where signed; enum fields take the member name). A flag "
        "may be written bare to set it. Fields not given are zero. `.word 0x...` emits a raw "
        "word; `#` starts a comment. Example:", "",
        "```", EXAMPLE.rstrip("\n"), "```", "",
        "The disassembler prints every operand (this is the example above, assembled and "
        "disassembled):", "",
        "```", disassemble(assemble(EXAMPLE)).rstrip("\n"), "```", "",
    ]


def _reserved() -> list[str]:
    lines = ["## Reserved opcodes", "", "| opcode | status |", "|---:|---|"]
    lines += [f"| {opcode} | {status} |" for opcode, status in sorted(RESERVED_OPCODES.items())]
    return lines + [""]


def _errors() -> list[str]:
    comments = member_comments(ErrorCode)
    lines = ["## Error codes", "",
             "Values of the accelerator's error-code register; every backend reports a fault "
             "with the same code (and the Python exception named beside it).", "",
             "| code | name | exception | meaning |", "|---:|---|---|---|"]
    for code in ErrorCode:
        exception = ERROR_TYPES[code].__name__ if code in ERROR_TYPES else ""
        lines.append(f"| {int(code)} | {_code(code.name)} | {exception} | "
                     f"{comments.get(code.name, '')} |")
    return lines + [""]


def render() -> str:
    """The whole Markdown reference."""
    lines = [
        "# gemmstone ISA reference", "",
        "Generated from `isa/table.py` by `gemmstone isa-doc` (or "
        "`python -m gemmstone.isa.reference`); do not edit by hand.", "",
        f"ISA version {ISA_VERSION}, ISA hash `{isa_hash()}`.", "",
        *_overview(),
        "## Instructions", "",
    ]
    for spec in INSTRUCTIONS:
        lines += _instruction(spec)
    lines += _reserved() + _errors()
    lines += ["## ISA hash", "",
              "SHA-256 over every mnemonic, opcode, unit, semantics string and field of the "
              "table; a program container records it and is refused by another ISA:", "",
              f"`{isa_hash()}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
