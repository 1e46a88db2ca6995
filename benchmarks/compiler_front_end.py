"""Compile-time benchmark of the compiler's front half on the in-repo models.

For the model registry's (`gemmstone.compiler.models.registry`: seed-0 random weights, 1000
classes) ResNet-18 (224x224), MobileNetV2 (224x224) and BERT-base encoder block (seq 128):
torch.export + conversion, the default pass pipeline, int8 calibration + quantization,
and the count of accelerator vs host ops after quantization. Lowering to programs is not
included (it does not exist yet).

    .venv/bin/python benchmarks/compiler_front_end.py [--quick]

``--quick`` uses small inputs (32x32 images, seq 16) so it runs in seconds.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import torch

from gemmstone.compiler.frontends.torch_fx import from_torch
from gemmstone.compiler.models.registry import build
from gemmstone.compiler.ops import ACCELERATOR_OPS, Op
from gemmstone.compiler.passes import PassManager
from gemmstone.compiler.quantization import quantize

_BOOKKEEPING = {Op.INPUT, Op.OUTPUT, Op.CONSTANT}


def _models(quick: bool):
    image = 32 if quick else 224
    seq = 16 if quick else 128
    for label, name, size in (("resnet18", "resnet18", image),
                              ("mobilenet_v2", "mobilenetv2", image),
                              ("bert_encoder_block", "encoder", seq)):
        yield (label, *build(name, size=size, seed=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    header = (f"{'model':<20}{'export s':>9}{'passes s':>9}{'quant s':>9}{'nodes':>7}"
              f"{'accel':>7}{'host':>6}  host ops")
    start = time.perf_counter()
    from_torch(torch.nn.Linear(2, 2), (torch.randn(1, 2),))
    print(f"torch.export warm-up, once per process: {time.perf_counter() - start:.2f} s")
    print(header)
    for name, model, shape in _models(args.quick):
        start = time.perf_counter()
        graph = from_torch(model, (torch.randn(*shape),))
        exported = time.perf_counter()
        PassManager().run(graph)
        optimized = time.perf_counter()
        quantized = quantize(graph, [(rng.standard_normal(shape).astype(np.float32),)])
        done = time.perf_counter()
        ops = Counter(n.op for n in quantized.nodes if n.op not in _BOOKKEEPING)
        accel = sum(count for op, count in ops.items() if op in ACCELERATOR_OPS)
        host = {op.value: count for op, count in ops.items()
                if op not in ACCELERATOR_OPS and op is not Op.REQUANTIZE}
        print(f"{name:<20}{exported - start:>9.2f}{optimized - exported:>9.2f}"
              f"{done - optimized:>9.2f}{len(graph.nodes):>7}{accel:>7}"
              f"{sum(host.values()):>6}  {', '.join(f'{k}x{v}' for k, v in host.items())}")


if __name__ == "__main__":
    main()
