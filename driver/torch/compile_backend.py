"""The ``torch.compile`` backend ``gemmstone``: Dynamo graphs compiled by the gemmstone
compiler and run on a driver `Device`.

``torch.compile(model, backend="gemmstone", options={...})`` (the name is registered when
`gemmstone.driver.torch` is imported). For each graph Dynamo captures, the backend returns
a function that, on its first call:

1. converts the graph with the compiler's FX frontend
   (`gemmstone.compiler.frontends.torch_fx.from_fx`; parameters and buffers become
   constants, as in inference-mode freezing);
2. optimizes, quantizes and lowers it (`gemmstone.compiler.compile.compile_model`),
   calibrating the int8 scales on the ``calibration`` samples, or else on **the first
   call's inputs**; the result is cached on disk under its content hash;
3. loads every program once on the device (`gemmstone.driver.loaded_model.LoadedModel`):
   the weights stay in device memory across calls.

Every call then writes the activations, runs the programs on the device (backend
``func``, ``perf`` or ``rtl``) and the host steps on the host. Devices are shared by all
compiled graphs of one (backend, config, device options) and closed at exit.

A graph with an operator the frontend cannot convert (``torch.sort``, ``torch.cumsum``,
an op on booleans...) still runs: `gemmstone.driver.torch.fallback.SplitGraph` compiles
the parts it can and leaves the rest to PyTorch on the host, counted in
`fallback_report`. With the option ``fallback=False`` the frontend's error is raised
instead. Errors in the options, and errors of the device when it runs, are always raised.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gemmstone.config import AcceleratorConfig, preset
from gemmstone.driver.backend import BACKENDS
from gemmstone.driver.device import DEFAULT_TIMEOUT, Device
from gemmstone.driver.loaded_model import LoadedModel
from gemmstone.driver.torch.fallback import SplitGraph, fallback_report

__all__ = ["BACKEND_NAME", "CompileOptions", "gemmstone_backend", "compiled_models",
           "close_devices", "register_backend"]

BACKEND_NAME = "gemmstone"


@dataclass(frozen=True)
class CompileOptions:
    """The ``options`` of ``torch.compile(..., backend="gemmstone", options={...})``.

    Members
    -------
    backend : str
        Driver backend the programs run on: ``"func"`` (default), ``"perf"`` or ``"rtl"``.
    config : AcceleratorConfig or str
        The accelerator config or a preset name (default ``"small"``).
    calibration : sequence, optional
        Calibration samples: each a tensor or array (a graph with one input) or a tuple
        of them, in the order of the graph's inputs (with one graph, the model's tensor
        arguments). By default the first call's inputs calibrate.
    cache : bool
        Read and write the compiler's on-disk cache (default True).
    timeout : float
        Seconds one program run may take on the device (`Device.wait`) before
        `gemmstone.driver.DeviceTimeoutError` (default 60; the rtl backend needs more for
        large layers).
    device_options : dict
        Passed to the backend when its device is opened (e.g. ``memory_bytes`` for rtl).
    fallback : bool
        Run the operators the frontend cannot convert on the host with PyTorch (default
        True; see `fallback_report`). False raises the frontend's `FrontendError`.
    """

    backend: str = "func"
    config: AcceleratorConfig | str = "small"
    calibration: Sequence | None = None
    cache: bool = True
    timeout: float = DEFAULT_TIMEOUT
    device_options: Mapping[str, Any] = field(default_factory=dict)
    fallback: bool = True

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> CompileOptions:
        """Options from ``torch.compile``'s ``options`` dict.

        Raises
        ------
        TypeError
            An unknown option name, a config that is neither a preset name nor an
            `AcceleratorConfig`, or a ``fallback`` that is not a bool.
        ValueError
            An unknown backend name; `gemmstone.config.ConfigError` for an unknown preset.
        """
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"unknown gemmstone torch.compile option(s) {unknown}; the options "
                            f"are {sorted(cls.__dataclass_fields__)}")
        parsed = cls(**options)
        if not isinstance(parsed.config, AcceleratorConfig | str):
            raise TypeError(f"option 'config' must be a preset name or an AcceleratorConfig, "
                            f"not {parsed.config!r}")
        if not isinstance(parsed.fallback, bool):
            raise TypeError(f"option 'fallback' must be True or False, not {parsed.fallback!r}")
        # The user's mistakes fail here, at compile time, whatever the fallback does later.
        if parsed.backend not in BACKENDS:
            raise ValueError(f"option 'backend': unknown backend {parsed.backend!r}; choose "
                             f"one of {', '.join(map(repr, BACKENDS))}")
        parsed.accelerator_config  # noqa: B018 - an unknown preset name raises ConfigError
        return parsed

    @property
    def accelerator_config(self) -> AcceleratorConfig:
        return preset(self.config) if isinstance(self.config, str) else self.config


class _Devices:
    """Open devices by (backend, config hash, device options)."""

    open: dict[tuple, Device] = {}
    models: list[weakref.ref] = []


def _device(options: CompileOptions) -> Device:
    config = options.accelerator_config
    key = (options.backend, config.content_hash, tuple(sorted(options.device_options.items())))
    device = _Devices.open.get(key)
    if device is None or device.closed:
        device = _Devices.open[key] = Device(config, options.backend,
                                             **dict(options.device_options))
    device.timeout = options.timeout
    return device


def close_devices() -> None:
    """Close every device the backend opened (done at exit); compiled functions open a new
    one when called again, loading their programs anew."""
    for device in _Devices.open.values():
        device.close()
    _Devices.open.clear()


atexit.register(close_devices)


def compiled_models() -> list[LoadedModel]:
    """The models the backend has compiled and loaded in this process, oldest first (for
    their counters and compile reports)."""
    return [model for ref in _Devices.models if (model := ref()) is not None]


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous().numpy()
    return np.asarray(value)


class _Accelerated:
    """One converted graph, compiled and loaded on the device: called with the FX graph's
    arguments (parameters included), it returns the graph's outputs as tensors."""

    def __init__(self, graph, positions: list[int], samples: list[tuple],
                 options: CompileOptions) -> None:
        from gemmstone.compiler.compile import compile_model, default_cache_dir

        samples = [tuple(_numpy(value) for value in sample) for sample in samples]
        self.compiled = compile_model(graph, options.accelerator_config, samples=samples,
                                      cache_dir=default_cache_dir() if options.cache else None)
        self.positions, self.options = positions, options
        self.model: LoadedModel | None = None
        self._load()

    def _load(self) -> None:
        """Load the programs on the options' device (again, after `close_devices`)."""
        if self.model is not None:
            self.model.close()
        self.model = LoadedModel(self.compiled, _device(self.options))
        _Devices.models.append(weakref.ref(self.model))

    def __call__(self, *args) -> tuple:
        if self.model.device.closed:
            self._load()
        arrays = [_numpy(args[i]) for i in self.positions]
        return tuple(torch.from_numpy(np.array(out)) for out in self.model(*arrays))


