"""Cases added to kill the mutants that survived the conformance suite (``scripts/mutation.py``, issue 11).

Each case checks behaviour that the spec text decides and that no earlier case pinned down; the
mutant it was written for is named in a comment (its key, ``module:operator#occurrence``, as in
``benchmarks/results/mutation-*.json``). The cases live in their levels' directories like every
other case; only their generator is shared.
"""
from __future__ import annotations

import numpy as np

from .draw import gauss
from .generate import CaseSpec, GeneratorError

F32 = np.float32


def _prescaled_rows(limbs: int, rows: int = 4, d: int = 16) -> np.ndarray:
    """Rows with absmax a < 2**-64 on which scaling by a factor other than a power of two before the
    reciprocal (HSER-2.3 step 1 scales by exactly 2**64) changes some integer: a deterministic search."""
    rng = np.random.default_rng(20261202 + limbs)
    scale = F32(2.0 ** (7 * (limbs - 1)))

    def q(x: np.ndarray, f: float) -> np.ndarray:
        a = np.max(np.abs(x), axis=1)
        xs, a_s = x * F32(f), a * F32(f)
        return np.rint(((xs * (F32(127.0) / a_s)[:, None]) * scale))

    out = []
    while len(out) < rows:
        x = (rng.uniform(-1, 1, (256, d)) * 2.0 ** int(rng.integers(-140, -70))).astype(F32)
        differ = (q(x, 2.0 ** 64) != q(x, 3.0 ** 64)).any(axis=1)
        out.extend(x[differ][: rows - len(out)])
    return np.stack(out).astype(F32)


def routing_cases() -> list[CaseSpec]:
    from .gen_routing import config, route_case, weights

    out = []
    # optimized/quantize.py:core/NumberReplacer#16 (2.0 ** 64 -> 3.0 ** 64 in step 1's prescale)
    for limbs in (1, 2):
        out.append(CaseSpec(
            f"routing/op/quantize-prescale-tiny-rows-limbs{limbs}",
            f"Rows whose absmax is below 2**-64 ({limbs} limb(s)): HSER-2.3 scales them by exactly 2**64 before "
            "the reciprocal, so Q is that of the row times 2**64; a prescale that is not a power of two rounds "
            "x * f and a * f and changes some integers of every row here.",
            ["HSER-2.1", "HSER-2.3"], "quantize", {"limbs": limbs}, {"x": _prescaled_rows(limbs)}))
    # optimized/quantize.py:core/NumberReplacer#11 (x.new_zeros(x.shape[-1]): absmax of the wrong length when
    # rows are empty)
    out.append(CaseSpec(
        "routing/op/quantize-width0", "Three rows without elements (d = 0): a = 0 for each (HSER-2.1), so absmax "
        "and scale hold three zeros and Q is (3, 0).", ["HSER-2.1", "HSER-2.2", "HSER-2.5"], "quantize",
        {"limbs": 2}, {"x": np.zeros((3, 0), F32)}))
    # optimized/validate.py:core/ReplaceComparisonOperator_NotEq_IsNot#0 (h.shape[1] is not d_model: true
    # for every int above 256, which CPython does not share)
    wide = config(d=384)
    out.append(route_case(
        "d-model-384", "Four tokens with d_model = 384 (above the integers a Python implementation may find "
        "identical by `is`): shape (T, d_model) is accepted (HSER-1.1) and routed like any other.",
        ["HSER-1.1", "HSER-7.1", "HSER-8.1", "HSER-9.3"], wide, gauss("mutants.route.d384", (4, 384)),
        w=weights(wide)))
    # optimized/validate.py:core/ReplaceComparisonOperator_NotEq_Lt#1 (h.shape[1] < d_model: only too narrow
    # hidden states rejected)
    main = config()
    out.append(CaseSpec(
        "routing/errors/shape-width-17", "Hidden states 17 wide for d_model 16: too wide is rejected like too "
        "narrow (routing/errors/shape-width).", ["HSER-1.1", "HSER-10.1", "HSER-10.2"], "route",
        {"tierset": [0, 1, 2], "seed": 0}, {"hidden": gauss("mutants.route.width17", (4, 17)), **weights(main)},
        config=main, error="E_SHAPE"))
    return out


def model_cases() -> list[CaseSpec]:
    from .gen_layer import model_config
    from .gen_model import forward_case, model_weights

    small = model_config(tiers=((1, 2, 2), (2, 1, 2)), k=(1, 1, 1), d=8, layers=1, vocab=8)
    # optimized/model.py:core/NumberReplacer#51 and #53 (torch.empty((-1, ...)) on the B = 0 path)
    return [forward_case("forward-empty-batch", "A batch of zero sequences of 5 tokens, shape (0, 5): an integer "
                         "array of shape (B, T) (MODEL-1.1 rejects no B), so logits (0, 5, V), router inputs (0, d) "
                         "and empty routing records.", ["MODEL-1.1", "MODEL-2.6"], small, model_weights(small), (0, 5))]


