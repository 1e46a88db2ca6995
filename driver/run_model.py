"""`run_model`: compile a model, run it on a device backend, measure it against float.

What ``gemmstone run MODEL`` does. MODEL is one of the repo's models (`MODELS`, built by
`gemmstone.compiler.models.registry`) or an ``.onnx`` / ``.pt2`` file:

- ``digits``: the small CNN of `gemmstone.compiler.models.digits`, trained here in
  seconds on scikit-learn's digits; calibrated on training images, evaluated on the
  held-out images (accuracy, int8 and float);
- ``resnet18``, ``mobilenetv2`` (10 classes, random weights with random batch-norm
  statistics, ``size`` x ``size`` images) and ``encoder`` (a BERT-base encoder block,
  sequence length ``size``): random standard-normal inputs; calibrated on other random
  inputs;
- a file: its inputs' shapes are fixed by the file; random inputs; float reference from
  PyTorch (``.pt2``) or ONNX Runtime (``.onnx``).

The model is compiled (`gemmstone.compiler.compile.compile_model`, cached on disk), loaded
once on a `Device` (`LoadedModel`) and run on batches of inputs. Reported: accuracy
against float (top-1 agreement, cosine similarity, largest error; for digits, accuracy on
the labels), the device's counters summed over all runs (cycles on backends with a clock),
array utilization (the model's MACs over rows x cols x cycles), the host steps of one
inference, and wall times.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gemmstone.compiler.models.registry import MODELS
from gemmstone.config import AcceleratorConfig, preset
from gemmstone.driver.device import Device
from gemmstone.driver.loaded_model import LoadedModel

__all__ = ["MODELS", "ModelRun", "check_model", "run_model"]

_CALIBRATION_SAMPLES = 4
# Random-weight classifiers get a 10-class head: top-1 agreement with float over 1000
# near-equal random logits would measure noise.
_CLASSES = 10

Progress = Callable[[int, int], None]
"""``progress(done, total)``: accelerator program runs done so far out of the total."""


@dataclass
class ModelRun:
    """The result of `run_model`.

    Members
    -------
    name : str
        The model name (or file name).
    backend : str
    config : AcceleratorConfig
    samples : int
        Inputs evaluated (batches x batch, less the padding of the last batch).
    batch : int
    outputs, reference : numpy.ndarray
        The int8 model's and the float model's first outputs for every sample.
    labels : numpy.ndarray or None
        True classes (digits only).
    counters : collections.Counter
        Device counters summed over every program run.
    host_ops : collections.Counter
        Host steps of one inference, by op.
    report : dict
        The compiler's report (`gemmstone.compiler.lowering.CompiledModel.report`).
    compile_seconds, open_seconds, run_seconds : float
        Wall time of compiling (or reading the cache), of opening the device (starting the
        rtl simulator) and loading the programs, and of running all batches.
    """

    name: str
    backend: str
    config: AcceleratorConfig
    samples: int
    batch: int
    outputs: np.ndarray
    reference: np.ndarray
    labels: np.ndarray | None
    counters: collections.Counter
    host_ops: collections.Counter
    report: dict
    compile_seconds: float
    run_seconds: float
    open_seconds: float = 0.0
    calls: int = field(default=0)

    @property
    def top1_agreement(self) -> float | None:
        """Fraction of samples whose top class equals float's (None for non-class outputs)."""
        if self.outputs.ndim != 2:
            return None
        return float((self.outputs.argmax(1) == self.reference.argmax(1)).mean())

    @property
    def cosine(self) -> float:
        a = self.outputs.reshape(-1).astype(np.float64)
        b = self.reference.reshape(-1).astype(np.float64)
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))

    @property
    def max_error(self) -> float:
        """Largest |int8 - float| output difference, relative to float's largest |output|."""
        scale = float(np.abs(self.reference).max()) or 1.0
        return float(np.abs(self.outputs - self.reference).max()) / scale

    def accuracy(self, outputs: np.ndarray) -> float | None:
        """Fraction of samples ``outputs`` classify as ``labels`` (digits only)."""
        if self.labels is None:
            return None
        return float((outputs.argmax(1) == self.labels).mean())

    @property
    def macs(self) -> int:
        """MACs of all inferences run (the compiler's count per batch x batches)."""
        return self.report["totals"]["macs"] * self.calls

    @property
    def utilization(self) -> float | None:
        """MACs / (rows x cols x cycles), or None on a backend without a clock."""
        cycles = self.counters.get("cycles", 0)
        if not cycles:
            return None
        return self.macs / (self.config.rows * self.config.cols * cycles)

    @property
    def estimated_utilization(self) -> float:
        """The same from the compiler's estimated cycles."""
        totals = self.report["totals"]
        return totals["macs"] / (self.config.rows * self.config.cols * max(totals["cycles"], 1))


