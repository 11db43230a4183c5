"""Quantization, exact logits, canonical exp, tree sum and softmax of the reference (HSER-2, 3, 6)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lite_llm.reference import cexp as cexp_mod
from lite_llm.reference.cexp import canonical_exp
from lite_llm.reference.logits import exact_dot, logits
from lite_llm.reference.quantize import dequant_scale, quantize_rows, split_limbs
from lite_llm.reference.softmax import softmax, tree_sum
from lite_llm.spec.clauses import registry
from tests.helpers import bits

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 40)), elements=finite32), st.sampled_from([1, 2]))
def test_quantize_bounds_and_formula(x, limbs):
    """HSER-2.1, HSER-2.2, HSER-2.3: |Q| <= 127*128**(L-1), zero rows are zero, Q recomputed from the
    clause text."""
    q, a = quantize_rows(x, limbs)
    assert np.all(np.abs(q) <= 127 * 128 ** (limbs - 1))
    for i in range(x.shape[0]):
        ai = np.float32(max(abs(float(v)) for v in x[i]))
        assert bits(a[i:i + 1])[0] == bits(np.array([ai]))[0]
        if ai == 0:
            assert not q[i].any()
            continue
        f = np.float32(2.0 ** 64) if ai < np.float32(2.0 ** -64) else np.float32(1.0)     # step 1
        r = np.float32(np.float32(127) / np.float32(ai * f))                                # step 2
        for j in range(x.shape[1]):
            y = np.float32(np.float32(x[i, j] * f) * r)                                   # step 3
            expect = round(float(y) * 2 ** (7 * (limbs - 1)))    # Python round() is half-to-even
            assert q[i, j] == expect, (i, j, x[i, j], y)
        # the largest magnitude maps to exactly +-127 * 128**(L-1)
        assert np.max(np.abs(q[i])) == 127 * 128 ** (limbs - 1)


def test_quantize_multiplies_by_the_row_reciprocal():
    """HSER-2.3 step 2-3: y = x * (127 / a), not (x / a) * 127; rows where the two orders give
    different integers (found by search, about 1 element in 5,000 for two limbs)."""
    x1 = np.array([[0.006511209, 0.009671621]], np.float32)
    x2 = np.array([[-168.04193, 180.48228]], np.float32)
    assert quantize_rows(x1, 1)[0][0, 0] == 85                     # (x / a) * 127 would give 86
    assert quantize_rows(x2, 2)[0][0, 0] == -15135                 # (x / a) * 127 would give -15136
    f = np.float32
    assert np.rint(f(f(x1[0, 0] / x1[0, 1]) * f(127))) == 86
    assert np.rint(f(f(x2[0, 0] / x2[0, 1]) * f(127)) * f(128)) == -15136


def test_quantize_extreme_magnitudes():
    """HSER-2.3: no overflow or flush for the largest and the subnormal binary32 inputs (step 1 scales
    rows with a < 2**-64 by 2**64 so that 127 / a stays finite)."""
    big = np.array([[3.4e38, -1.7e38, 1.0]], np.float32)
    tiny = (np.array([[1, -2, 0, 3]], np.float64) * 2.0 ** -149).astype(np.float32)   # subnormals
    qb, ab = quantize_rows(big, 2)
    qt, at = quantize_rows(tiny, 1)
    assert qb[0, 0] == 16256 and qb[0, 1] == -8128 and qb[0, 2] == 0
    assert list(qt[0]) == [42, -85, 0, 127]               # (1/3)*127 = 42.33, (-2/3)*127 = -84.67
    assert at[0] == np.float32(3 * 2.0 ** -149)
    sc = dequant_scale(at, 1)
    assert np.isfinite(sc).all() and sc[0] > 0


def test_quantize_scale_invariance():
    """Scaling a row by a power of two changes no Q (HSER-2.3 divides by the absmax first)."""
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    q0, _ = quantize_rows(x, 2)
    for e in (-100, -20, 20, 100):
        xs = (x.astype(np.float64) * 2.0 ** e).astype(np.float32)
        q1, _ = quantize_rows(xs, 2)
        assert (q0 == q1).all()


@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 50)), elements=st.integers(-16256, 16256)))
def test_limb_split_is_exact(q):
    """HSER-2.4: Q = 128*hi + lo, both int8, |lo| <= 64."""
    hi, lo = split_limbs(q, 2)
    assert np.abs(lo.astype(np.int64)).max() <= 64
    assert (128 * hi.astype(np.int64) + lo == q).all()
    assert split_limbs(np.clip(q, -127, 127), 1)[0].dtype == np.int8


def test_exact_dot_matches_python_integers_at_the_bound():
    """HSER-3.1, HSER-3.2, OVW-2.4: the accumulator at d = 2**17 with extreme limbs equals Python's exact sum."""
    d = 1 << 17
    qx = np.full((2, d), 16256, np.int64)
    qx[1, ::2] = -16256
    qw = np.full((1, d), -16256, np.int64)
    acc = exact_dot(qx, qw)
    assert int(acc[0, 0]) == -16256 * 16256 * d
    assert abs(int(acc[0, 0])) < 2 ** 53 and int(acc[1, 0]) == 0
    # one int8 limb pair: 127*127*2**17 < 2**31
    assert 127 * 127 * d < 2 ** 31
    assert float(acc[0, 0]) == -16256 * 16256 * d        # binary64 conversion is exact


