"""Sweep workloads: what a sweep point runs, parsed from short spec strings.

A workload is one row of the sweep table per config point and batch. It is made of
*parts*, each one program (or one compiled model) that the sweep compiles and estimates
once per config: equal parts of different workloads (the ResNet-18 layers that share a
shape, BERT's per-head GEMMs) are evaluated once. A part's ``evaluate(config, memory,
engine)`` builds its programs and times them with the performance model
(`gemmstone.sim.performance.estimate`) at that memory timing and on that engine.

Spec strings (the same in a TOML grid and on the command line):

- ``gemm:MxNxK``: ``C[M, N] = A[M, K] @ B[K, N]``, int8 out (``compiler.kernels.emit_gemm``);
  batch b multiplies M.
- ``resnet18-conv`` (one workload per layer), ``resnet18-conv:NAME[,NAME...]``, or
  ``resnet18-conv:sum`` (all 20 layers as one workload): the ResNet-18 conv layers at
  224x224 (``shared/workloads/resnet18_conv.csv``), int8 out; batch b is the N of NHWC.
- ``bert-gemm``, ``bert-gemm:NAME[,NAME...]``, ``bert-gemm:sum``: the GEMMs of one BERT-base
  encoder layer at sequence length 128 (``shared/workloads/bert_base_s128_gemm.csv``); the
  per-head attention GEMMs count 12 times; batch b multiplies M (projections, FFN) or the
  count (attention).
- ``model:NAME[:SIZE]``: a repo model (``compiler.models.registry``: seed-0 random weights,
  the model's own classifier, 1000 classes for the ImageNet ones) through the compiler's whole
  path (torch.export frontend, passes, calibration, lowering): ``digits`` (8x8 images),
  ``resnet18`` and ``mobilenetv2`` (SIZE x SIZE images, default 224), ``encoder``
  (BERT-base block, SIZE = sequence length, default 128). Cycles are the accelerator's;
  host ops are counted, not timed.
- ``PATH.onnx`` / ``PATH.pt2`` (or ``file:PATH``): a model file through
  ``compiler.compile_file``; its input shapes are fixed, so batch must be 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from gemmstone.compiler.models.registry import MODELS, input_shape
from gemmstone.config import AcceleratorConfig
from gemmstone.sim.performance import COUNTERS, estimate
from gemmstone.sim.performance_memory import memory_timing

__all__ = ["Workload", "WorkloadError", "parse_workload", "RESNET18_CONV", "BERT_BASE_GEMM",
           "MODELS", "GemmPart", "ConvPart", "ModelPart",
           "FilePart", "PartResult"]


class WorkloadError(ValueError):
    """A workload spec string that names no workload gemmstone can build."""


# (name, h_in, w_in, c_in, c_out, kernel, stride, pad): shared/workloads/resnet18_conv.csv
# (batch 1, 224x224; 1,813,561,344 MACs in all). Copied so an installed package has them;
# tests compare them with the shared file.
RESNET18_CONV = (
    ("conv1", 224, 224, 3, 64, 7, 2, 3),
    ("layer1.0.conv1", 56, 56, 64, 64, 3, 1, 1),
    ("layer1.0.conv2", 56, 56, 64, 64, 3, 1, 1),
    ("layer1.1.conv1", 56, 56, 64, 64, 3, 1, 1),
    ("layer1.1.conv2", 56, 56, 64, 64, 3, 1, 1),
    ("layer2.0.conv1", 56, 56, 64, 128, 3, 2, 1),
    ("layer2.0.conv2", 28, 28, 128, 128, 3, 1, 1),
    ("layer2.0.downsample", 56, 56, 64, 128, 1, 2, 0),
    ("layer2.1.conv1", 28, 28, 128, 128, 3, 1, 1),
    ("layer2.1.conv2", 28, 28, 128, 128, 3, 1, 1),
    ("layer3.0.conv1", 28, 28, 128, 256, 3, 2, 1),
    ("layer3.0.conv2", 14, 14, 256, 256, 3, 1, 1),
    ("layer3.0.downsample", 28, 28, 128, 256, 1, 2, 0),
    ("layer3.1.conv1", 14, 14, 256, 256, 3, 1, 1),
    ("layer3.1.conv2", 14, 14, 256, 256, 3, 1, 1),
    ("layer4.0.conv1", 14, 14, 256, 512, 3, 2, 1),
    ("layer4.0.conv2", 7, 7, 512, 512, 3, 1, 1),
    ("layer4.0.downsample", 14, 14, 256, 512, 1, 2, 0),
    ("layer4.1.conv1", 7, 7, 512, 512, 3, 1, 1),
    ("layer4.1.conv2", 7, 7, 512, 512, 3, 1, 1),
)

# (name, m, n, k, count_per_layer): shared/workloads/bert_base_s128_gemm.csv (one encoder
# layer, sequence 128: 931.1 M MACs).
BERT_BASE_GEMM = (
    ("q_proj", 128, 768, 768, 1),
    ("k_proj", 128, 768, 768, 1),
    ("v_proj", 128, 768, 768, 1),
    ("attn_qk", 128, 128, 64, 12),
    ("attn_av", 128, 64, 128, 12),
    ("out_proj", 128, 768, 768, 1),
    ("ffn1", 128, 3072, 768, 1),
    ("ffn2", 128, 768, 3072, 1),
)
# The attention GEMMs are per sequence and head: a batch repeats them; the others stack
# the batch's tokens into M.
_PER_SEQUENCE = ("attn_qk", "attn_av")

@dataclass(frozen=True)
class PartResult:
    """One part estimated on one config.

    Members
    -------
    counters : dict of str to int
        The performance counters (`gemmstone.sim.performance.COUNTERS`) of the part's
        programs, added up (they run one after the other).
    macs : int
        Multiply-accumulates the array does (accelerator ops only, for models).
    instructions : int
    host_ops : int
        Ops a compiled model leaves to the host (not timed).
    compile_s, estimate_s : float
        Wall time of building the programs and of the performance model.
    """

    counters: dict[str, int]
    macs: int
    instructions: int
    host_ops: int
    compile_s: float
    estimate_s: float


def _estimate(programs, macs: int, host_ops: int, config: AcceleratorConfig, memory: str,
              engine: str, compile_s: float) -> PartResult:
    timing = memory_timing(memory, config)
    started = time.perf_counter()
    counters = dict.fromkeys(COUNTERS, 0)
    for program in programs:
        for name, value in estimate(program, config, memory=timing,
                                    engine=engine).counters.items():
            counters[name] += value
    return PartResult(counters, macs, sum(len(p.words) for p in programs), host_ops,
                      compile_s, time.perf_counter() - started)


@dataclass(frozen=True)
class GemmPart:
    """An int8-out GEMM ``[m, k] @ [k, n]`` with requantization."""

    m: int
    n: int
    k: int

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k

    def evaluate(self, config: AcceleratorConfig, memory: str,
                 engine: str = "compiled") -> PartResult:
        from gemmstone.compiler.builder import ProgramBuilder
        from gemmstone.compiler.kernels import emit_gemm

        started = time.perf_counter()
        builder = ProgramBuilder(config)
        a = builder.buffer("a", (self.m, self.k))
        b = builder.buffer("b", (self.k, self.n))
        qparams = builder.buffer("q", 3 * self.n, "int32")
        out = builder.buffer("out", (self.m, self.n))
        emit_gemm(builder, a, b, out, qparams)
        program = builder.finish()
        return _estimate([program], self.macs, 0, config, memory, engine,
                         time.perf_counter() - started)


@dataclass(frozen=True)
class ConvPart:
    """An int8-out NHWC convolution with symmetric padding."""

    batch: int
    h: int
    w: int
    cin: int
    cout: int
    kernel: int
    stride: int
    pad: int

    @property
    def output_size(self) -> tuple[int, int]:
        return ((self.h + 2 * self.pad - self.kernel) // self.stride + 1,
                (self.w + 2 * self.pad - self.kernel) // self.stride + 1)

    @property
    def macs(self) -> int:
        ho, wo = self.output_size
        return self.batch * ho * wo * self.cout * self.cin * self.kernel ** 2

    def evaluate(self, config: AcceleratorConfig, memory: str,
                 engine: str = "compiled") -> PartResult:
        from gemmstone.compiler.builder import ProgramBuilder
        from gemmstone.compiler.kernels import emit_conv2d

        started = time.perf_counter()
        ho, wo = self.output_size
        builder = ProgramBuilder(config)
        x = builder.buffer("x", (self.batch, self.h, self.w, self.cin))
        weights = builder.buffer("w", (self.kernel ** 2 * self.cin, self.cout))
        qparams = builder.buffer("q", 3 * self.cout, "int32")
        out = builder.buffer("out", (self.batch, ho, wo, self.cout))
        emit_conv2d(builder, x, weights, out, qparams, kernel_size=self.kernel,
                    stride=self.stride, padding=self.pad)
        program = builder.finish()
        return _estimate([program], self.macs, 0, config, memory, engine,
                         time.perf_counter() - started)


def _compiled_estimate(compiled, config: AcceleratorConfig, memory: str, engine: str,
                       compile_s: float) -> PartResult:
    totals = compiled.report["totals"]
    return _estimate(compiled.programs, totals["macs"], totals["host_ops"], config, memory,
                     engine, compile_s)


@dataclass(frozen=True)
class ModelPart:
    """A repo model (`MODELS`, the model registry) at ``size`` and ``batch``, compiled
    whole."""

    name: str
    size: int
    batch: int

    def module_and_input(self):
        """The torch module (`gemmstone.compiler.models.registry.build`: seed-0 random
        weights with the model's own classifier size, eval mode) and a seeded random
        example input."""
        import torch

        from gemmstone.compiler.models.registry import build

        module, shape = build(self.name, size=self.size, batch=self.batch, seed=0)
        return module, torch.randn(shape, generator=torch.Generator().manual_seed(0))

    def evaluate(self, config: AcceleratorConfig, memory: str,
                 engine: str = "compiled") -> PartResult:
        from gemmstone.compiler.compile import compile_model, default_cache_dir
        from gemmstone.compiler.frontends.torch_fx import from_torch

        started = time.perf_counter()
        module, x = self.module_and_input()
        graph = from_torch(module, (x,))
        # The compiler's on-disk cache makes a repeated sweep skip compilation.
        compiled = compile_model(graph, config, samples=[(x.numpy(),)],
                                 cache_dir=default_cache_dir())
        return _compiled_estimate(compiled, config, memory, engine,
                                  time.perf_counter() - started)


@dataclass(frozen=True)
class FilePart:
    """An .onnx or .pt2 model file."""

    path: str

    def evaluate(self, config: AcceleratorConfig, memory: str,
                 engine: str = "compiled") -> PartResult:
        from gemmstone.compiler.compile import compile_file, default_cache_dir

        started = time.perf_counter()
        compiled = compile_file(self.path, config, cache_dir=default_cache_dir())
        return _compiled_estimate(compiled, config, memory, engine,
                                  time.perf_counter() - started)


@dataclass(frozen=True)
class Workload:
    """One named workload of a sweep.

    Members
    -------
    name : str
        Its name in the table (``gemm 128x768x768``, ``resnet18.conv1``, ``bert.sum``,
        ``model digits``, the file name).
    kind : str
        ``gemm``, ``resnet18-conv``, ``bert-gemm``, ``model`` or ``file``.
    spec : tuple
        What `parts` needs: GEMM (m, n, k); conv and BERT rows of `RESNET18_CONV` and
        `BERT_BASE_GEMM`; (model name, size); (path,).
    """

    name: str
    kind: str
    spec: tuple

    def parts(self, batch: int) -> list[tuple[object, int]]:
        """(part, count) pairs whose cycles add up to the workload's at ``batch``.

        Raises
        ------
        WorkloadError
            ``batch`` is not positive, or is not 1 for a model file.
        """
        if type(batch) is not int or batch < 1:
            raise WorkloadError(f"batch must be a positive integer, not {batch!r}")
        if self.kind == "gemm":
            m, n, k = self.spec
            return [(GemmPart(m * batch, n, k), 1)]
        if self.kind == "resnet18-conv":
            return [(ConvPart(batch, *row[1:]), 1) for row in self.spec]
        if self.kind == "bert-gemm":
            parts = []
            for name, m, n, k, count in self.spec:
                if name in _PER_SEQUENCE:
                    parts.append((GemmPart(m, n, k), count * batch))
                else:
                    parts.append((GemmPart(m * batch, n, k), count))
            return parts
        if self.kind == "model":
            return [(ModelPart(*self.spec, batch), 1)]
        if batch != 1:
            raise WorkloadError(f"{self.name}: a model file has fixed input shapes; batch must "
                                f"be 1, not {batch}")
        return [(FilePart(*self.spec), 1)]


def _pick(kind: str, table: tuple, names: str, label) -> list[Workload]:
    known = {row[0]: row for row in table}
    if names == "sum":
        return [Workload(f"{label}.sum", kind, table)]
    if not names:
        return [Workload(f"{label}.{row[0]}", kind, (row,)) for row in table]
    workloads = []
    for name in names.split(","):
        if name not in known:
            raise WorkloadError(f"{kind}: unknown layer {name!r}; choose from "
                                f"{', '.join(known)} or 'sum'")
        workloads.append(Workload(f"{label}.{name}", kind, (known[name],)))
    return workloads


def _positive(text: str, what: str, spec: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise WorkloadError(f"workload {spec!r}: {what} must be a positive integer, "
                            f"not {text!r}")
    return int(text)


def parse_workload(spec: str) -> list[Workload]:
    """The workloads a spec string names (module docstring); a few specs name several.

    Raises
    ------
    WorkloadError
        The spec names no known workload; the message says which part is wrong.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise WorkloadError(f"a workload must be a non-empty string, not {spec!r}")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if kind == "gemm":
        dims = rest.lower().split("x")
        if len(dims) != 3:
            raise WorkloadError(f"workload {spec!r}: a GEMM is gemm:MxNxK, e.g. "
                                f"gemm:128x768x768")
        m, n, k = (_positive(d, name, spec) for d, name in zip(dims, "MNK", strict=True))
        return [Workload(f"gemm {m}x{n}x{k}", "gemm", (m, n, k))]
    if kind == "resnet18-conv":
        return _pick(kind, RESNET18_CONV, rest, "resnet18")
    if kind == "bert-gemm":
        return _pick(kind, BERT_BASE_GEMM, rest, "bert")
    if kind == "model":
        name, _, size = rest.partition(":")
        if name not in MODELS:
            raise WorkloadError(f"workload {spec!r}: unknown model {name!r}; choose one of "
                                f"{', '.join(MODELS)}")
        default = MODELS[name].default_size
        size = _positive(size, "SIZE", spec) if size else default
        try:
            input_shape(name, size=size)
        except ValueError as error:
            raise WorkloadError(f"workload {spec!r}: {error}") from None
        suffix = "" if size == default else f" {size}"
        return [Workload(f"model {name}{suffix}", "model", (name, size))]
    path = rest if kind == "file" else spec
    if Path(path).suffix in (".onnx", ".pt2"):
        if not Path(path).is_file():
            raise WorkloadError(f"workload {spec!r}: no such model file {path!r}")
        return [Workload(Path(path).name, "file", (str(Path(path).resolve()),))]
    raise WorkloadError(
        f"unknown workload {spec!r}: expected gemm:MxNxK, resnet18-conv[:NAME|sum], "
        f"bert-gemm[:NAME|sum], model:NAME[:SIZE] ({', '.join(MODELS)}) or an .onnx/.pt2 "
        f"file")