def run_model(model: str, *, backend: str = "func", config: AcceleratorConfig | str = "small",
              batch: int | None = None, samples: int | None = None, size: int | None = None,
              seed: int = 0, timeout: float = 600.0, cache: bool = True,
              progress: Progress | None = None, device_options: dict | None = None) -> ModelRun:
    """Compile ``model`` for ``config``, run ``samples`` inputs in batches of ``batch`` on
    ``backend`` and compare with float (see the module docstring).

    Parameters
    ----------
    model : str
        A name of `MODELS` (`gemmstone.compiler.models.registry`) or the path of an
        ``.onnx`` / ``.pt2`` file.
    batch : int, optional
        Inputs per run (default: 50 for digits, 1 otherwise; a file's own batch).
    samples : int, optional
        Inputs to evaluate (default: the 450 held-out digits; one batch otherwise).
    size : int, optional
        Image size (resnet18, mobilenetv2; default 224) or sequence length (encoder;
        default 128).
    seed : int
        Seed of the random weights, inputs and calibration data (and digits training).
    timeout : float
        Seconds one program may run on the device.

    Raises
    ------
    ValueError
        Unknown model, or options that do not fit it.
    """
    config = preset(config) if isinstance(config, str) else config
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"'config' must be an AcceleratorConfig or a preset name, not {config!r}")
    workload = _workload(model, batch=batch, samples=samples, size=size, seed=seed)
    started = time.perf_counter()
    from gemmstone.compiler.compile import compile_model, default_cache_dir

    compiled = compile_model(workload.graph, config, samples=workload.calibration,
                             cache_dir=default_cache_dir() if cache else None)
    compile_seconds = time.perf_counter() - started
    steps_per_call = sum(1 for s in compiled.steps if s["kind"] == "accelerator")
    batches = workload.batches()
    total = steps_per_call * len(batches)
    started = time.perf_counter()
    with Device(config, backend, timeout=timeout, **(device_options or {})) as device:
        loaded = LoadedModel(compiled, device)
        open_seconds = time.perf_counter() - started
        started = time.perf_counter()
        if progress is not None:
            loaded.on_program = lambda: progress(loaded.program_runs, total)
            progress(0, total)
        outputs = [loaded(*inputs)[0] for inputs in batches]
        counters, calls = collections.Counter(loaded.counters), loaded.calls
        loaded.close()
    run_seconds = time.perf_counter() - started
    count = workload.samples
    return ModelRun(name=workload.name, backend=backend, config=config, samples=count,
                    batch=workload.batch, outputs=np.concatenate(outputs)[:count],
                    reference=workload.reference(batches)[:count], labels=workload.labels,
                    counters=counters, host_ops=loaded.host_ops(),
                    report=compiled.report, compile_seconds=compile_seconds,
                    open_seconds=open_seconds, run_seconds=run_seconds, calls=calls)


@dataclass
class _Workload:
    """A model ready to compile: its float graph, calibration inputs, evaluation inputs
    and a float reference."""

    name: str
    graph: object
    calibration: list
    inputs: list[np.ndarray]            # one array per graph input, all samples stacked
    batch: int
    samples: int
    float_model: Callable[[list[np.ndarray]], np.ndarray]
    labels: np.ndarray | None = None

    def batches(self) -> list[list[np.ndarray]]:
        """The inputs cut into batches of ``batch`` (the last padded with zeros)."""
        result = []
        for start in range(0, self.samples, self.batch):
            chunk = []
            for array in self.inputs:
                part = array[start:start + self.batch]
                if len(part) < self.batch:
                    pad = np.zeros((self.batch - len(part), *part.shape[1:]), part.dtype)
                    part = np.concatenate([part, pad])
                chunk.append(np.ascontiguousarray(part))
            result.append(chunk)
        return result

    def reference(self, batches) -> np.ndarray:
        return np.concatenate([self.float_model(inputs) for inputs in batches])


