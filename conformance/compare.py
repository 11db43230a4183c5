"""Comparing an implementation's outputs with a case's expected outputs (CONF-2.1 .. CONF-2.3).

Exact outputs are compared bit for bit (as unsigned integers of the element's width, so ``-0.0`` is
not ``+0.0`` and NaN payloads count); tolerance outputs elementwise by
``|got - want| <= atol + rtol * |want|`` with NaN never within tolerance. A mismatch is described by
its first differing element in row-major order, with bit patterns for exact outputs.
"""
from __future__ import annotations

import numpy as np

from .case import TensorFile, Tolerance
from .tensors import bits


def describe(a: np.ndarray, idx: tuple, exact: bool) -> str:
    v = a[idx]
    text = repr(v.item()) if hasattr(v, "item") else repr(v)
    if exact and a.dtype.kind in "fc":
        width = a.dtype.itemsize * (2 if a.dtype.kind == "f" else 1)
        text += f" (0x{int(bits(np.asarray(v))):0{width}x})"
    return text


def compare_tensor(name: str, want: np.ndarray, got: np.ndarray, spec: TensorFile) -> str | None:
    """None when ``got`` matches ``want`` under the output's rule, else a one-line explanation."""
    if got.shape != want.shape:
        return f"output {name!r}: shape {got.shape}, expected {want.shape}"
    if spec.tolerance is None:
        if got.dtype != want.dtype:
            return f"output {name!r}: dtype {got.dtype}, expected {want.dtype} (exact outputs are compared bit for bit)"
        diff = np.argwhere(bits(got) != bits(want)) if got.size else np.zeros((0, got.ndim), int)
        if diff.size == 0:
            return None
        idx = tuple(int(i) for i in diff[0])
        return (f"output {name!r}: {len(diff)} of {want.size} elements differ; first at index {list(idx)}: "
                f"got {describe(got, idx, True)}, expected {describe(want, idx, True)}")
    return compare_within(name, want, got, spec.tolerance)


def compare_within(name: str, want: np.ndarray, got: np.ndarray, tol: Tolerance) -> str | None:
    if got.dtype.kind not in "fiu":
        return f"output {name!r}: dtype {got.dtype} is not numeric"
    w = want.astype(np.float64)
    g = got.astype(np.float64)
    err = np.abs(g - w)
    ref = np.abs(w)
    if tol.relative_to == "max":
        ref = np.full_like(ref, ref.max() if ref.size else 0.0)
    elif tol.relative_to == "row_max" and ref.ndim:
        ref = np.broadcast_to(ref.max(axis=-1, keepdims=True) if ref.shape[-1] else ref, ref.shape)
    allowed = tol.atol + tol.rtol * ref
    bad = ~(err <= allowed)                                       # NaN is never within tolerance
    if not bad.any():
        return None
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(bad, err / np.maximum(allowed, np.finfo(np.float64).tiny), 0.0)
    worst = tuple(int(i) for i in np.unravel_index(int(np.nanargmax(np.where(np.isnan(ratio), np.inf, ratio))), ratio.shape))
    rel = "" if tol.relative_to == "element" else f" of {tol.relative_to} |expected|"
    return (f"output {name!r}: {int(bad.sum())} of {want.size} elements outside rtol={tol.rtol:g}{rel}, atol={tol.atol:g}; "
            f"first at index {list(first)}: got {float(g[first])!r}, expected {float(w[first])!r}; "
            f"worst at {list(worst)}: |diff| = {err[worst]:.3g}"
            + (f" ({ratio[worst]:.3g}x the tolerance)" if allowed[worst] > 0 else " (allowed: 0)"))


def json_value(v):
    """A returned value in JSON form: tuples become lists, NumPy scalars and arrays Python values."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_value(x) for k, x in v.items()}
    return v


def first_difference(got, want, path="") -> str | None:
    """Where two JSON values first differ (None if equal); numbers compare exactly, booleans are not numbers."""
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if k not in got:
                return f"{path}/{k}: missing"
            if k not in want:
                return f"{path}/{k}: not expected (got {got[k]!r})"
            d = first_difference(got[k], want[k], f"{path}/{k}")
            if d:
                return d
        return None
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return f"{path}: {len(got)} items, expected {len(want)} (got {got!r}, expected {want!r})"
        for i, (g, w) in enumerate(zip(got, want)):
            d = first_difference(g, w, f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(want, bool) or isinstance(got, bool):
        equal = type(got) is type(want) and got == want
    elif isinstance(want, (int, float)) and isinstance(got, (int, float)):
        equal = got == want                      # Python compares int and float exactly
    else:
        equal = type(got) is type(want) and got == want
    if equal:
        return None
    return f"{path or '(value)'}: got {got!r}, expected {want!r}"


def compare_outputs(expected: dict[str, np.ndarray], got: dict, specs: dict[str, TensorFile],
                    values: dict | None = None, optional=frozenset(), only: bool = False) -> list[str]:
    """Every mismatch between the expected outputs and values and what the implementation returned."""
    problems = []
    returned = ", ".join(sorted(got)) or "nothing"
    for name, want in expected.items():
        if name not in got:
            if name not in optional:
                problems.append(f"output {name!r} is missing (returned: {returned})")
            continue
        p = compare_tensor(name, want, np.asarray(got[name]), specs[name])
        if p:
            problems.append(p)
    for name, want in (values or {}).items():
        if name not in got:
            if name not in optional:
                problems.append(f"value {name!r} is missing (returned: {returned})")
            continue
        d = first_difference(json_value(got[name]), want)
        if d:
            problems.append(f"value {name!r}: {d}")
    if only:
        extra = sorted(set(got) - set(expected) - set(values or {}))
        if extra:
            problems.append(f"returned {len(extra)} output(s) the case does not expect: {', '.join(extra[:5])}"
                            f"{' ...' if len(extra) > 5 else ''}")
    return problems
