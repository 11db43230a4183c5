"""RMSNorm (MODEL-2.2)."""
from __future__ import annotations

import numpy as np


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """y = (x / sqrt(mean(x**2) + eps)) * weight over the last axis, in x's dtype (MODEL-2.2).

    x (..., d), weight (d,). A float operation: conformance holds it to the tolerance of MODEL-4.3.
    """
    dt = x.dtype
    ms = np.mean(x * x, axis=-1, keepdims=True)                          # (..., 1) mean of squares
    return (x / np.sqrt(ms + dt.type(eps))) * weight.astype(dt, copy=False)
