"""The RTL's instruction layouts read every field of random words exactly as isa.decode."""

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from isa_strategies import instruction_values

from gemmstone.hw.isa_layout import HEADER_LAYOUT, INSTRUCTION_LAYOUTS, reserved_mask
from gemmstone.isa import INSTRUCTIONS, decode, encode, make


def instructions():
    return instruction_values().map(lambda sv: make(sv[0].mnemonic, **sv[1]))


@settings(max_examples=20, deadline=None)
@given(st.lists(instructions(), min_size=20, max_size=20))
def test_layout_fields_equal_decoder(batch):
    word = Signal(128)
    sim = Simulator(Module())
    mismatches = []

    async def testbench(ctx):
        for instr in batch:
            ctx.set(word, encode(instr))
            header = HEADER_LAYOUT(word)
            if ctx.get(header.opcode) != instr.spec.opcode:
                mismatches.append((instr.mnemonic, "opcode"))
            view = INSTRUCTION_LAYOUTS[instr.mnemonic](word)
            for name, value in decode(encode(instr)).values.items():
                if ctx.get(getattr(view, name)) != int(value):
                    mismatches.append((instr.mnemonic, name))

    sim.add_testbench(testbench)
    sim.run()
    assert mismatches == []


def test_reserved_masks_are_exactly_the_unnamed_bits():
    for spec in INSTRUCTIONS:
        used = 0
        for _, field in INSTRUCTION_LAYOUTS[spec.mnemonic]:
            used |= ((1 << field.shape.width) - 1) << field.offset
        assert used & reserved_mask(spec.mnemonic) == 0, spec.mnemonic
        assert used | reserved_mask(spec.mnemonic) == (1 << 128) - 1, spec.mnemonic
