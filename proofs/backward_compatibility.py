"""Routing under a TierSet T does not change when tiers outside T are added (paper section 7).

The premise is not assumed: claim expansion_operator_preserves_old_tiers runs the expansion operator as
implemented (``lite_llm.reference.expand.expand_checkpoint``) on a saved checkpoint and checks that it
writes no old shard (byte-identical, same inode and mtime), carries the old manifest entries unchanged,
appends the new tier, and that loading and a forward pass under every old TierSet give the same tensors,
logits and routing records bit for bit. An operator that rewrites an old shard fails that claim.

With exclusion (TIER-2.6) the argument is short and holds in binary32/binary64 arithmetic, not only in
real numbers: adding tiers appends them (TIER-1.6) and leaves existing rows untouched, so the level-1
candidate list (T in ascending id order), each candidate's logit (its own row, its own quantization
scale, HSER-2.6) and its tie key (a function of its *id*, HSER-4.5) are the same terms, and every later
operation is a correctly rounded IEEE operation (a function) of those operands. Levels 2 and 3 read only
the chosen tiers' own routers.

The paper instead *masks* the tier scores (section 5.2). The claims below show, on Z3's binary32
theory and then through the reference functions, what masking with -inf does: it puts the excluded
tiers into the candidate list, which changes the shape of the tree sum (different bits), and when
k_tier exceeds |T| it lets top-k pick an excluded tier, and which one depends on how many tiers exist.
"""
from __future__ import annotations

import time

import numpy as np
import z3

from . import smt
from .certificate import COUNTEREXAMPLE, PROVED, Certificate, Claim, finish, fp_bits, z3_claim

NAME = "backward_compatibility"
TITLE = "Adding tiers outside the TierSet leaves routing bit-identical (exclusion, not -inf masking)"
CLAUSES = ["EXP-1.3", "EXP-2.1", "EXP-2.2", "TIER-1.6", "TIER-2.5", "TIER-2.6", "HSER-2.6", "HSER-4.5", "HSER-5.3", "HSER-6.5", "HSER-6.6",
           "HSER-7.1", "HSER-7.4"]
PAPER = "section 7 (Theorem: backward compatibility) and section 5.2 (mask to T)"
BV = z3.BitVecSort(64)


def operands_claim(rows_untouched: bool = True) -> Claim:
    """The level-1 operands under T are the same before and after tiers are appended.

    ``rows_untouched=False`` drops TIER-1.6's premise (existing rows unchanged); the claim then fails,
    which shows the premise is what the proof uses.
    """
    Row = z3.DeclareSort("Row")
    Logit = z3.DeclareSort("Logit")
    cand = z3.Function("candidate", z3.IntSort(), BV)           # i-th smallest tier id of T (TIER-2.5)
    row_old = z3.Function("row_before", BV, Row)                # level-1 router rows, by tier id
    row_new = z3.Function("row_after", BV, Row)
    logit = z3.Function("logit", Row, Logit)                    # quantize the row, exact dot, scale (HSER-2, 3)
    s, m_old, m_new = z3.BitVecs("s M M_after", 64)
    i, n = z3.Ints("i n")
    t = cand(i)
    premises = [0 <= i, i < n, z3.ULT(t, m_old), z3.ULT(m_old, m_new)]
    if rows_untouched:
        premises.append(z3.Implies(z3.ULT(t, m_old), row_new(t) == row_old(t)))   # TIER-1.6, at the candidate
    return z3_claim("level1_operands_identical", "For every TierSet T of an M-tier model and every candidate "
                    "position i < |T|: after tiers are appended (M' > M), the i-th level-1 candidate is the same "
                    "tier t (the candidate list is T in ascending id order, TIER-2.5, which does not mention M), "
                    "and its logit is computed from the same row (its own row and its own quantization scale, "
                    "HSER-2.6). Its tie key mix64(mix64(s ^ word(1, 0, 0)) ^ t) is a function of s and t alone "
                    "(HSER-4.5). So the level-1 softmax and top-k, IEEE operations on these operands, give the "
                    "same bits; levels 2 and 3 read only the chosen tiers' own routers.",
                    premises, logit(row_new(t)) == logit(row_old(t)),
                    method="Z3 (UF + bit-vectors): the logit of the i-th candidate, with TIER-1.6 (existing rows "
                           "untouched) as a ground instance at that candidate")


