"""Layer-level cases: one MoE block on a given binary32 router input (``layer/...``).

The operation ``moe_layer`` takes the configuration, the router input ``x`` (N, d) binary32, the
layer's tensors of the TierSet's tiers (INIT-2.1, INIT-2.3 names) and the parameters ``layer``,
``tierset`` and ``seed``; it returns ``out`` (N, d) and the layer's routing record as ``route.FIELD``.
The router input is given exactly, so the routing record must match bit for bit; ``out`` is held to
MODEL-4.3 against the reference computed in binary64 (MODEL-1.4).
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.config import config_from_dict, seed_to_json

from .case import Tolerance
from .draw import gauss, uniform
from .generate import CaseSpec

F32 = np.float32
MODEL_TOL = Tolerance(rtol=1e-4, atol=0.0, relative_to="max")        # MODEL-4.3: max|imp - ref| <= 1e-4 max|ref|
RECORD = ("tier", "group", "expert", "gate", "count", "tier_probs", "chosen_tiers", "group_probs", "chosen_groups",
          "expert_probs")
LAYER_TIERS = ((2, 3, 4), (3, 2, 3), (2, 2, 2))                      # (groups, experts_per_group, d_ff)


def model_config(tiers=LAYER_TIERS, k=(2, 2, 2), limbs=(2, 2), d=16, layers=2, vocab=32, seq=16, seed=0) -> dict:
    return {
        "spec_version": "0.1", "d_model": d, "n_layers": layers, "n_heads": 2, "vocab_size": vocab,
        "max_seq_len": seq, "rope_theta": 10000.0, "norm_eps": 1e-5,
        "tiers": [{"name": f"tier_{i}", "groups": g, "experts_per_group": e, "d_ff": f}
                  for i, (g, e, f) in enumerate(tiers)],
        "router": {"k_tier": k[0], "k_group": k[1], "k_expert": k[2], "hidden_limbs": limbs[0],
                   "weight_limbs": limbs[1], "seed": seed_to_json(seed)},
    }


def layer_weights(cfg: dict, layer: int, tiers, seed: int = 11) -> dict[str, np.ndarray]:
    """The INIT tensors of ``layer`` for the tier ids ``tiers`` (router heads and experts)."""
    from lite_llm.reference.weights import init_tier_weights

    c = config_from_dict(cfg)
    out = {}
    for t in tiers:
        out.update({k: v for k, v in init_tier_weights(c, seed, t).items() if k.startswith(f"layers.{layer}.")})
    return out


def binary64_layer(cfg: dict, w: dict, layer: int, x: np.ndarray, tierset, seed) -> dict:
    """The expected outputs: the reference MoE block in binary64 (MODEL-1.4, MODEL-4.3), stored rounded
    to binary32 (far inside the tolerance) so that the bytes do not depend on the platform's BLAS and libm."""
    from lite_llm.reference.moe import moe_layer

    out, r = moe_layer(config_from_dict(cfg), w, layer, x.astype(np.float64), tierset, seed)
    return {"out": out.astype(F32), **{f"route.{f}": getattr(r, f) for f in RECORD},
            "route.tier_set": np.asarray(r.tier_set, np.int32)}


def layer_case(name, description, clauses, cfg, x, w, layer=1, tierset=None, seed=0) -> CaseSpec:
    tierset = list(range(len(cfg["tiers"]))) if tierset is None else tierset
    return CaseSpec(f"layer/{name}", description, ["MODEL-3.1", "MODEL-3.2", "MODEL-3.3", "MODEL-4.1", "MODEL-4.3"]
                    + clauses, "moe_layer", {"layer": layer, "tierset": tierset, "seed": seed},
                    {"x": x, **w}, config=cfg, tolerance={"out": MODEL_TOL},
                    outputs=binary64_layer(cfg, w, layer, x, tierset, seed))


