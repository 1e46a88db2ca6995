"""The device API on the functional-model backend: programs against numpy, faults as
exceptions naming the instruction, identity checks, timeouts, lost backends."""

from __future__ import annotations

import numpy as np
import pytest

from gemmstone.compiler.kernels.cases import conv_case, gemm_case
from gemmstone.config import preset
from gemmstone.driver import (
    ConfigMismatchError,
    Device,
    DeviceBusyError,
    DeviceClosedError,
    DeviceLostError,
    DeviceTimeoutError,
    DriverError,
)
from gemmstone.driver.backends.func import FuncBackend
from gemmstone.isa import (
    AddressError,
    DmaWindowError,
    ErrorCode,
    IllegalInstructionError,
    Program,
    ProgramEndError,
    TokenError,
    assemble,
)
from gemmstone.sim.functional import run_program

TINY = preset("tiny")


@pytest.fixture
def device():
    with Device(TINY) as dev:
        yield dev


def asm_program(text: str, window_size: int = 0x1000, config=TINY) -> Program:
    return Program(config.content_hash, assemble(text), window_size=window_size)


@pytest.mark.parametrize("shape", [(1, 1, 1), (13, 9, 21), (33, 17, 40)])
def test_gemm_matches_numpy(device, shape):
    program, inputs, expected = gemm_case(TINY, np.random.default_rng(1), *shape)
    outputs = device.execute(program, inputs)
    np.testing.assert_array_equal(outputs["out"], expected["out"])
    assert device.allocator.used_bytes == 0  # execute frees what it loaded


@pytest.mark.parametrize("case", [(7, 6, 5, 6, 3, 1, 1), (9, 9, 3, 5, 3, 2, 0)])
def test_conv_matches_numpy(device, case):
    program, inputs, expected = conv_case(TINY, np.random.default_rng(2), *case)
    np.testing.assert_array_equal(device.execute(program, inputs)["out"], expected["out"])


def test_counters_are_the_models(device):
    program, inputs, _ = gemm_case(TINY, np.random.default_rng(3), 13, 9, 21)
    loaded = device.load(program)
    loaded.write("a", inputs["a"])
    counters = device.run(loaded)
    model_counters = run_program(program, TINY, inputs).counters
    assert counters["retired_load"] == model_counters.instructions["load"] > 0
    assert counters["retired_compute"] == model_counters.instructions["compute"] > 0
    assert counters["retired_store"] == model_counters.instructions["store"] > 0
    assert counters["bytes_written"] == model_counters.dram_bytes_written == 13 * 9
    assert counters["cycles"] == 0  # the model has no clock
    assert set(counters) >= {"cycles", "stall_dma", "bytes_read"}


def test_program_runs_again_with_new_inputs_and_buffers_are_separate(device):
    rng = np.random.default_rng(4)
    program, inputs, expected = gemm_case(TINY, rng, 5, 6, 7)
    first, second = device.load(program), device.load(program)
    assert first.window.address != second.window.address
    other = rng.integers(-128, 128, (5, 7), dtype=np.int8)
    first.write("a", inputs["a"])
    second.write("a", other)
    first.run()
    second.run()
    np.testing.assert_array_equal(first.read("out"), expected["out"])
    assert not np.array_equal(second.read("out"), expected["out"])
    np.testing.assert_array_equal(first.read("a"), inputs["a"])  # untouched by the other
    first.free()
    second.free()
    assert device.allocator.used_bytes == 0


def test_out_of_window_access_names_the_instruction(device):
    program = asm_program("fence\nload dram=0x1000 stride=16 n=4 len=4\nhalt")
    with pytest.raises(DmaWindowError) as raised:
        device.execute(program)
    error = raised.value
    assert (error.code, error.index, error.address) == (ErrorCode.DMA_WINDOW, 1, 0x1033)
    text = "load     dram=0x1000 stride=16 spad=0 n=4 len=4 pad_lo=0 pad_hi=0"
    assert error.text == text
    assert str(error) == (f"instruction 1 ({text}): DRAM access up to offset 0x1033 leaves "
                          f"the program's DMA window of 0x1000 bytes (backend func)")


def test_a_program_cannot_write_outside_its_window(device):
    loaded = device.load(asm_program("store dram=0x1000 n=1 len=4 mode=int32\nhalt"))
    victim = device.alloc(0x100)
    device.copy_in(victim, b"\x55" * 0x100)
    # The victim lies right after the program's window: the store would land in it.
    assert victim.address == loaded.window_limit
    with pytest.raises(DmaWindowError):
        device.run(loaded)
    assert device.copy_out(victim) == b"\x55" * 0x100


