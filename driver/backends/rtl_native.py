"""The ``rtl`` backend's native simulation server: a C++ main linked with the Verilated
`gemmstone.hw.sim_top.SimTop`, with no cocotb, VPI or Python in the simulator process.

`SERVER_CPP` serves the requests of `rtl_link` (the protocol the cocotb server `rtl_server`
speaks too) on the driver's Unix socket:

- register reads and writes: AXI4-Lite transfers on the top's ``s_axil`` port, clocked in
  C++ (a handful of cycles each);
- memory reads and writes: copied straight into the DRAM model's memory array between two
  clock cycles (`gemmstone.hw.sim_top.DRAM_MEMORY_MEMBER`), no files;
- "run N cycles": a C++ loop of clock edges, cut short when the top's ``busy`` output falls.

Against the cocotb server, this removes per clock edge the VPI callbacks of cocotb's clock,
the value-change scan and the input-combinational re-evaluation they trigger, and the
Python start-up of the simulator (seconds). The executable is built with -O3 from the
Verilog with its reset branches merged (`gemmstone.hw.sim_top.merge_reset_branches`: the
same behaviour; Verilator converts it 20x faster, for ~4% more instructions per cycle) and
cached by content (`gemmstone.hw.sim_build.build_native`): a new config costs one build of
1-3 minutes on 2 cores (16x16: 83-171 s measured).
"""

from __future__ import annotations

import functools

from gemmstone.config import AcceleratorConfig

__all__ = ["SERVER_CPP", "build_server"]

