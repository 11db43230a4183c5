"""The auxiliary load-balancing loss on torch tensors (spec chapter AUX, AUX-1.1 .. AUX-1.6), forward value only.

    L_aux = alpha * sum over layers l of (CV_1 + CV_2 + CV_3)            AUX-1.4
    CV(v) = sqrt(mean((v - mean v)^2)) / mean(v), 0 for a single value    AUX-1.1

Every level is computed at once for all its routers, on the device of the routing records:
the probability rows of the token-slots that reached a router are summed into that router's row
with ``index_add_`` (binary64), so there is no Python loop over tiers or groups.

  level 1  one router; candidates: the TierSet's tiers (the columns of ``tier_probs``)   AUX-1.2
  level 2  router t = tier id; candidates: its G_t groups; slots (token, tier slot)       AUX-1.3
  level 3  router group_offset[t] + g; candidates: its E_t experts;
           slots (token, tier slot, group slot)                                          AUX-1.3

A token chooses a tier at most once and a group of a tier at most once (top-k picks distinct
candidates), so the slots that reached a router count the tokens that reached it (``n_r``).

Not exact (AUX-1.1 asks for binary64 within ``1e-9 * max(1, |L_aux|)`` of the reference): the order
of the binary64 sums is not specified. ``index_add_`` runs under torch's deterministic algorithms, so
a result is the same bits on every run on one device (on CUDA without atomics).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from contextlib import contextmanager

import torch

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import LiteLLMError, ShapeError
from lite_llm.spec.results import AuxLoss

from .router import RouteResult

DEFAULT_ALPHA = 0.01        # the default weight alpha (AUX-1.4)


def cv(p: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """CV over the last axis of binary64 p (..., C) (AUX-1.1): population std / mean; (...,).

    ``valid`` (..., C) bool marks each row's candidates (default: every column); other columns
    are neither entries nor zeros. A row with one candidate (or none) has CV 0 (AUX-1.1, AUX-1.5).
    """
    p = p.to(torch.float64)
    if valid is None:
        valid = torch.ones_like(p, dtype=torch.bool)
    n = valid.sum(dim=-1)                                                        # (...,) candidates
    n_f = n.clamp(min=1).to(torch.float64)
    zero = torch.zeros_like(p)
    mean = torch.where(valid, p, zero).sum(dim=-1) / n_f                         # (...,)
    dev = torch.where(valid, p - mean[..., None], zero)                          # (..., C)
    std = torch.sqrt((dev * dev).sum(dim=-1) / n_f)                              # population: divisor n
    return torch.where(n > 1, std / torch.where(n > 1, mean, torch.ones_like(mean)), torch.zeros_like(mean))


@contextmanager
def deterministic_algorithms():
    """torch's deterministic kernels for the enclosed ops (index_add_ without atomics on CUDA), then
    the caller's setting back: the loss is the same bits on every run on one device."""
    was, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def router_mean_cv(rows: torch.Tensor, router: torch.Tensor, reached: torch.Tensor, n_candidates: torch.Tensor):
    """Token-weighted mean over routers of CV(mean probabilities) (AUX-1.3); a binary64 0-d tensor.

    rows (S, C) binary32: one probability row per token-slot, padding columns +0.0;
    router (S,) int64: the router each slot reached (any value where not ``reached``);
    reached (S,) bool: whether the slot holds a chosen candidate at the level above;
    n_candidates (R,) int64: each router's candidate count (its first columns are its candidates).
    0 when no slot reached any router (AUX-1.3, AUX-1.5).
    """
    R, C = n_candidates.shape[0], rows.shape[-1]
    dev = rows.device
    idx = router[reached]                                                         # (S',)
    with deterministic_algorithms():                                              # no atomics on CUDA
        sums = torch.zeros((R, C), dtype=torch.float64, device=dev).index_add_(0, idx, rows[reached].to(torch.float64))
        n_r = torch.zeros((R,), dtype=torch.float64, device=dev).index_add_(
            0, idx, torch.ones(idx.shape, dtype=torch.float64, device=dev))     # (R,) tokens that reached r
    p = sums / n_r.clamp(min=1.0)[:, None]                                        # (R, C) mean probabilities
    valid = torch.arange(C, device=dev)[None, :] < n_candidates[:, None]          # (R, C)
    cvs = torch.where(n_r > 0, cv(p, valid), torch.zeros_like(n_r))               # (R,) unreached: no term
    total_n = n_r.sum()
    return torch.where(total_n > 0, (n_r * cvs).sum() / total_n.clamp(min=1.0), torch.zeros_like(total_n))