def param_cases() -> list[CaseSpec]:
    from .gen_layer import model_config

    # reference/params.py:core/ReplaceBinaryOperator_Add_BitXor#13 (L * c_dense ^ io_active: equal to the sum
    # when the two share no bit, as in every power-of-two-sized config of gen_model)
    cfg = model_config(tiers=((2, 3, 6), (3, 2, 10)), k=(1, 2, 1), d=12, layers=3, vocab=40)
    return [CaseSpec("model/params-odd-sizes", "Parameter accounting of a model with d_model 12, vocabulary 40 and "
                     "3 layers: sizes that are not powers of two, so the terms of each sum share bits.",
                     ["PARAM-2.1", "PARAM-2.2", "PARAM-2.3", "PARAM-3.1", "PARAM-3.2", "PARAM-3.3", "PARAM-3.4",
                      "PARAM-4.1"], "param_report", {}, {}, config=cfg)]


def selection_cases() -> list[CaseSpec]:
    from .gen_selection import budget_inputs

    # reference/selection.py:core/ReplaceBinaryOperator_LShift_Sub#1 and core/ReplaceBinaryOperator_Sub_BitXor#0
    # (the id-tuple tie break): {0, 3} and {1, 2} tie on every sum and on size; (0, 3) < (1, 2), although the
    # subset mask of {1, 2} (6) is below that of {0, 3} (9); with five tiers a bit-reversed mask built with
    # shifts M ^ (1 - t) would weigh tier 1 above tier 0
    def check(o):
        if list(np.asarray(o["tiers"]).tolist()) != [0, 3]:
            raise AssertionError(f"expected [0, 3], got {o['tiers']}")

    out = []
    for m, extra in ((4, ""), (5, " A fifth tier needs more memory than mu.")):
        u = [1, 2, 3, 4, 100][:m]
        out.append(CaseSpec(
            f"selection/budget-lexicographic-not-mask-order-{m}", f"{m} tiers, utility = memory = {tuple(u)}, latency "
            "1 each, tau = 2, mu = 5: {0, 3} and {1, 2} are the best feasible TierSets, equal in utility, latency, "
            "memory and size; the lexicographically smaller id tuple (0, 3) wins (SEL-2.3), whatever order the "
            f"subsets are enumerated in.{extra}", ["SEL-2.2", "SEL-2.3", "SEL-2.4", "TIER-3.4"], "select_budget", {},
            budget_inputs(u, [1] * m, u, 2, 5), check=check))
    return out


def loss_cases() -> list[CaseSpec]:
    from .gen_loss import aux_case, records
    from .gen_routing import config, weights

    # reference/aux_loss.py:core/ReplaceContinueWithBreak#0 (a tier of the TierSet no token chose ends the loop
    # over tiers instead of being skipped)
    cfg = config(tiers=((2, 4), (4, 2), (3, 3)), k=(2, 2, 1))
    w = weights(cfg, seed=40)
    v = w["router_tier.1"]
    w["router_tier.0"] = (-4 * v).astype(F32)                      # tier 0's logit is below the others'
    h = (np.abs(gauss("mutants.loss.h", (16, 16))) * np.sign(v)).astype(F32)
    rec = records(cfg, [h], [0, 1, 2], w=[w])
    if (rec["route.0.chosen_tiers"] == 0).any() or not (rec["route.0.chosen_tiers"] == 2).any():
        raise GeneratorError("loss/aux-first-tier-unchosen: tier 0 is chosen, or tier 2 is not")
    return [aux_case("aux-first-tier-unchosen", "No token chooses tier 0 (its router row points away from every "
                     "token), tiers 1 and 2 are chosen: tier 0 contributes no level-2 or level-3 router, and the "
                     "routers of tiers 1 and 2 still count.", ["AUX-1.2", "AUX-1.3"], cfg, rec, [0, 1, 2])]


