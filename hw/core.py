"""`Core`: one accelerator core — fetch, dispatch, the three units, the scratchpad and
accumulator memories, token counters and the AXI4 master — run by the register block's
`CorePortSignature`. See docs/microarchitecture.md."""

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.accumulator import Accumulator
from gemmstone.hw.axi import AxiSignature
from gemmstone.hw.axi_arbiter import AxiReadArbiter
from gemmstone.hw.compute_unit import ComputeUnit
from gemmstone.hw.dispatch import Dispatch, QueueEntry
from gemmstone.hw.fetch import Fetch
from gemmstone.hw.load_unit import LoadUnit
from gemmstone.hw.registers import CorePortSignature
from gemmstone.hw.scratchpad import Scratchpad
from gemmstone.hw.store_unit import StoreUnit
from gemmstone.hw.tokens import TokenCounters
from gemmstone.isa.errors import ErrorCode

__all__ = ["Core", "DEADLOCK_CYCLES"]

# A token deadlock is declared after this many cycles in which nothing could move; the
# condition is exact, the delay only lets signals settle after a state change.
DEADLOCK_CYCLES = 8

# (unit, side) -> (counter it pops from, counter it pushes into)
_LINKS = {
    ("load", "next"): ("compute_load", "load_compute"),
    ("compute", "prev"): ("load_compute", "compute_load"),
    ("compute", "next"): ("store_compute", "compute_store"),
    ("store", "prev"): ("compute_store", "store_compute"),
}


