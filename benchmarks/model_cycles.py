"""Cycles of ResNet-18 (batch 1) per layer on the performance model.

ResNet-18 (the model registry's, `gemmstone.compiler.models.registry`: 1000 classes,
random weights and batch-norm statistics, seed 0) is compiled
for a preset (default base 16x16) at 224x224 (`--size`), and each accelerator program is
timed on the performance model (`gemmstone.sim.performance`) with its default memory, the
rtl backend's: the in-simulation DRAM at ``config.dram_latency`` (the model is calibrated
within 2% of the RTL there). The total is the sum of the programs' CYCLES,
what the rtl backend counts for one inference (host steps take no accelerator cycles).

Per layer, each accelerator op is lowered alone (one program per op) and timed the same
way; a layer's cycles are those of its program, so the per-layer sum is a little above
the whole programs' (consecutive layers of one program overlap their ends). Printed per
layer: the kind, MACs, cycles, array utilization (MACs / (rows x cols x cycles)) and the
cycles lost to the ideal (MACs / (rows x cols)).

    .venv/bin/python benchmarks/model_cycles.py [--preset base] [--size 224] [--no-layers]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from gemmstone.compiler.compile import compile_model
from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.lowering.emit import lower_group
from gemmstone.compiler.lowering.lower import prepare_for_lowering
from gemmstone.compiler.lowering.partition import AcceleratorGroup, schedule
from gemmstone.compiler.models.registry import build
from gemmstone.compiler.passes import PassManager
from gemmstone.compiler.quantization import quantize
from gemmstone.config import preset
from gemmstone.sim.performance import PerformanceModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--size", type=int, default=224, help="input resolution")
    parser.add_argument("--no-layers", action="store_true",
                        help="only the whole programs (half the time)")
    args = parser.parse_args()
    config = preset(args.preset)
    peak = config.rows * config.cols
    print(f"command: .venv/bin/python {' '.join(sys.argv)}")
    print(f"ResNet-18, batch 1, {args.size}x{args.size}, {config.describe()}")
    model, shape = build("resnet18", size=args.size, seed=0)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    graph = from_torch(model, (torch.from_numpy(x),), name="resnet18")
    cpu = time.process_time()
    compiled = compile_model(graph, config, samples=[(x,)])
    print(f"compile: {time.process_time() - cpu:.2f} s CPU")
    timing = PerformanceModel(config)

    macs = compiled.report["totals"]["macs"]
    cpu = time.process_time()
    program_cycles = [timing.run(p.words).cycles for p in compiled.programs]
    total = sum(program_cycles)

    if not args.no_layers:
        graph = graph.copy()
        PassManager().run(graph)
        quantized = prepare_for_lowering(quantize(graph, [(x,)]), config)
        print(f"{'layer':<12} {'kind':<22} {'MACs':>12} {'cycles':>10} {'util':>6} "
              f"{'lost':>10}")
        layer_sum = 0
        for step in schedule(quantized):
            if not isinstance(step, AcceleratorGroup):
                continue
            for op in step.ops:
                names = [v.name for v in op.operands]
                program, (report,) = lower_group(AcceleratorGroup([op]), config, names,
                                                 [op.output.name], op.output.name)
                cycles = timing.run(program.words).cycles
                layer_sum += cycles
                ideal = report["macs"] / peak
                print(f"{report['name'][:12]:<12} {report['kind'][:22]:<22} "
                      f"{report['macs']:>12,} {cycles:>10,} {ideal / cycles:>6.1%} "
                      f"{cycles - ideal:>10,.0f}")
        print(f"sum of layers alone: {layer_sum:,} cycles")
    print(f"programs: {', '.join(f'{c:,}' for c in program_cycles)}")
    print(f"total: {total:,} cycles for {macs:,} MACs: utilization {macs / peak / total:.1%} "
          f"(ideal {macs / peak:,.0f} cycles); performance model "
          f"{time.process_time() - cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
