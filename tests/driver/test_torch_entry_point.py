"""`backend="gemmstone"` resolves through the installed entry point, with no import of
gemmstone first (a user's script need not know the module that registers it)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points


def test_entry_point_names_the_backend_function():
    from gemmstone.driver.torch.compile_backend import gemmstone_backend

    (entry,) = [ep for ep in entry_points(group="torch_dynamo_backends")
                if ep.name == "gemmstone"]
    assert entry.load() is gemmstone_backend


def test_torch_finds_the_backend_without_importing_gemmstone():
    script = ("import sys, torch\n"
              "assert not any(m.startswith('gemmstone') for m in sys.modules)\n"
              "from torch._dynamo.backends.registry import lookup_backend\n"
              "fn = lookup_backend('gemmstone')\n"
              "print(fn.__module__, fn.__name__)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["gemmstone.driver.torch.compile_backend",
                                     "gemmstone_backend"]
