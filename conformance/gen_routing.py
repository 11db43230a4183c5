"""Routing-level cases: whole routing records (``routing/route/...``), TierSet modes
(``routing/tierset/...``) and every rejection of the routing chapter (``routing/errors/...``).

The route operation takes the configuration, the hidden states ``hidden`` (T, d), the router
weights of one layer as ``router_tier.{t}`` (d,), ``router_group.{t}`` (G_t, d) and
``router_expert.{t}`` (G_t, E_t, d) for every tier id t, and the parameters ``tierset`` (tier ids)
and ``seed``; it returns the routing record of HSER-9.3.
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.config import config_from_dict, seed_to_json

from .draw import FLT_MAX, FLT_SUB, FLT_TINY, gauss, heavy, uniform
from .generate import CaseSpec

F32 = np.float32
ROUTE_CLAUSES = ["HSER-7.1", "HSER-7.2", "HSER-7.3", "HSER-8.1", "HSER-8.2", "HSER-9.1", "HSER-9.2", "HSER-9.3"]
MAIN_TIERS = ((2, 4), (4, 2), (3, 3))       # (groups, experts_per_group): shapes differ per tier


def config(tiers=MAIN_TIERS, k=(2, 2, 2), limbs=(2, 2), d=16, seed=0, names=None) -> dict:
    """A configuration in its JSON form (TIER-1.1)."""
    names = names or [f"tier_{i}" for i in range(len(tiers))]
    return {
        "spec_version": "0.1", "d_model": d, "n_layers": 1, "n_heads": 2, "vocab_size": 32, "max_seq_len": 16,
        "tiers": [{"name": n, "groups": g, "experts_per_group": e, "d_ff": 4} for n, (g, e) in zip(names, tiers)],
        "router": {"k_tier": k[0], "k_group": k[1], "k_expert": k[2], "hidden_limbs": limbs[0],
                   "weight_limbs": limbs[1], "seed": seed_to_json(seed)},
    }


def weights(cfg: dict, seed: int = 7) -> dict[str, np.ndarray]:
    """The router weights of layer 0 from INIT (seed ``seed``), as route inputs."""
    from lite_llm.reference.router_weights import init_router_weights

    w = init_router_weights(config_from_dict(cfg), seed)
    out = {}
    for t in range(len(cfg["tiers"])):
        out[f"router_tier.{t}"] = w.tier[t]
        out[f"router_group.{t}"] = w.group[t]
        out[f"router_expert.{t}"] = w.expert[t]
    return out


def tied_weights(cfg: dict, levels=(1, 2, 3), seed: int = 7) -> dict[str, np.ndarray]:
    """Weights whose rows are identical within each chosen level, so every logit of that level ties."""
    w = weights(cfg, seed)
    n = len(cfg["tiers"])
    if 1 in levels:
        for t in range(n):
            w[f"router_tier.{t}"] = w["router_tier.0"].copy()
    for t in range(n):
        if 2 in levels:
            g = w[f"router_group.{t}"]
            w[f"router_group.{t}"] = np.broadcast_to(g[:1], g.shape).copy()
        if 3 in levels:
            e = w[f"router_expert.{t}"]
            w[f"router_expert.{t}"] = np.broadcast_to(e[:, :1], e.shape).copy()
    return w


def route_case(name, description, clauses, cfg, hidden, tierset=None, seed=0, w=None, **kw) -> CaseSpec:
    tierset = list(range(len(cfg["tiers"]))) if tierset is None else tierset
    return CaseSpec(f"routing/route/{name}", description, clauses, "route",
                    {"tierset": tierset, "seed": seed}, {"hidden": hidden, **(w if w is not None else weights(cfg))},
                    config=cfg, **kw)


def reference_route(cfg: dict, hidden, w, tierset, seed):
    from lite_llm.reference.adapter import ReferenceAdapter
    from .adapters import Request

    req = Request("", "route", cfg, {"tierset": tierset, "seed": seed}, {"hidden": hidden, **w},
                  {"hidden": "float32"})
    return ReferenceAdapter().run(req)


def masked_sum_differs(cfg: dict, hidden, w, tierset) -> int:
    """Tokens whose level-1 softmax sum changes if excluded tiers were masked as +0.0 lanes, not excluded.

    Used to pick inputs on which an implementation that masks tiers with -inf (TIER-2.6) gives other bits.
    """
    from lite_llm.reference.cexp import canonical_exp
    from lite_llm.reference.logits import exact_dot, logits
    from lite_llm.reference.quantize import dequant_scale, quantize_rows
    from lite_llm.reference.softmax import tree_sum

    c = config_from_dict(cfg)
    lx, lw = c.router.hidden_limbs, c.router.weight_limbs
    qx, ax = quantize_rows(hidden, lx)
    rows = np.stack([w[f"router_tier.{t}"] for t in range(c.n_tiers)])
    qw, aw = quantize_rows(rows, lw)
    z = logits(exact_dot(qx, qw), dequant_scale(ax, lx), dequant_scale(aw, lw))          # (T, M)
    zin = z[:, tierset]
    d = zin - zin.max(axis=1, keepdims=True)
    e = np.where(d < -87, F32(0), canonical_exp(np.where(d < -87, 0, d).astype(F32)))
    full = np.zeros(z.shape, F32)
    full[:, tierset] = e
    return int(np.sum(tree_sum(e) != tree_sum(full)))


def route_cases() -> list[CaseSpec]:
    out = []
    main = config()
    h = gauss("route.basic", (12, 16))
    out.append(route_case("basic", "Twelve Gaussian tokens through three tiers of different shapes, k = (2, 2, 2), "
                          "2 + 2 limbs: the full routing record.", ROUTE_CLAUSES + ["HSER-2.6", "HSER-3.3", "TIER-1.2",
                                                                                     "TIER-1.4"], main, h))
    placed = config()
    for t, where in zip(placed["tiers"], ("Object", "NVMe", "DRAM")):
        t["placement"] = where
    out.append(route_case("placement-independent", "route/basic with the tiers placed on Object, NVMe and DRAM "
                          "storage: the same record, bit for bit (the expected outputs are those of route/basic).",
                          ["PLACE-1.3", "TIER-1.3"], placed, h, w=weights(main),
                          outputs=reference_route(main, h, weights(main), [0, 1, 2], 0)))
    hh = heavy("route.limbs", (16, 16))
    for lx in (1, 2):
        for lw in (1, 2):
            cfg = config(limbs=(lx, lw))
            out.append(route_case(f"limbs-h{lx}-w{lw}",
                                  f"Heavy-tailed tokens routed with {lx} hidden limb(s) and {lw} weight limb(s): the "
                                  "four limb combinations give different probabilities and gates.",
                                  ["HSER-2.3", "HSER-2.4", "HSER-2.5", "HSER-2.6", "HSER-3.2"] + ROUTE_CLAUSES[:4],
                                  cfg, hh, w=weights(cfg)))
    tied = tied_weights(main)
    out.append(route_case("ties-every-level",
                          "Every router row of a level is the same, so all logits tie at level 1, 2 and 3 and the "
                          "seeded tie keys alone decide the ranking, group and expert choices.",
                          ["HSER-5.1", "HSER-5.2", "HSER-4.4", "HSER-4.5"] + ROUTE_CLAUSES, main,
                          gauss("route.ties", (6, 16)), w=tied))
    out.append(route_case("ties-tierset-subset",
                          "All tier rows tie and the TierSet is {1, 2}: a tier's tie key uses its id, not its position "
                          "in the TierSet.", ["HSER-4.5", "HSER-5.1", "TIER-2.5"], main, gauss("route.ties2", (4, 16)),
                          tierset=[1, 2], w=tied))
    five = config(tiers=((2, 2), (2, 3), (3, 2), (2, 2), (3, 3)))
    out.append(route_case("ties-level1-tierset-offset",
                          "Five tiers whose level-1 rows are identical, TierSet {1, 2, 3}, seed 2: the tie keys of "
                          "tiers 1, 2, 3 are mix64(s_1 ^ 1), mix64(s_1 ^ 2), mix64(s_1 ^ 3) and rank tiers 3 then 2; "
                          "keys taken by position in the TierSet (0, 1, 2) would rank tiers 1 then 3.",
                          ["HSER-4.5", "HSER-5.1", "HSER-7.1", "TIER-2.5"], five, gauss("route.ties-offset", (4, 16)),
                          tierset=[1, 2, 3], seed=2, w=tied_weights(five, levels=(1,)),
                          check=lambda o: _assert((o["chosen_tiers"] == [3, 2]).all(), "expected tiers 3 then 2")))
    for lv in (1, 2, 3):
        w = weights(main)
        if lv == 1:
            w["router_tier.2"] = w["router_tier.0"].copy()
        elif lv == 2:
            w["router_group.1"][3] = w["router_group.1"][0]
            w["router_group.0"][1] = w["router_group.0"][0]
        else:
            w["router_expert.2"][:, 2] = w["router_expert.2"][:, 0]
            w["router_expert.0"][:, 3] = w["router_expert.0"][:, 1]
        out.append(route_case(f"ties-level{lv}", f"Two router rows of level {lv} are identical, so their logits tie "
                              "for every token and the tie key orders them.", ["HSER-5.1", "HSER-4.5"] + ROUTE_CLAUSES,
                              main, gauss(f"route.tl{lv}", (10, 16)), w=w))
    z = np.zeros((5, 16), F32)
    z[3:] = -0.0
    out.append(route_case("zero-hidden", "All-zero hidden states (+0.0 and -0.0 rows): absmax 0 quantizes to all "
                          "zeros, every logit is 0 and every level is an all-equal tie.",
                          ["HSER-2.2", "HSER-5.1", "HSER-6.6"] + ROUTE_CLAUSES, main, z))
    w = weights(main)
    w["router_tier.1"][:] = 0
    w["router_group.0"][0] = 0
    w["router_expert.1"][2] = 0
    out.append(route_case("zero-router-rows", "Some router rows are all zero (absmax 0, scale 0, logit 0).",
                          ["HSER-2.2", "HSER-2.6"] + ROUTE_CLAUSES, main, gauss("route.zr", (8, 16)), w=w))
    ext = np.zeros((8, 16), F32)
    ext[0] = FLT_MAX
    ext[1] = uniform("route.ext1", (16,), 1.0) * F32(3.0e38)
    ext[2] = uniform("route.ext2", (16,), 1.0) * F32(2.0 ** -140)              # subnormal only
    ext[3] = FLT_SUB
    ext[3, 5] = -FLT_SUB
    ext[4] = uniform("route.ext4", (16,), 1e-30)
    ext[4, 0] = F32(3.0e38)                                                       # one huge, others vanish
    ext[5] = uniform("route.ext5", (16,), 1.0) * FLT_TINY
    ext[6] = -FLT_MAX
    ext[6, 1::2] = FLT_MAX
    ext[7] = gauss("route.ext7", (16,))
    out.append(route_case("extreme-magnitudes",
                          "Hidden values of magnitude ~3e38 (FLT_MAX), subnormal-only rows, a row with one 3e38 "
                          "value and the rest 1e-30, smallest normals: dividing by absmax first never overflows.",
                          ["HSER-2.1", "HSER-2.3", "HSER-3.3", "OVW-2.1"] + ROUTE_CLAUSES[:3], main, ext))
    w = weights(main)
    w["router_tier.0"] = w["router_tier.0"] * F32(1e38)
    w["router_group.1"][1] = w["router_group.1"][1] * F32(2.0 ** -140)
    w["router_expert.2"][0, 1] = FLT_MAX
    out.append(route_case("extreme-weights", "Router rows scaled to ~1e37, to subnormal magnitudes and to FLT_MAX: "
                          "per-row scales keep them routable.", ["HSER-2.6", "HSER-3.3"] + ROUTE_CLAUSES[:3], main,
                          gauss("route.ew", (8, 16)), w=w))
    out.append(near_tie_case())
    return out


def near_tie_case() -> CaseSpec:
    """Two experts whose logits differ by one unit of acc * scale (about 4e-9): their binary32
    probabilities are equal, and the tie key prefers the expert with the smaller logit. Ranking
    logits picks the other one; ranking probabilities (HSER-5.4) would pick the key's."""
    from lite_llm.reference.seeds import level_seed, tie_keys

    cfg = config(tiers=((1, 2),), k=(1, 1, 1))
    seed = 0
    keys = tie_keys(level_seed(seed, 3, 0, 0), 2)
    smaller_key = int(np.argmin(keys))
    S = 127 * 128
    row = uniform("route.neartie", (16,), 0.9)
    row[0] = 1.0
    q1 = int(np.rint(row[1] * S))
    row[1] = F32(q1 / S)
    other = row.copy()
    other[1] = F32((q1 + (1 if smaller_key == 0 else -1)) / S)       # expert 1's logit: above or below expert 0's
    w = weights(cfg)
    w["router_expert.0"] = np.stack([row, other])[None].astype(F32)
    h = np.zeros((2, 16), F32)
    h[:, 0] = (1.0, 3.0)
    h[:, 1] = (F32(1 / S), F32(3 / S))

    def check(o):
        p = o["expert_probs"][:, 0, 0, :]
        assert (p[:, 0] == p[:, 1]).all(), "the near-tied probabilities should round to the same binary32 value"
        assert (o["expert"][:, 0] != smaller_key).all(), "the larger logit should win"
    return route_case("near-tie-logits", "Two experts whose exact logits differ by one quantum (~4e-9): their binary32 "
                      "probabilities are equal and the tie key prefers the expert with the smaller logit; ranking "
                      "logits chooses the other expert.", ["HSER-5.4", "HSER-5.1", "HSER-3.3"], cfg, h, w=w,
                      check=check)


