"""The in-process adapter protocol and the ``--impl`` forms (CONF-3.1 .. CONF-3.6).

An *adapter* is any Python object with

- ``run(request) -> mapping``: perform ``request.operation`` and return its outputs, name -> array
  (NumPy arrays, or anything ``numpy.asarray`` accepts, torch tensors included);
- optionally ``operations``: the names of the operations it offers (OVW-1.3); a case whose
  operation is not listed is skipped as *not offered*; without the attribute every operation is tried;
- optionally ``name`` (shown in reports) and ``close()`` (called once at the end).

It rejects an input by raising an exception with a string attribute ``code`` (``E_SHAPE``, ...):
every ``lite_llm.spec.errors.LiteLLMError`` has one. ``NotImplementedError`` marks the case as
skipped. Any other exception is an *errored* case: the harness broke, not the specification.

``load_adapter`` turns the command line's ``--impl`` into an adapter: ``reference``, ``optimized``
(``device`` ``cpu`` or ``cuda``), ``module:attr`` (an adapter object, or a class or function that
returns one when called with no arguments) and ``cmd:COMMAND`` (an out-of-process implementation
speaking the JSON-lines protocol, :mod:`protocol`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Request:
    """What an adapter is asked to do for one case (CONF-3.2)."""

    case_id: str                   # the case's stable id (for messages)
    operation: str                 # e.g. "route", "canonical_exp", "forward"
    config: dict | None            # the configuration in its JSON form (may be invalid on purpose)
    params: dict                   # scalar parameters, JSON values (seeds may be "0x..." strings)
    inputs: dict                   # name -> np.ndarray (tensors) or Path (directory inputs)
    dtypes: dict[str, str]         # logical dtype of each tensor input; bfloat16 arrives as uint16 bits
    outputs: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # name -> (dtype, shape) expected
    files: dict[str, Path] = field(default_factory=dict)   # tensor input name -> the .npy it was read from

    def tensor(self, name: str) -> np.ndarray:
        return self.inputs[name]


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


def load_adapter(impl: str, device: str = "cpu"):
    """The adapter for an ``--impl`` value (CONF-3.5); ValueError with a clear message otherwise."""
    if impl == "reference":
        from .reference_adapter import ReferenceAdapter

        return ReferenceAdapter()
    if impl == "optimized":
        from .optimized_adapter import OptimizedAdapter

        return OptimizedAdapter(device)
    if impl.startswith("cmd:"):
        from .protocol import CommandAdapter

        command = impl[4:].strip()
        if not command:
            raise ValueError("--impl cmd: needs a command, e.g. cmd:'./my-harness --serve'")
        return CommandAdapter(command)
    if ":" in impl:
        module, _, attr = impl.partition(":")
        try:
            obj = importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"--impl {impl}: cannot import module {module!r} ({e})") from None
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ValueError(f"--impl {impl}: module {module!r} has no attribute {attr!r}") from None
        if isinstance(obj, type) or (not hasattr(obj, "run") and callable(obj)):
            obj = obj()                                   # a class, or a factory function
        if not callable(getattr(obj, "run", None)):
            raise ValueError(f"--impl {impl}: {attr} has no run(request) method (see conformance/README.md)")
        return obj
    if Path(impl).exists():
        raise ValueError(f"--impl {impl}: a path; to run an executable use --impl cmd:{impl}")
    raise ValueError(f"--impl {impl!r}: expected reference, optimized, module:attr or cmd:COMMAND")


def close_adapter(adapter) -> None:
    close = getattr(adapter, "close", None)
    if callable(close):
        close()
