"""cocotb side of test_sim_abort.py: runs started right after a watchdog-aborted run.

The plan (a pickle named by ``GEMMSTONE_ABORT_PLAN``) holds a DRAM image with one GEMM
program, its register settings, where its output lies and what it must be, and the
watchdog values to abort it at. For each watchdog value: clear the output, run the program
with that watchdog (it must end with a WATCHDOG error), poll STATUS back to back so the
end is seen within a few cycles, START the whole program again at once, and record how it
ended, its CYCLES, whether its output is right and what the top's ``busy`` output said
during and after it. Results go to ``GEMMSTONE_ABORT_RESULTS``.
"""

from __future__ import annotations

import os
import pickle

import cocotb

from gemmstone.hw.register_map import STATUS_BUSY
from gemmstone.hw.sim_bench import SimTopBench

BUSY = 1 << STATUS_BUSY.lsb


@cocotb.test()
async def start_right_after_abort(dut):
    with open(os.environ["GEMMSTONE_ABORT_PLAN"], "rb") as handle:
        plan = pickle.load(handle)
    bench = SimTopBench(dut, data_bytes=plan["data_bytes"])
    await bench.reset()
    await bench.load(plan["image_file"], 0, plan["words"] - 1)
    scratch = plan["scratch"]

    async def start(watchdog: int) -> None:
        for name in ("INSTR_BASE", "INSTR_COUNT", "WINDOW_BASE", "WINDOW_LIMIT"):
            await bench.write(name, plan[name.lower()])
        await bench.write("WATCHDOG", watchdog)
        await bench.write("CONTROL", 1)

    async def full_run() -> dict:
        await start(0)
        busy_during = int(dut.busy.value)
        try:
            await bench.wait_idle(plan["max_cycles"])
        except TimeoutError:
            return {"hung": True}
        busy_after = int(dut.busy.value)
        out = await bench.read_memory(plan["out_addr"], len(plan["expected"]), scratch)
        return {"hung": False, "error": await bench.read("ERROR_CODE"),
                "cycles": await bench.read("CYCLES"), "correct": out == plan["expected"],
                "busy": (busy_during, busy_after)}

    results = {"first": await full_run(), "again": await full_run(), "after_abort": []}
    for watchdog in plan["watchdogs"]:
        await bench.write_memory(plan["out_addr"], bytes(len(plan["expected"])), scratch)
        await start(watchdog)
        while (await bench.read("STATUS")) & BUSY:
            pass  # a register read takes a few cycles: the end is seen at once
        aborted = await bench.read("ERROR_CODE")
        result = await full_run()
        results["after_abort"].append({"watchdog": watchdog, "aborted": aborted, **result})
        if result["hung"]:
            break  # the bus is stuck: nothing later can run
    with open(os.environ["GEMMSTONE_ABORT_RESULTS"], "wb") as handle:
        pickle.dump(results, handle)