def check_record(cfg: ModelConfig, route: RouteResult, n_tokens: int, layer: int) -> None:
    """The record arrays the loss reads have the shapes of HSER-9.3 for ``n_tokens`` tokens (E_SHAPE)."""
    rc = cfg.router
    ts = tuple(route.tier_set)
    if not ts or any(not 0 <= t < cfg.n_tiers for t in ts):
        raise ShapeError(f"layer {layer}: tier_set {ts} is not a TierSet of the {cfg.n_tiers} tiers", clause="HSER-9.3")
    g_max = max(cfg.tiers[t].groups for t in ts)
    e_max = max(cfg.tiers[t].experts_per_group for t in ts)
    want = {"tier_probs": (n_tokens, len(ts)), "chosen_tiers": (n_tokens, rc.k_tier),
            "group_probs": (n_tokens, rc.k_tier, g_max), "chosen_groups": (n_tokens, rc.k_tier, rc.k_group),
            "expert_probs": (n_tokens, rc.k_tier, rc.k_group, e_max)}
    for name, shape in want.items():
        got = tuple(getattr(route, name).shape)
        if got != shape:
            raise ShapeError(f"layer {layer}: record array {name} has shape {got}, expected {shape} "
                             f"({n_tokens} tokens of the batch, TierSet {ts})", clause="HSER-9.3")


def check_choices(cfg: ModelConfig, route: RouteResult, layer: int) -> None:
    """Chosen tiers are TierSet ids or -1 and chosen groups are in [0, G_t) or -1 (HSER-9.3), else E_SHAPE."""
    dev = route.chosen_tiers.device
    M = cfg.n_tiers
    ct = route.chosen_tiers.to(torch.int64)                                       # (N, k1)
    in_set = torch.zeros((M,), dtype=torch.bool, device=dev)
    in_set[list(route.tier_set)] = True
    bad_tier = ~((ct == -1) | ((ct >= 0) & (ct < M) & in_set[ct.clamp(0, M - 1)]))            # (N, k1)
    groups = torch.tensor([t.groups for t in cfg.tiers], dtype=torch.int64, device=dev)
    cg = route.chosen_groups.to(torch.int64)                                      # (N, k1, k2)
    g_lim = torch.where(ct >= 0, groups[ct.clamp(0, M - 1)], torch.zeros_like(ct))[:, :, None]
    bad_group = (cg < -1) | ((cg >= 0) & (cg >= g_lim))              # (N, k1, k2); g_lim 0 in padding slots
    if bool(bad_tier.any() | bad_group.any()):                                    # one host sync
        if bad_tier.any():
            n, a = (int(i) for i in torch.nonzero(bad_tier)[0])
            raise ShapeError(f"layer {layer}: chosen tier {int(ct[n, a])} of token {n}, slot {a} is neither a tier "
                             f"of the TierSet {tuple(route.tier_set)} nor -1", clause="HSER-9.3")
        n, a, b = (int(i) for i in torch.nonzero(bad_group)[0])
        raise ShapeError(f"layer {layer}: chosen group {int(cg[n, a, b])} of token {n}, slot ({a}, {b}) is outside "
                         f"[0, {int(g_lim[n, a, 0])}) of chosen tier {int(ct[n, a])} and is not -1", clause="HSER-9.3")


