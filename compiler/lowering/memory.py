"""Memory planning: activations of one program share a DMA-window arena by liveness.

Each value lives from the op that writes it (program inputs: from the start) to its last
reader (program outputs: to the end). Values whose lifetimes overlap get disjoint byte
ranges; the others may reuse each other's bytes. Placement is first fit in order of
decreasing size (the usual heuristic for this NP-hard problem), aligned to
`gemmstone.compiler.builder.ALIGNMENT`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gemmstone.compiler.builder import ALIGNMENT

__all__ = ["Lifetime", "plan_arena"]


@dataclass(frozen=True)
class Lifetime:
    """``size`` bytes live from step ``start`` to step ``end`` (both inclusive)."""

    name: str
    size: int
    start: int
    end: int


def plan_arena(lifetimes: list[Lifetime]) -> tuple[dict[str, int], int]:
    """Byte offsets of every value and the arena size; overlapping lifetimes never share
    bytes."""
    placed: list[tuple[Lifetime, int]] = []
    offsets: dict[str, int] = {}
    for life in sorted(lifetimes, key=lambda v: (-v.size, v.start, v.name)):
        busy = sorted((off, off + other.size) for other, off in placed
                      if other.start <= life.end and life.start <= other.end)
        offset = 0
        for lo, hi in busy:
            if offset + life.size <= lo:
                break
            offset = max(offset, -(-hi // ALIGNMENT) * ALIGNMENT)
        placed.append((life, offset))
        offsets[life.name] = offset
    size = max((off + life.size for life, off in placed), default=0)
    return offsets, max(size, 1)
