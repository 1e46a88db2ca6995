"""`Accelerator`: the top level — register block and core — with the two AXI ports a host
system connects: an AXI4-Lite subordinate for registers and an AXI4 manager for DRAM."""

from amaranth.back import verilog
from amaranth.hdl import Module, ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from gemmstone.config import AcceleratorConfig
from gemmstone.hw.axi import AxiLiteSignature, AxiSignature, flat_port_names
from gemmstone.hw.core import Core
from gemmstone.hw.register_map import ADDR_WIDTH
from gemmstone.hw.registers import RegisterBlock
from gemmstone.isa.limits import check_config_fits
from gemmstone.isa.table import isa_hash

__all__ = ["Accelerator", "accelerator_verilog", "TOP_NAME"]

TOP_NAME = "gemmstone_accelerator"


class Accelerator(wiring.Component):
    """A whole single-core gemmstone accelerator.

    Parameters
    ----------
    config : AcceleratorConfig

    Members
    -------
    s_axil : In(AxiLiteSignature)
        Host register port (docs/registers.md).
    m_axi : Out(AxiSignature(id_width=2))
        DRAM port: instruction fetch and every DMA transfer.
    """

    def __init__(self, *, config: AcceleratorConfig) -> None:
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"'config' must be an AcceleratorConfig, not {config!r}")
        check_config_fits(config)
        self.config = config
        super().__init__({
            "s_axil": In(AxiLiteSignature(addr_width=ADDR_WIDTH)),
            "m_axi": Out(AxiSignature(data_bytes=config.dram_bytes_per_cycle, id_width=2)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.registers = registers = RegisterBlock(config=self.config)
        core = Core(config=self.config)
        # Soft reset returns the core to idle; the register block keeps its settings.
        m.submodules.core = ResetInserter(registers.core.soft_reset)(core)
        wiring.connect(m, wiring.flipped(self.s_axil), registers.bus)
        wiring.connect(m, registers.core, core.ctl)
        wiring.connect(m, wiring.flipped(self.m_axi), core.axi)
        return m


def accelerator_verilog(config: AcceleratorConfig) -> str:
    """Verilog of the accelerator for ``config``, top module `TOP_NAME`, with the flat
    AXI port names vendor tools and cocotbext-axi expect (``m_axi_araddr``, ...)."""
    top = Accelerator(config=config)
    header = (f"// gemmstone accelerator: {config.describe()}\n"
              f"// config {config.content_hash}\n// isa {isa_hash()}\n")
    return header + verilog.convert(top, name=TOP_NAME, ports=flat_port_names(top),
                                    emit_src=False)
