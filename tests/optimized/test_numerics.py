"""The torch building blocks of the optimized router against the NumPy reference, bit for bit:
mix64 and keys (HSER-4), quantization (HSER-2), exact logits (HSER-3), top-k (HSER-5), canonical exp,
tree sum and softmax (HSER-6)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lite_llm.optimized import cexp as ocexp
from lite_llm.optimized import seeds as oseeds
from lite_llm.optimized.logits import exact_dot, logits
from lite_llm.optimized.quantize import dequant_scale, quantize_rows, split_limbs
from lite_llm.optimized.ranking import top_k
from lite_llm.optimized.softmax import softmax, tree_sum
from lite_llm.reference import cexp as rcexp
from lite_llm.reference import logits as rlogits
from lite_llm.reference import quantize as rquant
from lite_llm.reference import ranking as rrank
from lite_llm.reference import seeds as rseeds
from lite_llm.reference import softmax as rsoft
from tests.optimized.common import DEVICES, assert_bits

finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
words = st.integers(0, 2 ** 64 - 1)


def t(a, device):
    return torch.from_numpy(np.array(a)).to(device)


# --- HSER-4: words in int64 tensors -------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_mix64_on_int64_equals_unsigned_words(device):
    """HSER-4.3: wrapping int64 multiplies and masked shifts give the SplitMix64 finalizer's bits."""
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.integers(0, 2 ** 64, 4000, dtype=np.uint64),
                        np.array([0, 1, 2 ** 63, 2 ** 63 - 1, 2 ** 64 - 1, 0x9E3779B97F4A7C15], np.uint64)])
    got = oseeds.mix64(t(w.view(np.int64), device)).cpu().numpy().view(np.uint64)
    assert_bits(got, rseeds.mix64_array(w), "mix64")
    assert all(oseeds.mix64_int(int(x)) == rseeds.mix64(int(x)) for x in w[:200])


@given(words, st.integers(1, 3), st.integers(0, 2 ** 16 - 1), st.integers(0, 2 ** 32 - 1))
def test_level_seeds_and_keys(seed, level, tier, group):
    """HSER-4.2 .. HSER-4.5: level seeds, group seeds of level 3 and tie keys equal the reference's."""
    tier, group = (0, 0) if level == 1 else (tier, 0 if level == 2 else group)
    s = oseeds.level_seed(seed, level, tier, group)
    assert s == rseeds.level_seed(seed, level, tier, group)
    keys = oseeds.tie_keys(torch.tensor(oseeds.as_signed(s)), 37).numpy().view(np.uint64)
    assert_bits(keys, rseeds.tie_keys(s, 37), "tie keys")
    g0 = group & ~7
    many = oseeds.group_level_seeds(seed, tier, g0 + 8, first=g0).numpy().view(np.uint64)
    assert [int(v) for v in many] == [rseeds.level_seed(seed, 3, tier, g) for g in range(g0, g0 + 8)]


def test_ordered_keys_compare_as_unsigned():
    w = np.array([0, 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1], np.uint64)
    o = oseeds.ordered(torch.from_numpy(w.view(np.int64)))
    assert torch.equal(torch.argsort(o), torch.arange(5))


# --- HSER-2: quantization -------------------------------------------------------------------------

def extreme_rows() -> np.ndarray:
    sub = np.float32(2.0 ** -149)
    rows = [
        [3.4028235e38, -1.7e38, 1.0, -3.4028235e38, 0.0, 5e-45, 1e-30, 2.5],
        [1 * sub, -2 * sub, 0, 3 * sub, 7 * sub, -7 * sub, sub, 0],          # subnormals only
        [0, 0, -0.0, 0, 0, 0, 0, 0],                                          # zero row
        [1.1754944e-38, -1.1754942e-38, 2e-39, 1e-45, 0, 0, 1, 1],           # normal/subnormal boundary
        [1, -1, 0.5, -0.5, 0.25 + 2 ** -24, 1 / 254, 1 / 256, -1 / 254],    # halfway cases of y * 128
        [127.5, 1, 2, 3, 4, 5, 6, 7],
        [65504, -65504, 6.1e-5, -6e-8, 1, 2, 3, 4],
    ]
    rng = np.random.default_rng(7)
    rand = rng.standard_normal((20, 8)) * 10.0 ** rng.integers(-40, 38, (20, 1))
    return np.concatenate([np.array(rows, np.float32), rand.astype(np.float32)])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("limbs", [1, 2])
