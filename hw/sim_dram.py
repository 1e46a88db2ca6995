"""`SimDram`, a DRAM model that runs inside the simulation: an AXI4 subordinate memory
with latency, bandwidth and bulk host access, so no Python runs per cycle or per beat.

`SIM_DRAM_VERILOG` is a small hand-written Verilog module, ``gemmstone_sim_dram`` (Verilog
rather than Amaranth because only Verilog system tasks can move a whole memory in and out
of a Verilated model in one step). Its behaviour:

- **Bursts.** INCR bursts of full-width beats (what gemmstone's DMA issues), any ID, up to
  ``OUTSTANDING`` read and ``OUTSTANDING`` write bursts accepted ahead of their data.
  Reads are answered in the order they were accepted (legal for any IDs); writes honour
  the byte strobes. A beat outside the memory reads as zero, writes nothing and answers
  DECERR. Any other burst type or a narrow size sets the sticky ``error`` output.
- **Latency.** A burst accepted in cycle T returns its first read beat, or (when its data
  has arrived) its write response, in cycle ``T + latency`` at the earliest. Read data
  leaves through a registered stage, so read latencies below 2 act as 2.
- **Bandwidth.** At most one read beat and one write beat per cycle (the bus width, i.e.
  ``config.dram_bytes_per_cycle``). With ``rate`` > 0, reads and writes share a budget of
  ``rate`` bytes per cycle (a beat costs the full bus width; reads and writes take turns
  when both wait), so a sweep can make DRAM the bottleneck without rebuilding.
- **Host access.** While the ``load`` input is high at a clock edge the model reads words
  ``first..last`` from the binary file named by the ``file`` port (``$fread``); with
  ``dump`` high it writes them to that file (``$fwrite`` ``%u``). ``file`` holds the path
  as an ASCII string (last character in the low byte, unused leading bytes zero; see
  `file_port_value`). `write_image` and `read_image` convert between DRAM bytes and those
  files with numpy. A failed open or a short read sets ``error``. Measured on the 2-core
  reference machine, 4 MiB load in 0.08 s and dump in 0.12 s; ``$readmemh`` text takes
  0.77 s and 0.30 s, and writing the array word by word through cocotb (VPI) 74 us per word.

``latency`` and ``rate`` are inputs, not parameters: one Verilated build serves a whole
latency/bandwidth sweep. They pass through a register (they act one cycle after they
change), so no output of the model depends combinationally on any input. Dumps are in the
host's byte order (little-endian assumed). `SimDram` is the Amaranth face of the module
(an ``Instance`` with an AXI4 subordinate port); `gemmstone.hw.sim_top` puts it under the
accelerator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gemmstone.hw.axi import AxiSignature, flat_port_names
from gemmstone.hw.params import check_int, check_power_of_two

__all__ = ["SimDram", "sim_dram_verilog", "SIM_DRAM_VERILOG", "MODULE_NAME", "FILE_CHARS",
           "DEFAULT_OUTSTANDING", "write_image", "read_image", "file_port_value"]

MODULE_NAME = "gemmstone_sim_dram"
#: Longest host file path the ``file`` port holds.
FILE_CHARS = 512
#: Bursts of each direction the model accepts ahead of their data: enough to keep one beat
#: per cycle flowing over a 60-cycle latency with one-beat bursts.
DEFAULT_OUTSTANDING = 64

SIM_DRAM_VERILOG = r"""
// gemmstone_sim_dram: simulation-only AXI4 subordinate memory (see gemmstone/hw/sim_dram.py).
module gemmstone_sim_dram #(
    parameter integer DATA_BYTES = 16,
    parameter integer ADDR_WIDTH = 32,
    parameter integer ID_WIDTH = 2,
    parameter integer WORDS = 65536,
    parameter integer OUTSTANDING = 64,
    parameter integer FILE_CHARS = 512
) (
    input  wire                      clk,
    input  wire                      rst,
    input  wire [15:0]               latency,
    input  wire [15:0]               rate,
    input  wire [8*FILE_CHARS-1:0]   file,
    input  wire [31:0]               first,
    input  wire [31:0]               last,
    input  wire                      load,
    input  wire                      dump,
    output reg                       error,

    input  wire [ID_WIDTH-1:0]       s_axi_arid,
    input  wire [ADDR_WIDTH-1:0]     s_axi_araddr,
    input  wire [7:0]                s_axi_arlen,
    input  wire [2:0]                s_axi_arsize,
    input  wire [1:0]                s_axi_arburst,
    input  wire                      s_axi_arvalid,
    output wire                      s_axi_arready,
    output wire [ID_WIDTH-1:0]       s_axi_rid,
    output wire [8*DATA_BYTES-1:0]   s_axi_rdata,
    output wire [1:0]                s_axi_rresp,
    output wire                      s_axi_rlast,
    output wire                      s_axi_rvalid,
    input  wire                      s_axi_rready,

    input  wire [ID_WIDTH-1:0]       s_axi_awid,
    input  wire [ADDR_WIDTH-1:0]     s_axi_awaddr,
    input  wire [7:0]                s_axi_awlen,
    input  wire [2:0]                s_axi_awsize,
    input  wire [1:0]                s_axi_awburst,
    input  wire                      s_axi_awvalid,
    output wire                      s_axi_awready,
    input  wire [8*DATA_BYTES-1:0]   s_axi_wdata,
    input  wire [DATA_BYTES-1:0]     s_axi_wstrb,
    input  wire                      s_axi_wlast,
    input  wire                      s_axi_wvalid,
    output wire                      s_axi_wready,
    output wire [ID_WIDTH-1:0]       s_axi_bid,
    output wire [1:0]                s_axi_bresp,
    output wire                      s_axi_bvalid,
    input  wire                      s_axi_bready
);
    localparam integer SHIFT = $clog2(DATA_BYTES);
    localparam integer QBITS = $clog2(OUTSTANDING);
    localparam integer WBITS = ADDR_WIDTH - SHIFT;
    localparam [1:0] OKAY = 2'b00, DECERR = 2'b11;
    localparam [1:0] INCR = 2'b01;

    reg [8*DATA_BYTES-1:0] mem [0:WORDS-1];
    reg [47:0] now;  // cycles since reset: the time base of every latency
    // Settings through registers: no output then depends combinationally on an input, so
    // a simulator need not re-evaluate the design behind the bus whenever one changes.
    reg [15:0] latency_q, rate_q;

    // -- read address queue --------------------------------------------------------------
    reg [ID_WIDTH-1:0] ar_id   [0:OUTSTANDING-1];
    reg [WBITS-1:0]    ar_word [0:OUTSTANDING-1];
    reg [7:0]          ar_len  [0:OUTSTANDING-1];
    reg [47:0]         ar_time [0:OUTSTANDING-1];  // cycle in which its first beat may load
    reg [QBITS:0]      ar_count;
    reg [QBITS-1:0]    ar_head, ar_tail;
    reg [7:0]          r_beat;   // next beat of the head burst
    assign s_axi_arready = ar_count != OUTSTANDING;
    wire ar_fire = s_axi_arvalid & s_axi_arready;

    // -- read data: a 2-entry output queue, so what is loaded never depends on rready ----
    reg [ID_WIDTH-1:0]     rq_id   [0:1];
    reg [8*DATA_BYTES-1:0] rq_data [0:1];
    reg [1:0]              rq_resp [0:1];
    reg                    rq_last [0:1];
    reg [1:0]              rq_count;
    reg                    rq_head, rq_tail;
    assign s_axi_rvalid = rq_count != 0;
    assign s_axi_rid = rq_id[rq_head];
    assign s_axi_rdata = rq_data[rq_head];
    assign s_axi_rresp = rq_resp[rq_head];
    assign s_axi_rlast = rq_last[rq_head];
    wire r_fire = s_axi_rvalid & s_axi_rready;

    // -- write address queue and write responses ---------------------------------------
    reg [ID_WIDTH-1:0] aw_id   [0:OUTSTANDING-1];
    reg [WBITS-1:0]    aw_word [0:OUTSTANDING-1];
    reg [7:0]          aw_len  [0:OUTSTANDING-1];
    reg [47:0]         aw_time [0:OUTSTANDING-1];  // earliest cycle of its response
    reg [QBITS:0]      aw_count;
    reg [QBITS-1:0]    aw_head, aw_tail;
    reg [7:0]          w_beat;
    reg                w_bad;    // a beat of the current write burst was out of range
    reg [ID_WIDTH-1:0] b_id    [0:OUTSTANDING-1];
    reg [1:0]          b_resp  [0:OUTSTANDING-1];
    reg [47:0]         b_time  [0:OUTSTANDING-1];
    reg [QBITS:0]      b_count;
    reg [QBITS-1:0]    b_head, b_tail;
    assign s_axi_awready = aw_count != OUTSTANDING;
    wire aw_fire = s_axi_awvalid & s_axi_awready;
    assign s_axi_bvalid = b_count != 0 && now >= b_time[b_head];
    assign s_axi_bid = b_id[b_head];
    assign s_axi_bresp = b_resp[b_head];
    wire b_fire = s_axi_bvalid & s_axi_bready;

    // -- bandwidth: both directions draw on one byte budget when rate != 0 ---------------
    wire throttled = rate_q != 16'd0;
    reg [16:0] credit;
    reg w_turn;  // when both directions could move a beat, whose turn it is
    wire credit_ok = !throttled || credit >= DATA_BYTES;
    wire r_possible = ar_count != 0 && now >= ar_time[ar_head] && rq_count != 2;
    wire w_possible = aw_count != 0 && b_count != OUTSTANDING;
    assign s_axi_wready = w_possible && credit_ok && (!throttled || w_turn || !r_possible);
    wire w_fire = s_axi_wvalid & s_axi_wready;
    wire r_load = r_possible && credit_ok && !(throttled && w_fire);

    wire [WBITS:0] r_word = {1'b0, ar_word[ar_head]} + {{(WBITS-7){1'b0}}, r_beat};
    wire [WBITS:0] w_word = {1'b0, aw_word[aw_head]} + {{(WBITS-7){1'b0}}, w_beat};
    wire r_inside = r_word < WORDS;
    wire w_inside = w_word < WORDS;
    // A read accepted now may load its first beat in cycle now + latency - 1 and hand it
    // over in cycle now + latency.
    wire [47:0] read_ready = latency_q == 16'd0 ? now : now + {32'd0, latency_q} - 48'd1;
    wire [47:0] write_ready = now + {32'd0, latency_q};
    wire [16:0] spent = (r_load || w_fire) ? DATA_BYTES : 17'd0;
    wire [16:0] refilled = credit + {1'b0, rate_q} - spent;
    // Idle credit stops at what a beat needs plus what waiting for the next one can add,
    // so a fractional rate loses nothing and an idle bus saves up for no burst.
    wire [16:0] cap = DATA_BYTES + {1'b0, rate_q} - 17'd1;
    integer i, fd, got;
    reg [31:0] j;

    always @(posedge clk) begin
        latency_q <= latency;
        rate_q <= rate;
        if (load) begin
            fd = $fopen(file, "rb");
            if (fd == 0) begin
                $display("gemmstone_sim_dram: cannot open %0s", file);
                error <= 1'b1;
            end else begin
                got = $fread(mem, fd, first, last - first + 1);
                $fclose(fd);
                if (got != (last - first + 1) * DATA_BYTES) begin
                    $display("gemmstone_sim_dram: %0s holds %0d bytes, not %0d", file, got,
                             (last - first + 1) * DATA_BYTES);
                    error <= 1'b1;
                end
            end
        end
        if (dump) begin
            fd = $fopen(file, "wb");
            if (fd == 0) begin
                $display("gemmstone_sim_dram: cannot create %0s", file);
                error <= 1'b1;
            end else begin
                for (j = first; j <= last; j = j + 1) $fwrite(fd, "%u", mem[j]);
                $fclose(fd);
            end
        end
        if (rst) begin
            now <= 48'd0;
            ar_count <= 0; ar_head <= 0; ar_tail <= 0; r_beat <= 8'd0;
            rq_count <= 2'd0; rq_head <= 1'b0; rq_tail <= 1'b0;
            aw_count <= 0; aw_head <= 0; aw_tail <= 0; w_beat <= 8'd0; w_bad <= 1'b0;
            b_count <= 0; b_head <= 0; b_tail <= 0;
            credit <= DATA_BYTES; w_turn <= 1'b0; error <= 1'b0;
        end else begin
            now <= now + 48'd1;
            if (ar_fire) begin
                ar_id[ar_tail] <= s_axi_arid;
                ar_word[ar_tail] <= s_axi_araddr[ADDR_WIDTH-1:SHIFT];
                ar_len[ar_tail] <= s_axi_arlen;
                ar_time[ar_tail] <= read_ready;
                ar_tail <= ar_tail + 1'b1;
                if (s_axi_arburst != INCR || s_axi_arsize != SHIFT) error <= 1'b1;
            end
            if (r_load) begin
                rq_id[rq_tail] <= ar_id[ar_head];
                rq_data[rq_tail] <= r_inside ? mem[r_word[WBITS-1:0]] : {8*DATA_BYTES{1'b0}};
                rq_resp[rq_tail] <= r_inside ? OKAY : DECERR;
                rq_last[rq_tail] <= r_beat == ar_len[ar_head];
                rq_tail <= ~rq_tail;
                if (r_beat == ar_len[ar_head]) begin
                    r_beat <= 8'd0;
                    ar_head <= ar_head + 1'b1;
                end else begin
                    r_beat <= r_beat + 8'd1;
                end
            end
            ar_count <= ar_count + {{QBITS{1'b0}}, ar_fire}
                        - {{QBITS{1'b0}}, r_load && r_beat == ar_len[ar_head]};
            if (r_fire) rq_head <= ~rq_head;
            rq_count <= rq_count + {1'b0, r_load} - {1'b0, r_fire};

            if (aw_fire) begin
                aw_id[aw_tail] <= s_axi_awid;
                aw_word[aw_tail] <= s_axi_awaddr[ADDR_WIDTH-1:SHIFT];
                aw_len[aw_tail] <= s_axi_awlen;
                aw_time[aw_tail] <= write_ready;
                aw_tail <= aw_tail + 1'b1;
                if (s_axi_awburst != INCR || s_axi_awsize != SHIFT) error <= 1'b1;
            end
            if (w_fire) begin
                if (w_inside) begin
                    for (i = 0; i < DATA_BYTES; i = i + 1) begin
                        if (s_axi_wstrb[i])
                            mem[w_word[WBITS-1:0]][8*i +: 8] <= s_axi_wdata[8*i +: 8];
                    end
                end
                if (w_beat == aw_len[aw_head]) begin
                    b_id[b_tail] <= aw_id[aw_head];
                    b_resp[b_tail] <= (w_bad || !w_inside) ? DECERR : OKAY;
                    b_time[b_tail] <= aw_time[aw_head] > now ? aw_time[aw_head] : now + 48'd1;
                    b_tail <= b_tail + 1'b1;
                    aw_head <= aw_head + 1'b1;
                    w_beat <= 8'd0;
                    w_bad <= 1'b0;
                    if (!s_axi_wlast) error <= 1'b1;
                end else begin
                    w_beat <= w_beat + 8'd1;
                    w_bad <= w_bad || !w_inside;
                    if (s_axi_wlast) error <= 1'b1;
                end
            end
            aw_count <= aw_count + {{QBITS{1'b0}}, aw_fire}
                        - {{QBITS{1'b0}}, w_fire && w_beat == aw_len[aw_head]};
            if (b_fire) b_head <= b_head + 1'b1;
            b_count <= b_count + {{QBITS{1'b0}}, w_fire && w_beat == aw_len[aw_head]}
                       - {{QBITS{1'b0}}, b_fire};

            if (!throttled) credit <= DATA_BYTES;
            else credit <= refilled > cap ? cap : refilled;
            if (r_load) w_turn <= 1'b1;
            else if (w_fire) w_turn <= 1'b0;
        end
    end
endmodule
"""


class SimDram(wiring.Component):
    """The simulation DRAM model (`SIM_DRAM_VERILOG`) as an Amaranth component.

    Simulation only: the module is Verilog text that `sim_dram_verilog` (or
    `gemmstone.hw.sim_top.sim_top_verilog`) appends to the design.

    Parameters
    ----------
    data_bytes : int
        Bus width in bytes (a power of two up to 128).
    words : int
        Memory size in bus words, from address 0.
    addr_width, id_width : int
        AXI address and ID widths.
    outstanding : int
        Read and write bursts accepted ahead of their data (a power of two, at least 2).

    Members
    -------
    axi : In(AxiSignature(...))
        The AXI4 subordinate port.
    latency : In(16)
        Cycles from a burst's address to its first read beat or its write response.
    rate : In(16)
        Bytes per cycle shared by reads and writes; 0 = one beat per cycle each way.
    file : In(8 * FILE_CHARS)
        Image file path (`file_port_value`).
    first, last : In(32)
        Word range of a load or dump.
    load, dump : In(1)
        High at a clock edge: load that range from the file / dump it there.
    error : Out(1)
        Sticky: a burst the model does not implement (not INCR, narrow, misplaced wlast).

    Raises
    ------
    TypeError, ValueError
        On a bad parameter, naming it.
    """

    def __init__(self, *, data_bytes: int, words: int, addr_width: int = 32,
                 id_width: int = 1, outstanding: int = DEFAULT_OUTSTANDING) -> None:
        check_power_of_two("data_bytes", data_bytes)
        check_int("words", words)
        check_power_of_two("outstanding", outstanding)
        if outstanding < 2:
            raise ValueError(f"'outstanding' must be at least 2, not {outstanding}")
        if words * data_bytes > 1 << addr_width:
            raise ValueError(f"'words' ({words} words of {data_bytes} bytes) must fit the "
                             f"{addr_width}-bit address space")
        self.data_bytes = data_bytes
        self.words = words
        self.outstanding = outstanding
        super().__init__({
            "axi": In(AxiSignature(addr_width=addr_width, data_bytes=data_bytes,
                                   id_width=id_width)),
            "latency": In(16),
            "rate": In(16),
            "file": In(8 * FILE_CHARS),
            "first": In(32),
            "last": In(32),
            "load": In(1),
            "dump": In(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        axi = self.axi
        ports = {}
        for name, member in axi.signature.members.items():
            # This port is flipped: what the manager drives is In here.
            ports[f"{'i' if member.flow == In else 'o'}_s_axi_{name}"] = getattr(axi, name)
        m.submodules.model = Instance(
            MODULE_NAME,
            p_DATA_BYTES=self.data_bytes, p_ADDR_WIDTH=axi.signature.addr_width,
            p_ID_WIDTH=axi.signature.id_width, p_WORDS=self.words,
            p_OUTSTANDING=self.outstanding, p_FILE_CHARS=FILE_CHARS,
            i_clk=ClockSignal(), i_rst=ResetSignal(),
            i_latency=self.latency, i_rate=self.rate, i_file=self.file, i_first=self.first,
            i_last=self.last, i_load=self.load, i_dump=self.dump, o_error=self.error,
            **ports,
        )
        return m


def sim_dram_verilog(dram: SimDram, *, name: str = "gemmstone_sim_dram_top") -> str:
    """Verilog of ``dram`` as a top module ``name`` (ports ``axi_araddr``, ``latency``,
    ...), with the model's module appended."""
    if not isinstance(dram, SimDram):
        raise TypeError(f"'dram' must be a SimDram, not {dram!r}")
    text = verilog.convert(dram, name=name, ports=flat_port_names(dram), emit_src=False)
    return text + SIM_DRAM_VERILOG


def file_port_value(path: str | Path) -> int:
    """The value of the model's ``file`` port that names ``path``.

    Raises
    ------
    ValueError
        If the path is longer than `FILE_CHARS` bytes or not ASCII.
    """
    text = str(path)
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"the DRAM image path must be ASCII, not {text!r}") from None
    if len(raw) > FILE_CHARS:
        raise ValueError(f"the DRAM image path must be at most {FILE_CHARS} characters, "
                         f"not {len(raw)}: {text!r}")
    return int.from_bytes(raw, "big")


def _chunk_bytes(data_bytes: int) -> int:
    # $fwrite %u writes each word as 32-bit units, least significant first.
    return max(4, data_bytes)


def write_image(path: str | Path, data: bytes | np.ndarray, *, data_bytes: int) -> int:
    """Write ``data`` as an image file for a load of ``data_bytes``-byte words.

    ``data`` is zero-padded to whole words. ``$fread`` fills a word from its most
    significant byte, so each word's bytes are stored reversed. Returns the number of
    words (the ``last - first + 1`` of the load).
    """
    check_power_of_two("data_bytes", data_bytes)
    raw = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray)
                        else np.ascontiguousarray(data).tobytes(), np.uint8)
    words = max(1, -(-raw.size // data_bytes))
    padded = np.zeros(words * data_bytes, np.uint8)
    padded[:raw.size] = raw
    Path(path).write_bytes(padded.reshape(words, data_bytes)[:, ::-1].tobytes())
    return words


def read_image(path: str | Path, *, data_bytes: int, words: int) -> bytes:
    """The DRAM bytes of a dump of ``words`` words of ``data_bytes`` bytes.

    Raises
    ------
    ValueError
        If the file does not hold exactly ``words`` words.
    """
    check_power_of_two("data_bytes", data_bytes)
    check_int("words", words)
    chunk = _chunk_bytes(data_bytes)
    raw = np.frombuffer(Path(path).read_bytes(), np.uint8)
    if raw.size != words * chunk:
        raise ValueError(f"{path}: expected {words} words of {data_bytes} bytes "
                         f"({words * chunk} bytes), found {raw.size} bytes")
    return raw.reshape(words, chunk)[:, :data_bytes].tobytes()
