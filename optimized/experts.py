"""SwiGLU experts on torch tensors (MODEL-3.2), batch-invariant, and a layer's expert weights.

E(x) = W_down (silu(W_gate x) * (W_up x)). A floating-point part of the model (MODEL-4.2): held
to a tolerance, not to the bit. What is held to the bit *on one device* is batch invariance
(MODEL-3.5): a token's expert output must not depend on which other tokens chose the expert. A
matrix library picks its kernel, and with it the summation order, by the problem's shape; so the
torch path runs every expert on fixed-shape chunks of ``CHUNK`` rows (zero-padded): every call
has the same shape, each row's sums are taken in the same order whatever the other rows hold.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import RouterWeightsError

CHUNK = 64          # rows per expert matmul on the torch path (fixed shape = fixed summation order)


@dataclass(frozen=True)
class TierExperts:
    """The experts of one tier in one layer, stacked by expert index i = g * E_t + e."""

    w_gate: torch.Tensor    # (G_t E_t, d_ff, d)   (out, in), as INIT-2.3 stores it
    w_up: torch.Tensor      # (G_t E_t, d_ff, d)
    w_down: torch.Tensor    # (G_t E_t, d, d_ff)
    experts_per_group: int  # E_t


def weight_tensor(weights: Mapping, name: str, shape: tuple[int, ...], device, dtype) -> torch.Tensor:
    """Tensor ``name``: present, binary32 of exactly ``shape``, finite (MODEL-1.3), as ``dtype`` on ``device``."""
    if name not in weights:
        raise RouterWeightsError(f"tensor {name!r} is missing from the weights", clause="MODEL-1.3")
    w = weights[name]
    if isinstance(w, np.ndarray):
        w = torch.from_numpy(w)
    if not isinstance(w, torch.Tensor):
        raise RouterWeightsError(f"tensor {name!r} is a {type(w).__name__}, expected an array", clause="MODEL-1.3")
    if w.dtype != torch.float32:
        raise RouterWeightsError(f"tensor {name!r} has dtype {w.dtype}, expected float32", clause="MODEL-1.3")
    if tuple(w.shape) != tuple(shape):
        raise RouterWeightsError(f"tensor {name!r} has shape {tuple(w.shape)}, expected {tuple(shape)}",
                                 clause="MODEL-1.3")
    bad = ~torch.isfinite(w)
    if bool(bad.any()):
        where = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise RouterWeightsError(f"tensor {name!r} holds {float(w[where])!r} at index {where} "
                                 f"({int(bad.sum())} non-finite value(s) in all)", clause="MODEL-1.3")
    return w.to(device=device, dtype=dtype)


def load_tier_experts(cfg: ModelConfig, weights: Mapping, layer: int, tier: int, device="cpu",
                      dtype=torch.float32) -> TierExperts:
    """Tier ``tier``'s experts of ``layer`` (INIT-2.3), checked (MODEL-1.3) and stacked."""
    tc, d = cfg.tiers[tier], cfg.d_model
    p = f"layers.{layer}.tiers.{tc.name}"
    n, f = tc.groups * tc.experts_per_group, tc.d_ff
    shapes = {"w_gate": (tc.groups, tc.experts_per_group, f, d), "w_up": (tc.groups, tc.experts_per_group, f, d),
              "w_down": (tc.groups, tc.experts_per_group, d, f)}
    w = {k: weight_tensor(weights, f"{p}.{k}", s, device, dtype) for k, s in shapes.items()}
    return TierExperts(w["w_gate"].reshape(n, f, d).contiguous(), w["w_up"].reshape(n, f, d).contiguous(),
                       w["w_down"].reshape(n, d, f).contiguous(), tc.experts_per_group)


def swiglu_rows(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """One expert on the rows of x (n, d) -> (n, d), in fixed-shape chunks of CHUNK rows (batch-invariant)."""
    n, d = x.shape
    pad = (-n) % CHUNK
    xp = torch.cat([x, x.new_zeros((pad, d))]) if pad else x
    out = []
    for c in xp.split(CHUNK):                                                  # (CHUNK, d) each
        hidden = F.silu(c @ w_gate.T) * (c @ w_up.T)                           # (CHUNK, d_ff)
        out.append(hidden @ w_down.T)                                          # (CHUNK, d)
    return torch.cat(out)[:n]