def valid_cases() -> list[CaseSpec]:
    out = []
    cfg = model_config()
    all3 = layer_weights(cfg, 1, range(3))
    x = gauss("layer.x", (10, 16))
    out.append(layer_case("moe-basic", "One MoE block (layer 1) on ten router inputs, three tiers, k = (2, 2, 2): the "
                          "routing record bit for bit, the output within 1e-4 of max |ref|.", ["HSER-7.4", "MODEL-3.5"],
                          cfg, x, all3))
    sub = layer_weights(cfg, 1, (0, 2))
    out.append(layer_case("moe-tierset-without-tensors", "TierSet {0, 2}: the tensors of tier 1 are not given and "
                          "must not be required.", ["MODEL-1.3", "TIER-2.6"], cfg, x, sub, tierset=[0, 2]))
    poisoned = dict(all3)
    for k in [k for k in all3 if ".tier_1." in k]:
        poisoned[k] = np.full_like(all3[k], np.nan)
    out.append(layer_case("moe-excluded-tier-nan", "TierSet {0, 2}: every tensor of tier 1 is NaN and must not change "
                          "any output.", ["MODEL-1.3", "TIER-2.6"], cfg, x, poisoned, tierset=[0, 2]))
    one = model_config(k=(1, 1, 1))
    out.append(layer_case("moe-k1-one-tier", "k = (1, 1, 1) and TierSet {1}: every gate is 1 and the output is the "
                          "chosen expert's output.", ["HSER-8.1", "MODEL-3.4"], one, x,
                          layer_weights(one, 1, (1,)), tierset=[1]))
    pad = model_config(k=(2, 3, 3))
    out.append(layer_case("moe-padding-slots", "k = (2, 3, 3) exceeds what tiers 0 and 1 offer: tokens have fewer "
                          "than K active experts and the padding slots add -0.0 to the combine.",
                          ["HSER-5.3", "MODEL-3.4"], pad, gauss("layer.pad", (8, 16)), layer_weights(pad, 1, range(3))))
    tied = layer_weights(cfg, 0, range(3))
    for t in range(3):
        p = f"layers.0.tiers.tier_{t}"
        tied[f"{p}.router_tier"] = tied["layers.0.tiers.tier_0.router_tier"].copy()
        g = tied[f"{p}.router_group"]
        tied[f"{p}.router_group"] = np.broadcast_to(g[:1], g.shape).copy()
    out.append(layer_case("moe-tied-routers", "Layer 0 with identical tier rows and identical group rows: ties decided "
                          "by the seed, then experts combined.", ["HSER-5.1", "HSER-4.5"], cfg,
                          gauss("layer.tie", (6, 16)), tied, layer=0, seed="0xfedcba9876543210"))
    z = np.zeros((3, 16), F32)
    z[1] = -0.0
    out.append(layer_case("moe-zero-input", "Zero router inputs: all logits tie, experts output zeros.",
                          ["HSER-2.2"], cfg, np.concatenate([z, gauss("layer.z", (2, 16))]), all3))
    return out


def combine_exact_case() -> CaseSpec:
    """A layer whose expert outputs every conforming implementation computes exactly, so that ``out``
    is compared bit for bit and checks the combine of MODEL-3.3 itself.

    Every input is a power of two in [1, 8]; every row of W_gate and W_up has one non-zero entry, a
    power of two (W_gate's at least 64), so each product and partial sum of the expert's matrix
    products is a power of two or zero: exact in binary32, binary64, TF32 and bfloat16 alike, in any
    order. W_gate x >= 64, so silu(z) = z exactly (1 + exp(-64) rounds to 1). d_ff = 1, so output
    feature i of an expert is one product h * W_down[i], with W_down = +-2**k, k in [-40, 40]. Each
    token has K = 5 (not a power of two) active experts, whose products gate * y span up to 80
    binades: any other order of the sum (left to right, by magnitude, another pairing) changes bits.
    """
    cfg = model_config(tiers=((1, 7, 1),), k=(1, 1, 5), layers=1)
    w = layer_weights(cfg, 0, (0,))
    p = "layers.0.tiers.tier_0"
    d = cfg["d_model"]

    def one_hot(label: str, low: int, high: int) -> np.ndarray:
        u = uniform(label, (2, 7))
        pos = np.floor(np.abs(u[0]) * d).astype(np.int64) % d
        e = low + np.floor(np.abs(u[1]) * (high - low + 1)).astype(np.int64) % (high - low + 1)
        m = np.zeros((1, 7, 1, d), F32)
        m[0, np.arange(7), 0, pos] = np.ldexp(F32(1), e.astype(np.int32))
        return m
    w[f"{p}.w_gate"] = one_hot("layer.combine.gate", 6, 8)                               # 64 .. 256
    up = one_hot("layer.combine.up", -2, 2)
    sign = np.where(uniform("layer.combine.upsign", (1, 7, 1, 1)) < 0, F32(-1), F32(1))
    w[f"{p}.w_up"] = (up * sign + F32(0)).astype(F32)                                        # +-0.25 .. +-4; +0.0
    u = uniform("layer.combine.down", (1, 7, d, 1))
    w[f"{p}.w_down"] = (np.sign(u) * np.ldexp(F32(1), np.rint(u * 40).astype(np.int32))).astype(F32)
    x = np.ldexp(F32(1), np.floor(np.abs(uniform("layer.combine.x", (12, d))) * 4).astype(np.int32)).astype(F32)

    def check(o):
        assert (o["route.count"] == 5).all(), "every token should have five active experts"
    return CaseSpec("layer/combine-exact-k5",
                    "K = 5 active experts per token (one tier of 7 experts, k = (1, 1, 5)) whose outputs are exact "
                    "in any floating-point format and order by construction (inputs and weights powers of two, one "
                    "non-zero entry per row of W_gate and W_up, silu saturated at z >= 64, d_ff = 1, W_down = "
                    "+-2**k for k in [-40, 40]): the products gate * y span up to 80 binades, and `out` is compared "
                    "bit for bit. The tree sum of MODEL-3.3 over the five slots padded to eight with -0.0 is the "
                    "only conforming order; summing left to right gives other bits.",
                    ["MODEL-3.3", "MODEL-3.4", "MODEL-4.1", "HSER-6.5", "OVW-2.2"], "moe_layer",
                    {"layer": 0, "tierset": [0], "seed": 0}, {"x": x, **w}, config=cfg, check=check)


