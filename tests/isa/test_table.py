"""The instruction table: its checker rejects broken tables, the real table is consistent
with the config bounds, and the ISA hash follows the table's content."""

from __future__ import annotations

import dataclasses
import re

import pytest

from gemmstone.config import MAX_ACC_ROWS, MAX_ARRAY_DIM, MAX_DRAM_BYTES, MAX_SPAD_LINES
from gemmstone.isa import table
from gemmstone.isa.table import (
    BY_MNEMONIC,
    HEADER_FIELDS,
    INSTRUCTIONS,
    RESERVED_OPCODES,
    WORD_BITS,
    AluFunc,
    FieldSpec,
    InstructionSpec,
    StoreMode,
    TableError,
    Unit,
    check_table,
    isa_hash,
)


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def _spec(mnemonic: str, opcode: int, *operands: FieldSpec) -> InstructionSpec:
    return InstructionSpec(mnemonic, opcode, Unit.COMPUTE, operands, "x = y", "test")


def _rest(lsb: int) -> FieldSpec:
    return FieldSpec("reserved", lsb, WORD_BITS - lsb, "reserved", "must be zero")


def _replace(mnemonic: str, spec: InstructionSpec) -> tuple[InstructionSpec, ...]:
    return tuple(spec if s.mnemonic == mnemonic else s for s in INSTRUCTIONS)


def test_the_table_passes_its_check() -> None:
    check_table(INSTRUCTIONS, RESERVED_OPCODES)


@pytest.mark.parametrize("spec", INSTRUCTIONS, ids=lambda s: s.mnemonic)
def test_fields_tile_the_word(spec: InstructionSpec) -> None:
    """Independent of the checker: sorted by lsb, each field starts where the last ended."""
    ordered = sorted(spec.all_fields, key=lambda f: f.lsb)
    assert ordered[0].lsb == 0
    for before, after in zip(ordered, ordered[1:], strict=False):
        assert after.lsb == before.msb + 1, (before.name, after.name)
    assert ordered[-1].msb == WORD_BITS - 1


def test_every_instruction_starts_with_the_common_header() -> None:
    assert all(spec.all_fields[:len(HEADER_FIELDS)] == HEADER_FIELDS for spec in INSTRUCTIONS)
    assert [(f.name, f.lsb, f.width) for f in HEADER_FIELDS] == [
        ("opcode", 0, 4), ("pop_prev", 4, 1), ("pop_next", 5, 1), ("push_prev", 6, 1),
        ("push_next", 7, 1)]


def test_opcode_space_has_room_for_inter_core_transfers() -> None:
    assert [op for op, status in RESERVED_OPCODES.items() if status.startswith("inter-core")] \
        == [11, 12, 13, 14]
    assert {0, 15} <= set(RESERVED_OPCODES)


def _widths(*names: str) -> set[int]:
    return {f.width for spec in INSTRUCTIONS for f in spec.operands if f.name in names}


def test_operand_fields_hold_the_largest_config() -> None:
    """Every config AcceleratorConfig accepts is addressable by the fixed field widths."""
    assert min(_widths("spad")) >= (MAX_SPAD_LINES - 1).bit_length()
    assert min(_widths("acc", "dst", "src")) >= (MAX_ACC_ROWS - 1).bit_length()
    assert min(_widths("dram")) >= (MAX_DRAM_BYTES - 1).bit_length()
    assert min(_widths("len", "k")) >= MAX_ARRAY_DIM.bit_length()


# -- broken tables the checker must reject -------------------------------------------------

_GOOD = _spec("good", 1, FieldSpec("a", 8, 8), _rest(16))


@pytest.mark.parametrize(("instructions", "reserved", "message"), [
    ((_GOOD, dataclasses.replace(_GOOD, opcode=2)), {0: "", **dict.fromkeys(range(3, 16), "")},
     "duplicate mnemonic in the instruction table"),
    ((_GOOD, _spec("other", 1, _rest(8))), {0: "", **dict.fromkeys(range(2, 16), "")},
     "duplicate opcode in the instruction table"),
    ((_GOOD,), {0: "", 16: "", **dict.fromkeys(range(2, 16), "")},
     "opcode 16 does not fit the 4-bit field"),
    ((_GOOD,), {0: "", **dict.fromkeys(range(2, 15), "")},
     "opcodes and reserved opcodes must partition the opcode space"),
    ((_GOOD,), dict.fromkeys(range(16), ""),
     "opcodes and reserved opcodes must partition the opcode space"),
])
def test_opcode_checks(instructions, reserved, message) -> None:
    with pytest.raises(TableError, match=_exactly(message)):
        check_table(instructions, reserved)