class _CompiledGraph:
    """What the backend returns for one Dynamo graph: compiles on the first call (whole,
    or split with a host fallback), runs on every call."""

    def __init__(self, graph_module: torch.fx.GraphModule, options: CompileOptions) -> None:
        self.graph_module, self.options = graph_module, options
        self.run: Callable | None = None

    def __call__(self, *args):
        if self.run is None:
            self._compile(args)
        return self.run(*args)

    def _compile(self, args: Sequence) -> None:
        from gemmstone.compiler.errors import IRError
        from gemmstone.compiler.frontends.torch_fx import from_fx, runtime_input_positions

        options = self.options
        positions = runtime_input_positions(self.graph_module, args)
        if options.calibration is None:
            samples = [tuple(_numpy(args[i]) for i in positions)]
        else:
            samples = [tuple(_numpy(a) for a in (s if isinstance(s, tuple | list) else (s,)))
                       for s in options.calibration]
        try:
            graph = from_fx(self.graph_module, args, name="torch_compile")
        except IRError:
            raise  # the frontend built a bad graph: a compiler bug, not a missing operator
        except Exception as error:  # an operator it lacks, or a graph torch cannot export
            if not options.fallback:
                raise
            split = SplitGraph(self.graph_module, args, samples,
                               lambda g, p, s: _Accelerated(g, p, s, options), str(error))
            fallback_report().graphs[split.kind] += 1
            self.run = split
            return
        fallback_report().graphs["whole"] += 1
        self.run = _Accelerated(graph, positions, samples, options)


def gemmstone_backend(graph_module: torch.fx.GraphModule, example_inputs: list,
                      *, options: Mapping[str, Any] | None = None) -> Callable:
    """The Dynamo backend (see the module docstring); ``options`` are `CompileOptions`."""
    return _CompiledGraph(graph_module, CompileOptions.parse(options))


def register_backend() -> None:
    """Make ``backend="gemmstone"`` known to ``torch.compile`` (once per process)."""
    from torch._dynamo import list_backends
    from torch._dynamo import register_backend as register

    if BACKEND_NAME not in list_backends(exclude_tags=()):
        register(gemmstone_backend, name=BACKEND_NAME)
