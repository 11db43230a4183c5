"""The MoE block of one layer (MODEL-3, MODEL-4.5): the exact combine recomputed from the spec text,
token independence, TierSet exclusion, routing margins and their bound, and errors."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lite_llm.spec.configs import resolve_config
from lite_llm.reference.experts import swiglu
from lite_llm.reference.model import forward
from lite_llm.reference.moe import moe_combine, moe_layer, routing_margins
from lite_llm.reference.router import route
from lite_llm.reference.router_weights import init_router_weights, quantize_router
from lite_llm.reference.quantize import dequant_scale, quantize_rows
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.errors import (DTypeError, NonFiniteError, RouterWeightsError, SeedError, ShapeError,
                                  UnknownTierError)
from tests.helpers import RECORD_FIELDS, assert_same_bits, assert_same_record, gaussian, make_config

ALL = (0, 1, 2)


@pytest.fixture(scope="module")
def tiny():
    """The bundled tiny model and the router inputs of both layers for 16 tokens."""
    cfg = resolve_config("tiny")
    w = init_model_weights(cfg, 0)
    out = forward(cfg, w, np.random.default_rng(0).integers(0, cfg.vocab_size, 16), ALL)
    return cfg, w, out.router_inputs


def spec_tree_sum(values, dtype):
    """HSER-6.5 written from the text: pad to a power of two with -0.0, then sum adjacent pairs."""
    v = [dtype.type(x) for x in values]
    while len(v) & (len(v) - 1):
        v.append(dtype.type(-0.0))
    while len(v) > 1:
        v = [dtype.type(v[i] + v[i + 1]) for i in range(0, len(v), 2)]
    return v[0]


def spec_combine(gate, count, y):
    """MODEL-3.3 from the text, one token and one feature at a time in NumPy scalars."""
    dt = y.dtype
    N, K, d = y.shape
    out = np.empty((N, d), dt)
    for n in range(N):
        for j in range(d):
            terms = [dt.type(dt.type(gate[n, k]) * y[n, k, j]) if k < count[n] else dt.type(-0.0) for k in range(K)]
            out[n, j] = spec_tree_sum(terms, dt)
    return out


def expert_outputs(cfg, w, layer, x, r):
    """Each active slot's expert applied to its token (MODEL-3.2); padding slots left as NaN, never read."""
    N, K = r.gate.shape
    y = np.full((N, K, cfg.d_model), np.nan, x.dtype)
    for n in range(N):
        for k, (t, g, e, _) in enumerate(r.active(n)):
            p = f"layers.{layer}.tiers.{cfg.tiers[t].name}"
            wd = {s: w[f"{p}.{s}"][g, e].astype(x.dtype) for s in ("w_gate", "w_up", "w_down")}
            y[n, k] = swiglu(x[n], wd["w_gate"], wd["w_up"], wd["w_down"])
    return y


# ---------------------------------------------------------------------------------------------
# The combine (MODEL-3.3, MODEL-3.4)

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", [0, 1])
def test_moe_layer_equals_the_spec_combine(tiny, layer, dtype):
    """MODEL-3.3: the block's output is tree_sum over K slots of gate * expert output, -0.0 padded,
    recomputed here token by token and feature by feature, bit for bit."""
    cfg, w, xs = tiny
    x = xs[layer].astype(dtype)
    out, r = moe_layer(cfg, w, layer, x, ALL)
    assert out.dtype == dtype
    assert_same_bits(out, spec_combine(r.gate, r.count, expert_outputs(cfg, w, layer, x, r)))


@given(st.integers(1, 7), st.integers(0, 2 ** 32))
def test_moe_combine_equals_the_spec_for_any_slots(K, seed):
    """MODEL-3.3 with K not a power of two, counts from 0 to K, -0.0, subnormals and large values."""
    rng = np.random.default_rng(seed)
    N, d = 5, 3
    gate = rng.random((N, K)).astype(np.float32)
    gate[0, 0] = 0.0
    y = (rng.standard_normal((N, K, d)) * 10.0 ** rng.integers(-40, 30, (N, K, d))).astype(np.float32)
    y[1, 0, 0] = -0.0
    count = rng.integers(0, K + 1, N)
    assert_same_bits(moe_combine(gate, count, y), spec_combine(gate, count, y))


