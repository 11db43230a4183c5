"""Operation-level cases of the routing level: the router's pieces one by one (``routing/op/...``).

An implementation whose ``route`` fails can run these to find which step is wrong: quantization,
exact logits, mix64 / level seeds / tie keys, the canonical exp, the tree sum, softmax, top-k and the
gate renormalisation. Every operation and its inputs and outputs are listed in spec chapter 11.
"""
from __future__ import annotations

import numpy as np

from .draw import FLT_MAX, FLT_SUB, FLT_TINY, gauss, heavy, integers, uniform
from .generate import CaseSpec

F32, F64, U64 = np.float32, np.float64, np.uint64
LOG2E = F32(1.44269502162933349609375)


def f32(*v) -> np.ndarray:
    return np.array(v, dtype=F32)


def half_even_rows(limbs: int, d: int = 16) -> np.ndarray:
    """Rows whose quantized values land exactly halfway between two integers (OVW-2.3, HSER-2.3).

    With absmax 1, y = x * 127; x is chosen so that y * 2**(7 (limbs - 1)) is m + 1/2 exactly.
    """
    scale = F32(2.0 ** (7 * (limbs - 1)))
    found = []
    for m in range(-40, 40):
        target = F32(m + 0.5)
        x = F32(target / scale / F32(127.0))
        for cand in (x, np.nextafter(x, F32(1)), np.nextafter(x, F32(-1))):
            y = (cand / F32(1.0)) * F32(127.0)
            if y * scale == target and abs(cand) < 1:
                found.append(cand)
                break
    vals = np.array(found, F32)
    rows = np.resize(vals, (len(vals) // (d - 1) + 1) * (d - 1)).reshape(-1, d - 1)
    return np.concatenate([np.ones((rows.shape[0], 1), F32), rows], axis=1)   # absmax 1 in column 0


def reciprocal_order_rows(limbs: int, rows: int = 3, d: int = 8) -> np.ndarray:
    """Rows where HSER-2.3's x * (127 / a) and the per-element (x / a) * 127 give different integers.

    They differ on about one element in 5,000 (two limbs) to 500,000 (one limb), so random rows
    almost never tell them apart; each row's elements are found by a deterministic search for its
    absmax a (column 0), at least one of them differing.
    """
    rng = np.random.default_rng(20261126 + limbs)
    scale = F32(2.0 ** (7 * (limbs - 1)))
    out = []
    while len(out) < rows:
        a = F32(1.0 + rng.uniform(0, 1)) * F32(2.0 ** int(rng.integers(-10, 10)))
        for _ in range(40):
            x = (rng.uniform(-1, 1, 1 << 20) * a).astype(F32)
            differ = np.rint((x * (F32(127.0) / a)) * scale) != np.rint(((x / a) * F32(127.0)) * scale)
            if differ.any():
                hits = x[differ][: d - 1]
                fill = x[~differ][: d - 1 - len(hits)]
                out.append(np.concatenate([[a], hits, fill]).astype(F32))
                break
    return np.stack(out)


def quantize_special_rows() -> np.ndarray:
    """The hand-picked rows of quantize_cases (the same values), for the three-limb case."""
    special = np.zeros((10, 8), F32)
    special[1] = -0.0
    special[2] = f32(FLT_MAX, -FLT_MAX, 1, -1, FLT_SUB, 0, 3e38, -1e-30)
    special[3] = f32(FLT_SUB, -FLT_SUB, 2 * FLT_SUB, 0, -0.0, FLT_SUB, 3 * FLT_SUB, -5 * FLT_SUB)
    special[4] = f32(FLT_TINY, -FLT_TINY / 2, FLT_TINY / 3, 0, 0, 0, 0, 0)
    special[5] = f32(1e-3, 1, 1e3, 1e6, -1e9, 7, 8, 9)
    special[6] = f32(-2, 1, 1, 1, 1, 1, 1, 1)
    special[7] = gauss("op.quantize.row7", (8,))
    special[8] = f32(*([5.0] * 8))
    special[9] = f32(1, 0.5, 0.25, 0.125, 1 / 127, -1 / 127, 0.5 / 127, 1.5 / 127)
    return special


def quantize_cases() -> list[CaseSpec]:
    special = np.zeros((10, 8), F32)
    special[1] = -0.0                                                  # a = 0 from -0.0
    special[2] = f32(FLT_MAX, -FLT_MAX, 1, -1, FLT_SUB, 0, 3e38, -1e-30)
    special[3] = f32(FLT_SUB, -FLT_SUB, 2 * FLT_SUB, 0, -0.0, FLT_SUB, 3 * FLT_SUB, -5 * FLT_SUB)   # all subnormal
    special[4] = f32(FLT_TINY, -FLT_TINY / 2, FLT_TINY / 3, 0, 0, 0, 0, 0)
    special[5] = f32(1e-3, 1, 1e3, 1e6, -1e9, 7, 8, 9)
    special[6] = f32(-2, 1, 1, 1, 1, 1, 1, 1)                          # negative absmax
    special[7] = gauss("op.quantize.row7", (8,))
    special[8] = f32(*([5.0] * 8))                                     # all equal
    special[9] = f32(1, 0.5, 0.25, 0.125, 1 / 127, -1 / 127, 0.5 / 127, 1.5 / 127)
    out = []
    for limbs in (1, 2):
        x = np.concatenate([special, gauss(f"op.quantize.{limbs}", (6, 8)), heavy(f"op.quantize.h{limbs}", (4, 8))])
        out.append(CaseSpec(
            f"routing/op/quantize-limbs{limbs}",
            f"Quantization of rows with {limbs} int8 limb(s): zero and -0.0 rows, FLT_MAX, subnormal-only rows, "
            "mixed magnitudes, negative absmax, random and heavy-tailed rows. Outputs Q (int64), absmax and the "
            "binary64 dequantization scale.",
            ["HSER-2.1", "HSER-2.2", "HSER-2.3", "HSER-2.4", "HSER-2.5", "OVW-2.1", "OVW-2.3"],
            "quantize", {"limbs": limbs}, {"x": x}))
        out.append(CaseSpec(
            f"routing/op/quantize-half-even-limbs{limbs}",
            f"Rows whose scaled values y * 2**(7 (L - 1)) are exactly halfway between integers ({limbs} limb(s)): "
            "round_half_even must pick the even neighbour (half away from zero and floor(y + 0.5) fail).",
            ["HSER-2.3", "OVW-2.3"], "quantize", {"limbs": limbs}, {"x": half_even_rows(limbs)}))
        out.append(CaseSpec(
            f"routing/op/quantize-reciprocal-order-limbs{limbs}",
            f"Rows where multiplying by the row reciprocal 127 / a (HSER-2.3) and dividing each element by a "
            f"before multiplying by 127 give different integers ({limbs} limb(s)); only the former conforms.",
            ["HSER-2.3"], "quantize", {"limbs": limbs}, {"x": reciprocal_order_rows(limbs)}))
    x1 = f32(0.3, -2.5, 7.0).reshape(3, 1)
    out.append(CaseSpec("routing/op/quantize-width1", "Rows of a single element: Q = +-127 * 128**(L-1) or 0.",
                        ["HSER-2.1", "HSER-2.3"], "quantize", {"limbs": 2}, {"x": np.concatenate([x1, [[0.0]]]).astype(F32)}))
    return out


def logits_cases() -> list[CaseSpec]:
    out = []
    x = np.concatenate([gauss("op.logits.x", (6, 24)), heavy("op.logits.xh", (4, 24)), np.zeros((1, 24), F32)])
    w = np.concatenate([gauss("op.logits.w", (5, 24), 0.2), np.zeros((1, 24), F32), uniform("op.logits.wt", (1, 24), 1e-38)])
    for lx in (1, 2):
        for lw in (1, 2):
            out.append(CaseSpec(
                f"routing/op/logits-h{lx}-w{lw}",
                f"Exact integer dot products acc (int64) and binary64 logits z = (acc * scale_x) * scale_w with "
                f"{lx} hidden limb(s) and {lw} weight limb(s); includes a zero hidden row, a zero weight row and a "
                "weight row of magnitude 1e-38.",
                ["HSER-3.1", "HSER-3.2", "HSER-3.3", "HSER-3.4", "HSER-2.5", "HSER-2.6"],
                "logits", {"hidden_limbs": lx, "weight_limbs": lw}, {"x": x, "w": w}))
    d = 1024
    big = np.where(uniform("op.logits.sign", (2, d)) < 0, F32(-FLT_MAX), FLT_MAX).astype(F32)
    xb = np.stack([np.full(d, FLT_MAX, F32), np.full(d, -FLT_MAX, F32), big[0]])
    wb = np.stack([np.full(d, FLT_MAX, F32), big[1], np.full(d, FLT_SUB, F32)])
    out.append(CaseSpec(
        "routing/op/logits-bounds",
        f"d = {d}, every value +-FLT_MAX or the smallest subnormal: |Q| = 16256 everywhere, |acc| up to "
        f"{d} * 16256**2 (beyond int32, exact in int64 and binary64); logits of magnitude ~1e80 and ~1e-7.",
        ["HSER-3.1", "HSER-3.2", "HSER-3.3", "OVW-2.4"], "logits", {"hidden_limbs": 2, "weight_limbs": 2},
        {"x": xb, "w": wb}))
    return out


def split_tie_rows(rows: int = 4, d: int = 24) -> np.ndarray:
    """Hidden rows whose three-limb Q hit the tie of the second split on every element but the absmax.

    Column 0 is 127, so r = 127 / 127 = 1 and y = x exactly; every other x is Q / 16384 with Q = 256 m + 64:
    Q / 128 = 2 m + 1/2 is a tie that round_half_even sends to the even 2 m and a half-up rounding to 2 m + 1.
    A kernel whose limbs disagree on that tie (lo from one rounding, the upper limbs from the other) has limbs
    that do not recombine to Q (HSER-2.4).
    """
    m = (integers("op.logits.splitties", rows * (d - 1), 13).astype(np.int64) - 4096).reshape(rows, d - 1)
    q = 256 * m + 64
    q = np.clip(q, -2080768 + 192, 2080768 - 192)           # |Q| < 127 * 16384: below the absmax's Q
    x = (q.astype(np.float64) / 16384.0).astype(F32)         # exact: |Q| < 2**24
    assert np.array_equal((x.astype(np.float64) * 16384.0).astype(np.int64), q)
    return np.concatenate([np.full((rows, 1), 127.0, F32), x], axis=1)


def three_limb_cases() -> list[CaseSpec]:
    """hidden_limbs = 3 (TIER-1.5): quantization with three limbs, logits with 3 + 1 and 3 + 2 limbs."""
    out = []
    special = quantize_special_rows()
    x = np.concatenate([special, gauss("op.quantize.3", (6, 8)), heavy("op.quantize.h3", (4, 8))])
    out.append(CaseSpec(
        "routing/op/quantize-limbs3",
        "Quantization of rows with 3 int8 limbs (hidden states only, TIER-1.5): Q = round_half_even(y * 2**14), "
        "|Q| <= 2080768; the rows of routing/op/quantize-limbs2 (zero, -0.0, FLT_MAX, subnormal-only, mixed, "
        "negative absmax), random and heavy-tailed rows. Outputs Q (int64), absmax and the binary64 scale "
        "a / 2080768.",
        ["HSER-2.1", "HSER-2.2", "HSER-2.3", "HSER-2.4", "HSER-2.5", "TIER-1.5", "OVW-2.1", "OVW-2.3"],
        "quantize", {"limbs": 3}, {"x": x}))
    out.append(CaseSpec(
        "routing/op/quantize-half-even-limbs3",
        "Rows whose scaled values y * 2**14 are exactly halfway between integers (3 limbs): round_half_even must "
        "pick the even neighbour.", ["HSER-2.3", "OVW-2.3"], "quantize", {"limbs": 3}, {"x": half_even_rows(3)}))
    out.append(CaseSpec(
        "routing/op/quantize-reciprocal-order-limbs3",
        "Rows where multiplying by the row reciprocal 127 / a and dividing each element by a before multiplying "
        "by 127 give different integers (3 limbs); only the former conforms.",
        ["HSER-2.3"], "quantize", {"limbs": 3}, {"x": reciprocal_order_rows(3)}))
    xl = np.concatenate([gauss("op.logits.x", (6, 24)), heavy("op.logits.xh", (4, 24)), np.zeros((1, 24), F32)])
    wl = np.concatenate([gauss("op.logits.w", (5, 24), 0.2), np.zeros((1, 24), F32),
                         uniform("op.logits.wt", (1, 24), 1e-38)])
    for lw in (1, 2):
        out.append(CaseSpec(
            f"routing/op/logits-h3-w{lw}",
            f"The inputs of routing/op/logits-h2-w{lw} with 3 hidden limbs and {lw} weight limb(s): acc (int64) and "
            "z = (acc * scale_x) * scale_w (binary64); with limbs, the combine of HSER-3.2 has "
            f"{3 * lw} int32 limb sums.",
            ["HSER-3.1", "HSER-3.2", "HSER-3.3", "HSER-2.4", "HSER-2.5", "TIER-1.5"],
            "logits", {"hidden_limbs": 3, "weight_limbs": lw}, {"x": xl, "w": wl}))
    d = 1024
    big = np.where(uniform("op.logits.sign", (2, d)) < 0, F32(-FLT_MAX), FLT_MAX).astype(F32)
    xb = np.stack([np.full(d, FLT_MAX, F32), np.full(d, -FLT_MAX, F32), big[0], np.full(d, FLT_SUB, F32)])
    wb = np.stack([np.full(d, FLT_MAX, F32), big[1], np.full(d, FLT_SUB, F32)])
    out.append(CaseSpec(
        "routing/op/logits-bounds-h3-w2",
        f"d = {d} with 3 + 2 limbs, every value +-FLT_MAX or the smallest subnormal: |Q_x| = 2080768, |Q_w| = 16256, "
        f"|acc| up to {d} * 2080768 * 16256 ~ 2**44.98 (beyond int32, exact in int64 and binary64); scales down to "
        "2**-149 / 2080768 (normal binary64), logits of magnitude ~1e80 down to ~2e-87.",
        ["HSER-3.1", "HSER-3.2", "HSER-3.3", "HSER-2.5", "OVW-2.4"], "logits", {"hidden_limbs": 3, "weight_limbs": 2},
        {"x": xb, "w": wb}))
    out.append(CaseSpec(
        "routing/op/logits-h3-w2-split-ties",
        "3 + 2 limbs on hidden rows whose Q (absmax 127, so y = x) is 256 m + 64 on every other element: Q / 128 "
        "is a tie of the three-limb split (HSER-2.4). Limbs that recombine to Q give acc; a split that rounds the "
        "tie half to even for lo and half up for the upper limbs is off by 128 per element.",
        ["HSER-2.4", "HSER-3.1", "HSER-3.2"], "logits", {"hidden_limbs": 3, "weight_limbs": 2},
        {"x": split_tie_rows(), "w": gauss("op.logits.splitties.w", (5, 24))}))
    return out


def seed_cases() -> list[CaseSpec]:
    x = np.concatenate([np.array([0, 1, 2, 1 << 63, (1 << 64) - 1, 0x9E3779B97F4A7C15], U64), integers("op.mix64", 26)])
    out = [CaseSpec("routing/op/mix64", "The SplitMix64 finalizer on 0, 1, 2, 2**63, 2**64-1, the golden word "
                    "and random words (wrapping 64-bit multiplication, logical shifts).",
                    ["HSER-4.3"], "mix64", {}, {"x": x})]
    rows = []
    for s in (0, 1, 0xDEADBEEF, (1 << 53) + 1, (1 << 64) - 1, 0x8000000000000000):
        rows += [(s, 1, 0, 0), (s, 2, 1, 0), (s, 2, 2, 0), (s, 3, 1, 2), (s, 3, 2, 1), (s, 3, 0, 1), (s, 3, 0, 2),
                 (s, 2, 65535, 0), (s, 3, 65535, (1 << 32) - 1), (s, 3, 7, 12345)]
    cols = [np.array(c, U64) for c in zip(*rows)]
    out.append(CaseSpec(
        "routing/op/level-seed",
        "Level seeds mix64(s ^ word(level, tier, group)) for seeds up to 2**64-1, the largest tier id and group "
        "index, and the pairs the paper's s ^ t ^ g merges: (level 3, t=1, g=2) vs (t=2, g=1), and level 2 of "
        "tier t vs level 3 of tier 0, group t. All seeds differ.",
        ["HSER-4.2", "HSER-4.4"], "level_seed", {}, dict(zip(("seed", "level", "tier", "group"), cols)),
        check=lambda o: _assert(all(len(set(o["level_seed"][i:i + 10].tolist())) == 10 for i in range(0, len(rows), 10)),
                                "level seeds of one seed collide")))
    for name, row, why in (("level-0", (5, 0, 0, 0), "level 0"), ("level-4", (5, 4, 1, 1), "level 4"),
                           ("tier-2pow16", (5, 3, 1 << 16, 0), "tier 2**16 (the tier field is 16 bits)"),
                           ("group-2pow32", (5, 3, 1, 1 << 32), "group 2**32 (the group field is 32 bits)")):
        cols = {k: np.array([ok, bad], U64) for k, ok, bad in zip(("seed", "level", "tier", "group"), (5, 1, 0, 0), row)}
        out.append(CaseSpec(f"routing/op/level-seed-error-{name}",
                            f"A level seed asked for {why} (row 1; row 0 is valid): the level word does not exist, "
                            "and the operation is rejected with E_SEED.", ["HSER-4.2", "HSER-10.1"], "level_seed", {},
                            cols, error="E_SEED"))
    ls = np.array([0, 1, (1 << 64) - 1, 0x0123456789ABCDEF], U64)
    out.append(CaseSpec("routing/op/tie-keys", "Tie keys mix64(s_l ^ j) of candidates j = 0..40 under four level "
                        "seeds (as unsigned 64-bit words; keys with the top bit set are large).",
                        ["HSER-4.5"], "tie_keys", {"n": 41}, {"level_seed": ls}))
    return out


def cexp_cases() -> list[CaseSpec]:
    t87 = F32(-87.0)
    special = [0.0, -0.0, -np.inf, -87.0, np.nextafter(t87, F32(0)), np.nextafter(t87, F32(-np.inf)), -86.5, -87.5,
               -88.0, -100.0, -1e30, -FLT_MAX, -FLT_SUB, -FLT_TINY, -1e-30, -1e-7, -2.0 ** -24, -2.0 ** -25,
               -0.5, -1.0, -2.0, -0.34657359, -0.6931472, -0.69314718, -1.0397208, -10.0, -20.0, -42.0, -60.0,
               -59.954247, -70.0, -80.0, -86.0, -86.9]
    # t * LOG2E exactly halfway between two integers: n = round_half_even decides between them.
    halfway = []
    for k in range(0, 126):
        tgt = -(k + 0.5)
        t = F32(tgt / LOG2E)
        for c in (t, np.nextafter(t, F32(0)), np.nextafter(t, F32(-1e9))):
            if F32(c * LOG2E) == F32(tgt) and c >= t87:
                halfway.append(c)
    out = [CaseSpec("routing/op/canonical-exp-special",
                    "canonical_exp on 0, -0.0, -inf, the -87 flush boundary and its neighbours, -FLT_MAX, subnormals, "
                    "multiples of ln 2, the point of largest error, and every t in [-87, 0] where t * LOG2E is exactly "
                    "halfway between integers (round_half_even picks n).",
                    ["HSER-6.1", "HSER-6.2", "HSER-6.3", "HSER-6.4", "OVW-2.2", "OVW-2.3"], "canonical_exp", {},
                    {"t": np.concatenate([np.array(special, F32), np.array(halfway, F32)])})]
    for name, t, why in (("nan", np.nan, "a NaN"), ("positive", 2.0 ** -149, "the smallest positive subnormal"),
                         ("one", 1.0, "t = 1"), ("posinf", np.inf, "+inf")):
        out.append(CaseSpec(f"routing/op/canonical-exp-error-{name}",
                            f"canonical_exp of {why} (element 2; the others are in the domain): outside t <= 0, "
                            "rejected with E_NONFINITE.", ["HSER-6.1", "HSER-10.1"], "canonical_exp", {},
                            {"t": np.array([-1.0, -0.0, t, -2.0], F32)}, error="E_NONFINITE"))
    pts = constant_sensitive_points()
    out.append(CaseSpec("routing/op/canonical-exp-constants",
                        f"canonical_exp on {len(pts)} inputs found by a search with the reference arithmetic: for each "
                        "constant of HSER-6.3 moved one ulp up or down, inputs whose result changes, so an "
                        "implementation with one constant off in its last bit fails here (C7 excepted: no binary32 "
                        "input in [-87, 0] tells C7 +- 1 ulp apart, found by exhaustive search).",
                        ["HSER-6.2", "HSER-6.3"], "canonical_exp", {}, {"t": pts}))
    u = uniform("op.cexp.sweep", (3072,))
    sweep = (np.abs(u) * F32(-87.0)).astype(F32)                        # uniform in (-87, 0]
    logs = -(F32(2.0) ** (uniform("op.cexp.log", (512,)) * F32(20) - F32(14))).astype(F32)   # 2**-34 .. 2**6
    out.append(CaseSpec("routing/op/canonical-exp-sweep",
                        "canonical_exp on 3072 values uniform in (-87, 0] and 512 log-spaced small magnitudes: a "
                        "library exp, a fused multiply-add in the Horner steps or another reduction differs from the "
                        "canonical bits on some of them.",
                        ["HSER-6.2", "HSER-6.3", "HSER-6.7", "OVW-2.2"], "canonical_exp", {},
                        {"t": np.concatenate([sweep, logs.astype(F32)])}))
    return out


EXP_CONSTANT_NAMES = ("LOG2E", "LN2_HI", "LN2_LO", "C7", "C6", "C5", "C4", "C3", "C2", "C1", "C0")


def cexp_with(constants) -> callable:
    """HSER-6.2 with the given 11 constants (LOG2E, LN2_HI, LN2_LO, C7 .. C0), vectorised: for the search."""
    log2e, hi, lo, *coeffs = (F32(c) for c in constants)

    def f(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, F32)
        n = np.rint(t * log2e)
        r = (t - n * hi) - n * lo
        p = np.full_like(t, coeffs[0])
        for c in coeffs[1:]:
            p = p * r + c
        return np.where(t < F32(-87), F32(0), np.ldexp(p, n.astype(np.int32))).astype(F32)
    return f


def exp_constants() -> list:
    from lite_llm.reference.cexp import EXP_COEFFS, LN2_HI, LN2_LO

    return [LOG2E, LN2_HI, LN2_LO, *EXP_COEFFS]


def one_ulp(c, up: bool):
    return np.nextafter(F32(c), F32(np.inf) if up else F32(-np.inf))


# Inputs found by searching, with the reference arithmetic of HSER-6.2, the 257 binary32 neighbours
# of every t where t * LOG2E is halfway between integers (|r| is largest there, so a moved constant
# shows most), keeping for each constant moved one ulp up and one ulp down the first two inputs whose
# result changes. C7 is absent: an exhaustive run over all 1.1e9 binary32 t in [-87, 0] found no
# input where C7 +- 1 ulp changes a result (its last bit is rounded away at every Horner step).
EXP_SENSITIVE_BITS = (
    0xBEB07218, 0xBEB07219, 0xBEB0721A, 0xBEB0721B, 0xBEB0721C, 0xBEB0722D, 0xBEB07231, 0xBEB07237, 0xBEB0724F,
    0xBEB072F9, 0xBEB074D7, 0xBEB077F3, 0xBEB0731E, 0xBEB0798F, 0xBEB0B98E, 0xBEB0FF77, 0xBEB12477, 0xBEB17219,
    0xBEB1721A, 0xBEB1721B, 0xC0BBB687, 0xC0BC67FB, 0xC0D1E4CA, 0xC0D2963E, 0xC120CF67, 0xC136FDAA, 0xC1824FC9,
    0xC19E099D, 0xC1EC7155, 0xC1EC7160, 0xC2075B63, 0xC2075B67)
UNOBSERVABLE_CONSTANTS = ("C7",)


def constant_sensitive_points() -> np.ndarray:
    """The inputs of EXP_SENSITIVE_BITS, after checking that moving any constant of HSER-6.3 except
    C7 by one ulp, up or down, changes canonical_exp's bits on at least one of them."""
    t = np.array(sorted(EXP_SENSITIVE_BITS), np.uint32).view(F32)
    base = cexp_with(exp_constants())(t).view(np.uint32)
    for i, name in enumerate(EXP_CONSTANT_NAMES):
        for up in (True, False):
            consts = exp_constants()
            consts[i] = one_ulp(consts[i], up)
            changed = bool((cexp_with(consts)(t).view(np.uint32) != base).any())
            assert changed == (name not in UNOBSERVABLE_CONSTANTS), f"{name} {'+' if up else '-'}1 ulp: {changed}"
    return t


def tree_sum_cases() -> list[CaseSpec]:
    out = []
    for n in (1, 2, 3, 5, 8, 13, 33):
        v = gauss(f"op.tree.{n}", (6, n)) * F32(1000)
        v = np.concatenate([v, np.full((1, n), -0.0, F32), np.full((1, n), F32(2.0 ** -24)), np.ones((1, n), F32)])
        v[-1, 0] = F32(2.0 ** 24)                                     # order-sensitive: 2**24 + 1 + 1 ...
        v = v.astype(F32)
        out.append(CaseSpec(f"routing/op/tree-sum-n{n}",
                            f"tree_sum of rows of length {n}: pad to the next power of two with -0.0 and add adjacent "
                            "pairs; includes an all -0.0 row (the sum is -0.0: +0.0 padding gives +0.0 when n is not "
                            "a power of two), tiny values and the order-sensitive row 2**24, 1, 1, ...",
                            ["HSER-6.5"], "tree_sum", {}, {"v": v}))
    out.append(CaseSpec("routing/op/tree-sum-n0", "tree_sum of three rows of length 0: the empty sum is -0.0 (pad to "
                        "P = 1 with the identity -0.0), not +0.0 and not an error.", ["HSER-6.5"], "tree_sum", {},
                        {"v": np.zeros((3, 0), F32)}))
    v = np.array([[-0.0, -0.0, -0.0], [-0.0, 0.0, -0.0], [1.0, -1.0, -0.0], [FLT_MAX, FLT_MAX, -FLT_MAX],
                  [1.0, 2.0 ** -24, 2.0 ** -24], [2.0 ** -24, 2.0 ** -24, 1.0]], F32)
    out.append(CaseSpec("routing/op/tree-sum-signed-zeros",
                        "tree_sum of three-element rows: all -0.0 (gives -0.0), mixed zeros, x + -x, overflow to "
                        "infinity in pair order, and the order-dependent 1 + 2**-24 + 2**-24.",
                        ["HSER-6.5", "OVW-2.1"], "tree_sum", {}, {"v": v}))
    return out


def softmax_cases() -> list[CaseSpec]:
    out = []
    z = np.concatenate([gauss("op.softmax.z", (8, 7)).astype(F64) * 3.0, heavy("op.softmax.h", (4, 7)).astype(F64)])
    out.append(CaseSpec("routing/op/softmax-basic", "Canonical softmax of binary64 logits (7 candidates).",
                        ["HSER-6.6", "HSER-6.5", "HSER-6.2"], "softmax", {}, {"z": z}))
    m = 1.0
    b = np.array([
        [m, m - 87.0, m - 87.0 - 2 ** -40, m - 86.99999999999, m - 87.0 + 2 ** -30],   # flush boundary in binary64
        [0.0, -87.0, -87.000001, -86.999999, -200.0],
        [5.0, 5.0, 5.0, 5.0, 5.0],                       # all equal
        [0.0, -0.0, 0.0, -0.0, -1.0],                    # signed zeros
        [1e300, -1e300, 1e300, 0.0, 1.7e308],            # extreme logits (d_j = -inf is flushed)
        [-1.7e308, 1.7e308, -1e-300, 1e-300, 0.0],
        [1e-7, 2e-7, 3e-7, 0.0, -1e-7],                  # differences far below binary32 resolution of 1
        [3e-45, 0.0, -3e-45, 1e-310, -1e-310],           # binary64 subnormals
    ], F64)
    out.append(CaseSpec("routing/op/softmax-special",
                        "Softmax at the -87 flush boundary (d_j < -87 in binary64 flushes; d_j that rounds to "
                        "binary32 -87 does not), all-equal and signed-zero logits, +-1e300 and +-1.7e308 (a difference "
                        "that overflows to -inf), tiny and subnormal differences.",
                        ["HSER-6.1", "HSER-6.6"], "softmax", {}, {"z": b}))
    out.append(CaseSpec("routing/op/softmax-n1", "Softmax of one candidate is exactly 1.", ["HSER-6.6"], "softmax", {},
                        {"z": np.array([[0.0], [-1e300], [12.5]], F64)}))
    big = gauss("op.softmax.wide", (3, 37)).astype(F64)
    out.append(CaseSpec("routing/op/softmax-n37", "Softmax of 37 candidates (tree sum padded to 64).",
                        ["HSER-6.5", "HSER-6.6"], "softmax", {}, {"z": big}))
    return out


def top_k_cases() -> list[CaseSpec]:
    out = []
    keys = np.array([0xF000000000000000, 5, 0x8000000000000001, 7, 0x7FFFFFFFFFFFFFFF, 0], U64)
    z = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0],              # all tied: key order 5, 0?
                  [0.0, -0.0, 0.0, -0.0, 0.0, -0.0],           # -0.0 and +0.0 are equal
                  [2.0, 1.0, 2.0, 1.0, 2.0, 1.0],
                  [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0],
                  [1e-300, 0.0, 1e-300, -1e-300, 5e-324, 0.0]], F64)
    for k in (1, 3, 6, 9):
        out.append(CaseSpec(f"routing/op/top-k-ties-k{k}",
                            f"Top-{k} of 6 candidates by logit then by tie key, keys compared as UNSIGNED 64-bit words "
                            "(three keys have the top bit set: a signed comparison reverses them); -0.0 ties +0.0; "
                            f"{'k > n returns all n candidates; ' if k > 6 else ''}indices best first.",
                            ["HSER-5.1", "HSER-5.2", "HSER-5.3"] + (["HSER-5.4"] if k == 1 else []), "top_k", {"k": k},
                            {"z": z, "keys": keys}))
    zr = gauss("op.topk.z", (10, 12)).astype(F64)
    zr[:, 5] = zr[:, 2]
    out.append(CaseSpec("routing/op/top-k-random", "Top-4 of 12 random logits (columns 2 and 5 tied).",
                        ["HSER-5.1", "HSER-5.2"], "top_k", {"k": 4}, {"z": zr, "keys": integers("op.topk.keys", 12)}))
    return out


