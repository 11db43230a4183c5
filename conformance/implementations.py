"""The ``--impl`` forms (CONF-3.5): which implementation the suite runs.

``module:attr`` names an adapter object, or a class or function that returns one (called with
``device=`` when it takes that argument, else with no arguments). The built-in names are just
``module:attr`` paths: ``reference`` is ``lite_llm.reference.adapter:ReferenceAdapter`` and
``optimized`` is ``lite_llm.optimized.adapter:OptimizedAdapter``; an implementation added later (a
JAX one, say) is run the same way with no change here. ``cmd:COMMAND`` is an implementation in
another process, in any language, speaking the JSON-lines protocol (:mod:`.harness`).
"""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from .harness import CommandAdapter

BUILT_IN = {
    "reference": "lite_llm.reference.adapter:ReferenceAdapter",      # NumPy, the executable meaning of the spec
    "optimized": "lite_llm.optimized.adapter:OptimizedAdapter",      # PyTorch, CPU and CUDA
}


def _takes_device(obj) -> bool:
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False
    return "device" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def load_module_attr(impl: str, device: str = "cpu"):
    """The adapter named by ``module:attr``; ValueError with a clear message otherwise."""
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
        obj = obj(device=device) if _takes_device(obj) else obj()      # a class, or a factory function
    if not callable(getattr(obj, "run", None)):
        raise ValueError(f"--impl {impl}: {attr} has no run(request) method (see conformance/README.md)")
    return obj


def load_adapter(impl: str, device: str = "cpu"):
    """The adapter for an ``--impl`` value (CONF-3.5); ValueError with a clear message otherwise."""
    if impl.startswith("cmd:"):
        command = impl[4:].strip()
        if not command:
            raise ValueError("--impl cmd: needs a command, e.g. cmd:'./my-harness --serve'")
        return CommandAdapter(command)
    if impl in BUILT_IN:
        return load_module_attr(BUILT_IN[impl], device)
    if ":" in impl:
        return load_module_attr(impl, device)
    if Path(impl).exists():
        raise ValueError(f"--impl {impl}: a path; to run an executable use --impl cmd:{impl}")
    raise ValueError(f"--impl {impl!r}: expected {', '.join(BUILT_IN)}, module:attr or cmd:COMMAND")
