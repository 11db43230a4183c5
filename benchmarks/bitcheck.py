"""Bit checks of timed outputs for the benchmarks: the optimized record against the torch path's on the
whole input and against ``lite_llm.reference`` (the NumPy reference, the spec's executable meaning) on
sampled rows of the same input. Routing is a function of each token alone (HSER-7.4), so the
reference's record of a subset of rows is the record of those rows in the whole batch.

The benchmarks call the *timed* callable (same configuration, same CUDA graph) once more on every
rotated input after timing and check what it returns; nothing is checked on another configuration."""
from __future__ import annotations

import numpy as np
import torch

from lite_llm.spec.operations import RECORD_FIELDS


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype and bits (so -0.0 != +0.0 and NaN payloads count)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        view = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        a, b = a.contiguous().view(view), b.contiguous().view(view)
    return bool(torch.equal(a, b.to(a.device)))


def records_equal(got, want, rows=None) -> bool:
    """Every HSER-9.3 field of two optimized records (torch tensors), optionally rows ``rows`` of ``got``."""
    for f in RECORD_FIELDS:
        g = getattr(got, f)
        if rows is not None:
            g = g[rows]
        if not bits_equal(g, getattr(want, f)):
            return False
    return True


def reference_router(cfg, weights: dict, tiers, layer: int = 0):
    """The reference's quantized router for the same weights (torch tensors named as INIT-2.1)."""
    from lite_llm.reference.moe import layer_router_weights
    from lite_llm.reference.router_weights import quantize_router

    w = {k: v.detach().float().cpu().numpy() for k, v in weights.items()}
    return quantize_router(cfg, layer_router_weights(cfg, w, layer, tuple(tiers)))


def sample_rows(T: int, n: int = 48, seed: int = 0) -> torch.Tensor:
    """n rows spread over the batch (first, last and random ones), sorted."""
    if T <= n:
        return torch.arange(T)
    g = torch.Generator().manual_seed(seed)
    rows = torch.cat([torch.tensor([0, T - 1]), torch.randperm(T, generator=g)[: n - 2]])
    return torch.unique(rows)


def matches_reference(rec, h: torch.Tensor, ref_router, tiers, seed: int, n: int = 48) -> bool:
    """Rows sampled from ``rec`` (an optimized record of hidden states h) equal the reference's record
    of the same rows, every field, bit for bit."""
    from lite_llm.reference.router import route as ref_route

    rows = sample_rows(h.shape[0], n)
    x = h[rows.to(h.device)].float().cpu().numpy()
    ref = ref_route(x, ref_router, tuple(tiers), seed)
    idx = rows.to(rec.tier.device)
    for f in RECORD_FIELDS:
        g = getattr(rec, f)[idx].cpu().numpy()
        r = np.asarray(getattr(ref, f))
        if g.shape != r.shape or g.dtype != r.dtype or g.tobytes() != r.tobytes():
            return False
    return True
