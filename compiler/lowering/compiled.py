"""`CompiledModel`: the programs, the host plan and the compile report of one graph.

The host plan is a list of steps run in order over an environment of named values:

- ``{"kind": "accelerator", "program": i, "inputs": [...], "outputs": [...]}``: run
  program ``i``; its buffers carry the values' names;
- ``{"kind": "host", "node": ..., "op": ..., "inputs": [...], "attrs": {...}, ...}``: one
  IR node evaluated by the interpreter's numpy kernel.

Serialized as one zip file: ``manifest.json`` (plan, report, metadata), ``arrays.npz``
(host constants and array attributes) and one ``program<i>.gemsprog`` per program (the
ISA container).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gemmstone.compiler.ops import DType
from gemmstone.config import AcceleratorConfig
from gemmstone.isa.program import Program

__all__ = ["CompiledModel", "format_report"]


@dataclass
class CompiledModel:
    """A lowered model.

    Members
    -------
    name : str
    config : AcceleratorConfig
    key : str
        Content hash of (graph, config, compiler version) it was compiled from.
    inputs : list of (name, shape, dtype name)
        The graph's inputs, in order.
    outputs : list[str]
        Names of the output values, in order.
    programs : list[gemmstone.isa.Program]
    steps : list[dict]
        The host plan (module docstring).
    constants : dict[str, numpy.ndarray]
        Constant operands of host steps.
    report : dict
        ``layers`` (one dict per accelerator op), ``host`` (one per host step, with the
        reason an integer op is not on the array), totals.
    """

    name: str
    config: AcceleratorConfig
    key: str
    inputs: list[tuple[str, tuple[int, ...], str]]
    outputs: list[str]
    programs: list[Program]
    steps: list[dict]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write the zip file (see the module docstring); returns its path."""
        arrays: dict[str, np.ndarray] = {f"const:{k}": v for k, v in self.constants.items()}
        steps = [_encode(step, arrays) for step in self.steps]
        manifest = {"format": 1, "name": self.name, "config": self.config.to_dict(),
                    "key": self.key, "inputs": [[n, list(s), d] for n, s, d in self.inputs],
                    "outputs": self.outputs, "steps": steps, "report": self.report,
                    "constants": sorted(self.constants), "programs": len(self.programs)}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        tmp = path.with_name(path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=1))
            archive.writestr("arrays.npz", buffer.getvalue())
            for i, program in enumerate(self.programs):
                archive.writestr(f"program{i}.gemsprog", program.to_bytes())
        tmp.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one
        return path

    @classmethod
    def load(cls, path: str | Path) -> CompiledModel:
        """Read a file written by `save`.

        Raises
        ------
        ValueError
            Not a compiled model (or a newer format).
        """
        try:
            with zipfile.ZipFile(path) as archive:
                manifest = json.loads(archive.read("manifest.json"))
                with np.load(io.BytesIO(archive.read("arrays.npz"))) as npz:
                    arrays = {k: npz[k] for k in npz.files}
                config = AcceleratorConfig.from_dict(manifest["config"])
                programs = [Program.from_bytes(archive.read(f"program{i}.gemsprog"),
                                               config=config)
                            for i in range(manifest["programs"])]
        except (zipfile.BadZipFile, KeyError) as error:
            raise ValueError(f"{path}: not a compiled gemmstone model ({error})") from None
        if manifest.get("format") != 1:
            raise ValueError(f"{path}: compiled model format {manifest.get('format')} is "
                             f"not supported")
        return cls(name=manifest["name"], config=config, key=manifest["key"],
                   inputs=[(n, tuple(s), d) for n, s, d in manifest["inputs"]],
                   outputs=manifest["outputs"], programs=programs,
                   steps=[_decode(step, arrays) for step in manifest["steps"]],
                   constants={k: arrays[f"const:{k}"] for k in manifest["constants"]},
                   report=manifest["report"])


def _encode(value, arrays: dict):
    """JSON form of plan values: arrays go to ``arrays``, tuples/DTypes/inf are tagged."""
    if isinstance(value, dict):
        return {k: _encode(v, arrays) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        key = f"attr:{len(arrays)}"
        arrays[key] = value
        return {"$array": key}
    if isinstance(value, DType):
        return {"$dtype": value.value}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    return value


def _decode(value, arrays: dict):
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "$array" in value:
        array = arrays[value["$array"]]
        array.flags.writeable = False
        return array
    if "$dtype" in value:
        return DType(value["$dtype"])
    if "$tuple" in value:
        return tuple(_decode(v, arrays) for v in value["$tuple"])
    if "$float" in value:
        return float(value["$float"])
    return {k: _decode(v, arrays) for k, v in value.items()}


def format_report(compiled: CompiledModel) -> str:
    """The per-layer report: accelerator ops (MACs, tiles, estimated cycles) and host ops
    (with the reason an integer op is on the host), then totals."""
    report = compiled.report
    lines = [f"model {compiled.name} for {compiled.config.describe()}",
             f"{'layer':<28} {'op':<24} {'MACs':>11} {'tiles':>6} {'block_m':>8} "
             f"{'est. cycles':>12} {'instrs':>7}"]
    for layer in report["layers"]:
        block = ",".join(sorted({str(b) for b in layer["block_m"]}))
        lines.append(f"{layer['name'][:28]:<28} {layer['kind'][:24]:<24} {layer['macs']:>11,}"
                     f" {layer['tiles']:>6} {block:>8} {layer['cycles']:>12,} "
                     f"{layer['instructions']:>7}")
    lines.append("host ops:")
    for host in report["host"]:
        why = f"  ({host['reason']})" if host["reason"] else ""
        lines.append(f"  {host['name']:<28} {host['op']}{why}")
    totals = report["totals"]
    lines.append(f"{totals['accelerator_ops']} accelerator ops in {totals['programs']} "
                 f"programs, {totals['host_ops']} host ops; {totals['macs']:,} MACs, "
                 f"~{totals['cycles']:,} estimated accelerator cycles, "
                 f"{totals['instructions']:,} instructions, arena {totals['arena_bytes']:,} "
                 f"bytes (without reuse {totals['arena_bytes_no_reuse']:,})")
    return "\n".join(lines)
