"""The suite's side of the adapter interface: rejections, outputs as arrays, offered operations (CONF-3.3).

The interface itself (``Request``, what an adapter is) is defined by the spec, in
:mod:`lite_llm.spec.adapter`, so that implementations can keep their adapters beside their code
without importing the suite. ``--impl`` values are resolved by :mod:`.implementations`.
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.adapter import Request  # noqa: F401 - the suite's modules take the interface from here


class Rejection(Exception):
    """An implementation's rejection of an input, with its error code (used by out-of-process adapters)."""

    def __init__(self, code: str, message: str = ""):
        self.code = code
        super().__init__(f"{code}: {message}" if message else code)


def rejection_code(exc: BaseException) -> str | None:
    """The error code an exception carries (CONF-3.3), or None if it is not a rejection."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code.startswith("E_") else None


def to_numpy(value) -> np.ndarray:
    """An adapter's output as a NumPy array (torch tensors are moved to the CPU first)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.view(__import__("torch").int16)
        value = value.numpy()
    return np.asarray(value)


def adapter_name(adapter) -> str:
    return str(getattr(adapter, "name", type(adapter).__name__))


def offers(adapter, operation: str) -> bool:
    ops = getattr(adapter, "operations", None)
    return ops is None or operation in ops


def close_adapter(adapter) -> None:
    close = getattr(adapter, "close", None)
    if callable(close):
        close()