SERVER_CPP = r"""// gemmstone rtl backend: native simulation server (driver/backends/rtl_native.py)
//
// Serves gemmstone.driver.backends.rtl_link requests on a Unix socket for a Verilated
// gemmstone_sim_top: register reads and writes through the AXI4-Lite port, DRAM reads and
// writes straight into the DRAM model's memory array, and "run N cycles" (cut short when the
// top's busy output falls). The clock is a C++ loop: no VPI, no Python in this process.
//
// Usage: <executable> SOCKET MEMORY_BYTES LATENCY
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "Vtop.h"
#include "Vtop___024root.h"
#include "verilated.h"

#ifndef GEMMSTONE_DRAM_MEM
#error "define GEMMSTONE_DRAM_MEM as the DRAM model's memory member of Vtop___024root"
#endif
#ifndef GEMMSTONE_DATA_BYTES
#error "define GEMMSTONE_DATA_BYTES as the DRAM bus width in bytes"
#endif

namespace {

enum Op : uint8_t { HELLO = 0, READ_REG = 1, WRITE_REG = 2, READ_MEM = 3, WRITE_MEM = 4,
                    RUN = 5, CLOSE = 6 };
constexpr uint8_t STATUS_OK = 0, STATUS_FAILED = 1;
constexpr size_t HEADER_BYTES = 17;  // "<BQQ"
// Cycles an AXI4-Lite handshake may wait before the request fails (the design is stuck).
constexpr uint64_t HANDSHAKE_CYCLES = 1u << 20;

struct Failure {
    std::string message;
};

class Server {
  public:
    Server(int link, uint64_t memory_bytes, unsigned latency)
        : link_(link), memory_bytes_(memory_bytes), context_(new VerilatedContext),
          top_(new Vtop{context_.get(), ""}) {
        top_->clk = 0;
        top_->rst = 1;
        top_->dram_latency = latency;
        top_->dram_rate = 0;
        top_->eval();
        for (int i = 0; i < 5; ++i) tick();
        top_->rst = 0;
        tick();
    }

    ~Server() { top_->final(); }

    // Serve requests until CLOSE or until the driver goes away.
    void serve() {
        send_reply(HELLO, static_cast<uint64_t>(getpid()), nullptr, 0);
        std::vector<uint8_t> payload;
        for (;;) {
            uint8_t header[HEADER_BYTES];
            if (!receive(header, HEADER_BYTES)) return;
            const uint8_t op = header[0];
            uint64_t a, b;
            std::memcpy(&a, header + 1, 8);
            std::memcpy(&b, header + 9, 8);
            if (op == WRITE_MEM) {
                payload.resize(b);
                if (b && !receive(payload.data(), b)) return;
            }
            try {
                switch (op) {
                    case READ_REG: send_reply(STATUS_OK, read_reg(a), nullptr, 0); break;
                    case WRITE_REG: write_reg(a, b); send_reply(STATUS_OK, 0, nullptr, 0); break;
                    case READ_MEM: {
                        check_range(a, b);
                        std::vector<uint8_t> data(b);
                        copy_out(a, data.data(), b);
                        send_reply(STATUS_OK, 0, data.data(), b);
                        break;
                    }
                    case WRITE_MEM:
                        check_range(a, b);
                        copy_in(a, payload.data(), b);
                        send_reply(STATUS_OK, 0, nullptr, 0);
                        break;
                    case RUN: run(a); send_reply(STATUS_OK, 0, nullptr, 0); break;
                    case CLOSE: send_reply(STATUS_OK, 0, nullptr, 0); return;
                    default: throw Failure{"ValueError: unknown request " + std::to_string(op)};
                }
            } catch (const Failure& failure) {
                send_reply(STATUS_FAILED, 0, failure.message.data(), failure.message.size());
            }
        }
    }

  private:
    // One clock cycle: rising edge, then falling edge (inputs set between two ticks are
    // sampled at the next rising edge).
    void tick() {
        top_->clk = 1;
        top_->eval();
        top_->clk = 0;
        top_->eval();
    }

    uint32_t read_reg(uint64_t address) {
        top_->s_axil_araddr = static_cast<uint32_t>(address);
        top_->s_axil_rready = 1;
        bool address_pending = true;
        uint32_t data = 0;
        for (uint64_t cycle = 0;; ++cycle) {
            if (cycle == HANDSHAKE_CYCLES) stuck("read", address);
            top_->s_axil_arvalid = address_pending;
            top_->eval();
            const bool address_fire = address_pending && top_->s_axil_arready;
            const bool data_fire = top_->s_axil_rvalid;
            data = top_->s_axil_rdata;
            tick();
            address_pending &= !address_fire;
            if (data_fire) break;
        }
        top_->s_axil_arvalid = 0;
        top_->s_axil_rready = 0;
        return data;
    }

    void write_reg(uint64_t address, uint64_t value) {
        top_->s_axil_awaddr = static_cast<uint32_t>(address);
        top_->s_axil_wdata = static_cast<uint32_t>(value);
        top_->s_axil_wstrb = 0xf;
        top_->s_axil_bready = 1;
        bool address_pending = true, data_pending = true;
        for (uint64_t cycle = 0;; ++cycle) {
            if (cycle == HANDSHAKE_CYCLES) stuck("write", address);
            top_->s_axil_awvalid = address_pending;
            top_->s_axil_wvalid = data_pending;
            top_->eval();
            const bool address_fire = address_pending && top_->s_axil_awready;
            const bool data_fire = data_pending && top_->s_axil_wready;
            const bool response_fire = top_->s_axil_bvalid;
            tick();
            address_pending &= !address_fire;
            data_pending &= !data_fire;
            if (response_fire) break;
        }
        top_->s_axil_awvalid = 0;
        top_->s_axil_wvalid = 0;
        top_->s_axil_bready = 0;
    }

    [[noreturn]] static void stuck(const char* what, uint64_t address) {
        char message[160];
        std::snprintf(message, sizeof message,
                      "TimeoutError: the AXI4-Lite %s of register 0x%llx got no response "
                      "within %llu cycles", what, static_cast<unsigned long long>(address),
                      static_cast<unsigned long long>(HANDSHAKE_CYCLES));
        throw Failure{message};
    }

    // Up to `cycles` cycles; fewer when a run in progress ends (busy falls), since the
    // driver polls STATUS next anyway.
    void run(uint64_t cycles) {
        if (cycles == 0) cycles = 1;
        if (top_->busy) {
            for (uint64_t i = 0; i < cycles; ++i) {
                tick();
                if (!top_->busy) return;
            }
        } else {
            for (uint64_t i = 0; i < cycles; ++i) tick();
        }
    }

    void check_range(uint64_t address, uint64_t size) const {
        if (address + size > memory_bytes_ || address + size < address) {
            char message[200];
            std::snprintf(message, sizeof message,
                          "ValueError: [0x%llx, 0x%llx) is outside the 0x%llx bytes of "
                          "simulated DRAM", static_cast<unsigned long long>(address),
                          static_cast<unsigned long long>(address + size),
                          static_cast<unsigned long long>(memory_bytes_));
            throw Failure{message};
        }
    }

    // The DRAM model's words hold bus byte i in bits 8i+7..8i: on a little-endian host the
    // bytes of a word's storage (IData, QData or VlWide's 32-bit words) are bus order.
    template <typename Word>
    static uint8_t* bytes_of(Word& word) { return reinterpret_cast<uint8_t*>(&word); }
    template <std::size_t N>
    static uint8_t* bytes_of(VlWide<N>& word) { return reinterpret_cast<uint8_t*>(word.data()); }

    auto& memory() { return top_->rootp->GEMMSTONE_DRAM_MEM; }

    template <typename Copy>
    void for_words(uint64_t address, uint64_t size, Copy copy) {
        auto& mem = memory();
        constexpr uint64_t word_bytes = GEMMSTONE_DATA_BYTES;
        uint64_t done = 0;
        while (done < size) {
            const uint64_t at = address + done;
            const uint64_t word = at / word_bytes, offset = at % word_bytes;
            const uint64_t chunk = std::min(word_bytes - offset, size - done);
            copy(bytes_of(mem[word]) + offset, done, chunk);
            done += chunk;
        }
    }

    void copy_in(uint64_t address, const uint8_t* data, uint64_t size) {
        for_words(address, size, [data](uint8_t* word, uint64_t done, uint64_t chunk) {
            std::memcpy(word, data + done, chunk);
        });
    }

    void copy_out(uint64_t address, uint8_t* data, uint64_t size) {
        for_words(address, size, [data](uint8_t* word, uint64_t done, uint64_t chunk) {
            std::memcpy(data + done, word, chunk);
        });
    }

    bool receive(void* buffer, size_t size) {
        auto* at = static_cast<uint8_t*>(buffer);
        while (size) {
            const ssize_t got = ::recv(link_, at, size, 0);
            if (got == 0) return false;  // the driver closed the connection
            if (got < 0) {
                if (errno == EINTR) continue;
                return false;
            }
            at += got;
            size -= static_cast<size_t>(got);
        }
        return true;
    }

    void send_all(const void* buffer, size_t size) {
        const auto* at = static_cast<const uint8_t*>(buffer);
        while (size) {
            const ssize_t sent = ::send(link_, at, size, MSG_NOSIGNAL);
            if (sent < 0) {
                if (errno == EINTR) continue;
                std::perror("gemmstone rtl server: send");
                std::exit(3);
            }
            at += sent;
            size -= static_cast<size_t>(sent);
        }
    }

    void send_reply(uint8_t code, uint64_t value, const void* data, uint64_t size) {
        uint8_t header[HEADER_BYTES];
        header[0] = code;
        std::memcpy(header + 1, &value, 8);
        std::memcpy(header + 9, &size, 8);
        send_all(header, HEADER_BYTES);
        if (size) send_all(data, size);
    }

    int link_;
    uint64_t memory_bytes_;
    std::unique_ptr<VerilatedContext> context_;
    std::unique_ptr<Vtop> top_;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s SOCKET MEMORY_BYTES LATENCY\n", argv[0]);
        return 2;
    }
    const int link = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (link < 0 || std::strlen(argv[1]) >= sizeof address.sun_path) {
        std::fprintf(stderr, "gemmstone rtl server: bad socket %s\n", argv[1]);
        return 2;
    }
    std::strcpy(address.sun_path, argv[1]);
    if (::connect(link, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
        std::perror("gemmstone rtl server: connect");
        return 2;
    }
    {
        Server server(link, std::strtoull(argv[2], nullptr, 10),
                      static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10)));
        server.serve();
    }
    ::close(link);
    return 0;
}
"""


def build_server(config: AcceleratorConfig, *, cache_dir=None):
    """The native server executable for ``config`` (`SimTop` with ``config.dram_bytes`` of
    DRAM): a `gemmstone.hw.sim_build.NativeExecutable`, built once per content and cached
    on disk; the Verilog is generated once per process."""
    return _build_server(config, cache_dir)


@functools.cache
def _build_server(config: AcceleratorConfig, cache_dir):
    from gemmstone.hw.sim_build import build_native
    from gemmstone.hw.sim_top import (
        DRAM_MEMORY_MEMBER,
        TOP_NAME,
        cached_sim_top_verilog,
        merge_reset_branches,
    )

    verilog = merge_reset_branches(cached_sim_top_verilog(config, cache_dir=cache_dir))
    return build_native(verilog, toplevel=TOP_NAME, harness=SERVER_CPP, defines={
        "GEMMSTONE_DRAM_MEM": DRAM_MEMORY_MEMBER,
        "GEMMSTONE_DATA_BYTES": str(config.dram_bytes_per_cycle),
    }, cache_dir=cache_dir)
