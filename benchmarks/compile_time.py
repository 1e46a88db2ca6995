"""Compile time of ResNet-18 and the BERT-style encoder block, and accelerator vs host ops.

Both models come from the model registry (`gemmstone.compiler.models.registry`: seed-0
random weights; ResNet-18 with 1000 classes, the encoder block with hidden size 768 and
12 heads), with seeded random inputs.

Measures the frontend (`from_torch`: torch.export and the conversion to the IR) and
`compile_model` (passes + calibration + quantization + lowering: partition, memory plan,
tiling, program encoding), without the cache; the target (<= 5 s each) is for their sum.
Times are wall clock and, because the machine may be shared, the process's CPU time too.
torch.export's own modules are imported before the clock starts (about 2 s once per
process, printed as "torch.export import").

    .venv/bin/python benchmarks/compile_time.py [--preset small] [--size 224]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import numpy as np
import torch

from gemmstone.compiler.compile import compile_model
from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.models.registry import build
from gemmstone.config import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=224, help="ResNet-18 input resolution")
    args = parser.parse_args()
    config = preset(args.preset)
    models = {f"resnet18 {args.size}x{args.size}": _model("resnet18", args.size),
              "encoder 768/12 heads, seq 128": _model("encoder", 128)}
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"config: {config.describe()}")
    wall, cpu = time.perf_counter(), time.process_time()
    importlib.import_module("torch.export")  # what the first torch.export pulls in
    importlib.import_module("torch._dynamo")
    print(f"torch.export import: {time.perf_counter() - wall:.2f} s "
          f"({time.process_time() - cpu:.2f} s CPU)")
    for name, (model, x) in models.items():
        clocks = [(time.perf_counter(), time.process_time())]
        graph = from_torch(model, (x,))
        clocks.append((time.perf_counter(), time.process_time()))
        compiled = compile_model(graph, config, samples=[(x.numpy().astype(np.float32),)])
        clocks.append((time.perf_counter(), time.process_time()))
        (frontend, frontend_cpu), (compile_, compile_cpu), (total, total_cpu) = (
            (clocks[b][0] - clocks[a][0], clocks[b][1] - clocks[a][1])
            for a, b in ((0, 1), (1, 2), (0, 2)))
        totals = compiled.report["totals"]
        print(f"{name}: total {total:.2f} s ({total_cpu:.2f} s CPU) "
              f"[{'ok' if total <= 5 else 'over'} vs 5 s target] = frontend {frontend:.2f} s "
              f"({frontend_cpu:.2f} s CPU) + compile (passes + quantize + lower) "
              f"{compile_:.2f} s ({compile_cpu:.2f} s CPU); "
              f"{totals['accelerator_ops']} accelerator ops in {totals['programs']} programs, "
              f"{totals['host_ops']} host ops, {totals['instructions']:,} instructions, "
              f"~{totals['cycles']:,} estimated cycles")


def _model(name: str, size: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """The registry's model and a seeded random input of its shape."""
    model, shape = build(name, size=size, seed=0)
    return model, torch.randn(shape, generator=torch.Generator().manual_seed(0))


if __name__ == "__main__":
    main()
