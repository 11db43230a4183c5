"""The canonical tree sum and softmax on torch tensors (HSER-6.5 .. HSER-6.7), batched and masked.

Rows of a batch may have different candidate counts: columns beyond a row's count are padding
(``valid`` false). Padding never enters the arithmetic: its ``e`` is -0.0, the exact additive
identity, so the tree over the padded width gives the bits of the tree over the row's own count
(certificate ``tree_sum_padding``), and its probability is written as +0.0.
"""
from __future__ import annotations

import torch

from .cexp import EXP_FLUSH, canonical_exp_in_domain


def tree_sum(v: torch.Tensor) -> torch.Tensor:
    """Sum the last axis of binary32 v (..., n) by the canonical pairwise tree (HSER-6.5).

    Pad to the next power of two P >= max(n, 1) with -0.0, then replace the sequence by the sums of
    adjacent pairs (v0 + v1, v2 + v3, ...) until one value is left. Returns (...); the empty sum
    (n = 0) is -0.0.
    """
    n = v.shape[-1]
    p = 1 << (max(n, 1) - 1).bit_length()
    if p > n:
        v = torch.cat([v, torch.full((*v.shape[:-1], p - n), -0.0, dtype=v.dtype, device=v.device)], dim=-1)
    while v.shape[-1] > 1:
        v = v[..., 0::2] + v[..., 1::2]
    return v[..., 0]


def softmax(z: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """binary32 probabilities (B, n) from binary64 logits z (B, n) (HSER-6.6); +0.0 where not valid.

      m   = max over the row's valid j of z_j
      d_j = z_j - m                                  (binary64)
      e_j = +0.0 if d_j < -87 else canonical_exp(binary32(d_j))
      S   = tree_sum(e over the row's candidates)    (binary32)
      p_j = e_j / S                                  (binary32)
    A row without any valid candidate gives all +0.0.
    """
    if valid is None:
        valid = torch.ones_like(z, dtype=torch.bool)
    neg_inf = torch.full_like(z, float("-inf"))
    m = torch.where(valid, z, neg_inf).amax(dim=1, keepdim=True) if z.shape[1] else z[:, :1]   # (B, 1)
    d = z - m                                                                  # (B, n) binary64
    small = (d < EXP_FLUSH) | ~valid
    t = torch.where(small, torch.zeros_like(d), d).to(torch.float32)          # round to nearest even
    e = torch.where(small, torch.zeros_like(t), canonical_exp_in_domain(t))   # (B, n) binary32
    e = torch.where(valid, e, torch.full_like(e, -0.0))                        # padding: the identity
    s = tree_sum(e)[:, None]                                                   # (B, 1)
    p = e / s
    return torch.where(valid, p, torch.zeros_like(p))
