"""Compile time of ResNet-18 and the BERT-style encoder block, and accelerator vs host ops.

Measures `lower` (partition, memory plan, tiling, program emission) and the whole
`compile_model` (passes + calibration + quantization + lowering), without the cache.
Target: <= 5 s each.

    .venv/bin/python benchmarks/compile_time.py [--preset small] [--size 224]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from gemmstone.compiler.compile import compile_model
from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.models import EncoderBlock, randomize_batch_norm, resnet18
from gemmstone.config import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=224, help="ResNet-18 input resolution")
    args = parser.parse_args()
    config = preset(args.preset)
    torch.manual_seed(0)
    models = {
        f"resnet18 {args.size}x{args.size}": (
            randomize_batch_norm(resnet18(num_classes=1000)).eval(),
            torch.randn(1, 3, args.size, args.size)),
        "encoder 768/12 heads, seq 128": (EncoderBlock(768, 12).eval(),
                                          torch.randn(1, 128, 768)),
    }
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"config: {config.describe()}")
    for name, (model, x) in models.items():
        start = time.perf_counter()
        graph = from_torch(model, (x,))
        frontend = time.perf_counter() - start
        start = time.perf_counter()
        compiled = compile_model(graph, config, samples=[(x.numpy().astype(np.float32),)])
        total = time.perf_counter() - start
        totals = compiled.report["totals"]
        print(f"{name}: frontend {frontend:.2f} s, compile (passes + quantize + lower) "
              f"{total:.2f} s [{'ok' if total <= 5 else 'over'} vs 5 s target]; "
              f"{totals['accelerator_ops']} accelerator ops in {totals['programs']} programs, "
              f"{totals['host_ops']} host ops, {totals['instructions']:,} instructions, "
              f"~{totals['cycles']:,} estimated cycles")


if __name__ == "__main__":
    main()
