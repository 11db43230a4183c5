"""Cases of generated tiers (INIT-3.1 .. INIT-3.3): one expert's weights and router rows from (seed, name).

Operation ``generated_expert``: the implementation generates expert (g, e) of a tier in a layer, and
the level-2 and level-3 router rows that select it, without the rest of the tier. The expected
values are the reference's (``reference.generated``); for the small model the generator also
checks them against the slices of the whole initialised tensors (INIT-3.1), and the large shapes
put the element index past 2**32 and 2**64 (the word uses (i + 1) mod 2**64).
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.config import MAX_GROUPS

from .gen_layer import model_config
from .generate import CaseSpec, GeneratorError

CLAUSES = ["INIT-1.1", "INIT-1.2", "INIT-1.3", "INIT-1.4", "INIT-2.1", "INIT-2.3", "INIT-3.1", "INIT-3.2", "INIT-3.3"]


def matches_whole_tensors(cfg_dict: dict, seed: int, layer: int, tier: int, g: int, e: int):
    """A check that the outputs are the slices [g, e] of the tensors init_model_weights makes (INIT-3.1)."""

    def check(got: dict) -> None:
        from lite_llm.reference.weights import init_tier_weights
        from lite_llm.spec.config import config_from_dict

        cfg = config_from_dict(cfg_dict)
        w = init_tier_weights(cfg, seed, tier)
        p = f"layers.{layer}.tiers.{cfg.tiers[tier].name}"
        want = {k: w[f"{p}.{k}"][g, e] for k in ("w_gate", "w_up", "w_down", "router_expert")}
        want["router_group"] = w[f"{p}.router_group"][g]
        for k, a in want.items():
            if not np.array_equal(np.asarray(got[k]).view(np.uint32), np.ascontiguousarray(a).view(np.uint32)):
                raise GeneratorError(f"generated {k} differs from the slice of the initialised tensor")

    return check


def cases() -> list[CaseSpec]:
    small = model_config(tiers=((3, 4, 5), (2, 3, 6)), d=8, layers=3)
    quad_shaped = model_config(tiers=((1, 1, 6), (1326, 663, 6)), d=8, layers=128)    # tier_1q's G, E; small d
    huge = model_config(tiers=((MAX_GROUPS, MAX_GROUPS, 3),), d=4, layers=1)
    out = []
    for name, cfg, seed, tier, layer, g, e, desc, check in (
            ("generated-expert-small", small, 0x9E3779B97F4A7C15, "tier_1", 2, 1, 2,
             "the last expert of the last tier in the last layer of a small model (seed above 2**53); equal to "
             "the slices of the whole initialised tensors", True),
            ("generated-expert-first", small, 0, 0, 0, 0, 0, "expert (0, 0) of tier id 0, layer 0, seed 0: the "
                                                             "first elements of each stream", True),
            ("generated-expert-quadrillion-shaped", quad_shaped, 12345, "tier_1", 127, 1325, 662,
             "the last expert of a tier shaped like the quadrillion model's tier_1q (1326 x 663), layer 127, "
             "at d = 8", False),
            ("generated-expert-beyond-2-64", huge, (1 << 64) - 1, 0, 0, MAX_GROUPS - 1, MAX_GROUPS - 2,
             "an expert of a tier of (2**31 - 1)**2 experts: its element indices are past 2**64, so the words "
             "use (i + 1) mod 2**64", False)):
        params = {"seed": hex(seed) if seed >= 1 << 53 else seed, "tier": tier, "layer": layer, "group": g,
                  "expert": e}
        tid = int(tier.split("_")[1]) if isinstance(tier, str) else tier
        out.append(CaseSpec(f"model/{name}", f"Generated tier (INIT-3): {desc}.", CLAUSES, "generated_expert",
                            params, {}, config=cfg, only=True,
                            check=matches_whole_tensors(cfg, seed, layer, tid, g, e) if check else None))
    return out
