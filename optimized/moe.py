"""The tier-aware MoE feed-forward block on torch tensors (MODEL-3): route, run experts, combine.

Routing is exact (``router.route``); the experts are floating point (``experts``, or the Triton
grouped GEMM of ``triton.moe`` on CUDA); the combine is exact given the experts' outputs (MODEL-3.3):
c_k = gate_k * y_k, one rounding, padding slots -0.0, then the canonical tree over the K slots.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.errors import DTypeError, RouterWeightsError
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .experts import TierExperts, load_tier_experts, swiglu_rows, weight_tensor
from .router import QuantizedRouter, RouteResult, load_router, route, triton_available
from .softmax import tree_sum
from .validate import check_hidden, as_tensor, check_finite


@dataclass(frozen=True)
class MoELayer:
    """One layer's MoE block for a TierSet: its quantized router and the experts of the TierSet's tiers."""

    cfg: ModelConfig
    layer: int
    tier_ids: tuple[int, ...]             # the TierSet the experts were loaded for (ascending ids)
    router: QuantizedRouter
    experts: dict[int, TierExperts]       # tier id -> experts


def load_moe_layer(cfg: ModelConfig, weights: Mapping, layer: int, tiers, device="cpu",
                   dtype=torch.float32) -> MoELayer:
    """Check and load layer ``layer``'s router and the experts of TierSet ``tiers`` (MODEL-1.3).

    Only the TierSet's tier tensors are read: routing never touches a tier outside it (TIER-2.6), so
    the router rows of other tiers are replaced by zeros and their experts are not loaded.
    """
    tier_ids = resolve_tier_set(cfg, tiers)
    if not 0 <= layer < cfg.n_layers:
        raise RouterWeightsError(f"layer {layer} is not a layer of this model (n_layers={cfg.n_layers})",
                                 clause="MODEL-1.3")
    d = cfg.d_model
    rw = {}
    experts = {}
    for t, tc in enumerate(cfg.tiers):
        p = f"layers.{layer}.tiers.{tc.name}"
        shapes = {"router_tier": (d,), "router_group": (tc.groups, d), "router_expert": (tc.groups, tc.experts_per_group, d)}
        for k, s in shapes.items():
            if t in tier_ids:
                rw[f"{p}.{k}"] = weight_tensor(weights, f"{p}.{k}", s, device, torch.float32)
            else:
                rw[f"{p}.{k}"] = torch.zeros(s, dtype=torch.float32, device=device)
        if t in tier_ids:
            experts[t] = load_tier_experts(cfg, weights, layer, t, device, dtype)
    return MoELayer(cfg, layer, tier_ids, load_router(cfg, rw, layer, device), experts)


def combine(gate: torch.Tensor, count: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """out[n] = tree_sum over the K slots of c[n, k] (MODEL-3.3), exact given y.

    gate (N, K) binary32, count (N,), y (N, K, d) in the working precision. c = gate * y (the gate
    converted exactly, one rounded multiplication) for k < count, -0.0 for padding slots.
    """
    N, K, d = y.shape
    active = torch.arange(K, device=y.device)[None, :] < count[:, None]                # (N, K)
    c = gate.to(y.dtype)[:, :, None] * y                                                  # (N, K, d)
    c = torch.where(active[:, :, None], c, torch.full_like(c, -0.0))
    return tree_sum(c.transpose(1, 2))                                                    # (N, d)


def slots_by_expert(r: RouteResult, experts_per_group: dict[int, int]):
    """(tier, expert index in the tier, token rows, slot columns) of every active expert of a record, tier
    by tier in ``experts_per_group`` order (tier id -> E_t), experts ascending; padding slots never appear."""
    for t, E in experts_per_group.items():
        sel = torch.nonzero(r.tier == t, as_tuple=True)                                   # slots routed to tier t
        if sel[0].numel() == 0:
            continue
        idx = r.group[sel].long() * E + r.expert[sel].long()                               # expert index in the tier
        order = torch.argsort(idx, stable=True)
        ids, counts = torch.unique_consecutive(idx[order], return_counts=True)
        start = 0
        for i, n in zip(ids.tolist(), counts.tolist()):
            o = order[start:start + n]
            start += n
            yield t, i, sel[0][o], sel[1][o]


def expert_outputs_torch(moe: MoELayer, x: torch.Tensor, r: RouteResult) -> torch.Tensor:
    """y (N, K, d): each active slot's expert on its token (padding slots zero, never read).

    Slots are grouped by expert; each expert runs on its tokens in fixed-shape chunks (experts.py).
    """
    N, K = r.gate.shape
    y = x.new_zeros((N, K, x.shape[1]))
    for t, i, tok, slot in slots_by_expert(r, {t: bank.experts_per_group for t, bank in moe.experts.items()}):
        bank = moe.experts[t]
        y[tok, slot] = swiglu_rows(x[tok], bank.w_gate[i], bank.w_up[i], bank.w_down[i])
    return y


def moe_forward(moe: MoELayer, x: torch.Tensor, seed: int, backend: str = "auto") -> tuple[torch.Tensor, RouteResult]:
    """MoE block on router inputs x (N, d) in the working precision, inputs already checked."""
    r = route(x, moe.router, moe.tier_ids, seed, backend=backend)
    if backend == "auto":
        backend = "triton" if x.device.type == "cuda" and triton_available() else "torch"
    if backend == "triton":
        from .triton import expert_outputs_triton
        y = expert_outputs_triton(moe, x, r)
    else:
        y = expert_outputs_torch(moe, x, r)
    return combine(r.gate, r.count, y), r


def moe_layer(cfg: ModelConfig, weights: Mapping, layer: int, x, tiers, seed=None, device=None,
              backend: str = "auto") -> tuple[torch.Tensor, RouteResult]:
    """The MoE feed-forward of ``layer`` on router inputs x (N, d) binary32: (output (N, d), record).

    Checks run before any arithmetic: seed, TierSet, x (HSER-1), then the layer's tensors of the
    TierSet's tiers (MODEL-1.3). ``device`` defaults to x's.
    """
    seed = parse_seed(cfg.router.seed if seed is None else seed)
    tier_ids = resolve_tier_set(cfg, tiers)
    x = check_hidden(as_tensor(x), cfg.d_model)
    if x.dtype != torch.float32:
        raise DTypeError(f"MoE input has dtype {x.dtype}; the working precision is float32", clause="MODEL-1.4")
    device = x.device if device is None else torch.device(device)
    x = x.to(device)
    check_finite(x, "MoE input")
    moe = load_moe_layer(cfg, weights, layer, tier_ids, device)
    return moe_forward(moe, x, seed, backend)
