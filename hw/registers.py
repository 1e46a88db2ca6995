"""The AXI4-Lite register block, generated from the register map (`gemmstone.hw.register_map`).

The block holds the host's settings, the run state (busy / done / first error), the watchdog
and the 64-bit performance counters. The core sees it through `CorePortSignature`: start,
soft-reset and abort commands and the settings go out; the core reports the end of a run,
faults and per-cycle events, which the block counts.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.axi import AxiLiteSignature, AxiResp
from gemmstone.hw.params import check_int
from gemmstone.hw.register_map import (
    ADDR_WIDTH,
    CONTROL_SOFT_RESET,
    CONTROL_START,
    REGISTERS,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    Kind,
    Register,
    reset_value,
)
from gemmstone.isa.errors import ErrorCode

__all__ = ["ERROR_CODE_WIDTH", "CorePortSignature", "RegisterBlock"]

#: Bits of an `ErrorCode` value on the core ports.
ERROR_CODE_WIDTH = max(ErrorCode).bit_length()


def _counter_shape(register: Register, bus_bytes: int):
    return range(bus_bytes + 1) if register.increment == "bus" else 1


class CorePortSignature(wiring.Signature):
    """Ports between the register block and the core, seen from the register block.

    Parameters
    ----------
    bus_bytes : int
        Most bytes the core moves per cycle in one direction (the DRAM bus width): the
        range of the ``bytes_read`` / ``bytes_written`` inputs.

    Members
    -------
    start : ``Out(1)``
        One-cycle pulse: run the program described by the settings.
    soft_reset : ``Out(1)``
        One-cycle pulse: return to the idle state at once.
    abort : ``Out(1)``
        The watchdog expired: stop issuing work, let outstanding transfers end, then
        report ``done``. High until ``done`` or a soft reset.
    instr_base, instr_count, window_base, window_limit, watchdog : ``Out(32)``
        The CONFIG registers, named after them in lower case; sample them at ``start``.
    done : ``In(1)``
        Pulse: the run has ended (halt, or stopped after a fault or an abort) and nothing
        is in flight.
    error : ``In(1)``
        Pulse: a fault; ``error_code``, ``error_index`` and ``error_addr`` describe it. Only
        the first fault of a run is kept.
    error_code : ``In(ERROR_CODE_WIDTH)``
    error_index, error_addr : ``In(32)``
    dispatch_index : ``In(32)``
        Index of the instruction dispatch is at: recorded as the faulting index when the
        watchdog fires.
    busy_load, busy_compute, ..., retired_store : ``In(1)``
        Per-cycle events, one per counter of the map (named after it in lower case).
    bytes_read, bytes_written : ``In(range(bus_bytes + 1))``
        Bytes moved this cycle.
    """

    def __init__(self, *, bus_bytes: int) -> None:
        check_int("bus_bytes", bus_bytes)
        self.bus_bytes = bus_bytes
        members = {"start": Out(1), "soft_reset": Out(1), "abort": Out(1)}
        members |= {r.port: Out(32) for r in REGISTERS if r.kind is Kind.CONFIG}
        members |= {
            "done": In(1), "error": In(1), "error_code": In(ERROR_CODE_WIDTH),
            "error_index": In(32), "error_addr": In(32), "dispatch_index": In(32),
        }
        members |= {r.port: In(_counter_shape(r, bus_bytes)) for r in REGISTERS
                    if r.kind is Kind.COUNTER and r.increment != "running"}
        super().__init__(members)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.bus_bytes == self.bus_bytes

    def __hash__(self) -> int:
        return hash((type(self), self.bus_bytes))

    def __repr__(self) -> str:
        return f"CorePortSignature(bus_bytes={self.bus_bytes})"


class RegisterBlock(wiring.Component):
    """The host-visible registers of one accelerator, as an AXI4-Lite subordinate.

    Every register of `REGISTERS` is implemented as its kind says: constants (IDs computed
    from ``config``), control pulses, status kept here, settings output to the core and
    64-bit counters. Reads and writes take two cycles each (address, then response);
    writes wait until both AW and W are valid.

    A run starts with ``CONTROL.START`` while not busy: the counters, ``DONE``, ``ERROR``
    and the error registers clear and ``BUSY`` sets. It ends when the core pulses ``done``.
    The counters count only while busy. ``CONTROL.SOFT_RESET`` pulses ``core.soft_reset``
    and clears the run state and counters (settings keep their values).

    Parameters
    ----------
    config : AcceleratorConfig
        The configuration the hardware is built from (for ``CONFIG_ID`` and the bus width).

    Members
    -------
    bus : ``In(AxiLiteSignature(addr_width=ADDR_WIDTH))``
        The host's register port.
    core : ``Out(CorePortSignature(bus_bytes=config.dram_bytes_per_cycle))``

    Raises
    ------
    TypeError
        If ``config`` is not an `AcceleratorConfig`.
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
        self.config = config
        super().__init__({
            "bus": In(AxiLiteSignature(addr_width=ADDR_WIDTH)),
            "core": Out(CorePortSignature(bus_bytes=config.dram_bytes_per_cycle)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        bus, core = self.bus, self.core

        running = Signal()
        done = Signal()
        errored = Signal()
        status = {"ERROR_CODE": Signal(ERROR_CODE_WIDTH), "ERROR_INDEX": Signal(32),
                  "ERROR_ADDR": Signal(32)}
        settings = {r.name: Signal(32, name=r.port, init=r.reset)
                    for r in REGISTERS if r.kind is Kind.CONFIG}
        counters = {r.name: Signal(64, name=r.port) for r in REGISTERS if r.kind is Kind.COUNTER}
        # The high half of a counter as it was when its low half was read.
        shadows = {name: Signal(32, name=f"{name.lower()}_high") for name in counters}
        for reg in REGISTERS:
            if reg.kind is Kind.CONFIG:
                m.d.comb += getattr(core, reg.port).eq(settings[reg.name])
        status_bits = {STATUS_BUSY.name: running, STATUS_DONE.name: done,
                       STATUS_ERROR.name: errored}

        # -- write channel ---------------------------------------------------------------
        write = bus.awvalid & bus.wvalid & ~bus.bvalid
        write_word = bus.awaddr[2:]
        start_request = Signal()
        soft_reset_request = Signal()
        mapped_write = Signal()
        m.d.comb += [bus.awready.eq(write), bus.wready.eq(write)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        with m.Switch(write_word):
            for reg in REGISTERS:
                for word in range(reg.words):
                    with m.Case(reg.offset // 4 + word):
                        m.d.comb += mapped_write.eq(1)
                        if reg.kind is Kind.CONFIG:
                            target = settings[reg.name]
                            with m.If(write):
                                for byte in range(4):
                                    with m.If(bus.wstrb[byte]):
                                        m.d.sync += target.word_select(byte, 8).eq(
                                            bus.wdata.word_select(byte, 8))
                        elif reg.kind is Kind.CONTROL:
                            m.d.comb += [
                                start_request.eq(write & bus.wstrb[0]
                                                 & bus.wdata[CONTROL_START.lsb]),
                                soft_reset_request.eq(write & bus.wstrb[0]
                                                      & bus.wdata[CONTROL_SOFT_RESET.lsb]),
                            ]
        with m.If(write):
            m.d.sync += [
                bus.bvalid.eq(1),
                bus.bresp.eq(AxiResp.OKAY),
            ]
            with m.If(~mapped_write):
                m.d.sync += bus.bresp.eq(AxiResp.SLVERR)

        # -- read channel ----------------------------------------------------------------
        read = bus.arvalid & ~bus.rvalid
        read_word = bus.araddr[2:]
        m.d.comb += bus.arready.eq(~bus.rvalid)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        with m.If(read):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(0), bus.rresp.eq(AxiResp.SLVERR)]
            with m.Switch(read_word):
                for reg in REGISTERS:
                    for word in range(reg.words):
                        with m.Case(reg.offset // 4 + word):
                            m.d.sync += [bus.rresp.eq(AxiResp.OKAY),
                                         bus.rdata.eq(self._read_value(
                                             reg, word, settings, status, status_bits,
                                             counters, shadows))]
                            if reg.kind is Kind.COUNTER and word == 0:
                                m.d.sync += shadows[reg.name].eq(counters[reg.name][32:])

        # -- run state ---------------------------------------------------------------------
        cycles = counters["CYCLES"]
        limit = settings["WATCHDOG"]
        expired = running & ~core.abort & (limit != 0) & ((cycles[32:] != 0)
                                                          | (cycles[:32] >= limit))
        start = start_request & ~running & ~soft_reset_request
        m.d.sync += [core.start.eq(start), core.soft_reset.eq(soft_reset_request)]

        for reg in REGISTERS:
            if reg.kind is not Kind.COUNTER:
                continue
            counter = counters[reg.name]
            if reg.increment == "running":
                step = 1
            else:
                step = getattr(core, reg.port)
            with m.If(running):
                m.d.sync += counter.eq(counter + step)

        with m.If(core.error & ~errored):
            m.d.sync += [
                errored.eq(1),
                status["ERROR_CODE"].eq(core.error_code),
                status["ERROR_INDEX"].eq(core.error_index),
                status["ERROR_ADDR"].eq(core.error_addr),
            ]
        with m.Elif(expired & ~errored):
            m.d.sync += [
                errored.eq(1),
                status["ERROR_CODE"].eq(ErrorCode.WATCHDOG),
                status["ERROR_INDEX"].eq(core.dispatch_index),
                status["ERROR_ADDR"].eq(0),
            ]
        with m.If(expired):
            m.d.sync += core.abort.eq(1)
        with m.If(core.done & running):
            m.d.sync += [running.eq(0), done.eq(1), core.abort.eq(0)]

        # A new run, or a soft reset, clears what the last run left (the later assignments
        # take precedence over the updates above).
        with m.If(start | soft_reset_request):
            m.d.sync += [done.eq(0), errored.eq(0), core.abort.eq(0)]
            m.d.sync += [value.eq(0) for value in status.values()]
            m.d.sync += [counter.eq(0) for counter in counters.values()]
            m.d.sync += running.eq(start)
        return m

    def _read_value(self, reg, word, settings, status, status_bits, counters, shadows):
        if reg.kind is Kind.CONSTANT:
            return reset_value(reg, self.config)
        if reg.kind is Kind.CONFIG:
            return settings[reg.name]
        if reg.kind is Kind.COUNTER:
            return counters[reg.name][:32] if word == 0 else shadows[reg.name]
        if reg.kind is Kind.CONTROL:
            return 0
        if reg.fields:
            bits = [Const(0, 1)] * 32
            for field in reg.fields:
                bits[field.lsb] = status_bits[field.name]
            return Cat(*bits)
        return status[reg.name]
