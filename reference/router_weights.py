"""Router weights of one layer, float and quantized (HSER-1.4, HSER-2.6, INIT-2.1)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import RouterWeightsError

from .init import fan_in_bound, uniform_tensor
from .quantize import dequant_scale, quantize_rows
from .validate import check_finite


@dataclass(frozen=True)
class RouterWeights:
    """The three routers of one layer, binary32, for every tier of T_max.

    tier[t]   (d,)            row of the level-1 router for tier t (W_tier has one row per tier)
    group[t]  (G_t, d)        level-2 router of tier t
    expert[t] (G_t, E_t, d)   level-3 routers of tier t, one (E_t, d) matrix per group
    """

    tier: tuple[np.ndarray, ...]
    group: tuple[np.ndarray, ...]
    expert: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class QuantizedMatrix:
    """Quantized rows of one router matrix (HSER-2.6): integers and the binary64 dequant scale."""

    q: np.ndarray        # (n, d) int64, |q| <= 127 * 128**(limbs-1)
    scale: np.ndarray    # (n,) float64 = absmax / (127 * 128**(limbs-1))


@dataclass(frozen=True)
class QuantizedRouter:
    """A layer's routers after quantization; what routing reads (HSER-2.6)."""

    cfg: ModelConfig
    tier: tuple[QuantizedMatrix, ...]          # per tier: one row (1, d)
    group: tuple[QuantizedMatrix, ...]         # per tier: (G_t, d)
    expert: tuple[tuple[QuantizedMatrix, ...], ...]   # per tier, per group: (E_t, d)


def check_router_weights(cfg: ModelConfig, w: RouterWeights) -> None:
    """Shapes match the config and every value is finite (HSER-1.4)."""
    d = cfg.d_model
    if not (len(w.tier) == len(w.group) == len(w.expert) == cfg.n_tiers):
        raise RouterWeightsError(
            f"router weights cover {len(w.tier)}/{len(w.group)}/{len(w.expert)} tiers, the config has {cfg.n_tiers}")
    for t, tc in enumerate(cfg.tiers):
        for what, arr, shape in (("tier", w.tier[t], (d,)), ("group", w.group[t], (tc.groups, d)),
                                 ("expert", w.expert[t], (tc.groups, tc.experts_per_group, d))):
            name = f"{what} router of tier {tc.name!r}"
            if np.shape(arr) != shape:
                raise RouterWeightsError(f"{name} has shape {np.shape(arr)}, expected {shape}")
            if np.asarray(arr).dtype != np.float32:
                raise RouterWeightsError(f"{name} has dtype {np.asarray(arr).dtype}, expected float32")
            check_finite(np.asarray(arr), name, RouterWeightsError)


def quantize_router(cfg: ModelConfig, w: RouterWeights) -> QuantizedRouter:
    """Quantize every router row with weight_limbs limbs (HSER-2.6)."""
    check_router_weights(cfg, w)
    limbs = cfg.router.weight_limbs

    def qm(rows: np.ndarray) -> QuantizedMatrix:
        q, absmax = quantize_rows(rows, limbs)
        return QuantizedMatrix(q, dequant_scale(absmax, limbs))

    return QuantizedRouter(
        cfg,
        tier=tuple(qm(r[None, :]) for r in w.tier),
        group=tuple(qm(g) for g in w.group),
        expert=tuple(tuple(qm(e[g]) for g in range(e.shape[0])) for e in w.expert),
    )


def router_tensor_names(cfg: ModelConfig, layer: int, tier: int) -> dict[str, str]:
    """Names of tier ``tier``'s router tensors in ``layer`` (INIT-2.1, CKPT naming)."""
    p = f"layers.{layer}.tiers.{cfg.tiers[tier].name}"
    return {"tier": f"{p}.router_tier", "group": f"{p}.router_group", "expert": f"{p}.router_expert"}


def init_router_weights(cfg: ModelConfig, seed: int, layer: int = 0) -> RouterWeights:
    """Deterministic router weights of one layer from the model seed (INIT-2.1): bound 1/sqrt(d)."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < cfg.n_layers:
        raise RouterWeightsError(f"layer {layer!r} is not in [0, {cfg.n_layers})")
    d, b = cfg.d_model, fan_in_bound(cfg.d_model)
    tier, group, expert = [], [], []
    for t, tc in enumerate(cfg.tiers):
        n = router_tensor_names(cfg, layer, t)
        tier.append(uniform_tensor(seed, n["tier"], (d,), b))
        group.append(uniform_tensor(seed, n["group"], (tc.groups, d), b))
        expert.append(uniform_tensor(seed, n["expert"], (tc.groups, tc.experts_per_group, d), b))
    return RouterWeights(tuple(tier), tuple(group), tuple(expert))
