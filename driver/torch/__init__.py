"""gemmstone.driver.torch: the accelerator in PyTorch.

Importing this package registers the ``torch.compile`` backend ``gemmstone``
(`compile_backend`): ``torch.compile(model, backend="gemmstone", options={"backend":
"func", "config": "small"})`` compiles each captured graph with the gemmstone compiler and
runs it on a driver device. Operators the compiler cannot take run on the host with
PyTorch (`fallback`); `fallback_report` counts them.

``register()`` makes ``gem`` an eager device (`eager`): ``x.to("gem")``,
``model.to("gem")``, ``torch.empty(..., device="gem")``, printing and ``.cpu()``; matmul,
linear and conv2d run on the accelerator as one-op programs, every other op on the host,
and `report` says which ran where.
"""

from gemmstone.driver.torch.compile_backend import (
    BACKEND_NAME,
    CompileOptions,
    close_devices,
    compiled_models,
    gemmstone_backend,
    register_backend,
)
from gemmstone.driver.torch.eager import (
    DEVICE_NAME,
    GemTensor,
    OpReport,
    device,
    register,
    report,
    reset_report,
)
from gemmstone.driver.torch.fallback import (
    FallbackReport,
    fallback_report,
    reset_fallback_report,
)

register_backend()

__all__ = ["BACKEND_NAME", "CompileOptions", "close_devices", "compiled_models",
           "gemmstone_backend", "register_backend", "FallbackReport", "fallback_report",
           "reset_fallback_report", "DEVICE_NAME", "GemTensor", "OpReport",
           "device", "register", "report", "reset_report"]