def dtype_cases() -> list[CaseSpec]:
    out = []
    main = config()
    base = gauss("route.dtype", (6, 16))
    out.append(route_case("hidden-float16", "Hidden states in binary16 convert to binary32 exactly.",
                          ["HSER-1.2"] + ROUTE_CLAUSES[:3], main, base.astype(np.float16)))
    bf = (base.view(np.uint32) >> np.uint32(16)).astype(np.uint16)
    out.append(route_case("hidden-bfloat16", "Hidden states in bfloat16 (stored as their 16-bit patterns) convert to "
                          "binary32 exactly.", ["HSER-1.2"] + ROUTE_CLAUSES[:3], main, bf,
                          dtypes={"hidden": "bfloat16"}))
    h64 = base.astype(np.float64) + np.float64(2.0 ** -30)
    h64[0, 0] = float(FLT_MAX) * (1 + 2.0 ** -25)           # rounds down to FLT_MAX: finite
    h64[1, 1] = 1.0 + 2.0 ** -24                             # halfway: ties to even (1.0)
    h64[1, 2] = 1.0 + 3 * 2.0 ** -24                         # halfway: ties to even (1 + 2**-22)
    h64[2, 3] = 1e-50                                        # underflows to +0.0
    out.append(route_case("hidden-float64-rounding", "Hidden states in binary64 round to nearest-even binary32: a "
                          "value just above FLT_MAX rounds to FLT_MAX (finite), halfway values round to even, 1e-50 "
                          "underflows to zero.", ["HSER-1.2", "HSER-1.3", "OVW-2.1"] + ROUTE_CLAUSES[:3], main, h64))
    return out


