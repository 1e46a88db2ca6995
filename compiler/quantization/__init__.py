"""Post-training int8 quantization: calibration on sample inputs, per-channel symmetric
weights, per-tensor symmetric activations, and requantization parameters (int32
multiplier + shift) with the ISA's exact rounding."""

from gemmstone.compiler.quantization.calibration import calibrate
from gemmstone.compiler.quantization.fixed_point import (
    quantize_multiplier,
    quantize_multipliers,
    shared_shift_multipliers,
)
from gemmstone.compiler.quantization.quantize import quantize, quantize_graph

__all__ = ["calibrate", "quantize_multiplier", "quantize_multipliers",
           "shared_shift_multipliers", "quantize", "quantize_graph"]
