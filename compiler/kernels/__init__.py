"""Reference kernels: GEMM and convolution programs for any `AcceleratorConfig`.

Tests use them to check the functional model against numpy; the compiler's lowering
reuses them.
"""

from gemmstone.compiler.kernels.conv import conv2d_output_shape, emit_conv2d
from gemmstone.compiler.kernels.gemm import emit_gemm, emit_tiled_matmul, pack_qparams

__all__ = ["emit_gemm", "emit_tiled_matmul", "pack_qparams", "emit_conv2d",
           "conv2d_output_shape"]
