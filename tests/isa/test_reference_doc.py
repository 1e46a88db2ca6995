"""docs/isa.md: generated from the table, committed, and never stale."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gemmstone.config import preset
from gemmstone.isa.assembly import assemble
from gemmstone.isa.errors import ErrorCode
from gemmstone.isa.reference import EXAMPLE, member_comments, render
from gemmstone.isa.table import INSTRUCTIONS, RESERVED_OPCODES, AluFunc, isa_hash

DOC = Path(__file__).resolve().parents[2] / "docs" / "isa.md"


def test_committed_reference_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/isa.md is stale: regenerate it with `gemmstone isa-doc -o docs/isa.md`")


def test_module_entry_point_prints_the_reference() -> None:
    done = subprocess.run([sys.executable, "-m", "gemmstone.isa.reference"],
                          capture_output=True, text=True, check=True)
    assert done.stdout == render()


def _section(text: str, mnemonic: str) -> str:
    start = text.index(f"\n### {mnemonic}\n")
    end = text.find("\n### ", start + 1)
    return text[start:end if end >= 0 else None]


@pytest.mark.parametrize("spec", INSTRUCTIONS, ids=lambda s: s.mnemonic)
def test_each_instruction_has_a_complete_section(spec) -> None:
    section = _section(render(), spec.mnemonic)
    assert f"Opcode {spec.opcode}, {spec.unit.name.lower()} unit" in section
    assert spec.semantics in section
    for f in spec.all_fields:
        row = f"| `{f.name}` | {f.lsb} | {f.msb} | {f.width} |"
        assert row in section, row
        if f.is_enum:
            for member in f.kind:
                assert f"| {int(member)} | `{member.name.lower()}` |" in section


def test_reserved_opcodes_error_codes_and_hash() -> None:
    text = render()
    for opcode, status in RESERVED_OPCODES.items():
        assert f"| {opcode} | {status} |" in text
    for code in ErrorCode:
        assert re.search(rf"\| {int(code)} \| `{code.name}` \|", text)
    assert text.count(isa_hash()) == 2


def test_enum_meanings_come_from_the_table_comments() -> None:
    assert member_comments(AluFunc)["MULSHR"] == (
        "sat32(round-half-up((d * b) >> shift)), 64-bit product")
    assert set(member_comments(ErrorCode)) == {c.name for c in ErrorCode} - {"NONE"}


def test_documented_example_computes_what_it_says() -> None:
    """The reference's assembly example is a real program: y = requant(x @ w) on small."""
    from gemmstone.sim.functional import FunctionalModel

    model = FunctionalModel(preset("small"))
    rng = np.random.default_rng(7)
    w = rng.integers(-128, 128, (8, 8), dtype=np.int8)
    x = rng.integers(-128, 128, (16, 8), dtype=np.int8)
    # bias, mult, shift: y = round((x @ w + bias) * 3 / 2**4), then clamped to int8.
    params = np.concatenate([np.arange(8) * 10 - 40, np.full(8, 3), np.full(8, 4)])
    model.dram[0x0:0x40] = w.view(np.uint8).ravel()
    model.dram[0x40:0xC0] = x.view(np.uint8).ravel()
    model.dram[0xC0:0x120] = params.astype("<i4").view(np.uint8)
    model.run(assemble(EXAMPLE), window_size=0x1A0)
    y = model.dram[0x120:0x1A0].view(np.int8).reshape(16, 8)
    acc = x.astype(np.int64) @ w.astype(np.int64) + params[:8]
    expected = np.clip(np.floor(acc * 3 / 16 + 0.5), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(y, expected)


def test_readme_example_is_the_reference_example() -> None:
    """The README shows the same (tested) program as the reference."""
    readme = (DOC.parents[1] / "README.md").read_text()
    assert f"```\n{EXAMPLE}```" in readme