@pytest.mark.parametrize(("operands", "message"), [
    ((FieldSpec("a", 8, 8), FieldSpec("b", 15, 8), _rest(23)),
     "matmul: bit 15 belongs to both a and b"),
    ((FieldSpec("a", 8, 8), _rest(17)),
     "matmul: bits [16] are not covered by any field"),
    ((FieldSpec("a", 8, 8),),
     f"matmul: bits {list(range(16, 128))} are not covered by any field"),
    ((FieldSpec("a", 8, 8), FieldSpec("b", 16, 120)),
     "matmul.b: bits [16, 135] do not fit in 128"),
    ((FieldSpec("a", 8, 0), _rest(8)), "matmul.a: width 0 is not positive"),
    ((FieldSpec("a", 8, 2, "flag"), _rest(10)), "matmul.a: a flag is one bit wide"),
    ((FieldSpec("f", 8, 2, AluFunc), _rest(10)),
     "matmul.f: enum AluFunc does not fit 2 bits"),
    ((FieldSpec("a", 8, 8), FieldSpec("a", 16, 8), _rest(24)),
     "matmul: a field name is used twice"),
    ((FieldSpec("pop_prev", 8, 1, "flag"), _rest(9)),
     "matmul: a field name is used twice"),
])
def test_field_checks(operands, message) -> None:
    broken = _replace("matmul", dataclasses.replace(BY_MNEMONIC["matmul"], operands=operands))
    with pytest.raises(TableError, match=_exactly(message)):
        check_table(broken, RESERVED_OPCODES)


def test_reserved_fields_may_repeat_their_name() -> None:
    """alu has two reserved ranges; reserved fields are exempt from the unique-name rule."""
    assert [f.name for f in BY_MNEMONIC["alu"].operands].count("reserved") == 2


def test_enum_exactly_filling_its_field_is_accepted() -> None:
    fits = _replace("store", dataclasses.replace(
        BY_MNEMONIC["store"], operands=(FieldSpec("mode", 8, 1, StoreMode), _rest(9))))
    check_table(fits, RESERVED_OPCODES)


# -- field properties ----------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "bounds"), [
    (FieldSpec("u", 0, 12), (0, 4095)),
    (FieldSpec("s", 0, 8, "int"), (-128, 127)),
    (FieldSpec("f", 0, 1, "flag"), (0, 1)),
])
def test_field_ranges(spec: FieldSpec, bounds: tuple[int, int]) -> None:
    low, high = bounds
    assert (spec.min, spec.max) == bounds
    assert spec.accepts(low) and spec.accepts(high)
    assert not spec.accepts(low - 1) and not spec.accepts(high + 1)


def test_enum_field_accepts_only_members() -> None:
    func = FieldSpec("func", 8, 4, AluFunc)
    assert all(func.accepts(int(member)) for member in AluFunc)
    assert not func.accepts(len(AluFunc))


# -- the ISA hash --------------------------------------------------------------------------

def test_isa_hash_is_a_sha256_hex_digest() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", isa_hash())
    assert isa_hash() == isa_hash()


@pytest.mark.parametrize("change", [
    {"semantics": "acc = 0"},
    {"opcode": 11},
    {"unit": Unit.STORE},
    {"operands": (FieldSpec("spad", 8, 16), FieldSpec("k", 24, 7), _rest(31))},
])
def test_isa_hash_follows_the_table(change, monkeypatch) -> None:
    before = isa_hash()
    changed = _replace("preload", dataclasses.replace(BY_MNEMONIC["preload"], **change))
    monkeypatch.setattr(table, "INSTRUCTIONS", changed)
    assert isa_hash() != before
