"""gemmstone.driver.torch: the accelerator as a PyTorch device.

``register()`` makes ``gem`` a device (`eager`): ``x.to("gem")``, ``model.to("gem")``,
``torch.empty(..., device="gem")``, printing and ``.cpu()``; matmul, linear and conv2d run
on the accelerator as one-op programs, every other op on the host, and `report` says
which ran where.
"""

from gemmstone.driver.torch.eager import (
    DEVICE_NAME,
    GemTensor,
    OpReport,
    device,
    register,
    report,
    reset_report,
)

__all__ = ["DEVICE_NAME", "GemTensor", "OpReport", "device", "register", "report",
           "reset_report"]