def test_quantize_extremes_equal_reference(device, limbs):
    """HSER-2.1 .. HSER-2.5 at the largest, smallest, subnormal and halfway inputs."""
    x = extreme_rows()
    q, a = quantize_rows(t(x, device), limbs)
    rq, ra = rquant.quantize_rows(x, limbs)
    assert_bits(q.cpu().numpy().astype(np.int64), rq, "Q")
    assert_bits(a, ra, "absmax")
    assert_bits(dequant_scale(a, limbs), rquant.dequant_scale(ra, limbs), "scale")


@pytest.mark.parametrize("device", DEVICES)
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 33)), elements=finite32),
       limbs=st.sampled_from([1, 2]))
def test_quantize_random_equal_reference(device, x, limbs):
    q, a = quantize_rows(t(x, device), limbs)
    rq, ra = rquant.quantize_rows(x, limbs)
    assert_bits(q.cpu().numpy().astype(np.int64), rq, "Q")
    assert_bits(dequant_scale(a, limbs), rquant.dequant_scale(ra, limbs), "scale")


def spec_quantize(x: np.ndarray, limbs: int) -> np.ndarray:
    """HSER-2.3 for rows of binary32 x with absmax >= 2**-64 (no prescale), in NumPy binary32: one
    reciprocal r = 127 / a per row, then Q = round_half_even((x * r) * 128**(limbs-1)) (exact scaling)."""
    a = np.abs(x).max(axis=1, keepdims=True)
    r = np.float32(127.0) / a
    return np.round((x * r) * np.float32(128 ** (limbs - 1))).astype(np.int64)


def other_orders(x: np.ndarray, limbs: int) -> dict[str, np.ndarray]:
    """Q by the orders HSER-2.3 does not allow: (x / a) * 127 and (x * 127) / a."""
    a = np.abs(x).max(axis=1, keepdims=True)
    s = np.float32(128 ** (limbs - 1))
    return {"(x / a) * 127": np.round(((x / a) * np.float32(127.0)) * s).astype(np.int64),
            "(x * 127) / a": np.round(((x * np.float32(127.0)) / a) * s).astype(np.int64)}


def reciprocal_order_rows(limbs: int, n_rows: int = 6, per_row: int = 7) -> np.ndarray:
    """Rows [a, x_1 .. x_m] (a the absmax) on which ``spec_quantize`` gives other integers than both
    ``other_orders``, for every x_i. Found by search: x next to the binary32 values nearest to the
    half-integer boundaries of Q, where the one extra rounding of another order flips Q."""
    rng = np.random.default_rng(11 + limbs)
    qmax = 127 * 128 ** (limbs - 1)
    half = np.arange(-qmax, qmax, dtype=np.float64) + 0.5                       # Q's rounding boundaries
    rows = []
    while len(rows) < n_rows:
        a = np.float32(rng.uniform(1.0, 2.0))
        x0 = (half * np.float64(a) / qmax).astype(np.float32)
        xs = np.concatenate([np.nextafter(x0, np.float32(np.inf)), x0, np.nextafter(x0, np.float32(-np.inf))])
        xs = xs[np.abs(xs) < a]
        cand = np.concatenate([np.full((len(xs), 1), a, np.float32), xs[:, None]], axis=1)   # rows [a, x]
        want = spec_quantize(cand, limbs)[:, 1]
        differs = np.all([q[:, 1] != want for q in other_orders(cand, limbs).values()], axis=0)
        hits = xs[differs]
        if len(hits) >= per_row:
            pick = rng.choice(hits, per_row, replace=False)
            rows.append(np.concatenate([[a], pick]).astype(np.float32) * np.float32(2.0 ** (-20 * len(rows) + 40)))
    return np.stack(rows)                                                         # powers of two: exact scaling


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("limbs", [1, 2])
def test_quantize_multiplies_by_one_reciprocal_per_row(device, limbs):
    """HSER-2.3 step 2-3: y = x * r with r = 127 / a rounded once per row, not (x / a) * 127 nor
    (x * 127) / a. The inputs are chosen so that each other order gives other integers."""
    x = reciprocal_order_rows(limbs)
    want = spec_quantize(x, limbs)
    for order, q in other_orders(x, limbs).items():
        assert np.all(q[:, 1:] != want[:, 1:]), f"the inputs do not tell HSER-2.3's order from {order}"
    q, _ = quantize_rows(t(x, device), limbs)
    assert_bits(q.cpu().numpy().astype(np.int64), want, "Q")


