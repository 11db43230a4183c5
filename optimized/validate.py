"""Input validation for routing on torch tensors (HSER-1.1 .. HSER-1.4, HSER-10.3).

The checks and their order are those of the spec: shape, then type, then finiteness. Seed and
TierSet come first and are checked by ``lite_llm.spec`` (HSER-4.1, TIER-2) in ``router.route``.
"""
from __future__ import annotations

import numpy as np
import torch

from lite_llm.spec.errors import DTypeError, NonFiniteError, ShapeError

ACCEPTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)    # HSER-1.2
NUMPY_TO_TORCH = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                  np.dtype(np.float64): torch.float64}


def as_tensor(h, device=None) -> torch.Tensor:
    """h as a torch tensor (numpy arrays are wrapped, not converted); shape and dtype not yet checked.

    A numpy array of a type torch cannot hold (strings, objects) is turned into an empty float tensor
    of the same shape only for the shape check, which comes first (HSER-10.3); its type is rejected next.
    """
    if isinstance(h, torch.Tensor):
        return h if device is None else h.to(device)
    a = np.asarray(h)
    if a.dtype not in NUMPY_TO_TORCH:
        return _Rejected(a)
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if device is None else t.to(device)


class _Rejected:
    """A numpy array whose dtype torch cannot represent: it has a shape and a dtype, nothing else."""

    def __init__(self, a: np.ndarray):
        self.shape, self.ndim, self.dtype = a.shape, a.ndim, a.dtype


def check_hidden(h, d_model: int) -> torch.Tensor:
    """Shape (HSER-1.1) and type (HSER-1.2) of hidden states h (T, d); finiteness is checked after conversion."""
    if h.ndim != 2:
        raise ShapeError(f"hidden states must be 2-D (tokens, d_model), got shape {tuple(h.shape)}")
    if h.shape[1] != d_model:
        raise ShapeError(f"hidden states have {h.shape[1]} features, the config's d_model is {d_model}")
    if isinstance(h, _Rejected) or h.dtype not in ACCEPTED_DTYPES:
        raise DTypeError(f"hidden states have dtype {h.dtype}; expected float16, bfloat16, float32 or float64")
    return h


def hidden_as_float32(h, d_model: int, device=None) -> torch.Tensor:
    """Check hidden states and return them as binary32 (T, d) on ``device`` (HSER-1.1 .. HSER-1.3).

    float16 and bfloat16 convert exactly; float64 rounds to nearest-even, and a value beyond the
    binary32 range becomes an infinity, which is then rejected (HSER-1.3).
    """
    x = check_hidden(as_tensor(h, device), d_model).to(torch.float32).contiguous()   # (T, d)
    check_finite(x, "hidden states")
    return x


def check_finite(x: torch.Tensor, what: str, error=NonFiniteError) -> None:
    """Raise ``error`` naming the first non-finite element of x in row-major order."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        raise error(first_bad_message(x, bad, what))


def first_bad_message(x: torch.Tensor, bad: torch.Tensor, what: str) -> str:
    where = tuple(int(i) for i in torch.nonzero(bad)[0])        # nonzero lists indices in row-major order
    return f"{what} hold {float(x[where])!r} at index {where} ({int(bad.sum())} non-finite value(s) in all)"
