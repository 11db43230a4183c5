"""A third implementation of the routing level, written from the spec text, with bugs to plant.

``PlantedRouter()`` is correct: it must pass every routing case it offers. ``PlantedRouter("bug")``
plants one of the mistakes an implementer plausibly makes (BUGS); the conformance suite must catch
each of them, in the cases designed for it. It is an in-process adapter (CONF-3.1): ``run(request)``
with one ``op_*`` method per operation. Per-token loops, plain NumPy: clarity over speed.
"""
from __future__ import annotations

import re
from fractions import Fraction

import numpy as np

from lite_llm.spec.errors import (DTypeError, DuplicateTierError, EmptyTierSetError, NonFiniteError,
                                  RouterWeightsError, SeedError, ShapeError, UnknownTierError)

F32, F64 = np.float32, np.float64
M64 = (1 << 64) - 1

BUGS = {
    "index-ties": "ties between equal logits go to the lower index, not the lower tie key (HSER-5.1)",
    "signed-keys": "tie keys compared as signed int64 instead of unsigned words (HSER-5.1)",
    "xor-seeds": "the paper's level seeds s ^ t ^ g instead of mix64(s ^ word(l, t, g)) (HSER-4.4)",
    "mask-inf": "tiers outside the TierSet masked with -inf instead of excluded (TIER-2.6)",
    "library-exp": "NumPy's exp instead of the canonical exp (HSER-6.2)",
    "fma-exp": "the canonical exp's Horner steps contracted into fused multiply-adds (OVW-2.2)",
    "float-logits": "logits from a binary32 dot product of the unquantized values (HSER-3.4)",
    "no-renormalise": "gates are the product of the raw level probabilities, not renormalised (HSER-8.1)",
    "plus-zero-padding": "tree sums padded with +0.0 instead of -0.0 (HSER-6.5)",
    "half-away-rounding": "quantization rounds halves away from zero (OVW-2.3)",
    "divide-quantize": "quantization divides every element by a, then multiplies by 127 (HSER-2.3 multiplies by 127 / a)",
    "per-matrix-scale": "router weights quantized with one scale per matrix, not per row (HSER-2.6)",
    "shape-before-seed": "hidden-state shape checked before the seed (HSER-10.3)",
    "rank-probabilities": "top-k ranks the binary32 probabilities instead of the logits (HSER-5.4)",
    "position-tie-keys": "level-1 tie keys from a tier's position in the TierSet, not its id (HSER-4.5)",
    "exp-constant-ulp": "the canonical exp's C5 one ulp too large (HSER-6.3)",
    "weights-last": "router weights checked after the hidden states, not before the seed (HSER-10.3)",
    "split-tie-half-up": "three hidden limbs: lo from round_half_even(Q / 128), the upper limbs from floor((Q + 64) / "
                         "128) (ties half up), so the limbs miss Q by 128 where Q = 256 m + 64 (HSER-2.4)",
}

EXP_CONSTANTS = ("LOG2E", "LN2_HI", "LN2_LO", "C7", "C6", "C5", "C4", "C3", "C2", "C1", "C0")
HEX_SEED = re.compile(r"0x[0-9a-fA-F]{1,16}")

LOG2E, LN2_HI, LN2_LO = (np.array([b], np.uint32).view(F32)[0] for b in (0x3FB8AA3B, 0x3F318000, 0xB95E8083))
COEFFS = [np.array([b], np.uint32).view(F32)[0] for b in
          (0x39500D01, 0x3AB60B61, 0x3C088889, 0x3D2AAAAB, 0x3E2AAAAB, 0x3F000000, 0x3F800000, 0x3F800000)]