def check_model(model: str) -> None:
    """Raise ValueError unless ``model`` names a repo model or an existing model file."""
    if model in MODELS:
        return
    path = Path(model)
    if path.suffix not in (".onnx", ".pt2"):
        raise ValueError(f"unknown model {model!r}: give one of {', '.join(MODELS)} or an "
                         f".onnx or .pt2 file")
    if not path.is_file():
        raise ValueError(f"model file {model!r} does not exist")


def _workload(model: str, *, batch, samples, size, seed) -> _Workload:
    check_model(model)
    if model in MODELS:
        return _repo_workload(model, batch=batch, samples=samples, size=size, seed=seed)
    path = Path(model)
    if size is not None:
        raise ValueError(f"{path.name}: --size applies to the repo models only (a file's "
                         f"input shapes are fixed)")
    return _file_workload(path, batch=batch, samples=samples, seed=seed)


def _torch_float(module) -> Callable[[list[np.ndarray]], np.ndarray]:
    import torch

    def run(inputs: list[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            out = module(*(torch.from_numpy(a) for a in inputs))
        out = out[0] if isinstance(out, tuple | list) else out
        return out.numpy()
    return run


def _repo_workload(name: str, *, batch, samples, size, seed) -> _Workload:
    import torch

    from gemmstone.compiler import models
    from gemmstone.compiler.frontends.torch_fx import from_torch

    rng = np.random.default_rng(seed)
    if name == "digits":
        if size is not None:
            raise ValueError("digits: --size does not apply (the images are 8x8)")
        x_train, _, x_test, y_test = models.load_digits_split(seed=seed)
        batch = batch or 50
        count = len(x_test) if samples is None else min(samples, len(x_test))
    else:
        batch = batch or 1
        count = samples or batch
    if batch < 1 or count < 1:
        raise ValueError(f"batch and samples must be at least 1, not {batch} and {count}")
    if name == "digits":
        module, _ = models.build("digits", batch=batch, seed=seed, trained=True)
        # Calibration inputs must have the graph's batch: ~400 training images in batches.
        parts = min(len(x_train) // batch, max(4, 400 // batch))
        calibration = [(x_train[i * batch:(i + 1) * batch],) for i in range(parts)]
        inputs, labels = [x_test[:count]], y_test[:count]
    else:
        classes = _CLASSES if models.model_info(name).default_classes else None
        module, shape = models.build(name, size=size, batch=batch, num_classes=classes,
                                     seed=seed)
        calibration = [(rng.standard_normal(shape).astype(np.float32),)
                       for _ in range(_CALIBRATION_SAMPLES)]
        inputs = [rng.standard_normal((count, *shape[1:])).astype(np.float32)]
        labels = None
    example = torch.from_numpy(np.ascontiguousarray(inputs[0][:batch]))
    if len(example) < batch:
        example = torch.zeros((batch, *example.shape[1:]))
    graph = from_torch(module, (example,), name=name)
    return _Workload(name, graph, calibration, inputs, batch, count, _torch_float(module),
                     labels)


def _file_workload(path: Path, *, batch, samples, seed) -> _Workload:
    from gemmstone.compiler.compile import load_graph

    graph = load_graph(path)
    batches = {n.shape[0] if n.shape else 1 for n in graph.inputs}
    own = batches.pop() if len(batches) == 1 else 1
    if batch is not None and batch != own:
        raise ValueError(f"{path.name}: its inputs have batch {own}; --batch {batch} does "
                         f"not fit (export the model with the batch you want)")
    count = samples or own
    rng = np.random.default_rng(seed)

    def draw(rows: int) -> list[np.ndarray]:
        return [rng.standard_normal((rows, *n.shape[1:])).astype(n.dtype.numpy)
                for n in graph.inputs]

    calibration = [tuple(draw(own)) for _ in range(_CALIBRATION_SAMPLES)]
    if path.suffix == ".pt2":
        import torch

        float_model = _torch_float(torch.export.load(str(path)).module())
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def float_model(inputs: list[np.ndarray]) -> np.ndarray:
            return session.run(None, dict(zip(names, inputs, strict=True)))[0]
    return _Workload(path.stem, graph, calibration, draw(count), own, count, float_model)
