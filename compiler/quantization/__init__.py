"""Post-training int8 quantization: calibration on sample inputs, per-channel symmetric
weights, per-tensor symmetric activations, and requantization parameters (int32
multiplier + shift) with the ISA's exact rounding; and already quantized (ONNX integer or
QDQ) graphs rewritten into the array's exact forms (`integer`)."""

from gemmstone.compiler.quantization.calibration import calibrate
from gemmstone.compiler.quantization.fixed_point import (
    quantize_multiplier,
    quantize_multipliers,
    shared_shift_multipliers,
)
from gemmstone.compiler.quantization.integer import (
    exact_multiplier,
    needs_integer_preparation,
    prepare_integer_graph,
    prepare_integer_ops,
)
from gemmstone.compiler.quantization.quantize import quantize, quantize_graph

__all__ = ["calibrate", "quantize_multiplier", "quantize_multipliers",
           "shared_shift_multipliers", "quantize", "quantize_graph", "exact_multiplier",
           "needs_integer_preparation", "prepare_integer_graph", "prepare_integer_ops"]
