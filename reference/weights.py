"""The model's named parameter tensors and their deterministic initialisation (INIT-2.1 .. INIT-2.3).

A model's weights are a flat mapping ``name -> binary32 array``. A tensor belongs to tier NAME
exactly when its name starts with ``layers.{l}.tiers.{NAME}.``; every other tensor is dense. That
rule is all the checkpoint format needs to put tensors into shards (one per tier, one dense).
"""
from __future__ import annotations

import re

import numpy as np

from lite_llm.spec.config import ModelConfig

from .init import fan_in_bound, uniform_tensor

TIER_TENSOR = re.compile(r"^layers\.(\d+)\.tiers\.([a-z][a-z0-9_]*)\.([a-z_]+)$")


def dense_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the dense tensors (INIT-2.2), in canonical order."""
    d, V = cfg.d_model, cfg.vocab_size
    out: dict[str, tuple[int, ...]] = {"embed": (V, d)}
    for l in range(cfg.n_layers):
        out[f"layers.{l}.attn_norm"] = (d,)
        for w in ("wq", "wk", "wv", "wo"):
            out[f"layers.{l}.attn.{w}"] = (d, d)
        out[f"layers.{l}.ffn_norm"] = (d,)
    out["final_norm"] = (d,)
    out["lm_head"] = (V, d)
    return out


def tier_shapes(cfg: ModelConfig, tier: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of tier ``tier``'s tensors in every layer (INIT-2.1, INIT-2.3), canonical order."""
    t = cfg.tiers[tier]
    d, G, E, F = cfg.d_model, t.groups, t.experts_per_group, t.d_ff
    out: dict[str, tuple[int, ...]] = {}
    for l in range(cfg.n_layers):
        p = f"layers.{l}.tiers.{t.name}"
        out[f"{p}.router_tier"] = (d,)
        out[f"{p}.router_group"] = (G, d)
        out[f"{p}.router_expert"] = (G, E, d)
        out[f"{p}.w_gate"] = (G, E, F, d)      # SwiGLU gate projection, (out, in) per expert
        out[f"{p}.w_up"] = (G, E, F, d)        # SwiGLU up projection
        out[f"{p}.w_down"] = (G, E, d, F)      # SwiGLU down projection
    return out


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


def tier_of(name: str) -> str | None:
    """The tier name a tensor belongs to, or None for a dense tensor (CKPT shard rule)."""
    m = TIER_TENSOR.match(name)
    return m.group(2) if m else None
