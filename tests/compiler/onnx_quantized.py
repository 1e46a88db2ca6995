"""ONNX Runtime's static QDQ quantization of a PyTorch model, shared by the ONNX tests.

The quantized models come from the tool users actually run (onnxruntime.quantization), so
the frontend and the integer rewrite are tested on its real output, not on hand-written
QDQ patterns only.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static


class _Samples(CalibrationDataReader):
    """Calibration inputs for the model's one input "x"."""

    def __init__(self, samples: list[np.ndarray]):
        self.samples = iter([{"x": sample} for sample in samples])

    def get_next(self):
        return next(self.samples, None)


def ort_qdq_model(model: torch.nn.Module, example: torch.Tensor, samples: list[np.ndarray],
                  folder: Path, *, activations: str = "QInt8") -> onnx.ModelProto:
    """``model`` exported to ONNX (input "x" shaped like ``example``) and quantized by
    ONNX Runtime: QDQ format, int8 per-channel weights, ``activations`` (a QuantType name)
    calibrated on ``samples``."""
    buffer = io.BytesIO()
    torch.onnx.export(model.eval(), (example,), buffer, dynamo=False, input_names=["x"])
    (folder / "float.onnx").write_bytes(buffer.getvalue())
    quantize_static(folder / "float.onnx", folder / "qdq.onnx", _Samples(samples),
                    activation_type=getattr(QuantType, activations),
                    weight_type=QuantType.QInt8, per_channel=True)
    return onnx.load(folder / "qdq.onnx")
