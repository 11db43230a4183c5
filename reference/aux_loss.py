"""The auxiliary load-balancing loss (spec chapter AUX, paper section 9), forward value only.

    L_aux = alpha * sum over layers l of (CV_1 + CV_2 + CV_3)

CV_1 is the coefficient of variation of the mean level-1 probabilities over the TierSet's tiers
(AUX-1.2). Levels 2 and 3 have one router per chosen tier / chosen group; each router's CV is
taken over the tokens that reached it and the level's value is their token-weighted mean (AUX-1.3).
Also here, for comparison (AUX-2): the Switch-Transformer loss and Shazeer et al.'s CV^2
importance loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.results import AuxLoss

from .router import RouteResult

DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class RouterBatch:
    """What one router (one level-1, level-2 or level-3 decision maker) saw in a batch (AUX-1.1)."""

    probs: np.ndarray    # (n, c) binary64: the router's softmax for each of the n tokens that reached it
    chosen: np.ndarray   # (n, c) bool: the candidates each token chose (top-k)


def cv(p) -> float:
    """Coefficient of variation std(p) / mean(p), population std (ddof 0), binary64 (AUX-1.1).

    One value gives 0. ``p`` must have a positive mean (router probabilities always do).
    """
    p = np.asarray(p, dtype=np.float64)
    if p.size <= 1:
        return 0.0
    return float(np.std(p) / np.mean(p))


def level_routers(cfg: ModelConfig, route: RouteResult) -> tuple[list[RouterBatch], list[RouterBatch], list[RouterBatch]]:
    """The routers of each level and the tokens that reached them (AUX-1.2, AUX-1.3).

    Level 1: one router, every token, candidates the TierSet's tiers (ascending id). Level 2: one
    router per tier of the TierSet that at least one token chose, its groups as candidates. Level 3:
    one router per (tier, group) that at least one token chose, its experts as candidates. Routers no
    token reached are absent. Padding columns (beyond G_t or E_t) are dropped.
    """
    N = route.tier_probs.shape[0]
    cands = list(route.tier_set)
    col = {t: i for i, t in enumerate(cands)}
    chosen1 = np.zeros((N, len(cands)), bool)
    for n, a in zip(*np.nonzero(route.chosen_tiers >= 0)):
        chosen1[n, col[int(route.chosen_tiers[n, a])]] = True
    lvl1 = [RouterBatch(route.tier_probs.astype(np.float64), chosen1)] if N else []

    lvl2, lvl3 = [], []
    for t in cands:
        G, E = cfg.tiers[t].groups, cfg.tiers[t].experts_per_group
        n_idx, a_idx = np.nonzero(route.chosen_tiers == t)               # a token chooses tier t at most once
        if n_idx.size == 0:
            continue
        probs = route.group_probs[n_idx, a_idx, :G].astype(np.float64)   # (n_t, G_t)
        cg = route.chosen_groups[n_idx, a_idx]                           # (n_t, k_group), -1 padded
        chosen = (cg[:, :, None] == np.arange(G)[None, None, :]).any(axis=1)
        lvl2.append(RouterBatch(probs, chosen))
        for g in np.unique(cg[cg >= 0]):
            sel = cg == g                                                # (n_t, k_group), one True per row at most
            rows = sel.any(axis=1)
            n_g, a_g, b_g = n_idx[rows], a_idx[rows], np.argmax(sel[rows], axis=1)
            probs3 = route.expert_probs[n_g, a_g, b_g, :E].astype(np.float64)   # (n_tg, E_t)
            in_group = (route.tier[n_g] == t) & (route.group[n_g] == g)        # (n_tg, K) slots of (t, g)
            chosen3 = ((route.expert[n_g][:, :, None] == np.arange(E)[None, None, :]) & in_group[:, :, None]).any(axis=1)
            lvl3.append(RouterBatch(probs3, chosen3))
    return lvl1, lvl2, lvl3


def level_cv(routers: list[RouterBatch]) -> float:
    """A level's CV (AUX-1.2, AUX-1.3): sum over routers of n_r * CV(mean probs_r) / sum of n_r; 0 if none."""
    n = np.array([r.probs.shape[0] for r in routers], np.float64)
    if n.sum() == 0:
        return 0.0
    return float(sum(k * cv(r.probs.mean(axis=0)) for k, r in zip(n, routers)) / n.sum())


def layer_cvs(cfg: ModelConfig, route: RouteResult) -> tuple[float, float, float]:
    """(CV_1, CV_2, CV_3) of one layer's routing record (AUX-1.2, AUX-1.3)."""
    return tuple(level_cv(rs) for rs in level_routers(cfg, route))


def aux_loss(cfg: ModelConfig, routes, alpha: float = DEFAULT_ALPHA) -> AuxLoss:
    """L_aux = alpha * sum over layers and levels of CV (AUX-1.4), from the layers' routing records."""
    cvs = tuple(layer_cvs(cfg, r) for r in routes)
    return AuxLoss(total=float(alpha * sum(sum(c) for c in cvs)), alpha=float(alpha), cv=cvs)


# ---------------------------------------------------------------------------------------------
# For comparison (AUX-2, informative): the losses of Switch Transformer and Shazeer et al.

def switch_loss(r: RouterBatch) -> float:
    """Switch Transformer (Fedus et al. 2021): n * sum_i f_i P_i, without its alpha (AUX-2.2).

    f_i = share of the batch's choices that went to candidate i (top-k: choices / (tokens * k)),
    P_i = mean router probability of candidate i. 1 when perfectly balanced.
    """
    f = r.chosen.sum(axis=0) / r.chosen.sum()
    P = r.probs.mean(axis=0)
    return float(r.probs.shape[1] * np.sum(f * P))


def importance_cv2(r: RouterBatch, sparse: bool = False) -> float:
    """Shazeer et al. 2017 importance loss CV(Importance)^2, without its weight (AUX-2.1).

    Importance_i = sum over tokens of the gate of candidate i: the full softmax (``sparse=False``)
    or, as in the paper, the softmax renormalised over each token's top-k and zero elsewhere.
    """
    g = r.probs
    if sparse:
        g = np.where(r.chosen, g, 0.0)
        g = g / g.sum(axis=1, keepdims=True)
    return cv(g.sum(axis=0)) ** 2