def test_split_limbs_reassemble_every_value():
    """HSER-2.4: Q = 128 hi + lo with int8 limbs, |lo| <= 64, for every Q of two limbs."""
    q = torch.arange(-16256, 16257, dtype=torch.int32)
    hi, lo = split_limbs(q, 2)
    assert hi.dtype == lo.dtype == torch.int8
    assert torch.equal(128 * hi.to(torch.int32) + lo.to(torch.int32), q)
    assert int(lo.abs().max()) <= 64 and int(hi.abs().max()) <= 127
    (one,) = split_limbs(torch.arange(-127, 128, dtype=torch.int32), 1)
    assert torch.equal(one.to(torch.int32), torch.arange(-127, 128, dtype=torch.int32))


# --- HSER-3: exact logits -----------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lx,lw", [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)])
def test_exact_logits_at_the_bound(device, lx, lw):
    """HSER-3.1 .. HSER-3.3: the largest |acc| (d = 2**17, every Q at its bound) is exact, and the
    binary64 scaling equals the reference's, for every limb combination TIER-1.5 allows. HSER-3.2: even
    with 3 + 2 limbs (2**17 * 2080768 * 16256 < 2**52) the sum equals the int8-limb combine."""
    d = 1 << 17
    qmx, qmw = 127 * 128 ** (lx - 1), 127 * 128 ** (lw - 1)
    qx = torch.full((2, d), qmx, dtype=torch.int32, device=device)
    qx[1, ::2] = -qmx
    qw = torch.full((3, d), qmw, dtype=torch.int32, device=device)
    qw[1] = -qmw
    qw[2, 1::3] = -qmw + 1
    acc = exact_dot(qx, qw)
    want = rlogits.exact_dot(qx.cpu().numpy(), qw.cpu().numpy())
    assert_bits(acc.to(torch.int64), want, "acc")
    assert int(acc.abs().max()) == d * qmx * qmw and d * qmx * qmw < 2 ** 52
    assert_bits(want, rlogits.exact_dot_limbs(qx.cpu().numpy(), qw.cpu().numpy(), lx, lw), "limb combine")
    sx = torch.tensor([1e-30, 3e38], dtype=torch.float64, device=device)
    sw = torch.tensor([1e-40, 7.0, 2.0 ** -140], dtype=torch.float64, device=device)
    assert_bits(logits(acc, sx, sw), rlogits.logits(want, sx.cpu().numpy(), sw.cpu().numpy()), "z")


# --- HSER-5: ranking --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@given(seed=words, n=st.integers(1, 40), k=st.integers(1, 8), distinct=st.integers(1, 4))
def test_top_k_with_ties_equals_reference(device, seed, n, k, distinct):
    """HSER-5.1 .. HSER-5.3: logits with few distinct values (many ties, +-0.0), any seed."""
    rng = np.random.default_rng(seed % 2 ** 32)
    vals = np.array([0.0, -0.0, 1.5, -2.0, 1e300, -1e-300][: distinct + 2])
    z = rng.choice(vals, size=(6, n))
    keys = rseeds.tie_keys(seed, n)
    want = rrank.top_k(z, keys, k)
    got = top_k(t(z, device), oseeds.ordered(t(keys.view(np.int64), device)), k)
    padded = np.full((6, k), -1, np.int64)
    padded[:, : want.shape[1]] = want
    assert_bits(got, padded, "top-k")


