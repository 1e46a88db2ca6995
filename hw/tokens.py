"""Dependency-token counters between the load, compute and store units."""

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TokenCounters", "QUEUES"]

# (producer, consumer) of each token queue, named as in the functional model's reports.
QUEUES = {
    "load_compute": ("load", "compute"),
    "compute_load": ("compute", "load"),
    "compute_store": ("compute", "store"),
    "store_compute": ("store", "compute"),
}


class TokenCounters(wiring.Component):
    """Four counters of tokens in flight, 0..depth.

    The units guarantee a push never meets a full counter and a pop never meets an empty
    one (they start an instruction only when its pops are there and its pushes have room),
    so the counters need no overflow handling.

    Parameters
    ----------
    depth : int
        Capacity of each queue (``AcceleratorConfig.token_depth``).

    Members
    -------
    push_<queue> : In(2)
        Tokens pushed this cycle (the compute unit may push two at once).
    pop_<queue> : In(1)
        One-cycle strobe, for each queue in `QUEUES`.
    count_<queue> : Out(range(depth + 1))
    all_zero : Out(1)
        No token anywhere (checked by halt).
    clear : In(1)
        Empty every queue (a new run starts).
    """

    def __init__(self, *, depth: int) -> None:
        if not isinstance(depth, int) or depth < 1:
            raise TypeError(f"'depth' must be a positive integer, not {depth!r}")
        self.depth = depth
        members = {"all_zero": Out(1), "clear": In(1)}
        for queue in QUEUES:
            members[f"push_{queue}"] = In(2)
            members[f"pop_{queue}"] = In(1)
            members[f"count_{queue}"] = Out(range(depth + 1))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        counts = []
        for queue in QUEUES:
            count = getattr(self, f"count_{queue}")
            push, pop = getattr(self, f"push_{queue}"), getattr(self, f"pop_{queue}")
            counts.append(count)
            with m.If(self.clear):
                m.d.sync += count.eq(0)
            with m.Else():
                m.d.sync += count.eq(count + push - pop)
        m.d.comb += self.all_zero.eq(~Cat(*counts).any())
        return m