def fma32(a, b, c) -> F32:
    """round_to_binary32(a * b + c) with one rounding, computed exactly with fractions."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    guess = F32(float(exact))
    cands = [np.nextafter(guess, F32(-np.inf)), guess, np.nextafter(guess, F32(np.inf))]
    cands = [x for x in cands if np.isfinite(x)]
    dist = [abs(Fraction(float(x)) - exact) for x in cands]
    best = min(dist)
    ties = [x for x, dd in zip(cands, dist) if dd == best]
    return ties[0] if len(ties) == 1 else next(x for x in ties if int(np.array([x]).view(np.uint32)[0]) % 2 == 0)


class PlantedRouter:
    """The routing level from the spec text; ``bug`` (a key of BUGS) plants one mistake."""

    operations = {"route", "quantize", "logits", "mix64", "level_seed", "tie_keys", "canonical_exp", "tree_sum",
                  "softmax", "top_k", "renormalise"}

    def __init__(self, bug: str | None = None, constant: tuple[str, bool] = ("C5", True)):
        """``constant``: for the bug exp-constant-ulp, which constant of HSER-6.3 moves one ulp, and up or down."""
        assert bug is None or bug in BUGS, bug
        self.bug = bug
        self.name = f"planted:{bug or 'none'}"
        self.consts = [LOG2E, LN2_HI, LN2_LO, *COEFFS]
        if bug == "exp-constant-ulp":
            i = EXP_CONSTANTS.index(constant[0])
            self.consts[i] = np.nextafter(self.consts[i], F32(np.inf) if constant[1] else F32(-np.inf))
            self.name += f":{constant[0]}{'+' if constant[1] else '-'}"

    def run(self, req):
        with np.errstate(over="ignore", invalid="ignore"):
            return getattr(self, f"op_{req.operation}")(req)

    # --- the pieces ------------------------------------------------------------------------------
    @staticmethod
    def mix64(x: int) -> int:
        x &= M64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
        return x ^ (x >> 31)

    def level_seed(self, s: int, level: int, t: int = 0, g: int = 0) -> int:
        if self.bug == "xor-seeds":
            return s ^ t ^ g
        return self.mix64(s ^ ((level << 62) | (t << 32) | g))

    def key(self, lseed: int, j: int) -> int:
        return self.mix64(lseed ^ j)

    def cexp(self, t: F32) -> F32:
        t = F32(t)
        if self.bug == "library-exp":
            return F32(np.exp(t))
        if t < F32(-87):
            return F32(0)
        log2e, hi, lo, *coeffs = self.consts
        n = np.rint(t * log2e)
        r = (t - n * hi) - n * lo
        p = coeffs[0]
        for c in coeffs[1:]:
            p = fma32(p, r, c) if self.bug == "fma-exp" else p * r + c
        return F32(np.ldexp(p, int(n)))

    def tree_sum(self, v) -> F32:
        v = [F32(x) for x in v]
        pad = F32(0.0) if self.bug == "plus-zero-padding" else F32(-0.0)
        if not v:
            v = [pad]                                   # the empty sum (HSER-6.5)
        while len(v) & (len(v) - 1):
            v.append(pad)
        while len(v) > 1:
            v = [v[i] + v[i + 1] for i in range(0, len(v), 2)]
        return v[0]

    def softmax(self, z) -> np.ndarray:
        m = max(z)
        e = [F32(0) if (x - m) < -87 else self.cexp(F32(x - m)) for x in z]
        s = self.tree_sum(e)
        return np.array([x / s for x in e], F32)

    def quantize(self, x: np.ndarray, limbs: int) -> tuple[np.ndarray, F32, F64]:
        x = np.asarray(x, F32)
        a = F32(np.max(np.abs(x))) if x.size else F32(0)
        if a == 0:
            return np.zeros(x.shape, np.int64), a, F64(0)
        pre = F32(2.0 ** 64) if a < F32(2.0 ** -64) else F32(1)             # HSER-2.3 step 1
        y = (x / a) * F32(127) if self.bug == "divide-quantize" else (x * pre) * (F32(127) / (a * pre))
        y = y * F32(128 ** (limbs - 1))
        q = np.sign(y) * np.floor(np.abs(y) + F32(0.5)) if self.bug == "half-away-rounding" else np.rint(y)
        return q.astype(np.int64), a, F64(a) / F64(127 * 128 ** (limbs - 1))

    def ranking(self, z, keys, probs=None) -> list[int]:
        score = probs if self.bug == "rank-probabilities" and probs is not None else z
        if self.bug == "index-ties":
            return sorted(range(len(z)), key=lambda j: (-score[j], j))
        if self.bug == "signed-keys":
            return sorted(range(len(z)), key=lambda j: (-score[j], keys[j] - (1 << 64) if keys[j] >> 63 else keys[j]))
        return sorted(range(len(z)), key=lambda j: (-score[j], keys[j]))

    def renorm(self, p) -> list:
        if self.bug == "no-renormalise":
            return [F32(x) for x in p]
        s = self.tree_sum(p)
        if s == 0:
            return [F32(1) / F32(len(p)) for _ in p]    # HSER-8.1: a zero sum gives 1 / m each
        return [F32(x) / s for x in p]

    # --- routing -----------------------------------------------------------------------------------
    def op_route(self, req):
        cfg, p, inp = req.config, req.params, req.inputs
        self.check_config(cfg)
        d, tiers, r = cfg["d_model"], cfg["tiers"], cfg["router"]
        M, (k1, k2, k3) = len(tiers), (r["k_tier"], r["k_group"], r["k_expert"])
        lx, lw = r.get("hidden_limbs", 2), r.get("weight_limbs", 2)
        self.limbs = (lx, lw)
        rows = self.weights(inp, tiers, d, lw) if self.bug != "weights-last" else None
        hidden = inp.get("hidden")
        if self.bug == "shape-before-seed" and (hidden is None or hidden.ndim != 2 or hidden.shape[1] != d):
            raise ShapeError("hidden states have the wrong shape")
        seed = self.seed(p["seed"] if p.get("seed") is not None else r.get("seed", 0))   # HSER-4.1: the config's
        cands = self.tierset(p["tierset"], [t["name"] for t in tiers])
        x = self.hidden(inp["hidden"], req.dtypes.get("hidden"), d)
        if rows is None:
            rows = self.weights(inp, tiers, d, lw)
        T, K = x.shape[0], k1 * k2 * k3
        pool = range(M) if self.bug == "mask-inf" else cands      # a masked router sizes for every tier
        gmax = max(tiers[t]["groups"] for t in pool)
        emax = max(tiers[t]["experts_per_group"] for t in pool)
        out = {"tier": np.full((T, K), -1, np.int32), "group": np.full((T, K), -1, np.int32),
               "expert": np.full((T, K), -1, np.int32), "gate": np.zeros((T, K), F32),
               "count": np.zeros(T, np.int32), "tier_probs": np.zeros((T, len(cands)), F32),
               "chosen_tiers": np.full((T, k1), -1, np.int32), "group_probs": np.zeros((T, k1, gmax), F32),
               "chosen_groups": np.full((T, k1, k2), -1, np.int32),
               "expert_probs": np.zeros((T, k1, k2, emax), F32), "tier_set": np.array(cands, np.int32)}
        for n in range(T):
            q, _, sx = self.quantize(x[n], lx)
            lvl1 = list(range(M)) if self.bug == "mask-inf" else cands
            z1 = [self.logit(q, sx, x[n], rows["tier"][t][0]) if t in cands else -np.inf for t in lvl1]
            p1 = self.softmax(z1)
            s1 = self.level_seed(seed, 1)
            keyed = range(len(lvl1)) if self.bug == "position-tie-keys" else lvl1
            order = self.ranking(z1, [self.key(s1, t) for t in keyed], p1)[:k1]
            out["tier_probs"][n] = [p1[lvl1.index(t)] for t in cands]
            chosen_t = [lvl1[i] for i in order]
            r1 = self.renorm([p1[i] for i in order])
            slot = 0
            for a, t in enumerate(chosen_t):
                out["chosen_tiers"][n, a] = t
                G, E = tiers[t]["groups"], tiers[t]["experts_per_group"]
                z2 = [self.logit(q, sx, x[n], rows["group"][t][g]) for g in range(G)]
                p2 = self.softmax(z2)
                out["group_probs"][n, a, :G] = p2
                s2 = self.level_seed(seed, 2, t)
                gsel = self.ranking(z2, [self.key(s2, g) for g in range(G)], p2)[:k2]
                r2 = self.renorm([p2[g] for g in gsel])
                for b, g in enumerate(gsel):
                    out["chosen_groups"][n, a, b] = g
                    z3 = [self.logit(q, sx, x[n], rows["expert"][t][g][e]) for e in range(E)]
                    p3 = self.softmax(z3)
                    out["expert_probs"][n, a, b, :E] = p3
                    s3 = self.level_seed(seed, 3, t, g)
                    esel = self.ranking(z3, [self.key(s3, e) for e in range(E)], p3)[:k3]
                    r3 = self.renorm([p3[e] for e in esel])
                    for c, e in enumerate(esel):
                        out["tier"][n, slot], out["group"][n, slot], out["expert"][n, slot] = t, g, e
                        out["gate"][n, slot] = (r1[a] * r2[b]) * r3[c]
                        slot += 1
            out["count"][n] = slot
        return out

    def logit(self, q, sx, x_row, w):
        """Exact logit (HSER-3.3) from quantized hidden q and a weight row (q_w, scale_w, float row)."""
        if self.bug == "float-logits":
            return float(np.dot(x_row.astype(F32), w[2].astype(F32)))
        acc = self.acc(q, w[0])
        return (F64(acc) * sx) * w[1]

    limbs = (2, 2)          # (hidden, weight) limbs of the current request

    def split(self, q, n: int) -> list[np.ndarray]:
        """int8 limbs of Q, least significant first (HSER-2.4): Q = sum_i 128**i limb_i."""
        q = np.asarray(q, np.int64)
        if n == 1:
            return [q]
        hi = np.rint(q / 128.0).astype(np.int64)
        lo = q - 128 * hi
        if n == 2:
            return [lo, hi]
        if self.bug == "split-tie-half-up":
            hi = np.floor((q + 64) / 128.0).astype(np.int64)      # the upper limbs round Q / 128's ties up
        top = np.rint(hi / 128.0).astype(np.int64)
        return [lo, hi - 128 * top, top]

    def acc(self, qx, qw) -> int:
        """acc = sum_i Q_x[i] Q_w[i] (HSER-3.1); with three hidden limbs, as the six int8 limb sums of HSER-3.2
        combined with weights 128**(i + j)."""
        lx, lw = self.limbs
        if lx < 3:
            return int(np.dot(qx, qw))
        return sum(128 ** (i + j) * int(np.dot(a, b)) for i, a in enumerate(self.split(qx, 3))
                   for j, b in enumerate(self.split(qw, lw)))

    def weights(self, inp, tiers, d, limbs):
        """Every router row, quantized (q, scale, float row) per row (or per matrix, planted)."""
        rows = {"tier": [], "group": [], "expert": []}
        for t, tc in enumerate(tiers):
            G, E = tc["groups"], tc["experts_per_group"]
            for kind, shape in (("tier", (d,)), ("group", (G, d)), ("expert", (G, E, d))):
                w = inp.get(f"router_{kind}.{t}")
                if w is None or w.shape != shape or w.dtype != F32 or not np.isfinite(w).all():
                    raise RouterWeightsError(f"router_{kind}.{t} is missing, misshapen, not binary32 or not finite")
                rows[kind].append(self.quantize_matrix(w.reshape(-1, d), limbs, shape))
        return rows

    def quantize_matrix(self, w, limbs, shape):
        if self.bug == "per-matrix-scale":
            flat, a, s = self.quantize(w.reshape(-1), limbs)
            out = [(flat.reshape(w.shape)[i], s, w[i]) for i in range(w.shape[0])]
        else:
            out = []
            for i in range(w.shape[0]):
                q, _, s = self.quantize(w[i], limbs)
                out.append((q, s, w[i]))
        if len(shape) == 3:
            E = shape[1]
            return [out[g * E:(g + 1) * E] for g in range(shape[0])]
        return out

    @staticmethod
    def check_config(cfg):
        from lite_llm.spec.config import config_from_dict

        config_from_dict(cfg)                     # the spec's own validation: E_CONFIG (TIER-1.1)

    @staticmethod
    def seed(s):
        if isinstance(s, str) and HEX_SEED.fullmatch(s):
            return int(s[2:], 16)
        if isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 1 << 64:
            return s
        raise SeedError(f"seed {s!r}")

    @staticmethod
    def tierset(ts, names):
        if not isinstance(ts, list):
            raise UnknownTierError(f"TierSet {ts!r} is not a list of names and ids")
        ts = [names.index(t) if isinstance(t, str) and t in names else t for t in ts]
        for t in ts:
            if not (isinstance(t, int) and not isinstance(t, bool) and 0 <= t < len(names)):
                raise UnknownTierError(f"tier {t!r}")
        if not ts:
            raise EmptyTierSetError("empty")
        if len(set(ts)) != len(ts):
            raise DuplicateTierError("duplicate")
        return sorted(ts)

    @staticmethod
    def hidden(h, logical, d):
        if h.ndim != 2 or h.shape[1] != d:
            raise ShapeError(f"shape {h.shape}")
        if logical == "bfloat16":
            x = (h.astype(np.uint32) << 16).view(F32)
        elif h.dtype in (np.float16, np.float32, np.float64):
            x = h.astype(F32)
        else:
            raise DTypeError(f"dtype {h.dtype}")
        if not np.isfinite(x).all():
            raise NonFiniteError("non-finite hidden state")
        return x

    # --- operation cases ---------------------------------------------------------------------------
    def op_quantize(self, req):
        limbs = req.params["limbs"]
        rows = [self.quantize(r, limbs) for r in req.inputs["x"]]
        return {"q": np.array([r[0] for r in rows], np.int64).reshape(req.inputs["x"].shape),
                "absmax": np.array([r[1] for r in rows], F32), "scale": np.array([r[2] for r in rows], F64)}

    def op_logits(self, req):
        lx, lw = req.params["hidden_limbs"], req.params["weight_limbs"]
        self.limbs = (lx, lw)
        x, w = req.inputs["x"], req.inputs["w"]
        qx = [self.quantize(r, lx) for r in x]
        qw = [self.quantize(r, lw) for r in w]
        acc = np.array([[self.acc(a[0], b[0]) for b in qw] for a in qx], np.int64).reshape(len(x), len(w))
        z = np.array([[self.logit(a[0], a[2], xr, (b[0], b[2], wr)) for b, wr in zip(qw, w)]
                      for a, xr in zip(qx, x)], F64).reshape(len(x), len(w))
        return {"acc": acc, "z": z}

    def op_mix64(self, req):
        return {"y": np.array([self.mix64(int(v)) for v in req.inputs["x"]], np.uint64)}

    def op_level_seed(self, req):
        cols = [req.inputs[n].tolist() for n in ("seed", "level", "tier", "group")]
        for _, lv, t, g in zip(*cols):
            if lv not in (1, 2, 3) or t >= 1 << 16 or g >= 1 << 32:
                raise SeedError(f"no level word for level {lv}, tier {t}, group {g}")      # HSER-4.2
        return {"level_seed": np.array([self.level_seed(*r) for r in zip(*cols)], np.uint64)}

    def op_tie_keys(self, req):
        n = req.params["n"]
        return {"keys": np.array([[self.key(int(s), j) for j in range(n)] for s in req.inputs["level_seed"]],
                                 np.uint64).reshape(-1, n)}

    def op_canonical_exp(self, req):
        t = req.inputs["t"]
        if np.isnan(t).any() or (t > 0).any():
            raise NonFiniteError("canonical_exp is defined for t <= 0")                  # HSER-6.1
        return {"y": np.array([self.cexp(t) for t in req.inputs["t"]], F32)}

    def op_tree_sum(self, req):
        return {"sum": np.array([self.tree_sum(r) for r in req.inputs["v"]], F32)}

    def op_softmax(self, req):
        return {"p": np.array([self.softmax(list(r)) for r in req.inputs["z"]], F32).reshape(req.inputs["z"].shape)}

    def op_top_k(self, req):
        z, keys, k = req.inputs["z"], [int(v) for v in req.inputs["keys"]], req.params["k"]
        return {"index": np.array([self.ranking(list(r), keys)[:k] for r in z], np.int32).reshape(len(z), -1)}

    def op_renormalise(self, req):
        return {"r": np.array([self.renorm(list(r)) for r in req.inputs["p"]], F32).reshape(req.inputs["p"].shape)}


# --- bugs planted in the other levels: a built-in implementation with one function replaced ------------
PATCHED_BUGS = {
    "combine-left-fold": "the MoE combine sums the K slots left to right, not by the tree of MODEL-3.3",
    "eps-outside-sqrt": "RMSNorm divides by sqrt(mean square) + eps instead of sqrt(mean square + eps) (MODEL-2.2)",
    "greedy-ties-descending": "greedy candidates of equal ratio ordered by descending tier id (SEL-3.3)",
    "ckpt-dtype-by-size": "the loader takes a header dtype of F32's element size (I32, U32) for F32 (CKPT-5.4)",
    "ckpt-extra-tensor": "the loader checks the manifest's tensors in a shard and ignores extra ones (CKPT-5.4)",
    "ckpt-trailing-bytes": "the loader accepts bytes after the last tensor of a shard (CKPT-2.3)",
}


def _left_fold_axis1(c: np.ndarray) -> np.ndarray:
    acc = c[:, 0].copy()
    for k in range(1, c.shape[1]):
        acc = acc + c[:, k]
    return acc


def _rms_norm_eps_outside(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    dt = x.dtype
    ms = np.mean(x * x, axis=-1, keepdims=True)
    return (x / (np.sqrt(ms) + dt.type(eps))) * weight.astype(dt, copy=False)


class PatchedAdapter:
    """The reference (layer, model, selection) or the optimized loader (checkpoint) with one function
    replaced by a plausible wrong one for the duration of each ``run``; every other piece is unchanged."""

    def __init__(self, bug: str):
        assert bug in PATCHED_BUGS, bug
        self.bug = bug
        self.name = f"patched:{bug}"
        if bug.startswith("ckpt-"):
            from lite_llm.optimized.adapter import OptimizedAdapter
            self.inner, self.operations = OptimizedAdapter(), {"load_checkpoint"}
        else:
            from lite_llm.reference.adapter import ReferenceAdapter
            self.inner = ReferenceAdapter()
            self.operations = {"combine-left-fold": {"moe_layer"}, "eps-outside-sqrt": {"forward"},
                               "greedy-ties-descending": {"greedy_budget"}}[bug]

    def patch(self):
        """(module, attribute, replacement) of the bug."""
        if self.bug == "combine-left-fold":
            from lite_llm.reference import moe
            return moe, "tree_sum_axis1", _left_fold_axis1
        if self.bug == "eps-outside-sqrt":
            from lite_llm.reference import model
            return model, "rms_norm", _rms_norm_eps_outside
        if self.bug == "greedy-ties-descending":
            from lite_llm.reference import selection

            def greedy_order(b):
                fits = [t for t in range(b.n_tiers) if selection.feasible(b, (t,)) and b.utility[t] > 0]
                return sorted(fits, key=lambda t: (-selection.greedy_ratio(b, t), -t))
            return selection, "greedy_order", greedy_order
        from lite_llm.optimized import checkpoint as ck
        check_header, open_shard = ck.check_header, ck.open_shard
        if self.bug == "ckpt-dtype-by-size":
            def by_size(path, size):
                return {n: (shape, b, e, "F32" if ck.ITEMSIZE[dt] == 4 else dt)
                        for n, (shape, b, e, dt) in check_header(path, size).items()}
            return ck, "check_header", by_size
        if self.bug == "ckpt-extra-tensor":
            def listed_only(directory, entry, verify):
                names = {t["name"] for t in entry["tensors"]}
                ck.check_header = lambda p, n: {k: v for k, v in check_header(p, n).items() if k in names}
                try:
                    return open_shard(directory, entry, verify)
                finally:
                    ck.check_header = check_header
            return ck, "open_shard", listed_only

        def ignore_tail(path, size):
            import json
            import struct
            with open(path, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                try:
                    h = json.loads(f.read(n))
                    end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
                except Exception:              # noqa: BLE001  (a malformed header: the real check says so)
                    return check_header(path, size)
            return check_header(path, min(size, 8 + n + end))
        return ck, "check_header", ignore_tail

    def run(self, req):
        mod, attr, bad = self.patch()
        good = getattr(mod, attr)
        setattr(mod, attr, bad)
        try:
            return self.inner.run(req)
        finally:
            setattr(mod, attr, good)