# --- HSER-6: canonical exp, tree sum, softmax ---------------------------------------------------------

def exp_inputs() -> np.ndarray:
    rng = np.random.default_rng(3)
    special = np.array([0.0, -0.0, -87.0, np.nextafter(np.float32(-87), np.float32(0)),
                        np.nextafter(np.float32(-87), np.float32(-100)), -1e-45, -1e-38, -0.5, -0.34657359,
                        -0.34657362, -1.0, -86.99999, -100.0, -3.4e38, -np.inf], np.float32)
    grid = -np.linspace(0, 88, 200001).astype(np.float32)
    rand = (-np.abs(rng.standard_normal(50000)) * 10.0 ** rng.uniform(-8, 2, 50000)).astype(np.float32)
    return np.concatenate([special, grid, rand])


@pytest.mark.parametrize("device", DEVICES)
def test_canonical_exp_equals_reference(device):
    """HSER-6.1 .. HSER-6.3 on 250,000 inputs including the flush threshold, -0.0, subnormals, -inf."""
    x = exp_inputs()
    assert_bits(ocexp.canonical_exp(t(x, device)), rcexp.canonical_exp(x), "canonical_exp")


def test_exp_constants_are_the_spec_bit_patterns():
    """HSER-6.3: the torch and Triton constants are the binary32 values of the listed bit patterns."""
    assert [np.float32(c) for c in ocexp.EXP_COEFFS] == list(rcexp.EXP_COEFFS)
    assert (np.float32(ocexp.LOG2E), np.float32(ocexp.LN2_HI), np.float32(ocexp.LN2_LO)) == \
        (rcexp.LOG2E, rcexp.LN2_HI, rcexp.LN2_LO)


@pytest.mark.parametrize("device", DEVICES)
@given(v=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 70)),
                    elements=st.one_of(finite32, st.sampled_from([0.0, -0.0, 1e38, -1e38]))))
def test_tree_sum_equals_reference(device, v):
    """HSER-6.5: padded pairwise tree, including -0.0 results and overflow to infinity."""
    with np.errstate(over="ignore", invalid="ignore"):
        want = rsoft.tree_sum(v)
    assert_bits(tree_sum(t(v, device)), want, "tree_sum")


@pytest.mark.parametrize("device", DEVICES)
@given(z=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 40)),
                    elements=st.one_of(st.floats(-1e300, 1e300), st.sampled_from([0.0, -0.0, 87.0, -87.0, 1.0]))),
       pad=st.integers(0, 9))
def test_softmax_equals_reference_with_padding(device, z, pad):
    """HSER-6.6: any binary64 logits; padding columns change no bit and come out +0.0."""
    want = rsoft.softmax(z)
    zp = np.concatenate([z, np.full((z.shape[0], pad), 12345.0)], axis=1)
    valid = np.arange(zp.shape[1])[None, :] < z.shape[1]
    got = softmax(t(zp, device), t(np.broadcast_to(valid, zp.shape), device))
    assert_bits(got[:, : z.shape[1]], want, "softmax")
    assert_bits(got[:, z.shape[1]:], np.zeros((z.shape[0], pad), np.float32), "padding")


# --- Three hidden limbs (TIER-1.5, HSER-2.4, HSER-3.2): the torch path against the reference -----------

FIDELITY_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fidelity" / "minilm-l6-resid.5.npy"


@pytest.mark.parametrize("device", DEVICES)
def test_quantize_three_limbs_equal_reference(device):
    """HSER-2.3 with L = 3: Q = round_half_even(y * 2**14), |Q| <= 2080768, on extreme rows, random rows and
    real heavy-tailed hidden states (all-MiniLM-L6-v2 resid.5), bit for bit the reference's."""
    rng = np.random.default_rng(3)
    real = np.load(FIDELITY_SAMPLE)[:256].astype(np.float32)
    for name, x in (("extremes", extreme_rows()), ("random", (rng.standard_t(3, (64, 40))).astype(np.float32)),
                    ("real", real)):
        q, a = quantize_rows(t(x, device), 3)
        rq, ra = rquant.quantize_rows(x, 3)
        assert_bits(q.cpu().numpy().astype(np.int64), rq, f"Q ({name}, 3 limbs)")
        assert_bits(dequant_scale(a, 3), rquant.dequant_scale(ra, 3), f"scale ({name}, 3 limbs)")
        assert int(np.abs(rq).max()) <= 2080768
    assert int(np.abs(rquant.quantize_rows(real, 3)[0]).max()) == 2080768         # the bound is reached


