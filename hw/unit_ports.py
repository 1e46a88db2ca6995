"""Ports the load, compute and store units share: token links, faults, the DMA window.

A unit sees each neighbour through a `TokenLinkSignature`: the tokens it may pop from that
neighbour and the room left in the queue it pushes into. `FaultSignature` carries the first
fault of a unit to the core, which latches one for the registers.
"""

from amaranth.hdl import Cat, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.dispatch import INDEX_BITS, QueueEntry
from gemmstone.isa.errors import ErrorCode

__all__ = ["TokenLinkSignature", "FaultSignature", "WindowSignature", "FAULT_ADDRESS_BITS",
           "tokens_ready", "unit_members"]

# Wide enough for the highest byte a DMA instruction can name: 32-bit offset plus
# (4095 lines x 24-bit stride) plus a line.
FAULT_ADDRESS_BITS = 64


class TokenLinkSignature(wiring.Signature):
    """A unit's view of the two token queues to one neighbour.

    Members
    -------
    available : In(range(depth + 1))
        Tokens the neighbour has pushed to this unit and it has not popped.
    pop : Out(1)
        Strobe: take one of them.
    occupied : In(range(depth + 1))
        Tokens this unit has pushed to the neighbour that it has not popped.
    push : Out(2)
        Tokens given this cycle (0, 1 or 2: the compute unit may finish a draining
        matmul and another instruction in the same cycle).
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        super().__init__({
            "available": In(range(depth + 1)),
            "pop": Out(1),
            "occupied": In(range(depth + 1)),
            "push": Out(2),
        })


class FaultSignature(wiring.Signature):
    """A unit's fault report, held until the next run starts.

    Members
    -------
    valid : Out(1)
    code : Out(ErrorCode width)
    index : Out(INDEX_BITS)
        Program index of the faulting instruction.
    address : Out(FAULT_ADDRESS_BITS)
        Window offset, scratchpad line or accumulator row, as the functional model reports.
    """

    def __init__(self) -> None:
        super().__init__({
            "valid": Out(1),
            "code": Out(unsigned(max(ErrorCode).bit_length())),
            "index": Out(INDEX_BITS),
            "address": Out(FAULT_ADDRESS_BITS),
        })


class WindowSignature(wiring.Signature):
    """The DMA window: instruction DRAM offsets are added to ``base`` and must stay below
    ``size``."""

    def __init__(self) -> None:
        super().__init__({"base": Out(32), "size": Out(32)})


def tokens_ready(header, links: dict, pending_pushes: dict | None = None):
    """1 when every token ``header`` pops is available and every push has room.

    ``links`` maps "prev"/"next" to a unit's `TokenLinkSignature` interfaces (absent sides
    are never named: the decoder rejects flags towards them). ``pending_pushes`` counts
    pushes already promised but not yet done (a matmul still draining).
    """
    conditions = []
    for side, link in links.items():
        pending = (pending_pushes or {}).get(side, 0)
        conditions.append(~getattr(header, f"pop_{side}") | (link.available != 0))
        conditions.append(~getattr(header, f"push_{side}")
                          | (link.occupied + pending < link.signature.depth))
    return Cat(*conditions).all() if conditions else Signal(init=1)



def unit_members(config: AcceleratorConfig, *, sides: tuple[str, ...]) -> dict:
    """The members every unit has: its queue, token links to the neighbours in ``sides``
    ("prev", "next"), the DMA window, its fault report, run control and status.

    Members
    -------
    queue : In(stream.Signature(QueueEntry))
    prev, next : Out(TokenLinkSignature), as named in ``sides``
    window : In(WindowSignature)
    fault : Out(FaultSignature)
    clear : In(1)
        A run starts: forget the last fault.
    stop : In(1)
        Start no new instruction (a fault elsewhere).
    idle : Out(1)
        Queue empty, nothing executing or in flight (fence and halt wait for it).
    active : Out(1)
        Executing, draining or waiting for DMA transfers (the core may not end a run).
    retired : Out(1)
        Strobe: an instruction finished.
    busy, token_wait, dma_wait : Out(1)
        Per-cycle events for the performance counters.
    """
    members = {"queue": In(stream.Signature(QueueEntry))}
    members |= {side: Out(TokenLinkSignature(config.token_depth)) for side in sides}
    members |= {"window": In(WindowSignature()), "fault": Out(FaultSignature()),
                "clear": In(1), "stop": In(1)}
    members |= {name: Out(1) for name in ("idle", "active", "retired", "busy", "token_wait",
                                          "dma_wait")}
    return members
