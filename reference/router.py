"""HSER: the three-level deterministic router (spec chapter HSER, clauses HSER-7 .. HSER-9).

``route`` is the executable meaning of R(h, W, T, s): a pure function of the hidden states, the
quantized router weights, the TierSet and the seed. Each token is routed on its own (HSER-7.4):
nothing here mixes tokens, so any batch split gives the same bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lite_llm.spec.config import parse_seed
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .logits import exact_dot, logits
from .quantize import dequant_scale, quantize_rows
from .ranking import top_k
from .router_weights import QuantizedMatrix, QuantizedRouter
from .seeds import level_seed, tie_keys
from .softmax import softmax, tree_sum
from .validate import hidden_as_float32

F32 = np.float32


@dataclass(frozen=True)
class RouteResult:
    """The routing record of HSER-9.3 for T tokens; K = k_tier * k_group * k_expert.

    Padding: -1 in index arrays, +0.0 in probability and gate arrays.
    """

    tier: np.ndarray            # (T, K) int32: tier id of each active slot, in output order (HSER-9.2)
    group: np.ndarray           # (T, K) int32: group index within the tier
    expert: np.ndarray          # (T, K) int32: expert index within the group
    gate: np.ndarray            # (T, K) float32: gate weights, (r1 * r2) * r3 (HSER-8)
    count: np.ndarray           # (T,) int32: number of active slots (HSER-9.1)
    tier_set: tuple[int, ...]   # level-1 candidates: the TierSet's tier ids, ascending
    tier_probs: np.ndarray      # (T, |TierSet|) float32: level-1 softmax, columns in tier_set order
    chosen_tiers: np.ndarray    # (T, k_tier) int32: level-1 top-k, tier ids, best first
    group_probs: np.ndarray     # (T, k_tier, G_max) float32: level-2 softmax of each chosen tier
    chosen_groups: np.ndarray   # (T, k_tier, k_group) int32: level-2 top-k, best first
    expert_probs: np.ndarray    # (T, k_tier, k_group, E_max) float32: level-3 softmax of each chosen group

    def active(self, token: int) -> list[tuple[int, int, int, float]]:
        """The active (tier, group, expert, gate) of one token, in output order."""
        n = int(self.count[token])
        return [(int(self.tier[token, i]), int(self.group[token, i]), int(self.expert[token, i]),
                 float(self.gate[token, i])) for i in range(n)]


def renormalise(p: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """p / tree_sum(p over the chosen entries of the last axis), binary32 (HSER-8.1).

    Entries that are not chosen (padding) take part in the sum as -0.0 and come out as +0.0. When
    the chosen probabilities sum to zero (never in routing, where the best candidate has p > 0),
    every chosen entry is 1 / m, m the number chosen: one chosen candidate gives exactly 1.
    """
    p = np.where(chosen, p, F32(-0.0)).astype(F32)
    if p.shape[-1] == 0 or p.size == 0:
        return p
    total = tree_sum(p)[..., None]
    m = np.sum(chosen, axis=-1, keepdims=True)
    zero = total == 0
    safe = np.where(zero | (m == 0), F32(1.0), total)
    uniform = F32(1.0) / np.maximum(m, 1).astype(F32)                    # binary32 1 / m, correctly rounded
    return np.where(chosen, np.where(zero, uniform, p / safe), F32(0.0)).astype(F32)


def stack(mats: list[QuantizedMatrix]) -> QuantizedMatrix:
    return QuantizedMatrix(np.concatenate([m.q for m in mats]), np.concatenate([m.scale for m in mats]))


def level_logits(qx: np.ndarray, sx: np.ndarray, w: QuantizedMatrix) -> np.ndarray:
    """Exact logits of tokens (qx, sx) against one router matrix (HSER-3)."""
    return logits(exact_dot(qx, w.q), sx, w.scale)


def route(h, router: QuantizedRouter, tiers, seed: int | None = None) -> RouteResult:
    """Route hidden states h (T, d) through the three HSER levels (HSER-7.1 .. HSER-9.3).

    ``tiers`` is the TierSet (names or ids); ``seed`` defaults to the config's router seed.
    Every check runs before any arithmetic, in the order of HSER-10.3 (seed, TierSet, shape, type,
    finiteness), so a rejected call returns nothing partial (HSER-10.2).
    """
    cfg = router.cfg
    rc = cfg.router
    seed = parse_seed(rc.seed if seed is None else seed)                       # HSER-4.1
    cands = resolve_tier_set(cfg, tiers)                                        # TIER-2: validated, sorted ids
    x = hidden_as_float32(h, cfg.d_model)                                       # HSER-1: (T, d) binary32
    T = x.shape[0]
    qx, ax = quantize_rows(x, rc.hidden_limbs)                                  # HSER-2: (T, d) int64
    sx = dequant_scale(ax, rc.hidden_limbs)                                     # (T,) binary64

    g_max = max(cfg.tiers[t].groups for t in cands)
    e_max = max(cfg.tiers[t].experts_per_group for t in cands)
    k1, k2, k3 = rc.k_tier, rc.k_group, rc.k_expert

    # Level 1 (HSER-7.1): candidates are the TierSet's tiers only; tiers outside it never enter.
    z1 = level_logits(qx, sx, stack([router.tier[t] for t in cands]))          # (T, n1) binary64
    keys1 = tie_keys(level_seed(seed, 1), cfg.n_tiers)[list(cands)]             # key of tier t uses its id
    tier_probs = softmax(z1)                                                    # (T, n1)
    pos1 = top_k(z1, keys1, k1)                                                 # (T, min(k1, n1)) positions
    chosen_tiers = np.full((T, k1), -1, np.int32)
    chosen_tiers[:, : pos1.shape[1]] = np.asarray(cands, np.int32)[pos1]

    # Level 2 (HSER-7.2): for every chosen tier, its groups; tokens are bucketed by chosen tier.
    group_probs = np.zeros((T, k1, g_max), F32)
    chosen_groups = np.full((T, k1, k2), -1, np.int32)
    for a in range(pos1.shape[1]):
        for t in cands:
            tok = np.flatnonzero(chosen_tiers[:, a] == t)
            if tok.size == 0:
                continue
            G = cfg.tiers[t].groups
            z2 = level_logits(qx[tok], sx[tok], router.group[t])               # (n_tok, G_t)
            group_probs[tok, a, :G] = softmax(z2)
            top = top_k(z2, tie_keys(level_seed(seed, 2, t), G), k2)
            chosen_groups[tok, a, : top.shape[1]] = top

    # Level 3 (HSER-7.3): for every chosen group, its experts; tokens bucketed by (tier, group).
    expert_probs = np.zeros((T, k1, k2, e_max), F32)
    chosen_experts = np.full((T, k1, k2, k3), -1, np.int32)
    for a in range(pos1.shape[1]):
        for b in range(k2):
            for t in cands:
                for g in np.unique(chosen_groups[chosen_tiers[:, a] == t, a, b]):
                    if g < 0:
                        continue
                    tok = np.flatnonzero((chosen_tiers[:, a] == t) & (chosen_groups[:, a, b] == g))
                    E = cfg.tiers[t].experts_per_group
                    z3 = level_logits(qx[tok], sx[tok], router.expert[t][g])     # (n_tok, E_t)
                    expert_probs[tok, a, b, :E] = softmax(z3)
                    top = top_k(z3, tie_keys(level_seed(seed, 3, t, int(g)), E), k3)
                    chosen_experts[tok, a, b, : top.shape[1]] = top

    return active_set(chosen_tiers, chosen_groups, chosen_experts, cands, tier_probs, group_probs, expert_probs)


def active_set(chosen_tiers, chosen_groups, chosen_experts, cands, tier_probs, group_probs, expert_probs) -> RouteResult:
    """Assemble the active set in output order and its gates (HSER-8.1 .. HSER-9.3)."""
    T, k1, k2, k3 = chosen_experts.shape
    K = k1 * k2 * k3
    # Nested rank order (HSER-9.2): tier rank, then group rank, then expert rank.
    tier = np.broadcast_to(chosen_tiers[:, :, None, None], chosen_experts.shape).reshape(T, K)
    group = np.broadcast_to(chosen_groups[:, :, :, None], chosen_experts.shape).reshape(T, K)
    expert = chosen_experts.reshape(T, K)
    valid = expert >= 0                                                          # (T, K)

    # Level probabilities of each chosen candidate (padding slots read index 0 and are masked below).
    tier_col = np.searchsorted(np.asarray(cands), np.maximum(chosen_tiers, cands[0]))  # column in tier_probs
    p1 = np.take_along_axis(tier_probs, tier_col, axis=1)                          # (T, k1)
    p2 = np.take_along_axis(group_probs, np.maximum(chosen_groups, 0), axis=2)      # (T, k1, k2)
    p3 = np.take_along_axis(expert_probs.reshape(T, k1 * k2, expert_probs.shape[-1]),
                            np.maximum(chosen_experts, 0).reshape(T, k1 * k2, k3), axis=2).reshape(T, k1, k2, k3)

    # HSER-8.1: each level renormalises its chosen probabilities over the chosen set.
    r1 = renormalise(p1, chosen_tiers >= 0)                                        # (T, k1)
    r2 = renormalise(p2, chosen_groups >= 0)                                       # (T, k1, k2)
    r3 = renormalise(p3, chosen_experts >= 0)                                      # (T, k1, k2, k3)
    # HSER-8.2: a slot's gate is (r1 * r2) * r3, binary32.
    gate = ((r1[:, :, None, None] * r2[:, :, :, None]) * r3).reshape(T, K)

    # HSER-9.2: compact, valid slots first, keeping nested rank order.
    order = np.argsort(~valid, axis=1, kind="stable")
    tier, group, expert, gate, valid = (np.take_along_axis(a, order, axis=1) for a in (tier, group, expert, gate, valid))
    gate = np.where(valid, gate, F32(0.0)).astype(F32)
    neg1 = np.int32(-1)
    return RouteResult(
        tier=np.where(valid, tier, neg1).astype(np.int32),
        group=np.where(valid, group, neg1).astype(np.int32),
        expert=np.where(valid, expert, neg1).astype(np.int32),
        gate=gate,
        count=valid.sum(axis=1).astype(np.int32),
        tier_set=tuple(cands),
        tier_probs=tier_probs,
        chosen_tiers=chosen_tiers,
        group_probs=group_probs,
        chosen_groups=chosen_groups,
        expert_probs=expert_probs,
    )