@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 33)), elements=finite32))
def test_quantize_three_limbs_random_equal_reference(x):
    q, a = quantize_rows(t(x, "cpu"), 3)
    rq, ra = rquant.quantize_rows(x, 3)
    assert_bits(q.numpy().astype(np.int64), rq, "Q")
    assert_bits(dequant_scale(a, 3), rquant.dequant_scale(ra, 3), "scale")


def test_split_three_limbs_reassemble_every_value():
    """HSER-2.4: Q = 16384 top + 128 mid + lo with int8 limbs, |mid|, |lo| <= 64, for every Q of three limbs,
    and the limbs equal the reference's split."""
    q = torch.arange(-2080768, 2080769, dtype=torch.int32)
    top, mid, lo = split_limbs(q, 3)
    assert top.dtype == mid.dtype == lo.dtype == torch.int8
    i32 = torch.int32
    assert torch.equal(16384 * top.to(i32) + 128 * mid.to(i32) + lo.to(i32), q)
    assert int(top.abs().max()) == 127 and int(mid.abs().max()) <= 64 and int(lo.abs().max()) <= 64
    for got, want, name in zip((top, mid, lo), rquant.split_limbs(q.numpy().astype(np.int64), 3), ("top", "mid", "lo")):
        assert_bits(got.numpy(), want, name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lw", [1, 2])
def test_route_three_limbs_on_real_states_equals_reference(device, lw):
    """route() with hidden_limbs = 3 (backend "auto": the torch path, also on CUDA) on 512 real heavy-tailed
    tokens through the bundled three-level router: every field of the record bit for bit the reference's."""
    from dataclasses import replace

    from lite_llm.optimized.router import fits_triton, load_router, route
    from lite_llm.reference.router import route as ref_route
    from lite_llm.reference.router_weights import init_router_weights, quantize_router
    from lite_llm.spec.configs import resolve_config
    from tests.optimized.common import assert_same_route, router_dict

    base = resolve_config("fidelity-hser")
    cfg = replace(base, router=replace(base.router, hidden_limbs=3, weight_limbs=lw))
    w = init_router_weights(cfg, 2)
    h = np.load(FIDELITY_SAMPLE)[:512]
    tiers = tuple(range(cfg.n_tiers))
    assert not fits_triton(cfg, tiers)                              # the kernels take at most two limbs
    got = route(h, load_router(cfg, router_dict(cfg, w), device=device), tiers, 0)
    assert_same_route(got, ref_route(h, quantize_router(cfg, w), tiers, 0))
    two = replace(cfg, router=replace(cfg.router, hidden_limbs=2))
    other = ref_route(h, quantize_router(two, w), tiers, 0)
    print(f"3+{lw} vs 2+{lw}: {int((other.expert != got.expert.cpu().numpy()).any(axis=1).sum())} of {len(h)} "
          "tokens route differently")


def test_triton_backend_refuses_three_limbs():
    """The Triton kernels split into at most two limbs: backend "triton" with 3 hidden limbs is refused (never a
    silent 1-limb result); "auto" picks torch."""
    from dataclasses import replace

    from lite_llm.optimized.router import load_router, route
    from lite_llm.reference.router_weights import init_router_weights
    from lite_llm.spec.configs import resolve_config
    from tests.optimized.common import router_dict

    base = resolve_config("fidelity-hser")
    cfg = replace(base, router=replace(base.router, hidden_limbs=3))
    qr = load_router(cfg, router_dict(cfg, init_router_weights(cfg, 1)))
    with pytest.raises(ValueError, match="at most 2 hidden limbs"):
        route(np.zeros((1, cfg.d_model), np.float32), qr, (0, 1), 0, backend="triton")
