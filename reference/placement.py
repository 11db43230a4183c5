"""Storage placement policy: expected activation and prefetch order of tiers (spec chapter PLACE, paper section 8).

Each tier's placement (HBM, DRAM, NVMe, Object) comes from its configuration (PLACE-1.1). From the
routing records of a batch, ``activation_stats`` measures how often each tier is chosen at level 1
(the expected activation pi_t, PLACE-2.4) and its mean level-1 probability, and prices each tier at
pi_t * size(t) bytes (PLACE-3.2); ``prefetch_order`` ranks the TierSet's tiers by that priority
(PLACE-3.3). Nothing here changes routing: placement is a performance policy only (PLACE-1.3).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import LiteLLMError, ShapeError
from lite_llm.spec.tierset import tier_set

from .params import tier_budget
from .router import RouteResult

BYTES_PER_PARAM = 4          # PLACE-3.1: a shard stores binary32 values
STORAGE_CLASSES = ("HBM", "DRAM", "NVMe", "Object")   # PLACE-1.2: fastest first


@dataclass(frozen=True)
class TierActivation:
    """Routing statistics and prefetch priority of one tier (PLACE-2, PLACE-3)."""

    tier: int            # tier id
    name: str            # tier name
    placement: str       # HBM | DRAM | NVMe | Object, from the config (PLACE-1.1)
    in_tierset: bool     # whether the records' TierSet holds the tier
    chosen: int          # (token, layer) pairs whose level-1 choice holds the tier
    frequency: float     # f_t = chosen / pairs: the expected activation pi_t (PLACE-2.2, PLACE-2.4)
    mean_prob: float     # q_t: mean level-1 probability, 0 outside the TierSet (PLACE-2.3)
    size_bytes: int      # 4 B_t: the tier's parameters as binary32 (PLACE-3.1)
    priority: float      # f_t * size_bytes (PLACE-3.2)


@dataclass(frozen=True)
class ActivationStats:
    """Per-tier statistics over a set of routing records (PLACE-2.1)."""

    tiers: tuple[int, ...]                 # the TierSet every record was routed under
    pairs: int                             # (token, layer) pairs counted: sum of the records' T
    per_tier: tuple[TierActivation, ...]   # every tier of T_max, in id order


def check_records(cfg: ModelConfig, routes: Sequence[RouteResult], tiers: tuple[int, ...]) -> None:
    """Every record was routed under ``tiers`` and has the HSER-9.3 shapes (PLACE-2.1)."""
    k1 = cfg.router.k_tier
    for i, r in enumerate(routes):
        if tuple(r.tier_set) != tiers:
            raise ShapeError(f"routing record {i} was made under TierSet {tuple(r.tier_set)}, the statistics "
                             f"are for TierSet {tiers}: its tier_probs columns do not match", clause="PLACE-2.1")
        T = r.tier_probs.shape[0]
        if r.tier_probs.shape != (T, len(tiers)) or r.chosen_tiers.shape != (T, k1):
            raise ShapeError(f"routing record {i}: tier_probs {r.tier_probs.shape} and chosen_tiers "
                             f"{r.chosen_tiers.shape}, expected ({T}, {len(tiers)}) and ({T}, {k1})",
                             clause="PLACE-2.1")
        stray = set(np.unique(r.chosen_tiers).tolist()) - set(tiers) - {-1}
        if stray:
            raise ShapeError(f"routing record {i} chose tier(s) {sorted(stray)} outside its TierSet {tiers}",
                             clause="PLACE-2.1")


def activation_stats(cfg: ModelConfig, routes, tiers) -> ActivationStats:
    """Activation frequency, mean level-1 probability, shard size and priority of every tier of T_max,
    over routing records ``routes`` (a RouteResult or a sequence of them, e.g. one per layer) made
    under TierSet ``tiers`` (PLACE-2.1 .. PLACE-3.2)."""
    tiers = tier_set(cfg, tiers)
    routes = [routes] if isinstance(routes, RouteResult) else list(routes)
    check_records(cfg, routes, tiers)
    pairs = sum(int(r.tier_probs.shape[0]) for r in routes)             # N
    out = []
    for t, tc in enumerate(cfg.tiers):
        size = BYTES_PER_PARAM * tier_budget(cfg, t)                     # PLACE-3.1
        chosen, freq, prob = 0, 0.0, 0.0
        if t in tiers and pairs > 0:
            col = tiers.index(t)
            chosen = sum(int((r.chosen_tiers == t).sum()) for r in routes)   # a row never repeats a tier
            freq = chosen / pairs                                        # PLACE-2.2: exact count, one division
            # PLACE-2.3: binary64 left fold, records in order, tokens ascending (cumsum is sequential)
            column = np.concatenate([r.tier_probs[:, col].astype(np.float64) for r in routes])   # (N,)
            prob = float(np.cumsum(column)[-1]) / pairs
        out.append(TierActivation(t, tc.name, tc.placement, t in tiers, chosen, freq, prob, size,
                                  freq * float(size)))                   # PLACE-3.2
    return ActivationStats(tiers, pairs, tuple(out))


def prefetch_order(stats: ActivationStats, measure: str = "frequency") -> tuple[int, ...]:
    """The TierSet's tier ids by priority descending, ties by ascending id (PLACE-3.3).

    ``measure="frequency"`` ranks by f_t * size (PLACE-3.2, the normative order);
    ``measure="probability"`` by q_t * size, the reading of the paper's formula that PLACE-2.4 sets aside.
    """
    if measure == "frequency":
        prio = {a.tier: a.priority for a in stats.per_tier}
    elif measure == "probability":
        prio = {a.tier: a.mean_prob * float(a.size_bytes) for a in stats.per_tier}
    else:
        raise LiteLLMError(f"measure must be 'frequency' or 'probability', got {measure!r}", clause="PLACE-3.3")
    return tuple(sorted(stats.tiers, key=lambda t: (-prio[t], t)))
