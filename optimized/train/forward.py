"""The training forward pass (TRAIN-1.1, TRAIN-1.2, TRAIN-2.1, TRAIN-2.2, TRAIN-2.4, TRAIN-3.1, TRAIN-3.2):
the inference forward's values, with gradients.

    h = embed[tok]                                                    (B, T, d)
    for each layer l:
        h = h + attention_l(rms_norm(h))                              the inference code (model.py)
        x = rms_norm(h)                                               (N, d), N = B * T
        r = route(x.detach(), quantized router of the CURRENT weights)  exact ids, gates, probs (HSER)
        gate = r.gate + (g~ - g~.detach())                            straight-through (TRAIN-2.2)
        y = SwiGLU experts of the active slots                        plain torch ops, batched per tier
        h = h + combine(gate, r.count, y)                             the exact combine (MODEL-3.3)
    logits = rms_norm(h) @ lm_head.T

Routing is never changed by training (TRAIN-1.2): ids, gates and probabilities are the exact router's.
``g~`` is the gate recomputed as a smooth function of the router weights and of the router input,
``g~ = r1 * r2 * r3`` with ``r = softmax over the chosen candidates of z~`` and
``z~ = z_exact + (x W^T - (x W^T).detach())``: its value is the exact logit z (HSER-3.3), its
gradient that of the unquantized product x W^T (the quantizer treated as the identity,
straight-through, TRAIN-2.1). Adding ``g~ - g~.detach()`` (exactly 0.0) leaves the gate's bits.
The auxiliary loss (TRAIN-3) reads probabilities made differentiable the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from lite_llm.spec.config import ModelConfig

from ..aux_loss import level_cvs
from ..logits import exact_dot, logits as scale_logits
from ..model import attention, ieee_float32, rms_norm
from ..moe import combine
from ..quantize import dequant_scale, quantize_rows
from ..router import QuantizedRouter, RouteResult, load_router, route


@dataclass(frozen=True)
class LayerOut:
    """One layer of a training forward: the exact record and the straight-through tensors."""

    route: RouteResult            # the exact routing record of the N tokens (HSER-9.3), no grad
    router_input: torch.Tensor    # (N, d) binary32, detached
    tier_probs: torch.Tensor      # (N, |TierSet|) values = route.tier_probs, gradient of the surrogate
    group_probs: torch.Tensor     # (N, k1, G_max)  likewise
    expert_probs: torch.Tensor    # (N, k1, k2, E_max) likewise
    gate_surrogate: torch.Tensor  # (N, K) float64: g~ (value ~ route.gate, 1e-6), for tests


@dataclass(frozen=True)
class TrainOutput:
    logits: torch.Tensor          # (B, T, V) binary32, with grad
    layers: tuple[LayerOut, ...]

    @property
    def routes(self) -> tuple[RouteResult, ...]:
        return tuple(l.route for l in self.layers)


def quantized_routers(cfg: ModelConfig, params: dict, tier_ids, device, previous=None) -> tuple[QuantizedRouter, ...]:
    """Every layer's router, quantized from the current weights (HSER-2.6); rows of tiers outside the
    TierSet are zeros, never read (TIER-2.6). Re-run after every optimizer step (TRAIN-1.2).
    ``previous``: the routers of the step before, whose tie-key tables (a function of the config and
    the seed only, HSER-4.5) are reused instead of rebuilt."""
    out = []
    d = cfg.d_model
    for l in range(cfg.n_layers):
        rw = {}
        for t, tc in enumerate(cfg.tiers):
            p = f"layers.{l}.tiers.{tc.name}"
            for k, s in (("router_tier", (d,)), ("router_group", (tc.groups, d)),
                         ("router_expert", (tc.groups, tc.experts_per_group, d))):
                rw[f"{p}.{k}"] = params[f"{p}.{k}"].detach() if t in tier_ids else \
                    torch.zeros(s, dtype=torch.float32, device=device)
        r = load_router(cfg, rw, l, device)
        if previous is not None:
            r._keys = previous[l]._keys                                             # weight-independent tables
        out.append(r)
    return tuple(out)


def stacked_rows(cfg: ModelConfig, params: dict, layer: int, tier_ids, device):
    """The float router rows stacked as the quantized router stacks them (router.py): level 1 (M, d),
    level 2 (sum G_t, d), level 3 (sum G_t E_t, d); tiers outside the TierSet are zeros (no grad)."""
    d = cfg.d_model
    w1, w2, w3 = [], [], []
    for t, tc in enumerate(cfg.tiers):
        p = f"layers.{layer}.tiers.{tc.name}"
        if t in tier_ids:
            w1.append(params[f"{p}.router_tier"][None])
            w2.append(params[f"{p}.router_group"])
            w3.append(params[f"{p}.router_expert"].reshape(-1, d))
        else:
            z = lambda n: torch.zeros((n, d), dtype=torch.float32, device=device)   # noqa: E731
            w1.append(z(1)), w2.append(z(tc.groups)), w3.append(z(tc.groups * tc.experts_per_group))
    return torch.cat(w1), torch.cat(w2), torch.cat(w3)


def st_logits(x: torch.Tensor, qx, sx, rows, qrows) -> torch.Tensor:
    """(N, R) binary64: value = the exact logits (HSER-3.3), gradient = that of x @ rows^T (TRAIN-2.1),
    so softmaxes of it have their derivative evaluated at the exact logits (TRAIN-2.2, TRAIN-2.4)."""
    exact = scale_logits(exact_dot(qx, qrows.q), sx, qrows.scale)                 # (N, R), no grad
    f = x @ rows.T                                                                 # (N, R) float32
    return exact + (f - f.detach()).to(torch.float64)


def masked_softmax(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """binary64 softmax over the valid entries of the last axis; 0 elsewhere (and on empty rows)."""
    zm = torch.where(valid, z, torch.full_like(z, float("-inf")))
    m = zm.amax(dim=-1, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.where(valid, torch.exp(torch.where(valid, z - m, torch.zeros_like(z))), torch.zeros_like(z))
    s = e.sum(dim=-1, keepdim=True)
    return e / torch.where(s > 0, s, torch.ones_like(s))


def straight_through(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """exact's bits, surrogate's gradient: exact + (s - s.detach()), the added term exactly +0.0
    (TRAIN-2.2). ``exact`` holds no -0.0 (probabilities and gates are >= +0.0), so its bits stay."""
    d = (surrogate - surrogate.detach()).to(exact.dtype)
    return exact + d


def level_tensors(cfg: ModelConfig, r: RouteResult, qr: QuantizedRouter, x: torch.Tensor, rows, tier_ids):
    """Surrogate probabilities of the three levels and the surrogate gate of every slot (TRAIN-2)."""
    N, K = r.gate.shape
    k1, k2 = r.chosen_groups.shape[1], r.chosen_groups.shape[2]
    dev = x.device
    L = torch.int64
    limbs = cfg.router.hidden_limbs
    xd = x.detach()
    qx, ax = quantize_rows(xd, limbs)                                               # HSER-2, as route() does
    sx = dequant_scale(ax, limbs)
    z1 = st_logits(x, qx, sx, rows[0], qr.tier)                                     # (N, M)
    z2 = st_logits(x, qx, sx, rows[1], qr.group)                                    # (N, sum G)
    z3 = st_logits(x, qx, sx, rows[2], qr.expert)                                   # (N, sum G E)
    groups = torch.tensor([t.groups for t in cfg.tiers], dtype=L, device=dev)
    experts = torch.tensor([t.experts_per_group for t in cfg.tiers], dtype=L, device=dev)
    goff = torch.tensor(qr.group_offset, dtype=L, device=dev)
    eoff = torch.tensor(qr.expert_offset, dtype=L, device=dev)
    cands = torch.tensor(tier_ids, dtype=L, device=dev)
    n_idx = torch.arange(N, device=dev)

    # Level 1: the TierSet's columns.
    z1c = z1[:, cands]                                                              # (N, n1)
    p1 = masked_softmax(z1c, torch.ones_like(z1c, dtype=torch.bool))
    ct = r.chosen_tiers.to(L)                                                        # (N, k1)
    ctc = ct.clamp(min=0)
    # Level 2: the groups of each chosen tier.
    g_max = r.group_probs.shape[-1]
    gcols = torch.arange(g_max, device=dev)
    v2 = (ct[:, :, None] >= 0) & (gcols[None, None, :] < groups[ctc][:, :, None])  # (N, k1, G_max)
    i2 = (goff[ctc][:, :, None] + gcols).clamp(max=z2.shape[1] - 1)
    z2g = torch.gather(z2, 1, i2.reshape(N, -1)).reshape(N, k1, g_max)
    p2 = masked_softmax(z2g, v2)
    # Level 3: the experts of each chosen group.
    cg = r.chosen_groups.to(L)                                                       # (N, k1, k2)
    cgc = cg.clamp(min=0)
    e_max = r.expert_probs.shape[-1]
    ecols = torch.arange(e_max, device=dev)
    Et = experts[ctc][:, :, None]                                                    # (N, k1, 1)
    v3 = (cg[..., None] >= 0) & (ct[:, :, None, None] >= 0) & (ecols < Et[..., None])   # (N, k1, k2, E_max)
    base3 = eoff[ctc][:, :, None] + cgc * Et                                         # (N, k1, k2)
    i3 = (base3[..., None] + ecols).clamp(max=z3.shape[1] - 1)
    z3g = torch.gather(z3, 1, i3.reshape(N, -1)).reshape(N, k1, k2, e_max)
    p3 = masked_softmax(z3g, v3)

    # The surrogate gate of each output slot: softmax over the chosen candidates at each level (HSER-8).
    tier, grp, exp_ = r.tier.to(L), r.group.to(L), r.expert.to(L)                   # (N, K)
    valid = tier >= 0
    tc_, gc_, ec_ = tier.clamp(min=0), grp.clamp(min=0), exp_.clamp(min=0)
    lse1 = torch.logsumexp(torch.where(ct >= 0, z1[n_idx[:, None], ctc], torch.full_like(z1[:, :k1], -math.inf)), 1)
    zt = z1[n_idx[:, None], tc_]                                                     # (N, K)
    a_slot = (tier[:, :, None] == ct[:, None, :]).to(L).argmax(dim=2)                # (N, K) tier slot of each slot
    zc2 = torch.gather(z2, 1, (goff[ctc][:, :, None] + cgc).reshape(N, -1)).reshape(N, k1, k2)
    lse2 = torch.logsumexp(torch.where(cg >= 0, zc2, torch.full_like(zc2, -math.inf)), 2)          # (N, k1)
    zg = torch.gather(z2, 1, goff[tc_] + gc_)                                        # (N, K)
    ze = torch.gather(z3, 1, eoff[tc_] + gc_ * experts[tc_] + ec_)                    # (N, K)
    same = (tier[:, :, None] == tier[:, None, :]) & (grp[:, :, None] == grp[:, None, :]) & valid[:, None, :]
    lse3 = torch.logsumexp(torch.where(same, ze[:, None, :].expand(N, K, K), torch.full_like(same, -math.inf,
                                                                                            dtype=ze.dtype)), 2)
    logg = (zt - lse1[:, None]) + (zg - torch.gather(lse2, 1, a_slot)) + (ze - lse3)
    g_sur = torch.where(valid, torch.exp(torch.where(valid, logg, torch.zeros_like(logg))), torch.zeros_like(logg))
    return p1, p2, p3, g_sur


def swiglu_slots(cfg: ModelConfig, params: dict, layer: int, x: torch.Tensor, r: RouteResult) -> torch.Tensor:
    """y (N, K, d): each active slot's expert (MODEL-3.2) on its token, in plain differentiable torch ops.

    Per tier: slots are sorted by expert and packed into a (n_experts, cap, d) buffer, cap the most
    slots any expert got; three batched matrix products run every expert at once. Padding slots of
    the record stay 0 and never reach the combine (MODEL-3.3 writes -0.0 there)."""
    N, K = r.gate.shape
    d = x.shape[1]
    dev = x.device
    y = x.new_zeros((N, K, d))
    for t in sorted(set(r.tier_set)):
        tc = cfg.tiers[t]
        tok, slot = torch.nonzero(r.tier == t, as_tuple=True)
        if tok.numel() == 0:
            continue
        p = f"layers.{layer}.tiers.{tc.name}"
        n_e = tc.groups * tc.experts_per_group
        wg = params[f"{p}.w_gate"].reshape(n_e, tc.d_ff, d)
        wu = params[f"{p}.w_up"].reshape(n_e, tc.d_ff, d)
        wd = params[f"{p}.w_down"].reshape(n_e, d, tc.d_ff)
        idx = r.group[tok, slot].long() * tc.experts_per_group + r.expert[tok, slot].long()
        order = torch.argsort(idx, stable=True)
        idx, tok, slot = idx[order], tok[order], slot[order]
        ids = torch.arange(n_e, device=dev, dtype=idx.dtype)
        start = torch.searchsorted(idx, ids)                                          # idx is sorted: no atomics
        counts = torch.searchsorted(idx, ids, right=True) - start
        pos = torch.arange(idx.numel(), device=dev) - start[idx]
        cap = int(counts.max())
        buf = x.new_zeros((n_e, cap, d)).index_put((idx, pos), x[tok])                # (n_e, cap, d)
        hid = F.silu(torch.bmm(buf, wg.transpose(1, 2))) * torch.bmm(buf, wu.transpose(1, 2))
        out = torch.bmm(hid, wd.transpose(1, 2))                                      # (n_e, cap, d)
        y = y.index_put((tok, slot), out[idx, pos])
    return y


def moe_train(cfg: ModelConfig, params: dict, layer: int, x: torch.Tensor, qr: QuantizedRouter, tier_ids,
              seed: int, backend: str = "auto") -> tuple[torch.Tensor, LayerOut]:
    """One MoE block for training: exact routing (TRAIN-1.2), straight-through gates (TRAIN-2.2), SwiGLU
    experts, exact combine (MODEL-3.3). Returns (out (N, d), LayerOut)."""
    r = route(x.detach(), qr, tier_ids, seed, backend=backend)                       # exact, no grad
    rows = stacked_rows(cfg, params, layer, tier_ids, x.device)
    p1, p2, p3, g_sur = level_tensors(cfg, r, qr, x, rows, tier_ids)
    gate = torch.where(r.tier >= 0, straight_through(r.gate, g_sur), r.gate)          # bits of r.gate
    y = swiglu_slots(cfg, params, layer, x, r)
    out = combine(gate, r.count, y)
    lo = LayerOut(r, x.detach(), straight_through(r.tier_probs, p1), straight_through(r.group_probs, p2),
                  straight_through(r.expert_probs, p3), g_sur.detach())
    return out, lo


def forward_train(cfg: ModelConfig, params: dict, tok: torch.Tensor, tier_ids, seed: int,
                  routers: tuple[QuantizedRouter, ...] | None = None, backend: str = "auto") -> TrainOutput:
    """The forward pass of token ids tok (B, T) int64 on params' device, with gradients (TRAIN-1).

    ``params``: name -> binary32 tensor (INIT-2 names; tensors of tiers outside ``tier_ids`` are not read).
    ``routers``: the layers' quantized routers of the current weights (``quantized_routers``); computed
    here when None. Matrix products run in IEEE binary32 (no TF32, MODEL-4.3).
    """
    tier_ids = tuple(tier_ids)
    dev = tok.device
    if routers is None:
        routers = quantized_routers(cfg, params, tier_ids, dev)
    B, T = tok.shape
    d = cfg.d_model
    m = SimpleNamespace(cfg=cfg, dense=params)                                       # what attention() reads
    layers = []
    with ieee_float32():
        h = params["embed"][tok]                                                     # (B, T, d)
        for l in range(cfg.n_layers):
            h = h + attention(m, l, rms_norm(h, params[f"layers.{l}.attn_norm"], cfg.norm_eps))
            x = rms_norm(h, params[f"layers.{l}.ffn_norm"], cfg.norm_eps).reshape(B * T, d)
            out, lo = moe_train(cfg, params, l, x, routers[l], tier_ids, seed, backend)
            h = h + out.view(B, T, d)
            layers.append(lo)
        logits = rms_norm(h, params["final_norm"], cfg.norm_eps) @ params["lm_head"].T   # (B, T, V)
    return TrainOutput(logits, tuple(layers))


# ----------------------------------------------------------------------------------------------
# The auxiliary loss with a gradient (TRAIN-3)

def cv_st(p: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """CV over the last axis of binary64 p among ``valid`` columns (AUX-1.1), with a gradient everywhere:
    std = sqrt(max(var, 1e-30)), whose gradient is 0 at exact balance (TRAIN-3.2); 0 with <= 1 candidate."""
    n = valid.sum(dim=-1)
    n_f = n.clamp(min=1).to(torch.float64)
    zero = torch.zeros_like(p)
    mean = torch.where(valid, p, zero).sum(dim=-1) / n_f
    dev = torch.where(valid, p - mean[..., None], zero)
    std = torch.sqrt(((dev * dev).sum(dim=-1) / n_f).clamp(min=1e-30))
    safe = torch.where((n > 1) & (mean > 0), mean, torch.ones_like(mean))
    return torch.where((n > 1) & (mean > 0), std / safe, torch.zeros_like(mean))


def router_mean_cv_st(rows, router, reached, n_candidates) -> torch.Tensor:
    """AUX-1.3's token-weighted mean of per-router CVs, differentiable in ``rows`` (S, C)."""
    R, C = n_candidates.shape[0], rows.shape[-1]
    dev = rows.device
    idx = router[reached]
    sums = torch.zeros((R, C), dtype=torch.float64, device=dev).index_add(0, idx, rows[reached].to(torch.float64))
    n_r = torch.zeros((R,), dtype=torch.float64, device=dev).index_add(
        0, idx, torch.ones(idx.shape, dtype=torch.float64, device=dev))
    p = sums / n_r.clamp(min=1.0)[:, None]
    valid = (torch.arange(C, device=dev)[None, :] < n_candidates[:, None]) & (n_r[:, None] > 0)
    cvs = cv_st(p, valid)
    total = n_r.sum()
    return (n_r * cvs).sum() / total.clamp(min=1.0)


