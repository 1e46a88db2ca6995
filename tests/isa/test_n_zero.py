"""``n = 0``: what the ISA reference says (docs/isa.md overview) is what the functional
model, the executable spec, does."""

from __future__ import annotations

import numpy as np
import pytest

from gemmstone.config import preset
from gemmstone.isa.assembly import assemble
from gemmstone.isa.errors import ExecutionError
from gemmstone.isa.reference import render
from gemmstone.isa.table import BY_MNEMONIC
from gemmstone.sim.functional import FunctionalModel

CONFIG = preset("tiny")  # 4x4: line_bytes 4


def run(text: str) -> FunctionalModel:
    model = FunctionalModel(CONFIG)
    model.spad[:] = 5
    model.acc[:] = 7
    model.dram[:0x100] = 9
    model.run(assemble(text + "\nhalt\n"), window_size=0x100)
    return model


def test_the_reference_allows_n_zero():
    text = render()
    assert "- `n = 0` is allowed: the instruction reads, writes and computes no row" in text
    assert "1..4095" not in text
    for mnemonic in ("matmul", "alu"):
        [n] = [f for f in BY_MNEMONIC[mnemonic].all_fields if f.name == "n"]
        assert n.doc.endswith("(0: none)")


@pytest.mark.parametrize("text", [
    "loadacc dram=0 n=0 len=4 acc=4095",
    "matmul n=0 spad=65535 acc=65535",
    "alu func=add n=0 dst=65535 src=0 use_imm imm=1",
    "store dram=0xffffffff n=0 len=4 acc=65535",
])
def test_empty_ranges_touch_nothing_and_are_never_out_of_bounds(text):
    model = run(text)
    assert (model.spad == 5).all() and (model.acc == 7).all()
    assert (model.dram[:0x100] == 9).all() and not model.dram[0x100:].any()


def test_an_empty_load_still_writes_its_padding_lines():
    model = run("load dram=0xffffffff n=0 len=4 spad=2 pad_lo=1 pad_hi=2")
    np.testing.assert_array_equal(model.spad[2:5], 0)
    assert (model.spad[:2] == 5).all() and (model.spad[5:] == 5).all()


@pytest.mark.parametrize("text", ["load dram=0 n=0 len=0", "store dram=0 n=0 len=5"])
def test_other_operands_are_still_checked(text):
    with pytest.raises(ExecutionError, match=r"len = \d is outside 1..4$"):
        run(text)