def checkpoint_cases() -> list[CaseSpec]:
    import struct

    from .gen_checkpoint import fresh, header_of, load_case, manifest, replace_shard, shard, with_header, \
        write_manifest

    out = []

    def err(name, desc, clauses, d, code):
        out.append(load_case(f"load-errors/{name}", desc, clauses + ["CKPT-7.1"], d, error=code))

    # reference/checkpoint.py:core/ReplaceComparisonOperator_Gt_Is#1, optimized/checkpoint.py:core/
    # ReplaceBinaryOperator_Add_Mod#2 (8 + n > size)
    d = fresh("mutants-header-beyond-file")
    data = shard(d, "tier_b").read_bytes()
    replace_shard(d, "tier_b", struct.pack("<Q", len(data)) + data[8:])
    err("header-length-beyond-file", "Tier 1's shard declares a header as long as the whole file (under the "
        "safetensors limit): the header cannot fit, the file is truncated (hash and size recorded).",
        ["CKPT-2.3", "CKPT-5.4"], d, "E_CKPT_TRUNCATED")
    # reference/checkpoint.py:core/ReplaceBinaryOperator_Sub_FloorDiv#3, optimized/checkpoint.py:core/
    # ReplaceBinaryOperator_Sub_Div#4 (the count of trailing bytes divided by the end of the last tensor, 0 here)
    d = fresh("mutants-empty-header-trailing")
    data = shard(d, "tier_a").read_bytes()
    replace_shard(d, "tier_a", with_header(data, {}))
    err("bytes-after-empty-header", "Tier 0's shard has a header without tensors followed by its old data: every "
        "byte after the header follows the last tensor (there is none), a header error (hash and size recorded).",
        ["CKPT-2.3", "CKPT-5.4"], d, "E_CKPT_HEADER")
    # optimized/checkpoint.py:core/ReplaceComparisonOperator_NotEq_Gt#12 (shape compared with > only)
    d = fresh("mutants-shape-permuted")
    found = None
    for label in ("dense", "tier_a", "tier_b", "tier_c"):
        h = header_of(shard(d, label).read_bytes())
        found = found or next(((label, k) for k in sorted(h) if k != "__metadata__"
                               and sorted(h[k]["shape"]) < h[k]["shape"]), None)
    label, name = found
    data = shard(d, label).read_bytes()
    h = header_of(data)
    h[name] = {**h[name], "shape": sorted(h[name]["shape"])}
    replace_shard(d, label, with_header(data, h))
    err("header-shape-permuted", f"The header of shard {label} gives {name} its dimensions in ascending order, "
        f"{h[name]['shape']}: the same size, so the offsets fit, and smaller than the manifest's shape: a "
        "well-formed header that disagrees with the manifest (hash and size recorded).",
        ["CKPT-5.4", "CKPT-2.3", "CKPT-1.3"], d, "E_CKPT_MISMATCH")
    # reference/checkpoint.py:core/NumberReplacer#29 (U32 item size) and #12 (I8 item size)
    for dtype, scale in (("U32", 1), ("I8", 4)):
        d = fresh(f"mutants-header-{dtype.lower()}")
        data = shard(d, "dense").read_bytes()
        h = header_of(data)
        first = sorted(k for k in h if k != "__metadata__")[0]
        shape = h[first]["shape"][:-1] + [h[first]["shape"][-1] * scale]
        h[first] = {**h[first], "dtype": dtype, "shape": shape}
        replace_shard(d, "dense", with_header(data, h))
        err(f"header-dtype-{dtype.lower()}", f"The dense shard's header declares {first} as {dtype} of shape {shape}: "
            f"{dtype}'s element size ({4 // scale} bytes) makes the offsets fit, so the header is well-formed and "
            "disagrees with the manifest's F32 (hash and size recorded).", ["CKPT-5.4", "CKPT-2.3", "CKPT-1.3"], d,
            "E_CKPT_MISMATCH")
    # reference/checkpoint.py:core/ReplaceComparisonOperator_NotEq_Lt#1 (more manifest tiers than config tiers)
    d = fresh("mutants-extra-tier")
    m = manifest(d)
    m["tiers"].append({**m["tiers"][-1], "id": len(m["tiers"]), "name": "tier_d"})
    write_manifest(d, m)
    err("manifest-extra-tier", "The manifest lists four tier entries, its config three.", ["CKPT-3.5", "CKPT-3.4"], d,
        "E_CKPT_MISMATCH")
    # optimized/checkpoint.py:core/ReplaceComparisonOperator_NotEq_Lt#0 (version < SCHEMA_VERSION: a missing
    # version, None, cannot be compared)
    d = fresh("mutants-no-schema-version")
    m = manifest(d)
    m.pop("schema_version")
    write_manifest(d, m)
    err("manifest-without-schema-version", "The manifest has no schema_version.", ["CKPT-3.1", "CKPT-3.2"], d,
        "E_CKPT_SCHEMA")
    # reference/checkpoint.py:core/ReplaceTrueWithFalse#6 (mkdir(exist_ok=False): an existing directory refused)
    from .gen_checkpoint import SCRATCH, ckpt_config, ckpt_weights

    cfg = ckpt_config()
    target = SCRATCH / "mutants-save-into-existing"
    target.mkdir()
    (target / "README.txt").write_text("a directory that exists and holds no manifest\n")
    out.append(CaseSpec("checkpoint/save-into-existing-directory", "Save into a directory that exists and holds a "
                        "file but no manifest: only a manifest makes a save refuse (CKPT-4.4); the checkpoint is "
                        "written next to the file, which is left as it was.", ["CKPT-4.4", "CKPT-4.2"],
                        "save_checkpoint", {}, {"checkpoint": target, **ckpt_weights(cfg)}, config=cfg,
                        writable=("checkpoint",)))
    return out


def cases() -> list[CaseSpec]:
    return routing_cases() + model_cases() + param_cases() + selection_cases() + loss_cases() + checkpoint_cases()
