"""Exact router logits on torch tensors (HSER-3.1 .. HSER-3.4)."""
from __future__ import annotations

import torch


def exact_dot(qx: torch.Tensor, qw: torch.Tensor) -> torch.Tensor:
    """acc[i, j] = sum_k qx[i, k] * qw[j, k] exactly (HSER-3.1, HSER-3.2), as binary64 (T, n).

    qx (T, d) and qw (n, d) hold integers with |q| <= 16256. The product is a binary64 matrix
    product of those integers: each term is an integer below 2**28 and every partial sum, in any
    order, is an integer below 2**53 (HSER-3.2), so every addition is exact and the BLAS (MKL,
    OpenBLAS, cuBLAS) may sum in any order, tile or fuse: the result is the exact integer sum.
    """
    if qx.shape[0] == 0 or qw.shape[0] == 0:
        return qx.new_zeros((qx.shape[0], qw.shape[0]), dtype=torch.float64)
    return qx.to(torch.float64) @ qw.to(torch.float64).T                           # (T, n) exact integers


def logits(acc: torch.Tensor, sx: torch.Tensor, sw: torch.Tensor) -> torch.Tensor:
    """z[i, j] = (acc[i, j] * sx[i]) * sw[j] in binary64, two roundings in this order (HSER-3.3).

    acc (T, n) binary64 holding exact integers, sx (T,) and sw (n,) from quantize.dequant_scale.
    """
    return (acc * sx[:, None]) * sw[None, :]                                       # (T, n) binary64