def test_logits_formula_and_finiteness():
    """HSER-3.3: z = (f64(acc) * sx) * sw; finite for the extreme scales."""
    acc = np.array([[3, -7], [2 ** 52, -(2 ** 52)]], np.int64)
    sx = dequant_scale(np.array([3.4e38, 1e-45], np.float32), 2)
    sw = dequant_scale(np.array([3.4e38, 1e-45], np.float32), 2)
    z = logits(acc, sx, sw)
    assert np.isfinite(z).all()
    assert z[0, 0] == (3.0 * sx[0]) * sw[0] and z[1, 1] == (-(2.0 ** 52) * sx[1]) * sw[1]


def spec_hex(name):
    text = registry()["HSER-6.3"].text
    return int(re.search(rf"`{name} = 0x([0-9A-F]+)`", text).group(1), 16)


def test_exp_constants_match_the_spec_text():
    """HSER-6.3: the constants in the code are the bit patterns written in the spec."""
    f32bits = lambda v: int(np.array([v], np.float32).view(np.uint32)[0])
    assert f32bits(cexp_mod.LOG2E) == spec_hex("LOG2E")
    assert f32bits(cexp_mod.LN2_HI) == spec_hex("LN2_HI")
    assert f32bits(cexp_mod.LN2_LO) == spec_hex("LN2_LO")
    assert [f32bits(c) for c in cexp_mod.EXP_COEFFS] == [spec_hex(f"C{k}") for k in range(7, -1, -1)]
    # and they are what the spec says they are: nearest binary32 to 1/k!, log2(e), ln2 - LN2_HI
    assert [f32bits(c) for c in cexp_mod.EXP_COEFFS] == [f32bits(np.float32(1 / math.factorial(k))) for k in range(7, -1, -1)]
    assert f32bits(cexp_mod.LOG2E) == f32bits(np.float32(math.log2(math.e)))
    assert f32bits(cexp_mod.LN2_LO) == f32bits(np.float32(math.log(2) - 0.693359375))


def ulp_error(t):
    y = canonical_exp(t).astype(np.float64)
    ref = np.exp(t.astype(np.float64))
    r32 = ref.astype(np.float32)
    ulp = (np.nextafter(r32, np.float32(np.inf)) - r32).astype(np.float64)
    return np.abs(y - ref) / ulp


def test_canonical_exp_within_bound_on_a_stratified_sample():
    """HSER-6.4: <= 1.5 ulp; every 4099th binary32 in [-87, -0] plus the edges (the proof checks all)."""
    b = np.arange(0x80000000, 0xC2AE0001, 4099, dtype=np.uint64).astype(np.uint32)
    edges = np.array([0x80000000, 0x80000001, 0xC2AE0000, 0xB3800000, 0xBF317218, 0xBF800000], np.uint32)
    t = np.concatenate([b, edges]).view(np.float32)
    err = ulp_error(t)
    print(f"canonical_exp: worst {err.max():.4f} ulp over {t.size} inputs at t={t[np.argmax(err)]!r}")
    assert err.max() <= 1.5


def test_canonical_exp_special_values():
    """HSER-6.1, HSER-6.4: exact 1 at zero, +0.0 below -87 and at -inf."""
    t = np.array([0.0, -0.0, -87.0, -87.00001, -1e30, -np.inf], np.float32)
    y = canonical_exp(t)
    assert y[0] == 1 and y[1] == 1 and y[2] > 0
    assert (bits(y[3:]) == 0).all()                      # +0.0 exactly
    assert np.all(np.isfinite(y))


