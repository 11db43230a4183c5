"""The model's tensor names and shapes (INIT-2.1 .. INIT-2.3): the one source both implementations read.

A model's weights are a flat mapping ``name -> binary32 array``. A tensor belongs to tier NAME
exactly when its name starts with ``layers.{l}.tiers.{NAME}.`` (:data:`TIER_TENSOR`); every other
tensor is dense. These tables are data the spec defines, so they live here rather than in an
implementation; a test checks them against the table of INIT-2.2 and INIT-2.3 in the spec text.
"""
from __future__ import annotations

import re

from .config import ModelConfig

TIER_TENSOR = re.compile(r"^layers\.(\d+)\.tiers\.([a-z][a-z0-9_]*)\.([a-z_]+)$")   # groups: layer, tier, kind
DENSE_LAYER_KINDS = ("attn_norm", "attn.wq", "attn.wk", "attn.wv", "attn.wo", "ffn_norm")   # per layer, in order
TIER_KINDS = ("router_tier", "router_group", "router_expert", "w_gate", "w_up", "w_down")    # per layer and tier


def dense_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the dense tensors (INIT-2.2), in canonical order."""
    d, V = cfg.d_model, cfg.vocab_size
    out: dict[str, tuple[int, ...]] = {"embed": (V, d)}
    for l in range(cfg.n_layers):
        for kind in DENSE_LAYER_KINDS:
            out[f"layers.{l}.{kind}"] = (d,) if kind.endswith("_norm") else (d, d)
    out["final_norm"] = (d,)
    out["lm_head"] = (V, d)
    return out


def tier_layer_shapes(cfg: ModelConfig, tier: int, layer: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of tier ``tier``'s tensors in one layer (INIT-2.1, INIT-2.3), canonical order."""
    t = cfg.tiers[tier]
    d, G, E, F = cfg.d_model, t.groups, t.experts_per_group, t.d_ff
    p = f"layers.{layer}.tiers.{t.name}"
    shapes = {"router_tier": (d,),                 # level-1 row of this tier
              "router_group": (G, d),              # level-2 rows, one per group
              "router_expert": (G, E, d),          # level-3 rows, one per expert
              "w_gate": (G, E, F, d),              # SwiGLU gate projection, (out, in) per expert
              "w_up": (G, E, F, d),                # SwiGLU up projection
              "w_down": (G, E, d, F)}              # SwiGLU down projection
    return {f"{p}.{kind}": shapes[kind] for kind in TIER_KINDS}


def tier_shapes(cfg: ModelConfig, tier: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of tier ``tier``'s tensors in every layer (INIT-2.1, INIT-2.3), canonical order."""
    out: dict[str, tuple[int, ...]] = {}
    for l in range(cfg.n_layers):
        out.update(tier_layer_shapes(cfg, tier, l))
    return out
