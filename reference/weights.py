"""The model's named parameter tensors and their deterministic initialisation (INIT-2.1 .. INIT-2.3).

A model's weights are a flat mapping ``name -> binary32 array``. A tensor belongs to tier NAME
exactly when its name starts with ``layers.{l}.tiers.{NAME}.``; every other tensor is dense. That
rule is all the checkpoint format needs to put tensors into shards (one per tier, one dense).
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.tensors import TIER_TENSOR, dense_shapes, tier_shapes  # noqa: F401 - re-exported names

from .init import fan_in_bound, uniform_tensor


def init_bound(cfg: ModelConfig, name: str) -> np.float32 | None:
    """The uniform bound of a tensor (INIT-1.4, INIT-2.2, INIT-2.3); None for norm weights (all ones)."""
    if name.endswith("_norm"):
        return None
    if name == "embed":
        return np.float32(1.0)
    m = TIER_TENSOR.match(name)
    if m and m.group(3) == "w_down":
        return fan_in_bound(cfg.tiers[cfg.tier_id(m.group(2))].d_ff)
    return fan_in_bound(cfg.d_model)


def init_tensor(cfg: ModelConfig, seed: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    bound = init_bound(cfg, name)
    if bound is None:
        return np.ones(shape, np.float32)
    return uniform_tensor(seed, name, shape, bound)


def init_dense_weights(cfg: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    return {n: init_tensor(cfg, seed, n, s) for n, s in dense_shapes(cfg).items()}


def init_tier_weights(cfg: ModelConfig, seed: int, tier: int) -> dict[str, np.ndarray]:
    return {n: init_tensor(cfg, seed, n, s) for n, s in tier_shapes(cfg, tier).items()}


def init_model_weights(cfg: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Every tensor of the model from (config, seed) (INIT-2.1 .. INIT-2.3)."""
    w = init_dense_weights(cfg, seed)
    for t in range(cfg.n_tiers):
        w.update(init_tier_weights(cfg, seed, t))
    return w