def exclusion_sum(e):
    return smt.tree_sum(e, smt.NEG_ZERO32)


def realize_exp(targets: list[float]) -> list[np.float32] | None:
    """binary32 inputs t in [-87, 0] with canonical_exp(t) == each target exactly, or None."""
    from lite_llm.reference.cexp import canonical_exp

    out = []
    for e in targets:
        guess = np.float32(np.log(np.float64(e)))
        bits = guess.view(np.uint32).astype(np.int64) + np.arange(-1 << 14, 1 << 14)
        ts = bits.astype(np.uint32).view(np.float32)
        ts = ts[(ts <= 0) & (ts >= -87)]
        hit = ts[canonical_exp(ts) == np.float32(e)]
        if hit.size == 0:
            return None
        out.append(hit[np.argmin(np.abs(hit - guess))])
    return out


def masking_claim(max_tries: int = 20) -> Claim:
    """-inf masking (paper) vs exclusion (spec): a binary32 model where the level-1 sums differ."""
    from lite_llm.reference.softmax import softmax

    one = z3.FPVal(1.0, smt.F32)
    e2, e3 = z3.FPs("e2 e3", smt.F32)
    half = z3.FPVal(0.5, smt.F32)
    # T = {0, 2, 3} of tiers 0..3; tier 0 has the largest logit (e0 = 1), tier 1 is excluded.
    masked = smt.tree_sum([one, smt.POS_ZERO32, e2, e3])          # exp(-inf - m) = +0.0 sits at position 1
    excluded = exclusion_sum([one, e2, e3])
    premises = [z3.fpGT(e2, half), z3.fpLEQ(e2, one), z3.fpGT(e3, half), z3.fpLEQ(e3, one)]
    t0 = time.perf_counter()
    search = z3.Solver()
    search.add(*premises, masked != excluded)
    c = None
    for attempt in range(max_tries):
        if search.check() != z3.sat:
            break
        m = search.model()
        vals = [np.uint32(fp_bits(m.eval(v))).view(np.float32) for v in (e2, e3)]
        ts = realize_exp(vals)
        if ts is None:                                   # not an output of canonical_exp: ask for another
            search.add(z3.Or(e2 != m.eval(e2), e3 != m.eval(e3)))
            continue
        pinned = [e2 == m.eval(e2), e3 == m.eval(e3)]
        c = z3_claim("masking_equals_exclusion", "", premises + pinned, masked == excluded,
                     expected=COUNTEREXAMPLE, source="paper", show={"e2": e2, "e3": e3, "masked sum": masked,
                                                                    "excluded sum": excluded})
        z = np.array([[0.0, float(ts[0]), float(ts[1])]])                    # logits of tiers 0, 2, 3
        zm = np.array([[0.0, -np.inf, float(ts[0]), float(ts[1])]])        # tiers 0..3, tier 1 masked
        p_excl, p_mask = softmax(z)[0], softmax(zm)[0][[0, 2, 3]]
        differs = p_excl.view(np.uint32) != p_mask.view(np.uint32)
        c.model.update({
            "logits of tiers 0, 2, 3 (binary64)": [0.0, float(ts[0]), float(ts[1])],
            "reference softmax, exclusion": [f"{x!r} (0x{int(b):08x})" for x, b in
                                             zip(p_excl.tolist(), p_excl.view(np.uint32))],
            "reference softmax, -inf masking": [f"{x!r} (0x{int(b):08x})" for x, b in
                                                zip(p_mask.tolist(), p_mask.view(np.uint32))]})
        c.details = {"models tried": attempt + 1, "probabilities that differ": int(differs.sum())}
        if not differs.any():              # the reference disagrees with the model: report it, do not hide it
            c.result = "unknown"
            c.details["reason"] = "the Z3 model, realized through the reference softmax, gives equal bits"
        break
    if c is None:
        c = Claim("masking_equals_exclusion", "", "paper", COUNTEREXAMPLE, "unknown", "", search.sexpr(), 0.0,
                  None, {"reason": f"no model realizable through canonical_exp in {max_tries} tries"})
    c.statement = ("Masking the excluded tiers with -inf (paper 5.2) gives the same level-1 bits as excluding "
                   "them (TIER-2.6). With masking the candidate list is T_max in id order and an excluded tier "
                   "contributes exp(-inf - m) = +0.0 at its position; for T = {0, 2, 3} of 4 tiers the tree sum "
                   "becomes (e0 + 0) + (e2 + e3) instead of (e0 + e2) + (e3 + -0.0).")
    c.method = ("Z3 floating-point (binary32) finds e2, e3 in (0.5, 1]; each is then realized as canonical_exp of "
                "a binary32 logit difference (searched with lite_llm.reference.cexp) and both routings are run "
                "through lite_llm.reference.softmax.softmax")
    c.time_s = round(time.perf_counter() - t0, 6)
    return c


