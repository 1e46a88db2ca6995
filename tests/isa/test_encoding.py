"""Encoder and decoder: round trips, hand-checked words, and every error with its message."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from isa_strategies import field_values, instruction_values

from gemmstone.isa.encoding import (
    Instruction,
    bytes_to_words,
    decode,
    encode,
    make,
    words_to_bytes,
)
from gemmstone.isa.errors import EncodingError, IllegalInstructionError
from gemmstone.isa.table import BY_MNEMONIC, INSTRUCTIONS, AluFunc, StoreMode

ALU_FUNCS = "add (0), sub (1), max (2), min (3), shr (4), shl (5), mov (6), mulshr (7)"


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize("spec", INSTRUCTIONS, ids=lambda s: s.mnemonic)
@given(data=st.data())
def test_encode_decode_round_trip(spec, data) -> None:
    values = data.draw(field_values(spec))
    instr = make(spec.mnemonic, **values)
    word = encode(instr)
    assert 0 <= word < 1 << 128
    assert word & 0xF == spec.opcode
    decoded = decode(word)
    assert decoded.spec is spec
    assert dict(decoded.values) == values
    assert encode(decoded) == word


@given(instruction_values())
def test_every_field_lands_in_its_own_bits(case) -> None:
    """Reading each field's bits back out of the word gives its value (two's complement
    for signed fields), and the reserved bits stay zero."""
    spec, values = case
    word = encode(make(spec.mnemonic, **values))
    covered = 0
    for f in spec.all_fields:
        bits = (word >> f.lsb) % (1 << f.width)
        covered |= ((1 << f.width) - 1) << f.lsb
        if f.kind == "reserved":
            assert bits == 0
        elif f.name == "opcode":
            assert bits == spec.opcode
        else:
            assert bits == int(values[f.name]) % (1 << f.width)
    assert covered == (1 << 128) - 1


@pytest.mark.parametrize(("instr", "word"), [
    (make("halt"), 0xA),
    (make("fence"), 0x9),
    # opcode 1, push_next (bit 7), dram 0x1000 at bit 8, stride 64 at 40, spad 3 at 64,
    # n 16 at 80, len 8 at 92, pad_lo 1 at 100, pad_hi 2 at 108.
    (make("load", dram=0x1000, stride=64, spad=3, n=16, len=8, pad_lo=1, pad_hi=2,
          push_next=1), 0x2010801000030000400000100081),
    # opcode 5; zp -1, lo -128, hi 127 as 8-bit two's complement bytes.
    (make("config", zp=-1, lo=-128, hi=127), 0x7F80FF05),
    # opcode 8, pop_prev; func 7, dst 1, src 2, n 3, use_imm, shift 5, imm -2 at bit 64.
    (make("alu", func="mulshr", dst=1, src=2, n=3, use_imm=1, shift=5, imm=-2, pop_prev=1),
     0xFFFFFFFE0B00300020001718),
])
def test_hand_checked_words(instr: Instruction, word: int) -> None:
    assert encode(instr) == word
    assert decode(word) == instr


def test_instruction_fields_read_as_attributes_and_items() -> None:
    instr = make("store", dram=16, n=2, len=4, mode="int32")
    assert instr.mnemonic == "store"
    assert (instr.dram, instr["n"], instr.mode) == (16, 2, StoreMode.INT32)
    assert instr.stride == 0
    with pytest.raises(AttributeError):
        _ = instr.spad


@pytest.mark.parametrize("value", ["MULSHR", "mulshr", AluFunc.MULSHR, 7])
def test_enum_fields_take_member_name_or_value(value) -> None:
    assert make("alu", func=value).func is AluFunc.MULSHR


# -- make/encode errors --------------------------------------------------------------------

@pytest.mark.parametrize(("mnemonic", "values", "message"), [
    ("nop", {}, "unknown instruction 'nop'"),
    ("preload", {"n": 1, "x": 2},
     "preload: unknown field(s) n, x; fields are pop_prev, pop_next, push_prev, push_next, "
     "spad, k"),
    ("preload", {"reserved": 1},
     "preload: unknown field(s) reserved; fields are pop_prev, pop_next, push_prev, "
     "push_next, spad, k"),
    ("load", {"n": 4096}, "load.n = 4096 does not fit its 12-bit field (0..4095)"),
    ("load", {"dram": -1}, "load.dram = -1 does not fit its 32-bit field (0..4294967295)"),
    ("config", {"zp": 128}, "config.zp = 128 does not fit its 8-bit field (-128..127)"),
    ("config", {"lo": -129}, "config.lo = -129 does not fit its 8-bit field (-128..127)"),
    ("matmul", {"accumulate": 2}, "matmul.accumulate = 2 does not fit its 1-bit field (0..1)"),
    ("load", {"n": 1.5}, "load.n must be an integer, not 1.5"),
    ("load", {"n": "3"}, "load.n must be an integer, not '3'"),
    ("alu", {"func": "pow"},
     "alu.func: 'pow' is not one of " + ALU_FUNCS),
    ("alu", {"func": 8}, "alu.func: 8 is not one of " + ALU_FUNCS),
    ("store", {"mode": 2}, "store.mode: 2 is not one of int8 (0), int32 (1)"),
    ("load", {"pop_prev": 1}, "load: pop_prev set, but the load unit has no prev neighbour"),
    ("store", {"push_next": 1},
     "store: push_next set, but the store unit has no next neighbour"),
    ("halt", {"pop_next": 1}, "halt: pop_next set, but the dispatch unit has no next neighbour"),
])
def test_make_errors(mnemonic, values, message) -> None:
    with pytest.raises(EncodingError, match=_exactly(message)):
        make(mnemonic, **values)


@given(st.sampled_from([(spec, f) for spec in INSTRUCTIONS for f in spec.operands
                        if f.kind in ("uint", "int")]),
       st.integers(1, 1 << 40), st.booleans())
def test_values_outside_a_field_are_refused(case, beyond, above) -> None:
    spec, f = case
    value = f.max + beyond if above else f.min - beyond
    with pytest.raises(EncodingError, match=_exactly(
            f"{spec.mnemonic}.{f.name} = {value} does not fit its {f.width}-bit field "
            f"({f.min}..{f.max})")):
        make(spec.mnemonic, **{f.name: value})


# -- decode errors -------------------------------------------------------------------------

def _halt_word(extra: int) -> int:
    return encode(make("halt")) | extra


@pytest.mark.parametrize(("word", "message"), [
    (0, "illegal opcode 0 (illegal (zeroed memory))"),
    ((1 << 128) - 1, "illegal opcode 15 (illegal (erased memory))"),
    (0xB, "illegal opcode 11 (inter-core: reserved)"),
    (_halt_word(1 << 8), "halt: reserved bits set (0x100)"),
    (_halt_word(1 << 127 | 1 << 64), f"halt: reserved bits set ({1 << 127 | 1 << 64:#x})"),
    (encode(make("alu")) | 1 << 63, f"alu: reserved bits set ({1 << 63:#x})"),
    (encode(make("alu")) | 8 << 8, "alu.func: 8 is not one of " + ALU_FUNCS),
    (encode(make("store")) | 3 << 100, "store.mode: 3 is not one of int8 (0), int32 (1)"),
    (encode(make("load")) | 1 << 4, "load: pop_prev set, but the load unit has no prev neighbour"),
    (encode(make("loadq")) | 1 << 7,
     "loadq: push_next set, but the store unit has no next neighbour"),
    (_halt_word(1 << 6), "halt: push_prev set, but the dispatch unit has no prev neighbour"),
    (1 << 128, f"word {1 << 128:#x} is not a 128-bit value"),
    (-1, "word -0x1 is not a 128-bit value"),
])
def test_decode_errors(word: int, message: str) -> None:
    with pytest.raises(IllegalInstructionError, match=_exactly(message)) as caught:
        decode(word)
    assert caught.value.reason == message
    assert caught.value.index is None


def test_decode_error_names_the_instruction_index() -> None:
    with pytest.raises(IllegalInstructionError, match=_exactly(
            f"instruction 7 (.word {0:#034x}): illegal opcode 0 (illegal (zeroed memory))")
    ) as caught:
        decode(0, index=7)
    assert (caught.value.index, caught.value.text) == (7, f".word {0:#034x}")
    assert caught.value.code == 1


def test_every_reserved_bit_is_checked() -> None:
    for spec in INSTRUCTIONS:
        base = encode(make(spec.mnemonic))
        for f in spec.operands:
            if f.kind != "reserved":
                continue
            for bit in range(f.lsb, f.msb + 1):
                with pytest.raises(IllegalInstructionError, match="reserved bits set"):
                    decode(base | 1 << bit)


# -- words in memory -----------------------------------------------------------------------

def test_words_are_little_endian_in_memory() -> None:
    data = words_to_bytes([0xA, 1 << 127])
    assert data == b"\x0a" + bytes(15) + bytes(15) + b"\x80"
    assert bytes_to_words(data) == [0xA, 1 << 127]


@given(st.lists(st.integers(0, (1 << 128) - 1), max_size=8))
def test_bytes_round_trip(words) -> None:
    data = words_to_bytes(words)
    assert len(data) == 16 * len(words)
    assert bytes_to_words(data) == words


def test_bytes_must_be_whole_words() -> None:
    with pytest.raises(EncodingError,
                       match=_exactly("17 bytes is not a whole number of 16-byte words")):
        bytes_to_words(bytes(17))


def test_dispatch_instructions_have_no_operands() -> None:
    assert BY_MNEMONIC["halt"].operand_names == ("pop_prev", "pop_next", "push_prev",
                                                 "push_next")