def test_tree_sum_order_and_padding():
    """HSER-6.5: the pairwise tree with -0.0 padding; differs from left-to-right on a chosen input."""
    v = np.array([1.0, 2 ** -24, 2 ** -24, 2 ** -24, 2 ** -24], np.float32)
    f = np.float32
    expect = ((f(v[0]) + f(v[1])) + (f(v[2]) + f(v[3]))) + (f(v[4]) + f(-0.0))
    assert bits(tree_sum(v)[None])[0] == bits(np.array([expect]))[0]
    seq = f(0)
    for x in v:
        seq = f(seq + x)
    assert seq != tree_sum(v)                            # the order is observable, so it must be fixed
    neg = np.array([-0.0, -0.0, -0.0], np.float32)
    assert bits(tree_sum(neg)[None])[0] == 0x80000000  # -0.0 padding keeps -0.0 sums exact


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 70)),
                  elements=st.floats(-1e300, 1e300, allow_nan=False)))
def test_softmax_properties(z):
    """HSER-6.6: binary32, in [0, 1], the best candidate's e is exactly 1, sums to 1 within n ulps."""
    p = softmax(z)
    assert p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))
    best = np.argmax(z, axis=1)
    S = 1 / p[np.arange(len(z)), best].astype(np.float64)
    assert np.all(S >= 1 - 1e-6) and np.all(S <= z.shape[1] * (1 + 1e-6))
    assert np.all(np.abs(p.astype(np.float64).sum(axis=1) - 1) <= z.shape[1] * 2 ** -23)


def test_softmax_matches_its_steps():
    """HSER-6.6 recomputed step by step from the clause for one row."""
    z = np.array([[1.5, -3.25, 1.5, 80.0, -100.0]])
    m = 80.0
    e = [canonical_exp(np.array([np.float32(v - m)]))[0] if v - m >= -87 else np.float32(0) for v in z[0]]
    S = tree_sum(np.array(e, np.float32))
    expect = np.array([np.float32(x) / S for x in e], np.float32)
    assert (bits(softmax(z)[0]) == bits(expect)).all()


def test_dequant_scale():
    """HSER-2.5: scale = binary64(a) / (127 * 128**(L-1)), one binary64 division."""
    a = np.array([1.0, 3.0, 1e-45, 3.4e38], np.float32)
    for L in (1, 2):
        assert (dequant_scale(a, L) == a.astype(np.float64) / (127 * 128 ** (L - 1))).all()


def test_router_rows_are_quantized_independently():
    """HSER-2.6: changing one router row changes no other row's integers or scale."""
    from lite_llm.reference.router_weights import QuantizedMatrix  # noqa: F401  (the type routing reads)

    w = np.random.default_rng(3).standard_normal((6, 40)).astype(np.float32)
    q0, a0 = quantize_rows(w, 2)
    w2 = w.copy()
    w2[3] *= np.float32(1000.0)
    q1, a1 = quantize_rows(w2, 2)
    keep = [0, 1, 2, 4, 5]
    assert (q0[keep] == q1[keep]).all() and (a0[keep] == a1[keep]).all()