def shape_cases() -> list[CaseSpec]:
    out = []
    main = config()
    k_big = config(k=(2, 3, 3))
    h = gauss("route.k", (10, 16))
    out.append(route_case("one-tier-tierset", "TierSet {1} with k_tier = 2: level 1 offers one tier, which is "
                          "chosen; the second tier slot is padding.", ["HSER-5.3", "HSER-9.1", "HSER-9.3", "TIER-2.1"],
                          main, h, tierset=[1]))
    out.append(route_case("k-exceeds-groups-and-experts",
                          "k = (2, 3, 3) where tier 0 has 2 groups and tier 1 has 2 experts per group: levels offer "
                          "fewer candidates than k, all are taken, and tokens have different active-set sizes "
                          "(valid slots first, padding after).", ["HSER-5.2", "HSER-5.3", "HSER-9.1", "HSER-9.2",
                                                                 "HSER-9.3"], k_big, h, w=weights(k_big)))
    k_all = config(k=(5, 5, 5))
    out.append(route_case("k-exceeds-every-level", "k = (5, 5, 5) exceeds what every level offers: every tier, "
                          "group and expert is active, never an error.", ["HSER-5.3", "HSER-9.1"], k_all,
                          gauss("route.kall", (3, 16)), w=weights(k_all)))
    out.append(route_case("tierset-shapes", "TierSet {0, 2} leaves out tier 1, which has the most groups: G_max and "
                          "E_max of the record come from the TierSet's tiers.", ["HSER-9.3", "TIER-2.6"], main,
                          gauss("route.ts", (6, 16)), tierset=[0, 2]))
    out.append(route_case("tierset-names-and-ids", "The TierSet [\"tier_2\", 0] mixes a name and an id.",
                          ["TIER-2.1", "TIER-2.5"], main, gauss("route.tsn", (4, 16)), tierset=["tier_2", 0]))
    out.append(route_case("tierset-unsorted", "The TierSet is given as [2, 0, 1]: level-1 candidates and the columns "
                          "of tier_probs are in ascending id order.", ["TIER-2.5", "HSER-7.1", "HSER-9.3"], main,
                          gauss("route.tsu", (5, 16)), tierset=[2, 0, 1]))
    out.append(route_case("tokens-0", "Zero tokens: every array of the record has T = 0 rows.", ["HSER-1.1", "HSER-9.3"],
                          main, np.zeros((0, 16), F32)))
    # Tiers outside the TierSet never enter arithmetic: 4 tiers, TierSet {0, 2, 3}.
    four = config(tiers=((2, 2), (2, 3), (3, 2), (2, 2)), k=(1, 2, 1))
    w4 = weights(four)
    w4["router_tier.1"] = w4["router_tier.1"] * F32(1e30)
    h4 = gauss("route.mask", (16, 16))
    n = masked_sum_differs(four, h4, w4, [0, 2, 3])
    assert n > 0, "route/tierset-excluded-sum: no token separates exclusion from masking"
    out.append(route_case("tierset-excluded-tier",
                          f"TierSet {{0, 2, 3}} of four tiers; the excluded tier 1 has a huge router row. Excluded "
                          f"tiers never enter the softmax sum: on {n} of the 16 tokens, a sum that kept tier 1 as a "
                          "masked (-inf, exp = 0) lane gives other bits.", ["TIER-2.6", "HSER-7.1", "HSER-6.5",
                                                                            "HSER-2.6"], four, h4, tierset=[0, 2, 3],
                          w=w4))
    four_k3 = config(tiers=((2, 2), (2, 3), (3, 2), (2, 2)), k=(3, 1, 1))
    out.append(route_case("k-tier-exceeds-tierset",
                          "TierSet {0, 2} with k_tier = 3: only the two allowed tiers are chosen (a masked tier can "
                          "never be chosen), the third slot is padding.", ["TIER-2.6", "HSER-5.3", "HSER-7.1"],
                          four_k3, gauss("route.k3", (6, 16)), tierset=[0, 2], w=weights(four_k3)))
    # Token independence: the same token at several positions and alone.
    x = gauss("route.batch", (9, 16))
    x[4] = x[1]
    x[8] = x[1]
    out.append(route_case("batch-repeated-token", "Token 1 appears again at positions 4 and 8: its three rows of "
                          "the record are identical (token independence).", ["HSER-7.4"], main, x,
                          check=_rows_equal((1, 4, 8))))
    out.append(route_case("batch-single-token", "Token 1 of route/batch-repeated-token routed alone: the same record "
                          "row, whatever the batch.", ["HSER-7.4"], main, x[1:2].copy()))
    # Expansion: appending a tier changes nothing under the old TierSet.
    grown = config(tiers=MAIN_TIERS + ((2, 2),))
    hx = gauss("route.expand", (8, 16))
    before = reference_route(main, hx, weights(main), [0, 1, 2], 0)
    out.append(route_case("expansion-superset",
                          "A fourth tier is appended (its router rows initialised by INIT); routing under the old "
                          "TierSet {0, 1, 2} gives the record of the three-tier model, bit for bit (the expected "
                          "outputs are those of the configuration before expansion).",
                          ["TIER-1.6", "TIER-2.6", "INIT-2.1"], grown, hx, tierset=[0, 1, 2], w=weights(grown),
                          outputs=before))
    return out


