"""The same driver code on the Verilated accelerator (``rtl`` backend, preset tiny, the
in-simulation DRAM model): the same outputs as the functional model and numpy, faults
named alike, runs right after an abort, and a simulator that hangs or dies raises instead
of taking the test process down."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from gemmstone.compiler.kernels.cases import conv_case, gemm_case
from gemmstone.config import preset
from gemmstone.driver import (
    ConfigMismatchError,
    Device,
    DeviceClosedError,
    DeviceLostError,
    DeviceTimeoutError,
    DriverError,
)
from gemmstone.isa import DmaWindowError, Program, WatchdogError, assemble

TINY = preset("tiny")
# The simulated DRAM: enough for these programs, and quick to start.
MEMORY = 1 << 20


def open_rtl(**options) -> Device:
    return Device(TINY, "rtl", memory_bytes=MEMORY, **options)


@pytest.fixture(scope="module")
def devices():
    with Device(TINY) as func, open_rtl() as rtl:
        yield func, rtl


def long_gemm():
    """A GEMM that takes the RTL tens of thousands of cycles."""
    return gemm_case(TINY, np.random.default_rng(9), 64, 32, 64)


@pytest.mark.parametrize(("kind", "args"), [
    ("gemm", (1, 1, 1)), ("gemm", (13, 9, 21)), ("gemm", (33, 17, 40)),
    ("conv", (7, 6, 5, 6, 3, 1, 1)), ("conv", (9, 9, 3, 5, 3, 2, 0)),
])
def test_rtl_and_func_give_the_numpy_result(devices, kind, args):
    func, rtl = devices
    case = gemm_case if kind == "gemm" else conv_case
    program, inputs, expected = case(TINY, np.random.default_rng(len(args)), *args)
    on_func = func.execute(program, inputs)
    on_rtl = rtl.execute(program, inputs)
    np.testing.assert_array_equal(on_rtl["out"], expected["out"])
    for name in program.buffers:
        np.testing.assert_array_equal(on_rtl[name], on_func[name])


def test_counters_agree_with_func_where_both_count(devices):
    func, rtl = devices
    program, inputs, _ = gemm_case(TINY, np.random.default_rng(3), 13, 9, 21)
    counts = []
    for device in devices:
        loaded = device.load(program)
        loaded.write("a", inputs["a"])
        counts.append(device.run(loaded))
        loaded.free()
    on_func, on_rtl = counts
    for name in ("retired_load", "retired_compute", "retired_store", "bytes_written"):
        assert on_rtl[name] == on_func[name] > 0
    assert on_rtl["cycles"] > 0 and on_func["cycles"] == 0


def test_native_and_cocotb_harnesses_run_alike(devices):
    """The default native simulator and the cocotb one run the same design: equal outputs
    and equal counters, cycles included."""
    _, rtl = devices
    assert rtl.backend.harness == "native"
    program, inputs, expected = gemm_case(TINY, np.random.default_rng(4), 21, 10, 30)
    runs = []
    with open_rtl(harness="cocotb") as under_cocotb:
        assert under_cocotb.backend.harness == "cocotb"
        for device in (rtl, under_cocotb):
            loaded = device.load(program)
            loaded.write("a", inputs["a"])
            runs.append((device.run(loaded), loaded.read("out")))
            loaded.free()
    (native, native_out), (cocotb, cocotb_out) = runs
    np.testing.assert_array_equal(native_out, expected["out"])
    np.testing.assert_array_equal(cocotb_out, expected["out"])
    assert native == cocotb and native["cycles"] > 0


@pytest.mark.parametrize(("options", "message"), [
    ({"harness": "verilog"}, "unknown rtl harness 'verilog'; choose one of 'native', 'cocotb'"),
    ({"memory": "axi-ram", "harness": "native"},
     "the native rtl harness simulates only memory='dram', not 'axi-ram'; use "
     "harness='cocotb'"),
])
def test_bad_harness_is_named(options, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        open_rtl(**options)


def test_out_of_window_fault_reads_as_on_func(devices):
    program = Program(TINY.content_hash,
                      assemble("fence\nload dram=0x1000 stride=16 n=4 len=4\nhalt"),
                      window_size=0x1000)
    errors = []
    for device in devices:
        with pytest.raises(DmaWindowError) as raised:
            device.execute(program)
        errors.append(raised.value)
    on_func, on_rtl = errors
    assert (on_rtl.index, on_rtl.address, on_rtl.text) == (1, 0x1033, on_func.text)
    assert str(on_rtl) == str(on_func).replace("backend func", "backend rtl")


def test_memory_outside_the_simulated_dram_is_refused(devices):
    _, rtl = devices
    rtl.backend._write_mem(MEMORY - 3, b"xyz")
    assert rtl.backend._read_mem(MEMORY - 5, 5) == b"\0\0xyz"
    with pytest.raises(DriverError, match=r"the READ_MEM request failed: ValueError: "
                       r"\[0xffffe, 0x100002\) is outside the 0x100000 bytes of simulated DRAM"):
        rtl.backend._read_mem(MEMORY - 2, 4)


def test_program_for_another_config_is_refused(devices):
    _, rtl = devices
    program, _, _ = gemm_case(preset("small"), np.random.default_rng(6), 4, 4, 4)
    with pytest.raises(ConfigMismatchError, match="but the rtl device's hardware reports "
                       f"CONFIG_ID {TINY.content_hash[:8]}"):
        rtl.load(program)


def test_watchdog_fault_and_run_timeout_then_abort(devices):
    _, rtl = devices
    program, inputs, expected = long_gemm()
    loaded = rtl.load(program)
    loaded.write("a", inputs["a"])
    with pytest.raises(WatchdogError, match=r"the watchdog aborted the run after 2000 cycles"):
        rtl.run(loaded, watchdog=2000)
    rtl.start(loaded)
    with pytest.raises(DeviceTimeoutError, match="did not finish within 0 s on backend rtl"):
        rtl.wait(timeout=0)
    rtl.abort()
    small, small_inputs, small_expected = gemm_case(TINY, np.random.default_rng(1), 5, 6, 7)
    np.testing.assert_array_equal(rtl.execute(small, small_inputs)["out"],
                                  small_expected["out"])
    np.testing.assert_array_equal(rtl.execute(program, inputs)["out"], expected["out"])
    loaded.free()


def test_runs_started_right_after_an_abort_complete(devices):
    """No settling time after an abort: the next run starts at once and takes exactly as
    many cycles as it does after a run that completed (tests/hw/test_sim_abort.py has the
    RTL side of this)."""
    _, rtl = devices
    program, inputs, expected = long_gemm()
    loaded = rtl.load(program)
    loaded.write("a", inputs["a"])
    cycles = rtl.run(loaded)["cycles"]
    for watchdog in (150, 600, 2500):
        with pytest.raises(WatchdogError):
            rtl.run(loaded, watchdog=watchdog)
        assert rtl.run(loaded)["cycles"] == cycles
        np.testing.assert_array_equal(loaded.read("out"), expected["out"])
    rtl.start(loaded)
    rtl.backend._idle(1000)
    rtl.abort()
    assert rtl.run(loaded)["cycles"] == cycles
    np.testing.assert_array_equal(loaded.read("out"), expected["out"])
    loaded.free()


def run_small(device: Device) -> None:
    program, inputs, expected = gemm_case(TINY, np.random.default_rng(2), 6, 5, 9)
    np.testing.assert_array_equal(device.execute(program, inputs)["out"], expected["out"])


def test_simulator_killed_mid_run():
    device = open_rtl()
    program, inputs, _ = long_gemm()
    loaded = device.load(program)
    loaded.write("a", inputs["a"])
    device.start(loaded)
    with pytest.raises(DeviceTimeoutError):
        device.wait(timeout=0)  # it runs
    device.backend._idle(2000)
    os.kill(device.backend.simulator_pid, signal.SIGKILL)
    with pytest.raises(DeviceLostError, match=r"^rtl simulator lost: the connection broke "
                       r"during the READ_REG request"):
        device.wait()
    assert device.closed
    with pytest.raises(DeviceClosedError):
        device.counters()
    shutil.rmtree(device.backend.workdir)  # kept for the user to read the logs
    with open_rtl() as again:
        run_small(again)


def alive(pid: int, wait: float = 5.0) -> bool:
    """Whether process ``pid`` still runs after up to ``wait`` seconds (a zombie does not
    run: in a container nobody may reap it soon)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        if stat.rsplit(")", 1)[1].split()[0] in "ZX":
            return False
        time.sleep(0.05)
    return True


def test_simulator_that_stops_answering_is_killed():
    device = open_rtl(reply_timeout=1.0)
    pid = device.backend.simulator_pid
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(DeviceLostError, match=r"^rtl simulator lost: the simulator did not "
                       r"answer the READ_REG request within 1 s; it was killed"):
        device.counters()
    assert time.monotonic() - started < 10
    assert device.closed
    assert not alive(pid)
    shutil.rmtree(device.backend.workdir)
    with open_rtl() as again:
        run_small(again)
