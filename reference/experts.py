"""One SwiGLU expert, d -> d_ff -> d (MODEL-3.2)."""
from __future__ import annotations

import numpy as np


def silu(z: np.ndarray) -> np.ndarray:
    """silu(z) = z / (1 + exp(-z)) (MODEL-3.2), in z's dtype."""
    with np.errstate(over="ignore"):                                      # exp(-z) = inf gives silu = -0.0
        return z / (z.dtype.type(1.0) + np.exp(-z))


def swiglu(x: np.ndarray, w_gate: np.ndarray, w_up: np.ndarray, w_down: np.ndarray) -> np.ndarray:
    """Expert(x) = W_down (silu(W_gate x) * (W_up x)) for one token x (d,) (MODEL-3.2).

    w_gate, w_up (d_ff, d) and w_down (d, d_ff) are stored (out, in), as INIT-2.3 names them.
    The reference applies an expert to one token at a time, so a token's expert output never
    depends on which other tokens chose the same expert (MODEL-3.5).
    """
    return w_down @ (silu(w_gate @ x) * (w_up @ x))                      # (d,)
