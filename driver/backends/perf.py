"""The ``perf`` backend: the functional model's results with the performance model's clock.

A run does what the ``func`` backend does (`gemmstone.sim.functional` computes every
output, so results are exact, and faults are reported the same way) and then times the
same instruction words on `gemmstone.sim.performance` at the run's bus addresses
(INSTR_BASE, WINDOW_BASE): CYCLES, the busy, stall and byte counters then read as the
RTL's counters would (hw/register_map.py), within the model's calibration (2% on CYCLES).
Each run is timed from a reset core (the read arbiter's grant at 0, as the RTL restarts
it), so the same program gives the same counters on every run, equal to
`gemmstone.sim.performance.estimate` with the same memory timing and engine when the bus
width divides the driver's allocation alignment (128 bytes). The memory is the ``rtl``
backend's default, the in-simulation DRAM at ``config.dram_latency``, unless told
otherwise; the engine is the cycle-exact ``"compiled"`` one unless told otherwise
(``engine="analytic"`` trades a little accuracy for speed on large models). Options
reach the backend as ``Device(config, "perf", memory=..., engine=...)``, as
``run_model(..., device_options={...})`` and as torch.compile's ``device_options``.

WATCHDOG is ignored, as on the ``func`` backend: the outputs are computed before the
clock is known, so there is no partial run to abort.
"""

from __future__ import annotations

from gemmstone.config import AcceleratorConfig
from gemmstone.driver.backends.func import FuncBackend
from gemmstone.hw.register_map import STATUS_ERROR
from gemmstone.isa.encoding import bytes_to_words
from gemmstone.isa.table import WORD_BYTES
from gemmstone.sim.performance import ENGINES, PerformanceModel
from gemmstone.sim.performance_memory import MEMORIES, MemoryTiming, memory_timing

__all__ = ["PerfBackend"]

_ERROR = 1 << STATUS_ERROR.lsb


class PerfBackend(FuncBackend):
    """The functional model as a device, with cycle-level counters from the performance
    model.

    Parameters
    ----------
    config : AcceleratorConfig
    memory : {"dram", "axi-ram"} or MemoryTiming
        The DRAM timing the performance model assumes, named as the ``rtl`` backend's
        memories: ``"dram"`` (the default) the in-simulation DRAM model at
        ``config.dram_latency`` (`gemmstone.sim.performance_memory.sim_dram`),
        ``"axi-ram"`` cocotbext-axi's AxiRam (`AXI_RAM`); or any `MemoryTiming`.
    engine : {"compiled", "python", "analytic"}
        The performance model's engine (`gemmstone.sim.performance.ENGINES`):
        ``"compiled"`` (the default) and ``"python"`` are cycle-exact twins,
        ``"analytic"`` is approximate and faster.
    schedule_seed : int, optional
        As for `FuncBackend` (the functional run's unit interleaving; timing is unaffected).

    Members
    -------
    model : FunctionalModel
        The functional model; its ``dram`` is the device memory.
    timing : PerformanceModel
        The performance model that sets the counters.
    last_estimate : PerfResult or None
        The performance model's result for the last run that ended without a fault.
    """

    name = "perf"

    def __init__(self, config: AcceleratorConfig, *, memory: str | MemoryTiming = "dram",
                 engine: str = "compiled", schedule_seed: int | None = None) -> None:
        super().__init__(config, schedule_seed=schedule_seed)
        if isinstance(memory, str) and memory in MEMORIES:
            memory = memory_timing(memory, config)
        elif not isinstance(memory, MemoryTiming):
            raise ValueError(f"perf backend: 'memory' must be one of "
                             f"{', '.join(map(repr, MEMORIES))} or a MemoryTiming, "
                             f"not {memory!r}")
        if engine not in ENGINES:
            raise ValueError(f"perf backend: 'engine' must be one of "
                             f"{', '.join(map(repr, ENGINES))}, not {engine!r}")
        self.timing = PerformanceModel(config, memory, engine=engine)
        self.last_estimate = None

    def _start(self) -> None:
        values = self._values
        super()._start()
        if values["STATUS"] & _ERROR:
            self.last_estimate = None
            return  # a fault: the functional model's registers stand, as on ``func``
        base, count = values["INSTR_BASE"], values["INSTR_COUNT"]
        code = self.model.dram[base:base + count * WORD_BYTES].tobytes()
        words = bytes_to_words(code.ljust(count * WORD_BYTES, b"\0"))
        result = self.timing.run(words, instr_base=base,
                                 window_base=min(values["WINDOW_BASE"], self.model.dram.size))
        self.last_estimate = result
        # The functional run counts retired instructions and bytes too: those agree; the
        # performance model's BYTES_READ counts whole bus beats, as the RTL does.
        values.update(result.counters)
