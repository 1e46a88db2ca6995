"""`LoadedModel`: a compiled model resident on a `Device`, run step by step.

Every accelerator program of a `gemmstone.compiler.lowering.CompiledModel` is loaded once
(`Device.load`): its instructions, and its window holding the program's constant
segments, which are the layer's int8 weights and requantization parameters. A call then
only writes the activations each program reads, runs it and reads back what the host plan
needs; the weights stay on the device across calls. The host plan itself is the
compiler's (`gemmstone.compiler.lowering.run_compiled`): host steps run on the host's numpy
kernels, accelerator steps go to this device.
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from gemmstone.compiler.lowering import CompiledModel, run_compiled
from gemmstone.config import AcceleratorConfig
from gemmstone.driver.device import Device, LoadedProgram
from gemmstone.driver.errors import ConfigMismatchError
from gemmstone.isa.program import Program

__all__ = ["LoadedModel"]


class _Buffers(Mapping):
    """A loaded program's buffers by name, each read from the device when looked up (the
    host plan reads only the outputs it needs, not the weights)."""

    def __init__(self, loaded: LoadedProgram) -> None:
        self.loaded = loaded

    def __getitem__(self, name: str) -> np.ndarray:
        return self.loaded.read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.loaded.program.buffers)

    def __len__(self) -> int:
        return len(self.loaded.program.buffers)


class LoadedModel:
    """A `CompiledModel` whose programs are loaded on ``device``; call it like the model.

    Parameters
    ----------
    compiled : CompiledModel
    device : Device
        An open device whose config is the one ``compiled`` was built for.

    Members
    -------
    compiled : CompiledModel
    device : Device
    counters : collections.Counter
        The device counters (`Device.counters`) summed over every program run since
        `reset_counters`.
    calls : int
        Calls since `reset_counters`.
    program_runs : int
        Program runs since `reset_counters`.
    on_program : callable or None
        Called with no arguments after each program run (progress bars).

    Raises
    ------
    ConfigMismatchError
        ``compiled`` was built for another config than the device's.
    gemmstone.driver.OutOfDeviceMemoryError
        The programs do not fit the device's free memory.
    """

    def __init__(self, compiled: CompiledModel, device: Device) -> None:
        if compiled.config.content_hash != device.config.content_hash:
            raise ConfigMismatchError(
                f"model {compiled.name!r} was compiled for {compiled.config.describe()}, but "
                f"the {device.backend.name} device is {device.config.describe()}")
        self.compiled, self.device = compiled, device
        self.counters: collections.Counter = collections.Counter()
        self.calls = self.program_runs = 0
        self.on_program: Callable[[], None] | None = None
        self._loaded: dict[int, LoadedProgram] = {}
        try:
            for program in compiled.programs:
                self._loaded[id(program)] = device.load(program)
        except BaseException:
            _free(device, list(self._loaded.values()))
            raise
        # Free the device memory when the model is dropped (e.g. with a torch.compile cache).
        self._finalizer = weakref.finalize(self, _free, device, list(self._loaded.values()))

    def __repr__(self) -> str:
        return (f"<LoadedModel {self.compiled.name!r}: {len(self._loaded)} programs on "
                f"{self.device!r}>")

    def __call__(self, *args: np.ndarray, trace: dict | None = None) -> list[np.ndarray]:
        """Run the model on inputs given in order; its outputs in order (as
        `run_compiled`, which raises ValueError for wrong inputs)."""
        self._check_live()
        outputs = run_compiled(self.compiled, *args, backend=self._run_program, trace=trace)
        self.calls += 1
        return outputs

    @property
    def config(self) -> AcceleratorConfig:
        return self.compiled.config

    def reset_counters(self) -> None:
        self.counters.clear()
        self.calls = self.program_runs = 0

    def host_ops(self) -> collections.Counter:
        """Host steps of one call by op name (the ops not on the accelerator)."""
        return collections.Counter(s["op"] for s in self.compiled.steps if s["kind"] == "host")

    def close(self) -> None:
        """Free the programs' device memory; closing twice is harmless."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _check_live(self) -> None:
        if self.closed:
            raise RuntimeError(f"model {self.compiled.name!r} was closed; load it again")

    def _run_program(self, program: Program, config: AcceleratorConfig,
                     inputs: dict) -> Mapping[str, np.ndarray]:
        loaded = self._loaded[id(program)]
        for name, value in inputs.items():
            loaded.write(name, value)
        self.counters.update(loaded.run())
        self.program_runs += 1
        if self.on_program is not None:
            self.on_program()
        return _Buffers(loaded)


def _free(device: Device, loaded: list[LoadedProgram]) -> None:
    if device.closed:
        return
    for program in loaded:
        if not program.freed:
            device.free_program(program)