def level_cvs(cfg: ModelConfig, route: RouteResult) -> torch.Tensor:
    """(CV_1, CV_2, CV_3) of one layer's routing record (AUX-1.2, AUX-1.3, AUX-1.5): (3,) binary64."""
    dev = route.tier_probs.device
    N, k1 = route.chosen_tiers.shape
    k2 = route.chosen_groups.shape[-1]
    if N == 0:                                                                    # AUX-1.5
        return torch.zeros((3,), dtype=torch.float64, device=dev)

    # Level 1 (AUX-1.2): mean over the N tokens of the TierSet's columns; other tiers are not columns.
    p1 = route.tier_probs.to(torch.float64).sum(dim=0) / N                       # (|TierSet|,)
    cv1 = cv(p1)

    # Level 2 (AUX-1.3): one router per tier id; slots (token, tier slot) with a chosen tier.
    ct = route.chosen_tiers.to(torch.int64).reshape(N * k1)                       # (N k1,)
    groups = torch.tensor([t.groups for t in cfg.tiers], dtype=torch.int64, device=dev)        # (M,)
    g_max = route.group_probs.shape[-1]
    cv2 = router_mean_cv(route.group_probs.reshape(N * k1, g_max), ct.clamp(min=0), ct >= 0, groups)

    # Level 3 (AUX-1.3): one router per (tier, group), numbered group_offset[t] + g.
    experts = torch.tensor([t.experts_per_group for t in cfg.tiers], dtype=torch.int64, device=dev)
    group_offset = torch.cumsum(groups, 0) - groups                                # (M,) first router of tier t
    e_of_router = torch.repeat_interleave(experts, groups)                         # (sum_t G_t,)
    cg = route.chosen_groups.to(torch.int64).reshape(N * k1, k2)                   # (N k1, k2)
    reached3 = (ct[:, None] >= 0) & (cg >= 0)                                      # (N k1, k2)
    router3 = group_offset[ct.clamp(min=0)][:, None] + cg.clamp(min=0)             # (N k1, k2)
    e_max = route.expert_probs.shape[-1]
    cv3 = router_mean_cv(route.expert_probs.reshape(N * k1 * k2, e_max), router3.reshape(-1), reached3.reshape(-1),
                         e_of_router)
    return torch.stack([cv1, cv2, cv3])


def layer_cvs(cfg: ModelConfig, route: RouteResult) -> tuple[float, float, float]:
    """(CV_1, CV_2, CV_3) of one layer's routing record (AUX-1.2, AUX-1.3, AUX-1.5), as floats."""
    check_record(cfg, route, route.chosen_tiers.shape[0], 0)
    check_choices(cfg, route, 0)
    a, b, c = level_cvs(cfg, route).tolist()
    return a, b, c


def check_alpha(alpha) -> float:
    """The weight alpha as a float; a bool, a non-number or a non-finite value is rejected (AUX-1.4)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(float(alpha)):
        raise LiteLLMError(f"alpha={alpha!r} must be a finite real number", clause="AUX-1.4")
    return float(alpha)


def aux_loss(cfg: ModelConfig, routes: Sequence[RouteResult], alpha: float = DEFAULT_ALPHA) -> AuxLoss:
    """L_aux of the routing records of the layers of one batch (AUX-1.4), with its per-layer CVs.

    ``routes``: one ``RouteResult`` per layer, all of the same N tokens (e.g. ``ModelOutput.routes``).
    ``alpha``: the weight, a finite real number (default 0.01). Computed in binary64 (AUX-1.1) on
    the records' device; the record checks wait for the device once per layer, the values come to
    the host in one transfer. A record of the wrong shape, or with a chosen tier outside the
    TierSet or a chosen group outside its tier, is rejected with E_SHAPE (HSER-9.3).
    """
    alpha = check_alpha(alpha)
    routes = list(routes)
    if not routes:
        return AuxLoss(0.0, alpha, ())
    n_tokens = routes[0].chosen_tiers.shape[0]
    for layer, r in enumerate(routes):
        check_record(cfg, r, n_tokens, layer)
        check_choices(cfg, r, layer)
    per_layer = torch.stack([level_cvs(cfg, r) for r in routes]).cpu().tolist()  # (L, 3)
    cvs = tuple((a, b, c) for a, b, c in per_layer)
    return AuxLoss(alpha * math.fsum(a + b + c for a, b, c in cvs), alpha, cvs)