def seed_cases() -> list[CaseSpec]:
    out = []
    cfg = config(tiers=((3, 4), (4, 3), (2, 2)), k=(2, 2, 2))
    w = tied_weights(cfg)
    h = gauss("route.seeds", (3, 16))
    seeds = [0, 1, 12345, (1 << 32) - 1, (1 << 32) + 5, (1 << 53) - 1, "0x0020000000000000", "0x8000000000000000",
             "0xffffffffffffffff", "0xdeadbeefcafebabe", "0x1"]
    for s in seeds:
        label = s if isinstance(s, str) else f"{s}"
        out.append(route_case(f"seed-{label}", f"Every level ties, so the seed {s!r} alone decides the choices "
                              "(seeds at or above 2**53 are written as 0x-prefixed hex strings).",
                              ["HSER-4.1", "HSER-4.2", "HSER-4.3", "HSER-4.4", "HSER-4.5", "HSER-5.1"], cfg, h,
                              seed=s, w=w))
    for big in ((1 << 63) + 5, (1 << 64) - 1):
        out.append(route_case(f"seed-integer-{big:#x}",
                              f"The seed {big} written as a JSON integer (at or above 2**53): a routing call accepts "
                              f"it, and routes as the hex string {big:#x} does (the expected outputs are those).",
                              ["HSER-4.1"], cfg, h, seed=big, w=w, outputs=reference_route(cfg, h, w, [0, 1, 2],
                                                                                           f"{big:#x}")))
    cfg_seeded = config(tiers=((3, 4), (4, 3), (2, 2)), k=(2, 2, 2), seed=0xC0FFEE1234567890)
    spec = route_case("seed-from-config", "No routing seed is given: the configuration's router seed "
                      "0xc0ffee1234567890 decides the ties.", ["HSER-4.1", "HSER-4.4"], cfg_seeded, h,
                      w=w, outputs=reference_route(cfg, h, w, [0, 1, 2], "0xc0ffee1234567890"))
    del spec.params["seed"]
    out.append(spec)
    out.append(route_case("seed-null", "The seed is the JSON value null: the same as no seed, the configuration's "
                          "router seed 0xc0ffee1234567890 decides the ties.", ["HSER-4.1"], cfg_seeded, h, seed=None,
                          w=w, outputs=reference_route(cfg, h, w, [0, 1, 2], "0xc0ffee1234567890")))
    return out


