"""Assembler and disassembler: round trips both ways, the accepted syntax, and errors that
name the line."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from isa_strategies import instruction_values

from gemmstone.isa.assembly import assemble, disassemble, format_instruction, parse_line
from gemmstone.isa.encoding import decode, encode, make
from gemmstone.isa.errors import AssemblyError


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


_programs = st.lists(instruction_values(), max_size=12).map(
    lambda cases: [encode(make(spec.mnemonic, **values)) for spec, values in cases])


@given(_programs)
def test_words_to_text_to_words(words) -> None:
    assert assemble(disassemble(words)) == words


@given(_programs)
def test_text_to_words_to_text(words) -> None:
    text = disassemble(words)
    assert disassemble(assemble(text)) == text


@given(st.lists(st.integers(0, (1 << 128) - 1), max_size=6))
def test_any_word_survives_disassembly(words) -> None:
    """Undecodable words become `.word` lines, so even garbage round-trips."""
    assert assemble(disassemble(words)) == words


@given(instruction_values())
def test_fields_in_any_order_and_base(case) -> None:
    """A line with fields shuffled, in hex, and flags written bare assembles to the same
    word as the canonical line."""
    spec, values = case
    word = encode(make(spec.mnemonic, **values))
    parts = []
    for name, value in reversed(values.items()):
        if hasattr(value, "name"):
            parts.append(f"{name}={value.name.upper()}")
        elif name in ("pop_prev", "pop_next", "push_prev", "push_next") and value:
            parts.append(name)
        elif value < 0:
            parts.append(f"{name}=-{-value:#x}")
        else:
            parts.append(f"{name}={value:#x}")
    assert parse_line(f"  {spec.mnemonic}\t{' '.join(parts)}   # comment") == word


def test_canonical_text() -> None:
    words = assemble("""
        # a comment line, then a blank one

        load dram=4096 n=2 len=8 push_next
        matmul  acc=0b11 n=2 accumulate pop_prev   # trailing comment
        config  zp=-3 lo=-0x80 hi=127
        alu func=MAX dst=1 src=2 n=1 use_imm imm=-5
        .word 0x0
        halt
    """)
    assert disassemble(words) == (
        "load     dram=0x1000 stride=0 spad=0 n=2 len=8 pad_lo=0 pad_hi=0 push_next\n"
        "matmul   spad=0 acc=3 n=2 accumulate pop_prev\n"
        "config   zp=-3 lo=-128 hi=127\n"
        "alu      func=max dst=1 src=2 n=1 shift=0 imm=-5 use_imm\n"
        f".word {0:#034x}  # illegal: illegal opcode 0 (illegal (zeroed memory))\n"
        "halt\n"
    )


def test_format_instruction_matches_str() -> None:
    instr = make("store", dram=0x20, n=1, len=8, mode="int32", pop_prev=1)
    assert format_instruction(instr) == str(instr) == (
        "store    dram=0x20 stride=0 acc=0 n=1 len=8 mode=int32 pop_prev")
    assert decode(encode(instr)) == instr


def test_empty_program() -> None:
    assert assemble("# nothing\n\n") == []
    assert disassemble([]) == ""


def test_a_flag_written_as_value() -> None:
    assert assemble("matmul n=1 accumulate=1") == assemble("matmul n=1 accumulate")
    assert assemble("matmul n=1 accumulate=0") == assemble("matmul n=1")


@pytest.mark.parametrize(("text", "message"), [
    ("halt\nnop x=1", "line 2: unknown instruction 'nop'"),
    ("load\n\nload n=1 n=2", "line 3: field 'n' given twice"),
    ("load bogus=1", "line 1: load: unknown field(s) bogus; fields are pop_prev, pop_next, "
                     "push_prev, push_next, dram, stride, spad, n, len, pad_lo, pad_hi"),
    ("# x\nload n=4096", "line 2: load.n = 4096 does not fit its 12-bit field (0..4095)"),
    ("config zp=200", "line 1: config.zp = 200 does not fit its 8-bit field (-128..127)"),
    ("load n=abc", "line 1: load.n must be an integer, not 'abc'"),
    ("load n", "line 1: n needs a value (n=...); only flags may be written bare"),
    (".word xyz", "line 1: .word 'xyz' is not an integer (decimal, 0x hex or 0b binary)"),
    ("store mode=int16",
     "line 1: store.mode: 'int16' is not one of int8 (0), int32 (1)"),
    ("load pop_prev", "line 1: load: pop_prev set, but the load unit has no prev neighbour"),
    ("halt\nhalt\n.word 1 2", "line 3: .word takes exactly one value"),
    (".word", "line 1: .word takes exactly one value"),
    (f".word {1 << 128:#x}", f"line 1: .word {1 << 128:#x} is not a 128-bit value"),
    (".word -1", "line 1: .word -1 is not a 128-bit value"),
])
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(AssemblyError, match=_exactly(message)):
        assemble(text)


def test_bad_word_literal_names_the_line() -> None:
    with pytest.raises(AssemblyError, match=r"^line 2: "):
        assemble("halt\n.word 0xZZ")