@given(hnp.arrays(np.float32, (3, 4, 2), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_moe_combine_padding_never_changes_the_sum(y):
    """MODEL-3.4: padding slots are -0.0, so the result equals the tree sum of the active slots alone
    (a count of 3 of K = 4 against K = 3); padding outputs are never read, even NaN."""
    gate = np.full((3, 4), 0.5, np.float32)
    count = np.array([3, 3, 3])
    padded = y.copy()
    padded[:, 3] = np.nan
    with np.errstate(over="ignore", invalid="ignore"):
        assert_same_bits(moe_combine(gate, count, padded), moe_combine(gate[:, :3], count, y[:, :3]))


def test_single_slot_single_tier_is_the_expert_itself():
    """MODEL-3.4: K = 1 and one tier: the gate is 1 and the block's output is the expert's, bit for bit."""
    cfg = make_config(tiers=((4, 4),), k=(1, 1, 1))
    w = init_model_weights(cfg, 2)
    x = gaussian(6, cfg.d_model, seed=1)
    out, r = moe_layer(cfg, w, 0, x, (0,))
    assert np.all(r.gate[:, 0] == 1)
    assert_same_bits(out, expert_outputs(cfg, w, 0, x, r)[:, 0])


# ---------------------------------------------------------------------------------------------
# Token independence and exclusion (MODEL-3.5, MODEL-1.3)

def test_token_outputs_do_not_depend_on_the_batch(tiny):
    """MODEL-3.5: every token alone, the batch, and the batch reversed give the same bits."""
    cfg, w, xs = tiny
    x = xs[0]
    out, r = moe_layer(cfg, w, 0, x, ALL)
    rev, r_rev = moe_layer(cfg, w, 0, x[::-1].copy(), ALL)
    assert_same_bits(rev[::-1].copy(), out)
    for n in range(x.shape[0]):
        one, r1 = moe_layer(cfg, w, 0, x[n:n + 1], ALL)
        assert_same_bits(one, out[n:n + 1], f"token {n}")
        for f in RECORD_FIELDS:
            assert_same_bits(getattr(r1, f), getattr(r, f)[n:n + 1], f)


def test_tensors_of_excluded_tiers_are_not_read(tiny):
    """MODEL-1.3: absent or non-finite tensors of tiers outside the TierSet change nothing."""
    cfg, w, xs = tiny
    x = xs[1]
    for tiers in [(0,), (1, 2)]:
        out, r = moe_layer(cfg, w, 1, x, tiers)
        names = [f"tier_{n}" for n in ("1b", "10b", "100b")]
        inside = tuple(f".tiers.{names[t]}." for t in tiers)
        dropped = {n: v for n, v in w.items() if ".tiers." not in n or any(s in n for s in inside)}
        poisoned = {n: (v if n in dropped else np.full_like(v, np.nan)) for n, v in w.items()}
        for ww in (dropped, poisoned):
            o2, r2 = moe_layer(cfg, ww, 1, x, tiers)
            assert_same_bits(o2, out)
            assert_same_record(r2, r)


def test_float64_inputs_route_as_their_binary32_rounding(tiny):
    """MODEL-1.4, HSER-1.2: in binary64 the router still reads binary32, so routing is the same bits."""
    cfg, w, xs = tiny
    x = xs[0]
    _, r32 = moe_layer(cfg, w, 0, x, ALL)
    _, r64 = moe_layer(cfg, w, 0, x.astype(np.float64), ALL)
    assert_same_record(r32, r64)


# ---------------------------------------------------------------------------------------------
# Routing margins (MODEL-4.5)

def level1_margin_by_hand(cfg, w, x, chosen_positions):
    """MODEL-4.5 from the text for a level-1-only router: every pair (chosen c_r, candidate after it)."""
    qx, ax = quantize_rows(x[None, :], cfg.router.hidden_limbs)
    sx = float(dequant_scale(ax, cfg.router.hidden_limbs)[0])
    z, norm = [], []
    for tc in cfg.tiers:
        row = w[f"layers.0.tiers.{tc.name}.router_tier"][None, :]
        qw, aw = quantize_rows(row, cfg.router.weight_limbs)
        sw = float(dequant_scale(aw, cfg.router.weight_limbs)[0])
        acc = sum(int(a) * int(b) for a, b in zip(qx[0], qw[0]))           # exact integer sum
        z.append((float(acc) * sx) * sw)
        norm.append(sw * float(np.abs(qw[0]).sum()))
    best, used = np.inf, set()
    for c in chosen_positions:
        used.add(c)
        for q in range(len(z)):
            if q not in used:
                best = min(best, (z[c] - z[q]) / (float(ax[0]) * (norm[c] + norm[q])))
    return best


def test_margin_formula_recomputed_by_hand():
    """MODEL-4.5: one group of one expert per tier, so only level 1 decides; k_tier = 2 also checks
    the order of the chosen pair."""
    cfg = make_config(tiers=((1, 1),) * 5, k=(2, 1, 1))
    w = init_model_weights(cfg, 3)
    x = gaussian(12, cfg.d_model, seed=4)
    _, r = moe_layer(cfg, w, 0, x, tuple(range(5)))
    m = routing_margins(cfg, w, 0, x, r)
    for n in range(12):
        expect = level1_margin_by_hand(cfg, w, x[n], [int(t) for t in r.chosen_tiers[n]])
        assert m[n] == pytest.approx(expect, rel=1e-12), n


def test_margin_is_zero_at_a_tie_and_infinite_without_choice():
    """MODEL-4.5: identical router rows tie (margin 0); one candidate at every level gives +inf."""
    cfg = make_config(tiers=((1, 1), (1, 1)), k=(1, 1, 1))
    w = init_model_weights(cfg, 0)
    w = {**w, "layers.0.tiers.tier_1.router_tier": w["layers.0.tiers.tier_0.router_tier"]}
    x = gaussian(4, cfg.d_model)
    _, r = moe_layer(cfg, w, 0, x, (0, 1))
    assert np.all(routing_margins(cfg, w, 0, x, r) == 0)
    _, r1 = moe_layer(cfg, w, 0, x, (0,))
    assert np.all(routing_margins(cfg, w, 0, x, r1) == np.inf)


@lru_cache(maxsize=None)
def margin_model(limbs: int, wseed: int):
    cfg = make_config(k=(2, 2, 2), limbs=(limbs, 2))
    w = init_model_weights(cfg, wseed)
    return cfg, w, quantize_router(cfg, init_router_weights(cfg, wseed, 0))


@given(st.integers(0, 2 ** 32), st.sampled_from([1e-6, 1e-5, 1e-4, 1e-3]), st.sampled_from([1, 2]))
def test_margin_bound_guarantees_the_same_routing(seed, eps, limbs):
    """MODEL-4.5 bound: if max|x' - x| <= eps max|x| and the margin exceeds eps + 1.03 / S, routing
    x' chooses the same candidates in the same order at every level."""
    cfg, w, router = margin_model(limbs, seed % 3)
    rng = np.random.default_rng(seed)
    x = gaussian(24, cfg.d_model, seed=seed % 1000)
    x_pert = (x + rng.uniform(-1, 1, x.shape) * (eps * np.abs(x).max(axis=1, keepdims=True))).astype(np.float32)
    eps_seen = np.max(np.abs(x_pert - x).max(axis=1) / np.abs(x).max(axis=1))    # of the binary32 inputs
    bound = eps_seen + 1.03 / (127 * 128 ** (limbs - 1))
    r, rp = route(x, router, ALL), route(x_pert, router, ALL)
    safe = routing_margins(cfg, w, 0, x, r) > bound
    for f in ("tier", "group", "expert", "count", "chosen_tiers", "chosen_groups"):
        assert_same_bits(getattr(rp, f)[safe], getattr(r, f)[safe], f)


def test_small_margins_can_flip():
    """The bound is not vacuous: a larger perturbation moves tokens whose margin is below it, and
    only those."""
    cfg = make_config(k=(2, 2, 2))
    w = init_model_weights(cfg, 0)
    x = gaussian(200, cfg.d_model, seed=11)
    eps = 3e-2
    x_pert = (x + np.random.default_rng(1).uniform(-1, 1, x.shape) * eps * np.abs(x).max(axis=1, keepdims=True)).astype(np.float32)
    _, r = moe_layer(cfg, w, 0, x, ALL)
    _, rp = moe_layer(cfg, w, 0, x_pert, ALL)
    moved = (rp.expert != r.expert).any(axis=1) | (rp.tier != r.tier).any(axis=1) | (rp.group != r.group).any(axis=1)
    m = routing_margins(cfg, w, 0, x, r)
    print(f"{int(moved.sum())} of 200 tokens moved at eps={eps}; their largest margin {m[moved].max():.3g}")
    assert moved.any()
    assert np.all(m[moved] <= eps * 1.01 + 1.03 / 16256)


# ---------------------------------------------------------------------------------------------
# Errors (MODEL-1.3, MODEL-1.4, HSER-1)

def test_moe_layer_errors(tiny):
    cfg, w, xs = tiny
    x = xs[0]
    with pytest.raises(SeedError):
        moe_layer(cfg, w, 0, x[:, :3], ("nope",), seed=2 ** 64)
    with pytest.raises(UnknownTierError):
        moe_layer(cfg, w, 0, x[:, :3], ("nope",))
    with pytest.raises(DTypeError) as e:
        moe_layer(cfg, w, 0, x.astype(np.float16), ALL)
    assert e.value.clause == "MODEL-1.4"
    with pytest.raises(ShapeError):
        moe_layer(cfg, w, 0, x[:, :3], ALL)
    bad = x.copy()
    bad[3, 7] = np.nan
    with pytest.raises(NonFiniteError, match=r"\(3, 7\)"):
        moe_layer(cfg, w, 0, bad, ALL)
    name = "layers.0.tiers.tier_100b.w_down"
    with pytest.raises(RouterWeightsError, match=name) as e:
        moe_layer(cfg, {k: v for k, v in w.items() if k != name}, 0, x, ALL)
    assert e.value.clause == "MODEL-1.3"
    moe_layer(cfg, {k: v for k, v in w.items() if k != name}, 0, x, (0, 1))      # tier_100b not read
    with pytest.raises(RouterWeightsError, match="layer 2"):
        moe_layer(cfg, w, 2, x, ALL)


def test_router_weights_of_the_layer_are_the_ones_routed(tiny):
    """MODEL-3.1: the block routes with layers.{l}.tiers.{NAME}.router_* (INIT-2.1): the same record as
    the router alone with the layer's weights from init_router_weights."""
    cfg, w, xs = tiny
    for layer in (0, 1):
        _, r = moe_layer(cfg, w, layer, xs[layer], ALL)
        alone = route(xs[layer], quantize_router(cfg, init_router_weights(cfg, 0, layer)), ALL)
        assert_same_record(r, alone)