def test_exact_logits_do_not_depend_on_summation_order():
    """HSER-3.1, HSER-3.4: permuting the features (a different reduction order) leaves the exact logits'
    bits unchanged, while a float32 dot product of the same values changes."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    w = rng.standard_normal((16, 256)).astype(np.float32)
    qx, ax = quantize_rows(x, 2)
    qw, aw = quantize_rows(w, 2)
    z = logits(exact_dot(qx, qw), dequant_scale(ax, 2), dequant_scale(aw, 2))
    perm = rng.permutation(256)
    zp = logits(exact_dot(qx[:, perm], qw[:, perm]), dequant_scale(ax, 2), dequant_scale(aw, 2))
    assert (bits(z) == bits(zp)).all()
    f = (x[:, None, :] * w[None, :, :])                           # float32 products, summed in two orders
    s1 = np.zeros((64, 16), np.float32)
    s2 = np.zeros((64, 16), np.float32)
    for i in range(256):
        s1 += f[:, :, i]
        s2 += f[:, :, perm[i]]
    assert (bits(s1) != bits(s2)).any()


def test_canonical_exp_follows_the_clause_step_by_step():
    """HSER-6.2: recompute with binary32 scalars, one operation per line, and compare bits."""
    f = np.float32
    C = [f(c) for c in (1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5, 1.0, 1.0)]
    LOG2E, HI, LO = f(np.float32(1.4426950408889634)), f(0.693359375), f(np.float32(0.6931471805599453 - 0.693359375))
    ts = np.random.default_rng(2).uniform(-87, 0, 3000).astype(np.float32)
    for t in ts:
        n = f(np.rint(f(t * LOG2E)))
        r = f(f(t - f(n * HI)) - f(n * LO))
        p = C[0]
        for c in C[1:]:
            p = f(f(p * r) + c)
        expect = f(p * f(2.0 ** int(n)))
        assert canonical_exp(np.array([t]))[0] == expect, t


def test_routing_uses_no_library_exp():
    """HSER-6.7, OVW-2.2: the routing path of the reference calls no exp function."""
    import inspect

    from lite_llm.reference import cexp, router, softmax as sm
    for mod in (cexp, router, sm):
        src = inspect.getsource(mod)
        assert "np.exp(" not in src and "math.exp(" not in src and "expm1" not in src, mod.__name__


# --- Three hidden limbs (TIER-1.5, HSER-2.3, HSER-2.4, HSER-3.2) ------------------------------------

@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 40)), elements=finite32))
def test_quantize_three_limbs_bounds_and_formula(x):
    """HSER-2.3 with L = 3: Q = round_half_even(y * 2**14) (y * 2**14 exact), |Q| <= 2080768, reached by
    the absmax; the scale is a / 2080768 (HSER-2.5)."""
    q, a = quantize_rows(x, 3)
    q2, _ = quantize_rows(x, 2)
    assert np.all(np.abs(q) <= 2080768)
    for i in range(x.shape[0]):
        if a[i] == 0:
            assert not q[i].any()
            continue
        f = np.float32(2.0 ** 64) if a[i] < np.float32(2.0 ** -64) else np.float32(1.0)
        r = np.float32(np.float32(127) / np.float32(a[i] * f))
        y = (x[i] * f) * r
        assert [int(v) for v in q[i]] == [round(float(v) * 16384) for v in y]
        assert np.max(np.abs(q[i])) == 2080768
        assert np.all(np.abs(q[i] - 128 * q2[i]) <= 64)      # the same y, 7 more bits
    assert bits(dequant_scale(a, 3)).tolist() == bits(a.astype(np.float64) / 2080768.0).tolist()


def test_three_limb_split_is_exact_for_every_q():
    """HSER-2.4: Q = 16384 top + 128 mid + lo, |top| <= 127, |mid|, |lo| <= 64, for every |Q| <= 2080768."""
    q = np.arange(-2080768, 2080769, dtype=np.int64)
    top, mid, lo = split_limbs(q, 3)
    assert top.dtype == mid.dtype == lo.dtype == np.int8
    assert np.array_equal(16384 * top.astype(np.int64) + 128 * mid.astype(np.int64) + lo.astype(np.int64), q)
    assert np.abs(top).max() == 127 and np.abs(mid.astype(np.int64)).max() == 64 and np.abs(lo.astype(np.int64)).max() == 64


def test_six_term_combine_equals_exact_dot_at_the_bound():
    """HSER-3.2: with 3 + 2 limbs the six int32 limb sums, combined as 2**21 S_tH + 2**14 (S_tL + S_mH) +
    2**7 (S_mL + S_lH) + S_lL, give acc exactly; the largest |acc| at d = 2**17 is below 2**52."""
    from lite_llm.reference.logits import exact_dot_limbs

    d = 1 << 17
    qx = np.full((2, d), 2080768, np.int64)
    qx[1, ::2] = -2080768
    qw = np.full((2, d), 16256, np.int64)
    qw[1, 1::3] = -16255
    acc = exact_dot(qx, qw)
    assert int(acc[0, 0]) == d * 2080768 * 16256 < 2 ** 52
    assert np.array_equal(exact_dot_limbs(qx, qw, 3, 2), acc)
    rng = np.random.default_rng(5)
    for lx, lw in ((3, 1), (3, 2), (2, 2), (1, 2)):
        a = rng.integers(-127 * 128 ** (lx - 1), 127 * 128 ** (lx - 1) + 1, (7, 300))
        b = rng.integers(-127 * 128 ** (lw - 1), 127 * 128 ** (lw - 1) + 1, (5, 300))
        assert np.array_equal(exact_dot_limbs(a, b, lx, lw), exact_dot(a, b)), (lx, lw)
