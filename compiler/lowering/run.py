"""`run_compiled`: execute a `CompiledModel`'s plan on a backend and the host."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gemmstone.compiler.interpreter import evaluate
from gemmstone.compiler.ir import Node
from gemmstone.compiler.lowering.compiled import CompiledModel
from gemmstone.compiler.ops import DType, Op
from gemmstone.config import AcceleratorConfig
from gemmstone.isa.program import Program

__all__ = ["run_compiled", "functional_backend"]

Backend = Callable[[Program, AcceleratorConfig, dict], dict]
"""``backend(program, config, inputs) -> outputs``: buffers by name in and out."""


def functional_backend(program: Program, config: AcceleratorConfig, inputs: dict) -> dict:
    """Run on the functional model (`gemmstone.sim.functional.run_program`)."""
    from gemmstone.sim.functional import run_program
    return run_program(program, config, inputs).outputs


def run_compiled(compiled: CompiledModel, *args: np.ndarray, backend: Backend | None = None,
                 trace: dict | None = None) -> list[np.ndarray]:
    """Run ``compiled`` on inputs given in order; returns the outputs in order.

    Accelerator steps go to ``backend`` (default: the functional model), host steps to
    the interpreter's numpy kernels. With ``trace`` (a dict), every value computed is
    stored in it by name.

    Raises
    ------
    ValueError
        Wrong number, shape or dtype of inputs.
    """
    backend = backend or functional_backend
    if len(args) != len(compiled.inputs):
        raise ValueError(f"model {compiled.name!r} takes {len(compiled.inputs)} inputs, got "
                         f"{len(args)}")
    env: dict[str, np.ndarray] = dict(compiled.constants)
    for (name, shape, dtype), value in zip(compiled.inputs, args, strict=True):
        array = np.asarray(value)
        if array.shape != tuple(shape) or array.dtype != DType(dtype).numpy:
            raise ValueError(f"input {name!r} must be {dtype}{list(shape)}, got "
                             f"{array.dtype}{list(array.shape)}")
        env[name] = array
    for step in compiled.steps:
        if step["kind"] == "host":
            node = Node(step["node"], Op(step["op"]), [], step["attrs"], tuple(step["shape"]),
                        DType(step["dtype"]))
            env[step["node"]] = evaluate(node, [env[v] for v in step["inputs"]])
        else:
            program = compiled.programs[step["program"]]
            outputs = backend(program, compiled.config,
                              {name: env[name] for name in step["inputs"]})
            for name in step["outputs"]:
                env[name] = outputs[name]
    if trace is not None:
        trace.update(env)
    return [env[name] for name in compiled.outputs]