def tierset_cases() -> list[CaseSpec]:
    cfg = config(tiers=((2, 2), (2, 2), (2, 2), (2, 2)))
    rows = [("all", "all", "Max mode: every tier.", ["TIER-3.3"]),
            ("exclusive", "exclusive:tier_2", "Exclusive mode: just the named tier.", ["TIER-3.1"]),
            ("cumulative", "cumulative:tier_2", "Cumulative mode: the tier and every tier before it.", ["TIER-3.2"]),
            ("cumulative-first", "cumulative:tier_0", "Cumulative mode of the first tier is that tier.", ["TIER-3.2"]),
            ("list-names", "tier_3,tier_1", "A comma-separated list of names gives ascending ids.", ["TIER-2.1",
                                                                                                  "TIER-2.5"]),
            ("list-ids", [3, 0, 2], "A list of ids gives ascending ids.", ["TIER-2.1", "TIER-2.5"]),
            ("exclusive-id", "exclusive:2", "Exclusive mode names its tier by id.", ["TIER-3.1", "TIER-3.5"]),
            ("cumulative-id", "cumulative:1", "Cumulative mode names its tier by id.", ["TIER-3.2", "TIER-3.5"]),
            ("spaces", "  tier_3 ,1 , 0  ", "Spaces around the string and around each item are ignored.",
             ["TIER-3.5"]),
            ("spaces-mode", " exclusive: tier_1 ", "Spaces around the string and the mode's argument are ignored.",
             ["TIER-3.5", "TIER-3.1"]),
            ("leading-zeros", "02,3", "An item of digits is an id, leading zeros allowed.", ["TIER-3.5"])]
    out = [CaseSpec(f"routing/tierset/{n}", f"TierSet {spec!r}: {d}", cl, "tier_set", {"tierset": spec}, {}, config=cfg)
           for n, spec, d, cl in rows]
    grown = config(tiers=((2, 2),) * 5)
    out += [CaseSpec(f"routing/tierset/after-expansion-{n}", f"After a fifth tier is appended, {spec!r} {d}",
                     ["EXP-2.4", cl], "tier_set", {"tierset": spec}, {}, config=grown)
            for n, spec, d, cl in (("all", "all", "includes the new tier.", "TIER-3.3"),
                                   ("cumulative", "cumulative:tier_2", "is the TierSet it was before: {0, 1, 2}.",
                                    "TIER-3.2"),
                                   ("exclusive", "exclusive:tier_1", "is the TierSet it was before: {1}.", "TIER-3.1"))]
    errs = [("unknown-name", "exclusive:tier_9", "E_UNKNOWN_TIER", ["TIER-2.2"]),
            ("unknown-id", [0, 4], "E_UNKNOWN_TIER", ["TIER-2.2"]),
            ("empty", [], "E_EMPTY_TIERSET", ["TIER-2.3"]),
            ("duplicate", [1, 2, 1], "E_DUPLICATE_TIER", ["TIER-2.4"]),
            ("duplicate-by-name", "tier_1,1", "E_DUPLICATE_TIER", ["TIER-2.4", "TIER-2.1"]),
            ("string-empty", "", "E_EMPTY_TIERSET", ["TIER-3.5", "TIER-2.3"]),
            ("string-spaces-only", "   ", "E_EMPTY_TIERSET", ["TIER-3.5", "TIER-2.3"]),
            ("string-empty-item", "1,,2", "E_UNKNOWN_TIER", ["TIER-3.5"]),
            ("string-trailing-comma", "1,2,", "E_UNKNOWN_TIER", ["TIER-3.5"]),
            ("string-leading-comma", ",1", "E_UNKNOWN_TIER", ["TIER-3.5"]),
            ("string-empty-mode-argument", "exclusive:", "E_UNKNOWN_TIER", ["TIER-3.5"]),
            ("string-tab", "1\t", "E_UNKNOWN_TIER", ["TIER-3.5"]),
            ("string-empty-item-before-duplicate", "1,,1", "E_UNKNOWN_TIER", ["TIER-3.5", "TIER-2.4"]),
            ("list-digit-string", ["1"], "E_UNKNOWN_TIER", ["TIER-2.1", "TIER-2.2"]),
            ("list-id-as-float", [1.0], "E_UNKNOWN_TIER", ["TIER-2.1", "TIER-2.2"])]
    out += [CaseSpec(f"routing/tierset/{n}", f"TierSet {spec!r} is rejected with {code}.", cl + ["HSER-10.1"],
                     "tier_set", {"tierset": spec}, {}, config=cfg, error=code) for n, spec, code, cl in errs]
    return out