def level_cvs_st(cfg: ModelConfig, lo: LayerOut) -> torch.Tensor:
    """(CV_1, CV_2, CV_3) of one layer (AUX-1.2, AUX-1.3) from the straight-through probabilities: (3,)
    binary64 with a gradient (TRAIN-3.1)."""
    r = lo.route
    dev = r.tier_probs.device
    N, k1 = r.chosen_tiers.shape
    k2 = r.chosen_groups.shape[-1]
    if N == 0:
        return torch.zeros((3,), dtype=torch.float64, device=dev)
    p1 = lo.tier_probs.to(torch.float64).sum(dim=0) / N
    cv1 = cv_st(p1, torch.ones_like(p1, dtype=torch.bool))
    ct = r.chosen_tiers.to(torch.int64).reshape(N * k1)
    groups = torch.tensor([t.groups for t in cfg.tiers], dtype=torch.int64, device=dev)
    g_max = lo.group_probs.shape[-1]
    cv2 = router_mean_cv_st(lo.group_probs.reshape(N * k1, g_max), ct.clamp(min=0), ct >= 0, groups)
    experts = torch.tensor([t.experts_per_group for t in cfg.tiers], dtype=torch.int64, device=dev)
    goff = torch.cumsum(groups, 0) - groups
    e_of_router = torch.repeat_interleave(experts, groups)
    cg = r.chosen_groups.to(torch.int64).reshape(N * k1, k2)
    reached3 = (ct[:, None] >= 0) & (cg >= 0)
    router3 = goff[ct.clamp(min=0)][:, None] + cg.clamp(min=0)
    e_max = lo.expert_probs.shape[-1]
    cv3 = router_mean_cv_st(lo.expert_probs.reshape(N * k1 * k2, e_max), router3.reshape(-1), reached3.reshape(-1),
                            e_of_router)
    return torch.stack([cv1, cv2, cv3])


def aux_loss_st(cfg: ModelConfig, out: TrainOutput, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_aux as a 0-d binary64 tensor with a gradient, per-layer CVs (L, 3) detached) (TRAIN-3.1).

    The value is AUX-1.4's, computed by ``aux_loss.level_cvs`` from the exact records; the gradient is
    that of ``level_cvs_st`` on the straight-through probabilities (value + (g - g.detach()))."""
    if not out.layers:
        z = torch.zeros((), dtype=torch.float64)
        return z, torch.zeros((0, 3), dtype=torch.float64)
    exact = torch.stack([level_cvs(cfg, lo.route) for lo in out.layers])            # (L, 3), AUX-1 value
    if alpha == 0.0:
        return exact.sum() * 0.0, exact
    sur = torch.stack([level_cvs_st(cfg, lo) for lo in out.layers])
    cvs = exact + (sur - sur.detach())
    return alpha * cvs.sum(), exact
