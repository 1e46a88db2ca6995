"""DMA: 2-D strided transfers between DRAM, over an AXI4 manager port, and streams of lines.

A command names ``n`` lines of DRAM: line ``i`` is the ``len`` bytes at ``addr + i*stride``.
`DmaReader` turns a command into ``n`` line payloads of ``line_bytes`` bytes (bytes from
``len`` on are zero); `DmaWriter` writes ``n`` incoming line payloads' first ``len`` bytes
back. Addresses and strides are arbitrary bytes: each line is read or written as the
aligned bus beats that cover it, realigned on the way, with write strobes for the edges.
Every AXI burst is INCR, at most 256 beats and never crosses a 4 KiB boundary.

Each line is its own burst (or bursts, where it crosses 4 KiB or exceeds 256 beats): a beat
shared by two neighbouring lines is transferred twice, which keeps the datapath one line
deep while the bus runs at one beat per cycle, with up to ``max_in_flight`` lines (reader)
or bursts (writer) outstanding to cover DRAM latency.

The accelerator instantiates one reader per line width it needs (scratchpad lines,
accumulator rows, instruction words) and a writer of accumulator-row width; DMA-window
checks happen before a command is issued, in the unit that issues it.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from gemmstone.hw.axi import (
    BOUNDARY_BYTES,
    MAX_BURST_BEATS,
    AxiBurst,
    AxiReadSignature,
    AxiWriteSignature,
)
from gemmstone.hw.params import check_int, check_power_of_two

__all__ = ["command_layout", "line_layout", "BurstPlanner", "DmaReader", "DmaWriter"]


def command_layout(*, line_bytes: int, addr_width: int = 32,
                   count_width: int = 16) -> data.StructLayout:
    """Layout of a DMA command.

    Fields: ``addr`` (byte address of line 0), ``stride`` (bytes from one line's start to
    the next's; addresses wrap at ``2**addr_width``), ``n`` (lines; 0 is a no-op) and
    ``len`` (bytes per line, 1 to ``line_bytes``; 0 moves no data, more acts as
    ``line_bytes``).
    """
    return data.StructLayout({
        "addr": unsigned(addr_width),
        "stride": unsigned(addr_width),
        "n": unsigned(count_width),
        "len": range(line_bytes + 1),
    })


def line_layout(line_bytes: int) -> data.StructLayout:
    """Payload of a stream of lines: ``data`` (``line_bytes`` bytes, byte 0 at the lowest
    address) and ``last`` (set on the last line of a command; readers only)."""
    return data.StructLayout({"data": data.ArrayLayout(unsigned(8), line_bytes), "last": 1})


def _check_common(line_bytes: object, data_bytes: object, addr_width: object,
                  id_width: object, axi_id: object, count_width: object,
                  max_in_flight: object) -> None:
    check_int("line_bytes", line_bytes)
    check_power_of_two("data_bytes", data_bytes)
    if data_bytes > 128:
        raise ValueError(f"'data_bytes' must be at most 128 (AXI4), not {data_bytes}")
    check_int("addr_width", addr_width, minimum=12)
    check_int("id_width", id_width)
    check_int("axi_id", axi_id, minimum=0)
    if axi_id >> id_width:
        raise ValueError(f"'axi_id' {axi_id} does not fit in id_width={id_width} bits")
    check_int("count_width", count_width)
    check_int("max_in_flight", max_in_flight, minimum=2)


class BurstPlanner(wiring.Component):
    """Splits a DMA command into the AXI bursts that cover each of its lines.

    Line ``i`` covers the bus beats from ``floor(a / data_bytes)`` to
    ``floor((a + len - 1) / data_bytes)``, ``a = addr + i*stride``; those beats are cut into
    INCR bursts at 4 KiB boundaries and at 256 beats. One burst is offered per cycle; a new
    command is taken in the cycle the previous one's last burst leaves.

    Parameters
    ----------
    line_bytes, data_bytes, addr_width, count_width : int
        As in `DmaReader`.

    Members
    -------
    cmd : ``In(stream.Signature(command_layout(...)))``
        Commands.
    bursts : ``Out(stream.Signature(...))``
        One payload per burst: ``addr`` (beat-aligned), ``arlen`` (beats - 1, AXI
        encoding), ``line_addr`` (unaligned start of the line), ``beat`` (index of the
        burst's first beat within its line), ``line_last_beat`` (the line's beat count - 1),
        ``len``, ``first`` / ``last`` (first / last burst of the line) and ``last_line``.
    busy : ``Out(1)``
        A command is being split.
    """

    def __init__(self, *, line_bytes: int, data_bytes: int, addr_width: int = 32,
                 count_width: int = 16) -> None:
        _check_common(line_bytes, data_bytes, addr_width, 1, 0, count_width, 2)
        self.line_bytes = line_bytes
        self.data_bytes = data_bytes
        self.addr_width = addr_width
        self.count_width = count_width
        self.shift = data_bytes.bit_length() - 1
        #: Most beats one line can need (an unaligned full line).
        self.max_line_beats = (data_bytes - 1 + line_bytes - 1) // data_bytes + 1
        beats = range(self.max_line_beats)
        self.burst_layout = data.StructLayout({
            "addr": unsigned(addr_width), "arlen": unsigned(8),
            "line_addr": unsigned(addr_width), "beat": beats, "line_last_beat": beats,
            "len": range(line_bytes + 1), "first": 1, "last": 1, "last_line": 1,
        })
        super().__init__({
            "cmd": In(stream.Signature(command_layout(
                line_bytes=line_bytes, addr_width=addr_width, count_width=count_width))),
            "bursts": Out(stream.Signature(self.burst_layout)),
            "busy": Out(1),
        })

    def _line_beats(self, addr, length):
        """Beats covering ``length`` bytes from ``addr`` (a zero length counts as one byte,
        an over-long one as ``line_bytes``)."""
        clamped = Mux(length == 0, 1, Mux(length > self.line_bytes, self.line_bytes, length))
        offset = addr[:self.shift] if self.shift else Const(0, 1)
        return ((offset + clamped - 1) >> self.shift) + 1

    def elaborate(self, platform) -> Module:
        m = Module()
        shift = self.shift
        line_addr = Signal(self.addr_width)
        next_addr = Signal(self.addr_width)
        stride = Signal(self.addr_width)
        length = Signal(range(self.line_bytes + 1))
        lines_left = Signal(self.count_width)
        beat_addr = Signal(self.addr_width)  # next burst's first beat, aligned
        beats_left = Signal(range(self.max_line_beats + 1))  # of the current line
        beat = Signal(range(self.max_line_beats))  # index of the next beat in its line
        line_last_beat = Signal(range(self.max_line_beats))

        boundary_beats = BOUNDARY_BYTES >> shift
        to_boundary = Signal(range(boundary_beats + 1))
        allowed = Signal(range(max(boundary_beats, self.max_line_beats) + 1))
        burst_beats = Signal(range(MAX_BURST_BEATS + 1))
        m.d.comb += [
            to_boundary.eq(boundary_beats - beat_addr[shift:12]),
            allowed.eq(Mux(to_boundary < beats_left, to_boundary, beats_left)),
            burst_beats.eq(Mux(allowed > MAX_BURST_BEATS, MAX_BURST_BEATS, allowed)),
        ]

        bursts = self.bursts
        payload = bursts.payload
        m.d.comb += [
            bursts.valid.eq(self.busy),
            payload.addr.eq(beat_addr),
            payload.arlen.eq(burst_beats - 1),
            payload.line_addr.eq(line_addr),
            payload.beat.eq(beat),
            payload.line_last_beat.eq(line_last_beat),
            payload.len.eq(length),
            payload.first.eq(beat == 0),
            payload.last.eq(burst_beats == beats_left),
            payload.last_line.eq(lines_left == 1),
        ]

        def start_line(addr, size):
            beats = self._line_beats(addr, size)
            return [
                line_addr.eq(addr),
                beat_addr.eq(Cat(Const(0, shift), addr[shift:])),
                beats_left.eq(beats),
                beat.eq(0),
                line_last_beat.eq(beats - 1),
            ]

        final = bursts.valid & bursts.ready & payload.last & payload.last_line
        with m.If(bursts.valid & bursts.ready):
            with m.If(payload.last):
                with m.If(payload.last_line):
                    m.d.sync += self.busy.eq(0)
                with m.Else():
                    m.d.sync += start_line(next_addr, length)
                    m.d.sync += [next_addr.eq(next_addr + stride),
                                 lines_left.eq(lines_left - 1)]
            with m.Else():
                m.d.sync += [
                    beat_addr.eq(beat_addr + (burst_beats << shift)),
                    beats_left.eq(beats_left - burst_beats),
                    beat.eq(beat + burst_beats),
                ]

        cmd = self.cmd.payload
        m.d.comb += self.cmd.ready.eq(~self.busy | final)
        with m.If(self.cmd.valid & self.cmd.ready & (cmd.n != 0)):
            m.d.sync += start_line(cmd.addr, cmd.len)
            m.d.sync += [
                self.busy.eq(1),
                next_addr.eq(cmd.addr + cmd.stride),
                stride.eq(cmd.stride),
                length.eq(cmd.len),
                lines_left.eq(cmd.n),
            ]
        return m


class DmaReader(wiring.Component):
    """Reads 2-D strided DRAM regions into a stream of lines, over an AXI4 read port.

    A command (`command_layout`) yields ``n`` payloads on ``lines``, in order; line ``i``
    holds the ``len`` bytes at ``addr + i*stride`` followed by zeros. Commands are taken
    back to back and their bursts overlap. The R channel is stalled (``rready`` low) while
    ``lines`` is not taken.

    Parameters
    ----------
    line_bytes : int
        Bytes per output line.
    data_bytes : int
        AXI data bus width in bytes (a power of two up to 128).
    addr_width : int
        AXI address bits.
    id_width, axi_id : int
        Width of ``arid`` and the ID this reader uses (its R beats must come back in order).
    count_width : int
        Bits of the command's line count ``n``.
    max_in_flight : int
        Lines whose bursts may be outstanding at once (at least 2).

    Members
    -------
    cmd : ``In(stream.Signature(command_layout(...)))``
    lines : ``Out(stream.Signature(line_layout(line_bytes)))``
    axi : ``Out(AxiReadSignature(...))``
    busy : ``Out(1)``
        A command is accepted and not all its lines have left.
    error : ``Out(1)``
        One-cycle pulse: a beat came back with SLVERR or DECERR (its line's data is
        delivered anyway, so the command always completes).
    error_addr : ``Out(addr_width)``
        Start address of that beat's line; held until the next error.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range (the message names it).
    """

    def __init__(self, *, line_bytes: int, data_bytes: int, addr_width: int = 32,
                 id_width: int = 1, axi_id: int = 0, count_width: int = 16,
                 max_in_flight: int = 32) -> None:
        _check_common(line_bytes, data_bytes, addr_width, id_width, axi_id, count_width,
                      max_in_flight)
        self.line_bytes = line_bytes
        self.data_bytes = data_bytes
        self.addr_width = addr_width
        self.id_width = id_width
        self.axi_id = axi_id
        self.count_width = count_width
        self.max_in_flight = max_in_flight
        super().__init__({
            "cmd": In(stream.Signature(command_layout(
                line_bytes=line_bytes, addr_width=addr_width, count_width=count_width))),
            "lines": Out(stream.Signature(line_layout(line_bytes))),
            "axi": Out(AxiReadSignature(addr_width=addr_width, data_bytes=data_bytes,
                                        id_width=id_width)),
            "busy": Out(1),
            "error": Out(1),
            "error_addr": Out(addr_width),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        size = self.data_bytes
        planner = m.submodules.planner = BurstPlanner(
            line_bytes=self.line_bytes, data_bytes=size, addr_width=self.addr_width,
            count_width=self.count_width)
        shift = planner.shift
        wiring.connect(m, wiring.flipped(self.cmd), planner.cmd)

        # One entry per line in flight: what the data side needs to realign its beats.
        line_info = data.StructLayout({
            "offset": unsigned(shift), "last_beat": range(planner.max_line_beats),
            "len": range(self.line_bytes + 1), "last": 1, "addr": unsigned(self.addr_width),
        })
        info_fifo = m.submodules.info_fifo = SyncFIFO(width=line_info.size,
                                                      depth=self.max_in_flight)
        entry = Signal(line_info)
        burst = planner.bursts.payload
        axi = self.axi
        room = ~burst.first | info_fifo.w_rdy
        m.d.comb += [
            axi.arid.eq(self.axi_id),
            axi.araddr.eq(burst.addr),
            axi.arlen.eq(burst.arlen),
            axi.arsize.eq(shift),
            axi.arburst.eq(AxiBurst.INCR),
            axi.arvalid.eq(planner.bursts.valid & room),
            planner.bursts.ready.eq(axi.arready & room),
            info_fifo.w_en.eq(planner.bursts.valid & axi.arready & burst.first),
            info_fifo.w_data.eq(entry),
            entry.offset.eq(burst.line_addr[:shift]),
            entry.last_beat.eq(burst.line_last_beat),
            entry.len.eq(burst.len),
            entry.last.eq(burst.last_line),
            entry.addr.eq(burst.line_addr),
        ]

        info = data.View(line_info, info_fifo.r_data)
        beat = Signal(range(planner.max_line_beats))  # index of the next beat in its line
        last_beat = beat == info.last_beat
        lines = self.lines
        m.d.comb += axi.rready.eq(info_fifo.r_rdy & (~last_beat | ~lines.valid | lines.ready))
        taken = axi.rvalid & axi.rready

        # Rotate the beat so the byte at the line's start offset comes first; then line
        # byte p is rotated byte p % size, taken from the beat where (p + offset) // size
        # equals the beat index.
        if shift:
            rotated = (Cat(axi.rdata, axi.rdata) >> Cat(Const(0, 3), info.offset))[:8 * size]
        else:
            rotated = axi.rdata
        line = Signal(data.ArrayLayout(unsigned(8), self.line_bytes))
        merged = []
        for p in range(self.line_bytes):
            here = (((info.offset + p) >> shift) == beat) & (p < info.len)
            kept = Mux(beat == 0, 0, line[p])
            merged.append(Mux(here, rotated.word_select(p % size, 8), kept))

        with m.If(lines.ready):
            m.d.sync += lines.valid.eq(0)
        with m.If(taken):
            with m.If(last_beat):
                m.d.comb += info_fifo.r_en.eq(1)
                m.d.sync += [
                    beat.eq(0),
                    lines.payload.data.eq(Cat(*merged)),
                    lines.payload.last.eq(info.last),
                    lines.valid.eq(1),
                ]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), line.eq(Cat(*merged))]

        m.d.sync += self.error.eq(taken & axi.rresp[1])
        with m.If(taken & axi.rresp[1]):
            m.d.sync += self.error_addr.eq(info.addr)
        m.d.comb += self.busy.eq(planner.busy | info_fifo.r_rdy | lines.valid)
        return m


class DmaWriter(wiring.Component):
    """Writes a stream of lines to 2-D strided DRAM regions, over an AXI4 write port.

    A command (`command_layout`) takes ``n`` payloads from ``lines``; the first ``len``
    bytes of line ``i`` go to ``addr + i*stride``, with write strobes so that no other byte
    changes. The W beats of a burst are sent only after its AW handshake.

    Parameters
    ----------
    line_bytes, data_bytes, addr_width, id_width, axi_id, count_width : int
        As in `DmaReader`.
    max_in_flight : int
        Bursts that may await their write response at once (at least 2).

    Members
    -------
    cmd : ``In(stream.Signature(command_layout(...)))``
    lines : ``In(stream.Signature(line_layout(line_bytes)))``
        ``last`` is ignored: the command's ``n`` says how many lines are taken.
    axi : ``Out(AxiWriteSignature(...))``
    busy : ``Out(1)``
        A command is accepted and not all its write responses have come back.
    error : ``Out(1)``
        One-cycle pulse: a write response was SLVERR or DECERR.
    error_addr : ``Out(addr_width)``
        Beat-aligned start address of that burst; held until the next error.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range (the message names it).
    """

    def __init__(self, *, line_bytes: int, data_bytes: int, addr_width: int = 32,
                 id_width: int = 1, axi_id: int = 0, count_width: int = 16,
                 max_in_flight: int = 16) -> None:
        _check_common(line_bytes, data_bytes, addr_width, id_width, axi_id, count_width,
                      max_in_flight)
        self.line_bytes = line_bytes
        self.data_bytes = data_bytes
        self.addr_width = addr_width
        self.id_width = id_width
        self.axi_id = axi_id
        self.count_width = count_width
        self.max_in_flight = max_in_flight
        super().__init__({
            "cmd": In(stream.Signature(command_layout(
                line_bytes=line_bytes, addr_width=addr_width, count_width=count_width))),
            "lines": In(stream.Signature(line_layout(line_bytes))),
            "axi": Out(AxiWriteSignature(addr_width=addr_width, data_bytes=data_bytes,
                                         id_width=id_width)),
            "busy": Out(1),
            "error": Out(1),
            "error_addr": Out(addr_width),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        size = self.data_bytes
        planner = m.submodules.planner = BurstPlanner(
            line_bytes=self.line_bytes, data_bytes=size, addr_width=self.addr_width,
            count_width=self.count_width)
        shift = planner.shift
        wiring.connect(m, wiring.flipped(self.cmd), planner.cmd)

        # One entry per burst for the W side, one per burst for the B side.
        burst_info = data.StructLayout({
            "offset": unsigned(shift), "beat": range(planner.max_line_beats),
            "arlen": unsigned(8), "len": range(self.line_bytes + 1), "last": 1,
        })
        w_fifo = m.submodules.w_fifo = SyncFIFO(width=burst_info.size,
                                                depth=self.max_in_flight)
        b_fifo = m.submodules.b_fifo = SyncFIFO(width=self.addr_width,
                                                depth=self.max_in_flight)
        entry = Signal(burst_info)
        burst = planner.bursts.payload
        axi = self.axi
        room = w_fifo.w_rdy & b_fifo.w_rdy
        sent = planner.bursts.valid & axi.awready & room
        m.d.comb += [
            axi.awid.eq(self.axi_id),
            axi.awaddr.eq(burst.addr),
            axi.awlen.eq(burst.arlen),
            axi.awsize.eq(shift),
            axi.awburst.eq(AxiBurst.INCR),
            axi.awvalid.eq(planner.bursts.valid & room),
            planner.bursts.ready.eq(axi.awready & room),
            w_fifo.w_en.eq(sent),
            w_fifo.w_data.eq(entry),
            entry.offset.eq(burst.line_addr[:shift]),
            entry.beat.eq(burst.beat),
            entry.arlen.eq(burst.arlen),
            entry.len.eq(burst.len),
            entry.last.eq(burst.last),
            b_fifo.w_en.eq(sent),
            b_fifo.w_data.eq(burst.addr),
        ]

        info = data.View(burst_info, w_fifo.r_data)
        line = Signal(data.ArrayLayout(unsigned(8), self.line_bytes))
        have_line = Signal()
        count = Signal(8)  # beats of the current burst already sent
        beat = Signal(range(planner.max_line_beats + 1))  # index of this beat in its line
        m.d.comb += beat.eq(info.beat + count)
        wlast = count == info.arlen
        m.d.comb += [
            axi.wvalid.eq(w_fifo.r_rdy & have_line),
            axi.wlast.eq(wlast),
        ]
        sent_beat = axi.wvalid & axi.wready
        line_done = sent_beat & wlast & info.last
        m.d.comb += self.lines.ready.eq(~have_line | line_done)

        # Beat `beat` carries line bytes from beat * size - offset on: the top of chunk
        # beat - 1 and the bottom of chunk `beat` of the zero-padded line.
        chunks = -(-self.line_bytes // size)
        padded = Cat(line, Const(0, 8 * (chunks * size - self.line_bytes)))
        zero = Const(0, 8 * size)
        chunk = [zero, *(padded.word_select(j, 8 * size) for j in range(chunks)), zero]
        pairs = Array(Cat(chunk[j], chunk[j + 1]) for j in range(chunks + 1))
        pair = Signal(16 * size)
        m.d.comb += pair.eq(pairs[beat])
        if shift:
            m.d.comb += axi.wdata.eq(
                (pair >> Cat(Const(0, 3), size - info.offset))[:8 * size])
        else:
            m.d.comb += axi.wdata.eq(pair[8:16])
        length = Mux(info.len > self.line_bytes, self.line_bytes, info.len)
        position = beat << shift  # address of byte 0 of this beat, relative to the line
        m.d.comb += axi.wstrb.eq(Cat(
            (position + j >= info.offset) & (position + j < info.offset + length)
            for j in range(size)))

        with m.If(sent_beat):
            with m.If(wlast):
                m.d.comb += w_fifo.r_en.eq(1)
                m.d.sync += count.eq(0)
            with m.Else():
                m.d.sync += count.eq(count + 1)
        with m.If(line_done):
            m.d.sync += have_line.eq(0)
        with m.If(self.lines.valid & self.lines.ready):
            m.d.sync += [line.eq(self.lines.payload.data), have_line.eq(1)]

        m.d.comb += [axi.bready.eq(1), b_fifo.r_en.eq(axi.bvalid)]
        m.d.sync += self.error.eq(axi.bvalid & axi.bresp[1])
        with m.If(axi.bvalid & axi.bresp[1]):
            m.d.sync += self.error_addr.eq(b_fifo.r_data)
        m.d.comb += self.busy.eq(planner.busy | w_fifo.r_rdy | b_fifo.r_rdy)
        return m