def appended_masking_claim(n: int = 3, max_appended: int = 5) -> Claim:
    """Masked tiers appended at the end do not change the sum of non-negative terms."""
    e = [z3.FP(f"e{i}", smt.F32) for i in range(n)]
    premises = [c for x in e for c in (z3.fpIsPositive(x), z3.Not(z3.fpIsInf(x)))]   # +0.0 or positive, finite
    base = exclusion_sum(e)
    goal = z3.And([exclusion_sum(e + [smt.POS_ZERO32] * k) == base for k in range(1, max_appended + 1)])
    return z3_claim("masking_appended_tiers_same_sum", f"Where the masked tiers all come after T's tiers (T = "
                    f"{{0 .. {n - 1}}}, 1 .. {max_appended} tiers appended), -inf masking does give the same tree "
                    "sum as exclusion: appending +0.0 terms to non-negative terms (subnormals included) changes no "
                    "bit. So masking's failures are the interleaved positions and top-k (the other claims), not "
                    "every appended tier.", premises, goal,
                    method="Z3 floating-point (binary32), SMT equality: the negation is unsat")


def masked_topk_claim(max_seed: int = 64) -> Claim:
    """With k_tier > |T|, -inf masking picks an excluded tier, and which one changes as tiers are added."""
    from lite_llm.reference.ranking import top_k
    from lite_llm.reference.seeds import level_seed, tie_keys

    t0 = time.perf_counter()
    found = None
    for s in range(max_seed):
        chosen = []
        for m in (2, 3):                                  # T = {0}; tier 1 exists, then tier 2 is appended
            z = np.array([[0.5] + [-np.inf] * (m - 1)])
            chosen.append(sorted(int(t) for t in top_k(z, tie_keys(level_seed(s, 1), m), 2)[0]))
        if chosen[0] != chosen[1]:
            keys = tie_keys(level_seed(s, 1), 3)
            found = {"seed": s, "TierSet": "{0}", "k_tier": 2, "tie keys of tiers 0, 1, 2":
                     [f"0x{int(k):016x}" for k in keys], "chosen with 2 tiers (masking)": chosen[0],
                     "chosen with 3 tiers (masking)": chosen[1], "chosen under the spec (HSER-5.3)": [0]}
            break
    return Claim("masked_topk_unchanged_by_expansion", "Under -inf masking, with T = {0} and k_tier = 2, the "
                 "chosen tiers stay the same when a tier is appended. Masked tiers all have score -inf, so the "
                 "second slot goes to the excluded tier with the smallest tie key, and a new tier can have a "
                 "smaller key. The spec takes all |T| < k_tier tiers and nothing else (HSER-5.3).", "paper",
                 COUNTEREXAMPLE, COUNTEREXAMPLE if found else "unknown",
                 "search over seeds 0.. with lite_llm.reference.ranking.top_k on masked scores",
                 "top_k([0.5, -inf], keys(2 tiers), 2) == top_k([0.5, -inf, -inf], keys(3 tiers), 2)",
                 round(time.perf_counter() - t0, 6), found)


