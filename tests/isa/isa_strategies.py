"""Hypothesis strategies for instructions: any legal field values of any instruction."""

from __future__ import annotations

from hypothesis import strategies as st

from gemmstone.isa.table import INSTRUCTIONS, FieldSpec, InstructionSpec

__all__ = ["field_values", "instruction_values"]


def _field_strategy(spec: InstructionSpec, f: FieldSpec) -> st.SearchStrategy:
    if f.is_enum:
        return st.sampled_from(list(f.kind))
    if f.name.startswith(("pop_", "push_")) and not spec.unit.allows(f.name):
        return st.just(0)
    return st.integers(f.min, f.max)


def field_values(spec: InstructionSpec) -> st.SearchStrategy[dict]:
    """Every assembler-visible field of ``spec`` with a legal value."""
    return st.fixed_dictionaries({
        f.name: _field_strategy(spec, f) for f in spec.all_fields if f.name in spec.operand_names
    })


def instruction_values() -> st.SearchStrategy[tuple[InstructionSpec, dict]]:
    """(spec, values) for any instruction of the table."""
    return st.sampled_from(INSTRUCTIONS).flatmap(
        lambda spec: st.tuples(st.just(spec), field_values(spec)))

