"""Router fidelity: how often the exact quantized router picks the experts an unquantized float64
router picks (HSER-2.7). The float64 router ranks float64 logits of the unquantized weights with the
same tie keys; it is the 'ideal' router that no device can reproduce bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lite_llm.spec.config import ModelConfig

from .ranking import top_k
from .router import route
from .router_weights import RouterWeights, quantize_router
from .seeds import level_seed, tie_keys


def float64_active_sets(cfg: ModelConfig, w: RouterWeights, h: np.ndarray, tiers: tuple[int, ...], seed: int) -> list[frozenset]:
    """Active (tier, group, expert) sets chosen from float64 logits of unquantized weights."""
    rc = cfg.router
    x = np.asarray(h, np.float64)
    cands = np.asarray(tiers)
    z1 = x @ np.stack([w.tier[t] for t in tiers]).astype(np.float64).T
    top1 = cands[top_k(z1, tie_keys(level_seed(seed, 1), cfg.n_tiers)[cands], rc.k_tier)]
    sets = []
    for i in range(x.shape[0]):
        s = set()
        for t in top1[i]:
            z2 = x[i : i + 1] @ w.group[t].astype(np.float64).T
            for g in top_k(z2, tie_keys(level_seed(seed, 2, int(t)), z2.shape[1]), rc.k_group)[0]:
                z3 = x[i : i + 1] @ w.expert[t][g].astype(np.float64).T
                for e in top_k(z3, tie_keys(level_seed(seed, 3, int(t), int(g)), z3.shape[1]), rc.k_expert)[0]:
                    s.add((int(t), int(g), int(e)))
        sets.append(frozenset(s))
    return sets


@dataclass(frozen=True)
class Fidelity:
    hidden_limbs: int
    weight_limbs: int
    agree: float        # fraction of tokens whose active set equals the float64 router's
    tokens: int


# Every (hidden_limbs, weight_limbs) TIER-1.5 allows: hidden 1, 2 or 3, weights 1 or 2.
LIMB_SETTINGS = ((1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2))


def fidelity(cfg: ModelConfig, w: RouterWeights, h: np.ndarray, tiers, seed: int,
             limbs=LIMB_SETTINGS) -> list[Fidelity]:
    """Agreement with the float64 router for each (hidden_limbs, weight_limbs) of ``limbs`` (default: all six
    settings TIER-1.5 allows), each routed by ``route`` with the config's limbs replaced."""
    ideal = float64_active_sets(cfg, w, h, tuple(tiers), seed)
    out = []
    for lx, lw in limbs:
        c = replace(cfg, router=replace(cfg.router, hidden_limbs=lx, weight_limbs=lw))
        r = route(h, quantize_router(c, w), tiers, seed)
        got = [frozenset(zip(r.tier[i, : r.count[i]].tolist(), r.group[i, : r.count[i]].tolist(),
                             r.expert[i, : r.count[i]].tolist())) for i in range(len(ideal))]
        out.append(Fidelity(lx, lw, float(np.mean([a == b for a, b in zip(got, ideal)])), len(ideal)))
    return out


def heavy_tailed_hidden(rng: np.random.Generator, tokens: int, d: int, outlier_channels: int = 8,
                        outlier_scale: float = 20.0) -> np.ndarray:
    """RMS-normalised hidden states like a trained transformer's: Student-t(3) entries and a few
    outlier channels scaled by up to ``outlier_scale`` (a median per-token max/median |h| of 57, like
    the hidden states of a real small transformer, where it reaches ~60)."""
    x = rng.standard_t(3, size=(tokens, d))
    ch = rng.choice(d, size=min(outlier_channels, d), replace=False)
    x[:, ch] *= outlier_scale * rng.uniform(0.5, 1.0, size=len(ch))
    x /= np.sqrt(np.mean(x * x, axis=1, keepdims=True))
    return x.astype(np.float32)