def error_cases() -> list[CaseSpec]:
    main = config()
    h = gauss("route.err", (4, 16))
    out = []

    def err(name, desc, clauses, code, hidden=h, tierset=None, seed=0, w=None, cfg=main):
        out.append(CaseSpec(f"routing/errors/{name}", desc, clauses + ["HSER-10.1", "HSER-10.2"], "route",
                            {"tierset": list(range(3)) if tierset is None else tierset, "seed": seed},
                            {"hidden": hidden, **(w if w is not None else weights(main))}, config=cfg, error=code))

    err("shape-1d", "Hidden states of rank 1.", ["HSER-1.1"], "E_SHAPE", hidden=h[0])
    err("shape-3d", "Hidden states of rank 3.", ["HSER-1.1"], "E_SHAPE", hidden=h[None])
    err("shape-width", "Hidden states 15 wide for d_model 16.", ["HSER-1.1"], "E_SHAPE", hidden=h[:, :15].copy())
    for dt in ("int32", "int8", "bool", "complex64", "uint16"):
        a = (h * 10).astype(dt) if dt != "bool" else h > 0
        err(f"dtype-{dt}", f"Hidden states of type {dt}"
            f"{' (not bfloat16: the case says uint16)' if dt == 'uint16' else ''}.", ["HSER-1.2"], "E_DTYPE", hidden=a)
    for name, val, where in (("nan", np.nan, (2, 5)), ("posinf", np.inf, (0, 0)), ("neginf", -np.inf, (3, 15))):
        a = h.copy()
        a[where] = val
        err(f"nonfinite-{name}", f"{val} at token {where[0]}, feature {where[1]}.", ["HSER-1.3"], "E_NONFINITE", hidden=a)
    a = h.astype(np.float64)
    a[1, 1] = 1e39
    err("nonfinite-float64-overflow", "A binary64 value 1e39 overflows binary32.", ["HSER-1.3", "HSER-1.2"],
        "E_NONFINITE", hidden=a)
    a = h.astype(np.float64)
    a[1, 2] = float(FLT_MAX) * (1 + 2.0 ** -24)
    err("nonfinite-float64-halfway-overflow", "A binary64 value halfway between FLT_MAX and 2**128 rounds (to even) "
        "to infinity.", ["HSER-1.3", "HSER-1.2", "OVW-2.1"], "E_NONFINITE", hidden=a)
    a = h.astype(np.float16)
    a[0, 3] = np.inf
    err("nonfinite-float16-inf", "An infinity in binary16 hidden states.", ["HSER-1.3"], "E_NONFINITE", hidden=a)
    w = weights(main)
    w["router_group.1"] = w["router_group.1"][:, :15].copy()
    err("weights-shape", "router_group.1 is (4, 15), the config needs (4, 16).", ["HSER-1.4"], "E_WEIGHTS", w=w)
    w = weights(main)
    w["router_expert.0"] = w["router_expert.0"].astype(np.float64)
    err("weights-dtype", "router_expert.0 is binary64; router weights are binary32.", ["HSER-1.4"], "E_WEIGHTS", w=w)
    w = weights(main)
    w["router_tier.2"][7] = np.nan
    err("weights-nan", "A NaN in router_tier.2.", ["HSER-1.4"], "E_WEIGHTS", w=w)
    w = weights(main)
    w["router_expert.1"][3, 1, 0] = -np.inf
    err("weights-inf", "-inf in router_expert.1.", ["HSER-1.4"], "E_WEIGHTS", w=w)
    w = weights(main)
    del w["router_group.1"]
    err("weights-missing", "router_group.1 is missing.", ["HSER-1.4"], "E_WEIGHTS", w=w)
    for name, seed, why in (("negative", -1, "-1"), ("2pow64-hex", "0x10000000000000000", "2**64 as hex (17 digits)"),
                            ("2pow64-integer", 1 << 64, "2**64 as a JSON integer"), ("fraction", 1.5, "1.5"),
                            ("not-hex", "0xZZ", "the string 0xZZ"), ("boolean", True, "the JSON value true"),
                            ("decimal-string", "12", "the decimal string \"12\""),
                            ("signed-string", "+12", "the string \"+12\""),
                            ("underscore", "1_2", "the string \"1_2\""),
                            ("hex-underscore", "0x_1f", "the string \"0x_1f\""),
                            ("uppercase-prefix", "0X1F", "the string \"0X1F\" (the prefix is lower-case 0x)"),
                            ("hex-empty", "0x", "the string \"0x\" (no digits)"),
                            ("hex-space", " 0x1f", "the string \" 0x1f\" (a leading space)"),
                            ("hex-newline", "0x1f\n", "the string \"0x1f\\n\" (a trailing newline)"),
                            ("float-integral", 1.0, "the JSON number 1.0")):
        err(f"seed-{name}", f"The seed {why} is not an integer in [0, 2**64).", ["HSER-4.1"], "E_SEED", seed=seed)
    err("tierset-unknown", "The TierSet names tier id 7 of a three-tier model.", ["TIER-2.2"], "E_UNKNOWN_TIER",
        tierset=[0, 7])
    err("tierset-negative", "The TierSet names tier id -1.", ["TIER-2.2"], "E_UNKNOWN_TIER", tierset=[-1])
    err("tierset-empty", "An empty TierSet.", ["TIER-2.3"], "E_EMPTY_TIERSET", tierset=[])
    err("tierset-duplicate", "The TierSet names tier 1 twice.", ["TIER-2.4"], "E_DUPLICATE_TIER", tierset=[1, 0, 1])
    err("tierset-name-and-id-duplicate", "The TierSet [\"tier_1\", 1] names tier 1 twice, by name and by id.",
        ["TIER-2.4", "TIER-2.1"], "E_DUPLICATE_TIER", tierset=["tier_1", 1])
    err("tierset-not-a-list", "The TierSet is the number 2, not a collection of names and ids.", ["TIER-2.1"],
        "E_UNKNOWN_TIER", tierset=2)
    err("tierset-unknown-name", "The TierSet names tier_9, which the model does not have.", ["TIER-2.2"],
        "E_UNKNOWN_TIER", tierset=["tier_0", "tier_9"])
    w = weights(main)
    w["router_group.2"][0, 3] = np.nan
    err("weights-nan-outside-tierset", "A NaN in the router of tier 2, which the TierSet {0, 1} leaves out: every "
        "tier's weights are checked when they are quantized.", ["HSER-1.4"], "E_WEIGHTS", w=w, tierset=[0, 1])
    bad_cfgs = [("k-zero", ("router", "k_group", 0), "k_group = 0", ["TIER-1.5"]),
                ("k-product", ("router", "k_tier", 16385), "K = 16385 * 2 * 2 > 2**16 slots", ["TIER-1.5"]),
                ("groups-2pow31", ("tier", "groups", 1 << 31), "2**31 groups (indices are int32)", ["TIER-1.5"]),
                ("groups-zero", ("tier", "groups", 0), "a tier with 0 groups", ["TIER-1.3", "TIER-1.5"]),
                ("missing-d-ff", ("tier", "d_ff", None), "a tier without d_ff", ["TIER-1.3"]),
                ("duplicate-names", ("tier", "name", "tier_0"), "two tiers named tier_0", ["TIER-1.1"]),
                ("bad-placement", ("tier", "placement", "SSD"), "placement SSD", ["TIER-1.3"]),
                ("heads", ("top", "n_heads", 3), "d_model 16 with 3 heads", ["TIER-1.1"]),
                ("d-model-too-large", ("top", "d_model", (1 << 17) + 1), "d_model = 2**17 + 1", ["TIER-1.5"]),
                ("seed-17-digits", ("router", "seed", "0x" + "1" * 17), "a config seed of 17 hex digits",
                 ["TIER-1.5", "HSER-4.1"])]
    for name, (where, key, val), why in [(n, s, w) for n, s, w, _ in bad_cfgs]:
        cfg = config()
        target = cfg if where == "top" else cfg["router"] if where == "router" else cfg["tiers"][1]
        if val is None:
            del target[key]
        else:
            target[key] = val
        cl = next(c for n, _, _, c in bad_cfgs if n == name)
        err(f"config-{name}", f"An invalid configuration ({why}) is rejected with E_CONFIG.", cl + ["TIER-1.1"],
            "E_CONFIG", cfg=cfg)
    # TIER-1.5: hidden_limbs in {1, 2, 3}, weight_limbs in {1, 2}. config-limbs-3 said hidden_limbs = 3 (2 weight
    # limbs) was invalid before three hidden limbs were allowed; the id now holds 3 + 3 limbs, still invalid.
    for name, (lx, lw), why in (("limbs-3", (3, 3), "3 + 3 limbs: |acc| could reach 2**17 * 2080768**2 ~ 2**58.98, "
                                 "beyond 2**53"),
                                ("limbs-4", (4, 2), "hidden_limbs = 4"),
                                ("weight-limbs-3", (2, 3), "weight_limbs = 3")):
        err(f"config-{name}", f"An invalid configuration ({why}) is rejected with E_CONFIG.",
            ["TIER-1.5", "HSER-3.2", "TIER-1.1"], "E_CONFIG", cfg=config(limbs=(lx, lw)))
    cfg = config()
    cfg["d_model"] = 16.0
    err("config-d-model-float", "d_model is the JSON number 16.0: JSON Schema counts it as an integer, TIER-1.1 does "
        "not; rejected with E_CONFIG.", ["TIER-1.1"], "E_CONFIG", cfg=cfg)
    cfg = config()
    cfg["tiers"][0]["groups"] = 2.0
    err("config-groups-float", "tiers[0].groups is the JSON number 2.0: rejected with E_CONFIG.", ["TIER-1.1"],
        "E_CONFIG", cfg=cfg)
    # Several faults at once: the first in the order of HSER-10.3 is reported.
    bad_cfg = config()
    bad_cfg["router"]["k_group"] = 0
    w_nan = weights(main)
    w_nan["router_group.1"][0, 0] = np.nan
    a = h.copy()
    a[0, 0] = np.nan
    err("order-config-first", "An invalid configuration (k_group = 0), a NaN router weight, a bad seed, an unknown "
        "tier and NaN hidden states: the configuration is reported.", ["HSER-10.3"], "E_CONFIG", hidden=a,
        tierset=[9], seed=-1, w=w_nan, cfg=bad_cfg)
    err("order-weights-before-seed", "A NaN router weight, a bad seed, an unknown tier and rank-1 hidden states: the "
        "weights are reported.", ["HSER-10.3", "HSER-1.4"], "E_WEIGHTS", hidden=h[0], tierset=[9], seed=-1, w=w_nan)
    err("order-weights-before-tierset", "A NaN router weight and an empty TierSet: the weights are reported.",
        ["HSER-10.3", "HSER-1.4"], "E_WEIGHTS", tierset=[], w=w_nan)
    err("order-weights-before-hidden", "A NaN router weight and NaN hidden states: the weights are reported.",
        ["HSER-10.3", "HSER-1.4"], "E_WEIGHTS", hidden=a, w=w_nan)
    w_miss = weights(main)
    del w_miss["router_expert.2"]
    err("order-missing-weights-before-dtype", "A missing router tensor and int32 hidden states: the weights are "
        "reported.", ["HSER-10.3", "HSER-1.4"], "E_WEIGHTS", hidden=(h * 10).astype(np.int32), w=w_miss)
    err("order-seed-first", "Bad seed, empty TierSet and rank-1 hidden states: the seed is reported.", ["HSER-10.3"],
        "E_SEED", hidden=h[0], tierset=[], seed=-5)
    err("order-unknown-before-duplicate", "TierSet [9, 9]: unknown is reported before duplicate.", ["HSER-10.3"],
        "E_UNKNOWN_TIER", tierset=[9, 9])
    err("order-empty-before-shape", "Empty TierSet and rank-3 hidden states: the TierSet is reported.", ["HSER-10.3"],
        "E_EMPTY_TIERSET", hidden=h[None], tierset=[])
    err("order-duplicate-before-shape", "Duplicate tier and the wrong width: the TierSet is reported.", ["HSER-10.3"],
        "E_DUPLICATE_TIER", hidden=h[:, :3].copy(), tierset=[2, 2])
    err("order-shape-before-dtype", "int32 hidden states of the wrong width: the shape is reported.", ["HSER-10.3"],
        "E_SHAPE", hidden=(h[:, :15] * 10).astype(np.int32))
    a = h.astype(np.complex64)
    a[0, 0] = np.nan
    err("order-dtype-before-finiteness", "complex64 hidden states holding a NaN: the type is reported.",
        ["HSER-10.3"], "E_DTYPE", hidden=a)
    return out


