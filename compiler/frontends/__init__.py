"""Frontends: framework graphs (torch.export, torch.compile's FX, ONNX) to the IR.

Each lives in its own module and imports its framework there, so importing
`gemmstone.compiler` needs neither torch nor onnx.
"""
