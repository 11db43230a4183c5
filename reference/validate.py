"""Input validation for routing (HSER-1.1 .. HSER-1.4)."""
from __future__ import annotations

import numpy as np

from lite_llm.spec.errors import DTypeError, NonFiniteError, ShapeError

ACCEPTED_DTYPES = (np.float16, np.float32, np.float64)


def hidden_as_float32(h, d_model: int) -> np.ndarray:
    """Check hidden states h (T, d) and return them as binary32 (HSER-1.1 .. HSER-1.3).

    float16 converts exactly; float64 rounds to nearest-even (HSER-1.2). A NaN or infinity after
    conversion is rejected, naming the first offending token and feature (HSER-1.3).
    """
    try:
        h = np.asarray(h)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DTypeError(f"hidden states of type {type(h).__name__} are not a NumPy float array: {e}") from None
    if h.ndim != 2 or h.shape[1] != d_model:
        raise ShapeError(f"hidden states must have shape (T, {d_model}) (tokens, d_model), got {h.shape}")
    if h.dtype.type not in ACCEPTED_DTYPES:
        raise DTypeError(f"hidden states have dtype {h.dtype}; expected float16, float32 or float64")
    with np.errstate(over="ignore"):
        x = h.astype(np.float32)
    check_finite(x, "hidden states")
    return x


def check_finite(x: np.ndarray, what: str, error=NonFiniteError) -> None:
    """Raise ``error`` naming the first non-finite element of x (row-major order)."""
    bad = ~np.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise error(f"{what} hold {float(x[where])!r} at index {where} ({int(bad.sum())} non-finite value(s) in all)")