class Core(wiring.Component):
    """One gemmstone core.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    ctl : In(CorePortSignature)
        From the register block: settings, start, abort; to it: done, errors, counters.
    axi : Out(AxiSignature(id_width=2))
        The DRAM port (reads of fetch, load, compute and store arbitrated by ID).
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
        self.config = config
        super().__init__({
            "ctl": In(CorePortSignature(bus_bytes=config.dram_bytes_per_cycle)),
            "axi": Out(AxiSignature(data_bytes=config.dram_bytes_per_cycle, id_width=2)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        ctl = self.ctl
        m.submodules.fetch = fetch = Fetch(data_bytes=c.dram_bytes_per_cycle)
        m.submodules.dispatch = dispatch = Dispatch()
        m.submodules.tokens = tokens = TokenCounters(depth=c.token_depth)
        units = {"load": LoadUnit(config=c), "compute": ComputeUnit(config=c),
                 "store": StoreUnit(config=c)}
        load, compute, store = units["load"], units["compute"], units["store"]

        # -- run control ------------------------------------------------------------------
        running = Signal()
        fault_seen = Signal()
        start = ctl.start & ~running
        window_base, window_size = Signal(32), Signal(32)
        with m.If(start):
            m.d.sync += [
                running.eq(1), fault_seen.eq(0), window_base.eq(ctl.window_base),
                window_size.eq(Mux(ctl.window_limit > ctl.window_base,
                                   ctl.window_limit - ctl.window_base, 0)),
            ]
        # Nothing new is issued outside a run. The register block drops `abort` when the
        # aborted run ends, and instructions of that run can still be queued: without
        # ~running the units would take them up again after the end, and the next start
        # would reset a unit whose DMA reads were in flight, leaving its beats on the
        # shared R channel with no reader to take them (every later read stuck).
        stop = fault_seen | ctl.abort | ~running
        m.d.comb += [
            fetch.start.eq(start), fetch.base.eq(ctl.instr_base), fetch.count.eq(ctl.instr_count),
            fetch.stop.eq(stop),
            dispatch.start.eq(start), dispatch.length.eq(ctl.instr_count),
            dispatch.stop.eq(stop), dispatch.tokens_zero.eq(tokens.all_zero),
            tokens.clear.eq(start),
            ctl.dispatch_index.eq(dispatch.index),
        ]
        wiring.connect(m, fetch.words, dispatch.words)

        # -- instruction queues -----------------------------------------------------------
        queues = []
        for name, unit in units.items():
            # A run starts from empty queues and idle units, whatever the last run left
            # (an aborted run can leave instructions queued). The core is quiet at start,
            # so no transfer is cut short.
            queue = fifo.SyncFIFOBuffered(width=QueueEntry.size, depth=c.queue_depth)
            queues.append(queue)
            m.submodules[f"{name}_queue"] = ResetInserter(start)(queue)
            m.submodules[f"{name}_unit"] = ResetInserter(start)(unit)
            source = getattr(dispatch, name)
            m.d.comb += [
                queue.w_data.eq(source.payload), queue.w_en.eq(source.valid),
                source.ready.eq(queue.w_rdy),
                unit.queue.payload.eq(queue.r_data), unit.queue.valid.eq(queue.r_rdy),
                queue.r_en.eq(unit.queue.ready),
                unit.window.base.eq(window_base), unit.window.size.eq(window_size),
                unit.clear.eq(start), unit.stop.eq(stop),
            ]
        # Idle counts entries still in the queue FIFOs (a word takes cycles to show).
        queues_empty = Cat(*(queue.level == 0 for queue in queues)).all()
        m.d.comb += dispatch.idle.eq(queues_empty & load.idle & compute.idle & store.idle)

        for (name, side), (pop_queue, push_queue) in _LINKS.items():
            link = getattr(units[name], side)
            m.d.comb += [
                link.available.eq(getattr(tokens, f"count_{pop_queue}")),
                getattr(tokens, f"pop_{pop_queue}").eq(link.pop),
                link.occupied.eq(getattr(tokens, f"count_{push_queue}")),
                getattr(tokens, f"push_{push_queue}").eq(link.push),
            ]

        # -- memories ---------------------------------------------------------------------
        m.submodules.spad = spad = Scratchpad.from_config(c, read_ports=2)
        m.submodules.acc = acc = Accumulator.from_config(c, read_ports=3)
        wiring.connect(m, spad.write[0], load.spad)
        wiring.connect(m, spad.read[0], compute.spad)
        wiring.connect(m, spad.read[1], compute.spad_w)
        wiring.connect(m, compute.acc_add, acc.accumulate)
        wiring.connect(m, acc.write, compute.acc_w)
        wiring.connect(m, acc.read[0], compute.acc_a)
        wiring.connect(m, acc.read[1], compute.acc_b)
        wiring.connect(m, acc.read[2], store.acc)

        # -- AXI ----------------------------------------------------------------------------
        # The grant restarts at every run, so a run's timing does not depend on the last.
        arbiter = AxiReadArbiter(clients=4, data_bytes=c.dram_bytes_per_cycle)
        m.submodules.arbiter = ResetInserter(start)(arbiter)
        readers = [fetch.axi, load.axi, compute.axi, store.axi]
        for index, port in enumerate(readers):
            client = arbiter.client(index)
            # Read channels only (the store unit's port also has the write channels).
            for name, member in client.signature.members.items():
                if member.flow == In:  # driven by the reader
                    m.d.comb += getattr(client, name).eq(getattr(port, name))
                else:
                    m.d.comb += getattr(port, name).eq(getattr(client, name))
        for name, member in self.axi.signature.members.items():
            source = arbiter.bus if name.startswith(("ar", "r")) else store.axi
            ours, theirs = getattr(self.axi, name), getattr(source, name)
            if name in ("awid", "bid"):
                if member.flow == Out:
                    m.d.comb += ours.eq(0)
                continue
            if member.flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)

        # -- faults, deadlock, end of run ---------------------------------------------------
        unit_list = [load, compute, store]
        heads_waiting = [u.token_wait for u in unit_list]
        quiet = Cat(*(~u.active for u in unit_list), ~fetch.busy).all()
        no_dispatch = ~(fetch.words.valid & fetch.words.ready)
        stuck_now = quiet & no_dispatch & Cat(*heads_waiting).any() & running & ~stop
        stuck_for = Signal(range(DEADLOCK_CYCLES + 1))
        m.d.sync += stuck_for.eq(Mux(stuck_now, Mux(stuck_for == DEADLOCK_CYCLES,
                                                    stuck_for, stuck_for + 1), 0))
        deadlock = stuck_for == DEADLOCK_CYCLES
        lowest = Const(0xFFFF_FFFF, 32)  # lowest waiting head index, as the model reports
        for unit in unit_list:
            index = unit.queue.payload.index
            lowest = Mux(unit.token_wait & (index < lowest), index, lowest)

        code, index, address = Signal(ctl.error_code.shape()), Signal(32), Signal(32)
        raised = Signal()
        # Earliest source wins when several report in the same cycle.
        with m.If(dispatch.error & (dispatch.error_code != ErrorCode.NONE)):
            m.d.comb += [raised.eq(1), code.eq(dispatch.error_code),
                         index.eq(dispatch.error_index)]
        for unit in unit_list:
            with m.Elif(unit.fault.valid):
                m.d.comb += [raised.eq(1), code.eq(unit.fault.code), index.eq(unit.fault.index),
                             address.eq(unit.fault.address[:32])]
        with m.Elif(deadlock):
            m.d.comb += [raised.eq(1), code.eq(ErrorCode.TOKEN), index.eq(lowest)]
        first = raised & ~fault_seen & running
        m.d.comb += [ctl.error.eq(first), ctl.error_code.eq(code), ctl.error_index.eq(index),
                     ctl.error_addr.eq(address)]
        with m.If(first):
            m.d.sync += fault_seen.eq(1)

        ended = running & ~start & quiet & (dispatch.done | stop | dispatch.error)
        m.d.comb += ctl.done.eq(ended)
        with m.If(ended):
            m.d.sync += running.eq(0)

        # -- performance counter events -----------------------------------------------------
        m.d.comb += [
            ctl.busy_load.eq(load.busy), ctl.busy_compute.eq(compute.busy),
            ctl.busy_store.eq(store.busy),
            ctl.stall_token.eq(Cat(*heads_waiting).any()),
            ctl.stall_dma.eq(Cat(*(u.dma_wait for u in unit_list)).any()),
            ctl.stall_queue.eq(fetch.words.valid & ~fetch.words.ready & dispatch.busy),
            ctl.retired_load.eq(load.retired), ctl.retired_compute.eq(compute.retired),
            ctl.retired_store.eq(store.retired),
            ctl.bytes_read.eq(Mux(self.axi.rvalid & self.axi.rready,
                                  c.dram_bytes_per_cycle, 0)),
            ctl.bytes_written.eq(Mux(self.axi.wvalid & self.axi.wready,
                                     sum(self.axi.wstrb[i]
                                         for i in range(c.dram_bytes_per_cycle)), 0)),
        ]
        return m