def renormalise_cases() -> list[CaseSpec]:
    out = []
    for m in (1, 2, 3, 4, 6):
        p = np.abs(gauss(f"op.renorm.{m}", (8, m))).astype(F32) / F32(8)
        p[0] = F32(1.0 / 3)
        p[1, :] = F32(2.0 ** -20)
        out.append(CaseSpec(f"routing/op/renormalise-m{m}",
                            f"Gate renormalisation r_j = p_j / tree_sum(p of the {m} chosen, in rank order), binary32"
                            f"{'; one chosen candidate gives exactly 1' if m == 1 else ''}.",
                            ["HSER-8.1"], "renormalise", {}, {"p": p}))
    for m, rows in ((1, [[0.0], [-0.0], [2.0 ** -149], [1.0]]),
                    (3, [[0.0, 0.0, 0.0], [-0.0, 0.0, -0.0], [-0.0, -0.0, -0.0], [0.5, 0.0, 0.0], [2.0 ** -149, 0.0, 0.0]]),
                    (5, [[0.0] * 5, [-0.0] * 5, [0.25, 0.0, 0.25, 0.0, 0.0]])):
        out.append(CaseSpec(f"routing/op/renormalise-zero-sum-m{m}",
                            f"Renormalisation of {m} chosen probabilities that sum to zero (+0.0 or -0.0): each r is "
                            f"binary32(1 / {m}){' = 1' if m == 1 else ''}, not NaN; rows with a non-zero sum (a "
                            "subnormal included) divide as usual.", ["HSER-8.1"], "renormalise", {},
                            {"p": np.array(rows, F32)}))
    return out


def _assert(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def cases() -> list[CaseSpec]:
    return (quantize_cases() + logits_cases() + seed_cases() + cexp_cases() + tree_sum_cases() + softmax_cases()
            + top_k_cases() + renormalise_cases() + three_limb_cases())