def reference_router_claim(tokens: int = 256) -> Claim:
    """The reference router gives identical records for T before and after a tier is appended."""
    from lite_llm.reference.router import route
    from lite_llm.reference.router_weights import init_router_weights, quantize_router
    from lite_llm.spec.config import config_from_dict

    t0 = time.perf_counter()
    tiers = [{"name": "tier_a", "groups": 4, "experts_per_group": 4, "d_ff": 8},
             {"name": "tier_b", "groups": 8, "experts_per_group": 2, "d_ff": 8},
             {"name": "tier_c", "groups": 2, "experts_per_group": 8, "d_ff": 8}]
    new_tiers = [{"name": "tier_d", "groups": 16, "experts_per_group": 4, "d_ff": 8},
                 {"name": "tier_e", "groups": 1, "experts_per_group": 3, "d_ff": 8}]

    def cfg(ts):
        return config_from_dict({"spec_version": "0.1", "d_model": 48, "n_heads": 2, "tiers": ts,
                                 "router": {"k_tier": 2, "k_group": 2, "k_expert": 2, "hidden_limbs": 2,
                                            "weight_limbs": 2, "seed": 7}})

    old, new = cfg(tiers), cfg(tiers + new_tiers)
    h = np.random.default_rng(5).standard_normal((tokens, 48)).astype(np.float32)
    fields = ("tier", "group", "expert", "gate", "count", "tier_probs", "chosen_tiers", "group_probs",
              "chosen_groups", "expert_probs")
    bad = None
    checked = []
    for ts in ([0], [0, 2], [0, 1, 2], [1]):
        r_old = route(h, quantize_router(old, init_router_weights(old, 3)), ts)
        r_new = route(h, quantize_router(new, init_router_weights(new, 3)), ts)
        for f in fields:
            a, b = np.ascontiguousarray(getattr(r_old, f)), np.ascontiguousarray(getattr(r_new, f))
            same = a.shape == b.shape and a.tobytes() == b.tobytes()
            if not same:
                bad = {"TierSet": ts, "field": f}
                break
        checked.append(ts)
        if bad:
            break
    return Claim("reference_router_unchanged_by_expansion", f"The reference router gives bit-identical routing "
                 f"records (every field of HSER-9.3) for {tokens} tokens and TierSets {checked} before and after "
                 "two tiers are appended to a 3-tier model (weights from INIT, so existing tiers keep their "
                 "weights). A check that the implementation follows the argument, not a proof.", "spec", PROVED,
                 PROVED if bad is None else COUNTEREXAMPLE, "evaluation with lite_llm.reference.router.route",
                 "route(h, W_before, T) == route(h, W_after, T) bit for bit", round(time.perf_counter() - t0, 6),
                 bad)


# ---------------------------------------------------------------------------------------------
# The expansion operator as implemented (EXP-1.3, EXP-2.1, EXP-2.2)
# ---------------------------------------------------------------------------------------------

EXPAND_SEED, NEW_TIER_SEED = 21, 0xDEADBEEF


def small_config():
    """Three small tiers, two layers, k_tier = 2: the checkpoint the expansion claim saves and expands."""
    from lite_llm.spec.config import config_from_dict

    return config_from_dict({
        "spec_version": "0.1", "d_model": 8, "n_heads": 2, "n_layers": 2, "vocab_size": 16,
        "tiers": [{"name": f"tier_{i}", "groups": g, "experts_per_group": e, "d_ff": 8}
                  for i, (g, e) in enumerate(((2, 2), (3, 2), (2, 3)))],
        "router": {"k_tier": 2, "k_group": 2, "k_expert": 2, "hidden_limbs": 2, "weight_limbs": 2, "seed": 7}})


