"""Exceptions of the compiler front half: IR rule violations and frontend rejections."""

from __future__ import annotations

__all__ = ["IRError", "VerifyError", "FrontendError"]


class IRError(ValueError):
    """An operation on the IR broke one of its rules (bad operand, unknown attribute...).

    Parameters
    ----------
    message : str
        Names the node and says what is wrong.
    reason : str, optional
        What is wrong without the node (frontends name their own node instead); defaults
        to ``message``.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


class VerifyError(IRError):
    """`verify` found a graph that is not well formed; the message names the node."""


class FrontendError(ValueError):
    """A framework graph the compiler cannot take in.

    Parameters
    ----------
    framework : str
        "torch" or "onnx".
    node : str
        Name of the offending framework node.
    op : str
        Its operator (aten target or ONNX op type).
    reason : str
        Why it was rejected.
    """

    def __init__(self, framework: str, node: str, op: str, reason: str) -> None:
        super().__init__(f"{framework} node '{node}' ({op}): {reason}")
        self.framework, self.node, self.op, self.reason = framework, node, op, reason