def error_cases() -> list[CaseSpec]:
    cfg = model_config(tiers=((2, 2, 4),), k=(1, 1, 1), d=8, layers=1)
    w = layer_weights(cfg, 0, (0,))
    x = gauss("layer.err", (3, 8))
    out = []

    def err(name, desc, clauses, code, x=x, w=w, tierset=(0,), seed=0):
        out.append(CaseSpec(f"layer/errors/{name}", desc, clauses + ["MODEL-6.1"], "moe_layer",
                            {"layer": 0, "tierset": list(tierset), "seed": seed}, {"x": x, **w}, config=cfg,
                            error=code))

    err("x-int32", "An int32 MoE input.", ["MODEL-1.4"], "E_DTYPE", x=(x * 10).astype(np.int32))
    err("x-float16", "A binary16 MoE input: the working precision is binary32 or binary64.", ["MODEL-1.4"], "E_DTYPE",
        x=x.astype(np.float16))
    a = x.copy()
    a[2, 3] = np.inf
    err("x-inf", "An infinity in the router input.", ["HSER-1.3"], "E_NONFINITE", x=a)
    err("x-width", "A router input 7 wide for d_model 8.", ["HSER-1.1"], "E_SHAPE", x=x[:, :7].copy())
    p = "layers.0.tiers.tier_0"
    for name, edit, why in (("missing-w-down", lambda d: d.pop(f"{p}.w_down"), "w_down is missing"),
                            ("w-up-shape", lambda d: d.__setitem__(f"{p}.w_up", d[f"{p}.w_up"][:, :, :3].copy()),
                             "w_up has the wrong shape"),
                            ("w-gate-float64", lambda d: d.__setitem__(f"{p}.w_gate", d[f"{p}.w_gate"].astype(np.float64)),
                             "w_gate is binary64"),
                            ("router-nan", lambda d: d[f"{p}.router_expert"].__setitem__((1, 0, 2), np.nan),
                             "a NaN in router_expert")):
        ww = {k: v.copy() for k, v in w.items()}
        edit(ww)
        err(f"weights-{name}", f"The layer's tensors are invalid: {why}.", ["MODEL-1.3"], "E_WEIGHTS", w=ww)
    err("seed", "The seed -3.", ["HSER-4.1"], "E_SEED", seed=-3)
    err("tierset-unknown", "TierSet names tier 1 of a one-tier model.", ["TIER-2.2"], "E_UNKNOWN_TIER", tierset=(1,))
    ww = dict(w)
    ww.pop(f"{p}.w_down")
    a = x.copy()
    a[0, 0] = np.nan
    err("order-seed-first", "Bad seed, unknown tier, NaN input and a missing tensor: the seed is reported.",
        ["HSER-10.3"], "E_SEED", x=a, w=ww, tierset=(5,), seed=-1)
    err("order-input-before-weights", "A NaN input and a missing tensor: the input is reported.", ["HSER-10.3"],
        "E_NONFINITE", x=a, w=ww)
    return out


def cases() -> list[CaseSpec]:
    return valid_cases() + [combine_exact_case()] + error_cases()