@pytest.mark.parametrize(("text", "kind", "index", "message"), [
    ("load n=1 len=1\nfence\n.word 0xc\nhalt", IllegalInstructionError, 2,
     r"^instruction 2 \(\.word 0x0+c\): illegal opcode 12 .*\(backend func\)$"),
    ("load spad=4095 n=2 len=1\nhalt", AddressError, 0,
     r"^instruction 0 \(load +dram=0x0 stride=0 spad=4095 n=2 len=1 pad_lo=0 pad_hi=0\): "
     r"scratchpad line 4096 is out of range: "
     r"the scratchpad has 4096 lines \(backend func\)$"),
    ("load len=1 push_next\nhalt", TokenError, 1, r"^instruction 1 \(halt\): token error"),
    ("load len=1", ProgramEndError, 1,
     r"^instruction 1 \(<end of program>\): the program ended after 1 instructions without "
     r"halt \(backend func\)$"),
])
def test_faults_become_isa_exceptions(device, text, kind, index, message):
    with pytest.raises(kind, match=message) as raised:
        device.execute(asm_program(text))
    assert raised.value.index == index
    # The device is usable after a fault.
    program, inputs, expected = gemm_case(TINY, np.random.default_rng(5), 3, 3, 3)
    np.testing.assert_array_equal(device.execute(program, inputs)["out"], expected["out"])


def test_program_for_another_config_is_refused(device):
    program, _, _ = gemm_case(preset("small"), np.random.default_rng(6), 4, 4, 4)
    small_id = program.config_hash[:8]
    with pytest.raises(ConfigMismatchError, match=(
            rf"^the program \(built for config {program.config_hash[:12]}\) has config ID "
            rf"{small_id}, but the func device's hardware reports CONFIG_ID "
            rf"{TINY.content_hash[:8]} \(built for another AcceleratorConfig\)$")):
        device.load(program)
    assert device.allocator.used_bytes == 0


def test_program_for_another_isa_is_refused(device):
    program = asm_program("halt")
    program.isa_hash = "ab" * 32
    with pytest.raises(ConfigMismatchError, match=r"has ISA ID abababab, but the func "
                       r"device's hardware reports ISA_ID [0-9a-f]{8} \(another instruction"):
        device.load(program)


def test_hardware_built_for_another_config_is_refused_at_open():
    with pytest.raises(ConfigMismatchError, match=(
            rf"^the driver's config \(4x4 .*\) has config ID {TINY.content_hash[:8]}, but "
            rf"the func device's hardware reports CONFIG_ID {preset('small').content_hash[:8]}")):
        Device(TINY, FuncBackend(preset("small")))


class HangingBackend(FuncBackend):
    """A device whose runs never end (as a runaway program without watchdog would)."""

    def _start(self) -> None:
        self._values["STATUS"] = 1  # BUSY, forever


def test_timeout_raises_and_abort_recovers():
    with Device(TINY, HangingBackend(TINY), timeout=0.2) as device:
        loaded = device.load(asm_program("halt"))
        device.start(loaded)
        with pytest.raises(DeviceTimeoutError, match=r"^the run of 1 instructions did not "
                           r"finish within 0.05 s on backend func; it is still running"):
            device.wait(timeout=0.05)
        with pytest.raises(DeviceBusyError, match="a run is in progress"):
            device.start(loaded)
        device.abort()
        device.backend._start = FuncBackend._start.__get__(device.backend)
        assert device.run(loaded)["retired_load"] == 0


class LostBackend(FuncBackend):
    """A device whose link dies at the first run."""

    def _start(self) -> None:
        raise DeviceLostError("the device stopped answering")


def test_lost_backend_closes_the_device_and_a_new_one_opens():
    device = Device(TINY, LostBackend(TINY))
    loaded = device.load(asm_program("halt"))
    with pytest.raises(DeviceLostError):
        device.run(loaded)
    assert device.closed
    with pytest.raises(DeviceClosedError, match="the func device is closed"):
        device.load(asm_program("halt"))
    with Device(TINY) as again:
        assert again.execute(asm_program("halt")) == {}


def test_api_misuse_is_reported(device):
    with pytest.raises(DriverError, match="^no run was started$"):
        device.wait()
    with pytest.raises(ValueError, match="unknown backend 'nope'; choose one of 'func', 'rtl'"):
        Device(TINY, "nope")
    loaded = device.load(asm_program("halt", window_size=16))
    with pytest.raises(ValueError, match="the program has no buffer 'x'"):
        loaded.read("x")
    with pytest.raises(ValueError, match=r"does not fit the 0x80-byte allocation"):
        device.copy_in(loaded.window, bytes(0x81))
    loaded.free()
    with pytest.raises(DriverError, match="the program was freed"):
        device.run(loaded)