def file_state(d) -> dict:
    """name -> (bytes, inode, mtime_ns) of every file in a checkpoint folder."""
    from pathlib import Path

    out = {}
    for p in sorted(Path(d).iterdir()):
        st = p.stat()
        out[p.name] = (p.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


def forward_bits(d, tiers, tokens) -> dict:
    """The logits and every field of every layer's routing record of a forward under ``tiers``, as bytes,
    with the model loaded from the checkpoint at ``d`` (only the TierSet's shards are read, CKPT-5.3)."""
    import dataclasses

    from lite_llm.reference.checkpoint import load_checkpoint
    from lite_llm.reference.model import forward

    cfg, w = load_checkpoint(d, list(tiers))
    out = forward(cfg, w, tokens, list(tiers))
    bits = {"tiers of T in the config": [cfg.tiers[t] for t in tiers]}                      # EXP-2.1
    bits.update({f"tensor {n}": (a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes()) for n, a in sorted(w.items())})
    bits["logits"] = (out.logits.dtype.str, out.logits.shape, np.ascontiguousarray(out.logits).tobytes())
    for layer, r in enumerate(out.routes):
        for f in dataclasses.fields(r):
            a = np.asarray(getattr(r, f.name))
            bits[f"layer {layer} {f.name}"] = (a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes())
    return bits


def expansion_operator_claim() -> Claim:
    """Run lite_llm.reference.expand.expand_checkpoint on a saved checkpoint and compare before and after."""
    import itertools
    import json
    import tempfile
    from pathlib import Path

    from lite_llm.reference import expand
    from lite_llm.reference.checkpoint import MANIFEST, save_checkpoint
    from lite_llm.reference.weights import init_model_weights
    from lite_llm.spec.config import TierConfig
    from lite_llm.spec.errors import LiteLLMError

    t0 = time.perf_counter()
    cfg = small_config()
    new_tier = TierConfig("tier_new", groups=3, experts_per_group=2, d_ff=4, placement="NVMe")
    tokens = np.random.default_rng(3).integers(0, cfg.vocab_size, (2, 6))
    old_sets = [ts for r in range(1, cfg.n_tiers + 1) for ts in itertools.combinations(range(cfg.n_tiers), r)]
    bad = {}
    with tempfile.TemporaryDirectory(prefix="lite-llm-expand-proof-") as tmp:
        d = Path(tmp) / "ckpt"
        save_checkpoint(d, cfg, init_model_weights(cfg, EXPAND_SEED))
        files = file_state(d)
        manifest = json.loads(files[MANIFEST][0])
        before = {ts: forward_bits(d, ts, tokens) for ts in old_sets}
        expand.expand_checkpoint(d, new_tier, NEW_TIER_SEED)              # the operator, as implemented
        files2 = file_state(d)
        manifest2 = json.loads(files2[MANIFEST][0])
        for name, (data, ino, mtime) in files.items():
            if name == MANIFEST:
                continue
            if name not in files2:
                bad.setdefault("old file removed", name)
            elif files2[name][0] != data:
                bad.setdefault("old shard rewritten (bytes differ)", name)
            elif files2[name][1:] != (ino, mtime):
                bad.setdefault("old shard written again (same bytes, new inode or mtime)", name)
        added = sorted(set(files2) - set(files))
        if len(added) != 1:
            bad["files added"] = added
        if manifest2.get("dense") != manifest["dense"]:
            bad["manifest dense entry changed"] = True
        if manifest2.get("tiers", [])[:cfg.n_tiers] != manifest["tiers"]:
            bad["manifest entries of the old tiers changed"] = [
                t["name"] for t, u in zip(manifest["tiers"], manifest2.get("tiers", [])) if t != u]
        if manifest2["config"]["tiers"][:cfg.n_tiers] != manifest["config"]["tiers"] or \
                len(manifest2["config"]["tiers"]) != cfg.n_tiers + 1:
            bad["config tiers not the old ones plus one appended"] = True
        for ts in old_sets:
            try:
                after = forward_bits(d, ts, tokens)
            except LiteLLMError as e:                                         # EXP-2.1: C' valid for T
                bad.setdefault("loading or forward fails under old TierSet",
                               {"TierSet": list(ts), "error": f"{e.code}: {type(e).__name__}"})
                continue
            diff = [k for k in before[ts] if after.get(k) != before[ts][k]]
            if diff:
                bad.setdefault("forward differs under old TierSet", {"TierSet": list(ts), "fields": diff[:6]})
        try:
            new_ok = bool(forward_bits(d, (cfg.n_tiers,), tokens))           # the new tier is routable
        except LiteLLMError as e:
            new_ok = False
            bad["new tier not loadable"] = f"{e.code}: {type(e).__name__}"
    t = round(time.perf_counter() - t0, 6)
    return Claim("expansion_operator_preserves_old_tiers", "The expansion operator as implemented "
                 "(lite_llm.reference.expand.expand_checkpoint), run on a saved 3-tier, 2-layer checkpoint to append "
                 "a fourth tier: every file of the old checkpoint other than the manifest is byte-identical and not "
                 "written again (same inode and mtime, EXP-1.3); exactly one file is added (the new tier's shard); "
                 "the manifest's dense entry, old tier entries and old tier configs are carried unchanged and the "
                 f"new tier is appended (TIER-1.6); loading under each of the {len(old_sets)} old TierSets gives the "
                 "same tier configs and tensors bit for bit (EXP-2.1), and a forward pass gives bit-identical logits "
                 "and routing records (every field, every layer) before and after (EXP-2.2). This derives backward compatibility from the "
                 "operator itself instead of assuming TIER-1.6.", "spec", PROVED,
                 PROVED if not bad and new_ok else COUNTEREXAMPLE,
                 "execution of the reference operator on a checkpoint in a temporary folder; files compared byte "
                 "for byte (plus inode and mtime), forward passes compared bit for bit",
                 "save(cfg, init(cfg, 21)); S0 = files, F0[T] = forward(load(T), tokens, T) for every T of ids "
                 "{0, 1, 2}; expand_checkpoint(ckpt, tier_new, 0xDEADBEEF); assert old files and manifest entries "
                 "unchanged and forward(load(T), tokens, T) == F0[T] bit for bit", t, bad or None,
                 {"old TierSets": [list(ts) for ts in old_sets], "tokens": list(map(list, tokens.tolist())),
                  "files compared": len(files) - 1})


def prove() -> Certificate:
    t0 = time.perf_counter()
    claims = [operands_claim(), expansion_operator_claim(), masking_claim(), appended_masking_claim(),
              masked_topk_claim(), reference_router_claim()]
    cert = Certificate(
        NAME, TITLE,
        "For every TierSet T, routing under T gives the same bits after tiers outside T are appended, in the "
        "spec's actual binary32/binary64 arithmetic: with exclusion (TIER-2.6) the level-1 candidates, their "
        "logits and their tie keys are unchanged, hence every IEEE operation on them. The expansion operator as "
        "implemented leaves every old shard and manifest entry untouched and gives bit-identical tensors, logits "
        "and routing records under every old TierSet of a saved checkpoint (EXP-1.3, EXP-2.1, EXP-2.2). The paper's -inf masking "
        "does not give this: it changes tree-sum bits when excluded tiers sit between included ones, and "
        "with k_tier > |T| it selects an excluded tier that depends on how many tiers exist.",
        CLAUSES, PAPER, claims,
        notes=["The paper's proof ('routing mask ignores absent tiers') is an argument in real arithmetic. In "
               "floating point a masked entry is not absent: it is a +0.0 term at its position in the tree sum, "
               "and a candidate for top-k.",
               "Masking is harmless for the sum only when all masked tiers come after T's tiers (claim "
               "masking_appended_tiers_same_sum): cumulative TierSets (TIER-3.2) are such prefixes, exclusive "
               "TierSets and arbitrary lists in general are not.",
               "The canonical exp of the masked entries is +0.0 (HSER-6.1 flushes t < -87), so even masking "
               "adds no NaN; the problem is the arithmetic's shape, not its values."],
        method=__doc__)
    return finish(cert, t0)
