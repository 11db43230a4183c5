"""A third implementation of the routing level, written from the spec text, with bugs to plant.

``PlantedRouter()`` is correct: it must pass every routing case it offers. ``PlantedRouter("bug")``
plants one of the mistakes an implementer plausibly makes (BUGS); the conformance suite must catch
each of them, in the cases designed for it. It is an in-process adapter (CONF-3.1): ``run(request)``
with one ``op_*`` method per operation. Per-token loops, plain NumPy: clarity over speed.
"""
from __future__ import annotations

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
}

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

    def __init__(self, bug: str | None = None):
        assert bug is None or bug in BUGS, bug
        self.bug = bug
        self.name = f"planted:{bug or 'none'}"

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
        n = np.rint(t * LOG2E)
        r = (t - n * LN2_HI) - n * LN2_LO
        p = COEFFS[0]
        for c in COEFFS[1:]:
            p = fma32(p, r, c) if self.bug == "fma-exp" else p * r + c
        return F32(np.ldexp(p, int(n)))

    def tree_sum(self, v) -> F32:
        v = [F32(x) for x in v]
        pad = F32(0.0) if self.bug == "plus-zero-padding" else F32(-0.0)
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
        return [F32(x) / s for x in p]

    # --- routing -----------------------------------------------------------------------------------
    def op_route(self, req):
        cfg, p, inp = req.config, req.params, req.inputs
        self.check_config(cfg)
        d, tiers, r = cfg["d_model"], cfg["tiers"], cfg["router"]
        M, (k1, k2, k3) = len(tiers), (r["k_tier"], r["k_group"], r["k_expert"])
        lx, lw = r.get("hidden_limbs", 2), r.get("weight_limbs", 2)
        rows = self.weights(inp, tiers, d, lw)
        hidden = inp.get("hidden")
        if self.bug == "shape-before-seed" and (hidden is None or hidden.ndim != 2 or hidden.shape[1] != d):
            raise ShapeError("hidden states have the wrong shape")
        seed = self.seed(p["seed"] if "seed" in p else r.get("seed", 0))        # HSER-4.1: the config's
        cands = self.tierset(p["tierset"], [t["name"] for t in tiers])
        x = self.hidden(inp["hidden"], req.dtypes.get("hidden"), d)
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
            order = self.ranking(z1, [self.key(s1, t) for t in lvl1], p1)[:k1]
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
        acc = int(np.dot(q, w[0]))
        return (F64(acc) * sx) * w[1]

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
        if isinstance(s, str) and s[:2].lower() == "0x" and 1 <= len(s) - 2 <= 16:
            try:
                return int(s, 16)
            except ValueError:
                pass
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
        x, w = req.inputs["x"], req.inputs["w"]
        qx = [self.quantize(r, lx) for r in x]
        qw = [self.quantize(r, lw) for r in w]
        acc = np.array([[int(np.dot(a[0], b[0])) for b in qw] for a in qx], np.int64).reshape(len(x), len(w))
        z = np.array([[self.logit(a[0], a[2], xr, (b[0], b[2], wr)) for b, wr in zip(qw, w)]
                      for a, xr in zip(qx, x)], F64).reshape(len(x), len(w))
        return {"acc": acc, "z": z}

    def op_mix64(self, req):
        return {"y": np.array([self.mix64(int(v)) for v in req.inputs["x"]], np.uint64)}

    def op_level_seed(self, req):
        cols = [req.inputs[n].tolist() for n in ("seed", "level", "tier", "group")]
        return {"level_seed": np.array([self.level_seed(*r) for r in zip(*cols)], np.uint64)}

    def op_tie_keys(self, req):
        n = req.params["n"]
        return {"keys": np.array([[self.key(int(s), j) for j in range(n)] for s in req.inputs["level_seed"]],
                                 np.uint64).reshape(-1, n)}

    def op_canonical_exp(self, req):
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
