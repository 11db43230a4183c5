"""Exact router logits on torch tensors (HSER-3.1 .. HSER-3.4)."""
from __future__ import annotations

import torch


def exact_dot(qx: torch.Tensor, qw: torch.Tensor) -> torch.Tensor:
    """acc[i, j] = sum_k qx[i, k] * qw[j, k] exactly (HSER-3.1, HSER-3.2), as binary64 (T, n).

    qx (T, d) holds integers with |q| <= 2080768 (three hidden limbs), qw (n, d) with |q| <= 16256
    (two weight limbs). The product is a binary64 matrix product of those integers: each term is an
    integer below 2**35 and every partial sum, in any order, is an integer of magnitude at most
    d * 2080768 * 16256 < 2**52 (HSER-3.2), so every addition (fused or not) is exact and the BLAS
    (MKL, OpenBLAS, cuBLAS) may sum in any order, tile or fuse: the result is the exact integer sum.
    """
    if qx.shape[0] == 0 or qw.shape[0] == 0:
        return qx.new_zeros((qx.shape[0], qw.shape[0]), dtype=torch.float64)
    return qx.to(torch.float64) @ qw.to(torch.float64).T                           # (T, n) exact integers


def logits(acc: torch.Tensor, sx: torch.Tensor, sw: torch.Tensor) -> torch.Tensor:
    """z[i, j] = (acc[i, j] * sx[i]) * sw[j] in binary64, two roundings in this order (HSER-3.3).

    acc (T, n) binary64 holding exact integers, sx (T,) and sw (n,) from quantize.dequant_scale.
    """
    return (acc * sx[:, None]) * sw[None, :]                                       # (T, n) binary64