def three_limb_cases() -> list[CaseSpec]:
    """hidden_limbs = 3 (TIER-1.5, HSER-2.3, HSER-2.4, HSER-3.2): heavy-tailed tokens with 3 + 1 and 3 + 2 limbs,
    and tokens on which 3 + 2 and 2 + 2 limbs choose different experts."""
    out = []
    hh = heavy("route.limbs", (16, 16))                   # the tokens of route/limbs-h{1,2}-w{1,2}
    for lw in (1, 2):
        cfg = config(limbs=(3, lw))
        out.append(route_case(f"limbs-h3-w{lw}", f"The heavy-tailed tokens of route/limbs-h2-w{lw} routed with 3 hidden "
                              f"limbs (Q = round_half_even(y * 2**14), |Q| <= 2080768) and {lw} weight limb(s).",
                              ["HSER-2.3", "HSER-2.4", "HSER-2.5", "HSER-3.2", "TIER-1.5"] + ROUTE_CLAUSES[:4],
                              cfg, hh, w=weights(cfg)))
    # A deterministic pool searched for tokens whose route changes with the third hidden limb.
    pool = heavy("route.limbs3.pool", (20000, 16))
    c2, c3 = config(limbs=(2, 2)), config(limbs=(3, 2))
    w = weights(c3)
    r2, r3 = (reference_route(c, pool, w, [0, 1, 2], 0) for c in (c2, c3))
    moved = np.flatnonzero(np.any([(r2[k] != r3[k]).any(axis=1) for k in ("tier", "group", "expert")], axis=0))
    pick = np.concatenate([moved[:8], np.setdiff1d(np.arange(4), moved)])
    h = pool[pick]
    n_moved = min(len(moved), 8)

    def sets(o, i):
        return {(int(a), int(b), int(c)) for a, b, c in zip(o["tier"][i], o["group"][i], o["expert"][i])}

    def check(o):
        two = reference_route(c2, h, w, [0, 1, 2], 0)
        for i in range(len(h)):
            same = all((two[k][i] == o[k][i]).all() for k in ("tier", "group", "expert"))
            assert same == (i >= n_moved), f"token {i}: 2 + 2 and 3 + 2 limbs should {'' if i >= n_moved else 'not '}agree"
        assert sum(sets(two, i) != sets(o, i) for i in range(n_moved)) >= 3, "3 + 2 should change some active sets"
    out.append(route_case("limbs-h3-vs-h2", f"Heavy-tailed tokens (a ratio of uniforms, two outlier channels) chosen "
                          f"from a pool of 20,000 because 3 + 2 limbs route them differently from 2 + 2: the first "
                          f"{n_moved} tokens change their experts or their order (some the active set itself), the last "
                          f"{len(h) - n_moved} route as with 2 + 2. An implementation that quantizes hidden states with "
                          "two limbs whatever the config says fails here.",
                          ["HSER-2.3", "TIER-1.5", "HSER-2.7", "HSER-3.2"] + ROUTE_CLAUSES, c3, h, w=w, check=check))
    return out


def _assert(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def _rows_equal(rows):
    def check(o):
        for k, v in o.items():
            if k == "tier_set":                                   # not per token
                continue
            for r in rows[1:]:
                assert v[r].tobytes() == v[rows[0]].tobytes(), f"{k}: row {r} differs from row {rows[0]}"
    return check


def cases() -> list[CaseSpec]:
    return (route_cases() + dtype_cases() + shape_cases() + seed_cases() + tierset_cases() + error_cases()
            + three_limb_cases())
