"""The reference forward pass (MODEL-1, MODEL-2, MODEL-4): composition, norms, rotary positions,
attention, precision, causality, sequence independence, TierSet exclusion and input validation."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lite_llm.spec.configs import resolve_config
from lite_llm.reference.attention import self_attention
from lite_llm.reference.experts import swiglu
from lite_llm.reference.model import forward, forward_routing_margins
from lite_llm.reference.moe import moe_layer
from lite_llm.reference.norm import rms_norm
from lite_llm.reference.rope import apply_rope, rope_tables
from lite_llm.reference.weights import init_model_weights, init_tier_weights
from lite_llm.spec.clauses import registry
from lite_llm.spec.config import TierConfig
from lite_llm.spec.errors import (DTypeError, DuplicateTierError, RouterWeightsError, SeedError, TokenError,
                                  UnknownTierError)
from tests.helpers import RECORD_FIELDS, assert_same_bits, make_config

ALL = (0, 1, 2)
TOL = 1e-4                      # MODEL-4.3 (a), (b)


@pytest.fixture(scope="module")
def tiny():
    cfg = resolve_config("tiny")
    return cfg, init_model_weights(cfg, 0)


@pytest.fixture(scope="module")
def small():
    """d 32, 2 heads, 2 layers, vocab 64: fast enough for property tests."""
    cfg = make_config(k=(2, 2, 1), n_layers=2, vocab_size=64, max_seq_len=16)
    return cfg, init_model_weights(cfg, 1)


def tokens(n, vocab, seed=0, batch=None):
    shape = (n,) if batch is None else (batch, n)
    return np.random.default_rng(seed).integers(0, vocab, shape)


def same_output(a, b, rows=slice(None)):
    """Bit-exact equality of logits, router inputs, MoE outputs and routing records (on token rows)."""
    assert_same_bits(a.logits[rows], b.logits[rows], "logits")
    for l, (ra, rb) in enumerate(zip(a.routes, b.routes)):
        assert_same_bits(a.router_inputs[l][rows], b.router_inputs[l][rows], f"router input {l}")
        assert_same_bits(a.moe_outputs[l][rows], b.moe_outputs[l][rows], f"moe output {l}")
        for f in RECORD_FIELDS:
            assert_same_bits(getattr(ra, f)[rows], getattr(rb, f)[rows], f"layer {l} {f}")


# ---------------------------------------------------------------------------------------------
# Shapes, composition, determinism

def test_output_shapes_single_and_batch(tiny):
    """MODEL-1.1, MODEL-2.1: (T,) -> (T, V); (B, T) -> (B, T, V); one record per layer over N = B*T tokens."""
    cfg, w = tiny
    o = forward(cfg, w, tokens(16, cfg.vocab_size), ALL)
    assert o.logits.shape == (16, cfg.vocab_size) and o.logits.dtype == np.float32
    assert len(o.routes) == len(o.router_inputs) == len(o.moe_outputs) == cfg.n_layers
    assert o.router_inputs[0].shape == (16, cfg.d_model) and o.routes[0].gate.shape == (16, cfg.router.slots)
    ob = forward(cfg, w, tokens(5, cfg.vocab_size, batch=3), ALL)
    assert ob.logits.shape == (3, 5, cfg.vocab_size) and ob.routes[1].count.shape == (15,)
    o64 = forward(cfg, w, [1, 2, 3], ALL, dtype=np.float64)
    assert o64.logits.dtype == np.float64 and o64.router_inputs[0].dtype == np.float64
    assert o64.routes[0].gate.dtype == np.float32                        # MODEL-1.4: gates stay binary32


def test_empty_sequence(tiny):
    """MODEL-1.1: T = 0 is valid; no tokens, no logits, no imbalance (AUX-1.5)."""
    cfg, w = tiny
    o = forward(cfg, w, [], ALL)
    assert o.logits.shape == (0, cfg.vocab_size) and o.aux_loss.total == 0.0


def test_same_inputs_same_bits(tiny):
    cfg, w = tiny
    t = tokens(12, cfg.vocab_size, seed=3)
    same_output(forward(cfg, w, t, ALL), forward(cfg, w, t.copy(), ALL))


def test_default_seed_is_the_configs(small):
    """MODEL-3.1: seed=None routes with the config's seed, in every layer."""
    cfg, w = small
    t = tokens(10, cfg.vocab_size)
    same_output(forward(cfg, w, t, ALL), forward(cfg, w, t, ALL, seed=cfg.router.seed))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_is_the_composition_of_its_blocks(small, dtype):
    """MODEL-2.1, MODEL-2.7, MODEL-3.1: embedding, per layer norm -> attention -> residual -> norm ->
    MoE -> residual, final norm, LM head; recomposed here from the blocks, bit for bit."""
    cfg, w = small
    t = tokens(9, cfg.vocab_size, seed=2)
    wd = {n: (a if ".router_" in n else a.astype(dtype)) for n, a in w.items()}
    h = wd["embed"][t]                                                    # (T, d) rows of embed, exact copy
    assert_same_bits(h.astype(np.float32), w["embed"][t])
    for l in range(cfg.n_layers):
        h = h + self_attention(cfg, wd, l, rms_norm(h, wd[f"layers.{l}.attn_norm"], cfg.norm_eps))
        x = rms_norm(h, wd[f"layers.{l}.ffn_norm"], cfg.norm_eps)
        out, _ = moe_layer(cfg, w, l, x, ALL)
        h = h + out
    logits = rms_norm(h, wd["final_norm"], cfg.norm_eps) @ wd["lm_head"].T
    assert_same_bits(forward(cfg, w, t, ALL, dtype=dtype).logits, logits)


# ---------------------------------------------------------------------------------------------
# The float operations against their formulas (MODEL-2.2 .. MODEL-2.4, MODEL-3.2)

def test_rms_norm_matches_formula():
    """MODEL-2.2: y_i = x_i / sqrt(mean(x^2) + eps) * w_i, checked element by element in Python floats."""
    rng = np.random.default_rng(0)
    x, w, eps = rng.standard_normal((4, 24)) * 3, rng.standard_normal(24), 1e-5
    y = rms_norm(x, w, eps)
    worst = 0.0
    for r in range(4):
        ms = math.fsum(float(v) ** 2 for v in x[r]) / 24
        for i in range(24):
            expect = float(x[r, i]) / math.sqrt(ms + eps) * float(w[i])
            worst = max(worst, abs(y[r, i] - expect) / abs(expect))
    print(f"rms_norm float64 worst relative error {worst:.2e}")
    assert worst < 1e-14
    y32 = rms_norm(x.astype(np.float32), w.astype(np.float32), eps)
    assert y32.dtype == np.float32 and np.max(np.abs(y32 - y)) / np.max(np.abs(y)) < 1e-6


def test_swiglu_matches_formula():
    """MODEL-3.2: W_down (silu(W_gate x) * (W_up x)), silu(z) = z / (1 + exp(-z)), weights (out, in)."""
    rng = np.random.default_rng(1)
    d, F = 6, 5
    x, wg, wu, wd = rng.standard_normal(d), rng.standard_normal((F, d)), rng.standard_normal((F, d)), rng.standard_normal((d, F))
    hidden = []
    for f in range(F):
        g = math.fsum(wg[f, i] * x[i] for i in range(d))
        u = math.fsum(wu[f, i] * x[i] for i in range(d))
        hidden.append(g / (1 + math.exp(-g)) * u)
    expect = np.array([math.fsum(wd[o, f] * hidden[f] for f in range(F)) for o in range(d)])
    got = swiglu(x, wg, wu, wd)
    print(f"swiglu worst abs error {np.max(np.abs(got - expect)):.2e}")
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)


def test_rope_rotate_half_convention():
    """MODEL-2.4: features m and m + d_head/2 pair up; w_m = theta**(-2m/d_head); derived by hand for
    d_head = 4, theta = 100: w_0 = 1, w_1 = 0.1."""
    cos, sin = rope_tables(8, 4, 100.0, np.float64)
    for p in range(8):
        e0 = apply_rope(np.array([[1.0, 0, 0, 0]]), cos[p:p + 1], sin[p:p + 1])[0]
        e1 = apply_rope(np.array([[0, 1.0, 0, 0]]), cos[p:p + 1], sin[p:p + 1])[0]
        e2 = apply_rope(np.array([[0, 0, 1.0, 0]]), cos[p:p + 1], sin[p:p + 1])[0]
        np.testing.assert_allclose(e0, [math.cos(p), 0, math.sin(p), 0], atol=1e-15)
        np.testing.assert_allclose(e1, [0, math.cos(0.1 * p), 0, math.sin(0.1 * p)], atol=1e-15)
        np.testing.assert_allclose(e2, [-math.sin(p), 0, math.cos(p), 0], atol=1e-15)


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 20), st.integers(0, 2 ** 16))
def test_rope_scores_depend_only_on_relative_position(m, n, shift, seed):
    """MODEL-2.4: rope(q, m) . rope(k, n) depends only on m - n (to rounding), and rotation keeps norms."""
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal(16), rng.standard_normal(16)
    cos, sin = rope_tables(64, 16, 10000.0, np.float64)

    def rot(v, p):
        return apply_rope(v[None, :], cos[p:p + 1], sin[p:p + 1])[0]

    a, b = rot(q, m) @ rot(k, n), rot(q, m + shift) @ rot(k, n + shift)
    assert abs(a - b) <= 1e-12 * (np.linalg.norm(q) * np.linalg.norm(k))
    assert abs(np.linalg.norm(rot(q, m)) - np.linalg.norm(q)) <= 1e-13 * np.linalg.norm(q)


def test_rope_at_position_zero_is_the_identity():
    x = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
    cos, sin = rope_tables(1, 8, 10000.0, np.float32)
    assert_same_bits(apply_rope(x, cos, sin), x)


def test_attention_matches_formula(small):
    """MODEL-2.3: heads are contiguous feature blocks, q and k rotated, scores / sqrt(d_head), causal
    softmax, heads concatenated, times Wo^T; recomputed here with Python loops in binary64."""
    cfg, w = small
    l, T, d, H = 1, 6, cfg.d_model, cfg.n_heads
    dh = d // H
    a = np.random.default_rng(4).standard_normal((T, d))
    w64 = {n: v.astype(np.float64) for n, v in w.items() if n.startswith(f"layers.{l}.attn.")}
    q, k, v = (a @ w64[f"layers.{l}.attn.{n}"].T for n in ("wq", "wk", "wv"))
    o = np.zeros((T, d))
    for h in range(H):
        cols = slice(h * dh, (h + 1) * dh)
        qr, kr = np.zeros((T, dh)), np.zeros((T, dh))
        for p in range(T):
            for m in range(dh // 2):
                ang = p * cfg.rope_theta ** (-2 * m / dh)
                c, s = math.cos(ang), math.sin(ang)
                for src, dst in ((q, qr), (k, kr)):
                    x1, x2 = src[p, cols][m], src[p, cols][m + dh // 2]
                    dst[p, m], dst[p, m + dh // 2] = x1 * c - x2 * s, x1 * s + x2 * c
        for i in range(T):
            s = [float(qr[i] @ kr[j]) / math.sqrt(dh) for j in range(i + 1)]
            e = [math.exp(x - max(s)) for x in s]
            o[i, cols] = sum(e[j] / sum(e) * v[j, cols] for j in range(i + 1))
    expect = o @ w64[f"layers.{l}.attn.wo"].T
    got = self_attention(cfg, w64, l, a)
    print(f"attention worst abs error {np.max(np.abs(got - expect)):.2e}")
    np.testing.assert_allclose(got, expect, rtol=1e-11, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Precision and margins (MODEL-1.4, MODEL-4.3, MODEL-4.5)

def test_float32_matches_float64_within_tolerance(tiny):
    """MODEL-4.3: binary32 logits and router inputs are within 1e-4 of the binary64 reference wherever
    routing agrees; MODEL-4.5: a sequence whose binary64 margins all reach mu routes identically."""
    cfg, w = tiny
    S = 127 * 128 ** (cfg.router.hidden_limbs - 1)
    mu = TOL + 1.1 / S
    worst_logits = worst_x = 0.0
    agreeing = with_margin = 0
    for seed in range(8):
        t = tokens(8, cfg.vocab_size, seed=seed)
        a = forward(cfg, w, t, ALL)
        b = forward(cfg, w, t, ALL, dtype=np.float64)
        same = all(np.array_equal(getattr(ra, f), getattr(rb, f)) for ra, rb in zip(a.routes, b.routes)
                   for f in ("tier", "group", "expert", "count", "chosen_tiers", "chosen_groups"))
        if forward_routing_margins(cfg, w, b).min() >= mu:
            with_margin += 1
            assert same, f"sequence {seed}: margin >= mu but routing differs"
        if not same:
            continue
        agreeing += 1
        worst_logits = max(worst_logits, np.max(np.abs(a.logits - b.logits)) / np.max(np.abs(b.logits)))
        for xa, xb in zip(a.router_inputs, b.router_inputs):
            worst_x = max(worst_x, np.max(np.max(np.abs(xa - xb), axis=1) / np.max(np.abs(xb), axis=1)))
    print(f"float32 vs float64 over {agreeing} sequences ({with_margin} with margin >= {mu:.3g}): "
          f"logits {worst_logits:.2e}, router inputs {worst_x:.2e}")
    assert agreeing >= 6 and with_margin >= 1
    assert worst_logits <= TOL and worst_x <= TOL


def test_margin_constant_matches_the_spec():
    """MODEL-4.5 quotes mu for one and two hidden limbs; recompute them from mu = eps_r + 1.1 / S."""
    text = registry()["MODEL-4.5"].text
    for limbs, shown in ((2, "1.68e-4"), (1, "8.76e-3")):
        mu = TOL + 1.1 / (127 * 128 ** (limbs - 1))
        assert f"{float(shown):.3g}" == f"{mu:.3g}" and shown in text


# ---------------------------------------------------------------------------------------------
# Causality, sequence independence, TierSet exclusion (MODEL-2.5, MODEL-2.6, MODEL-1.3)

@given(pos=st.integers(0, 11), new_id=st.integers(0, 63), seed=st.integers(0, 1000))
def test_causality_bit_exact(small, pos, new_id, seed):
    """MODEL-2.5: changing token `pos` changes nothing at positions < pos, bit for bit."""
    cfg, w = small
    t = tokens(12, cfg.vocab_size, seed=seed)
    t2 = t.copy()
    t2[pos] = new_id
    same_output(forward(cfg, w, t, ALL), forward(cfg, w, t2, ALL), rows=slice(0, pos))


def test_later_token_changes_later_logits(small):
    """The causality test is not vacuous: the changed position and the ones after it do change."""
    cfg, w = small
    t = tokens(8, cfg.vocab_size)
    t2 = t.copy()
    t2[3] = (t[3] + 1) % cfg.vocab_size
    a, b = forward(cfg, w, t, ALL).logits, forward(cfg, w, t2, ALL).logits
    assert all(not np.array_equal(a[i], b[i]) for i in range(3, 8))


def test_sequences_in_a_batch_are_independent(small):
    """MODEL-2.6: each sequence's outputs are the same bits alone, in a batch, and in another batch order."""
    cfg, w = small
    batch = tokens(7, cfg.vocab_size, seed=5, batch=3)
    full = forward(cfg, w, batch, ALL)
    rev = forward(cfg, w, batch[::-1].copy(), ALL)
    for b in range(3):
        alone = forward(cfg, w, batch[b], ALL)
        assert_same_bits(full.logits[b], alone.logits, f"sequence {b}")
        assert_same_bits(rev.logits[2 - b], alone.logits, f"sequence {b} reversed batch")
        rows = slice(7 * b, 7 * (b + 1))
        for l in range(cfg.n_layers):
            assert_same_bits(full.router_inputs[l][rows], alone.router_inputs[l])
            assert_same_bits(full.moe_outputs[l][rows], alone.moe_outputs[l])
            for f in RECORD_FIELDS:
                assert_same_bits(getattr(full.routes[l], f)[rows], getattr(alone.routes[l], f), f)


def test_tiers_outside_the_tierset_change_no_output(small):
    """MODEL-1.3, TIER-2.6: a model with an added tier gives the same bits under every old TierSet;
    tensors of excluded tiers may be absent or even non-finite."""
    cfg, w = small
    big = cfg.with_tier(TierConfig("added", 3, 2, 8))
    w_big = {**w, **init_tier_weights(big, 7, 3)}
    t = tokens(10, cfg.vocab_size, seed=9)
    for tiers in [(0,), (2,), (0, 2), (1, 2), ALL]:
        a, b = forward(cfg, w, t, tiers), forward(big, w_big, t, tiers)
        same_output(a, b)
        assert a.aux_loss == b.aux_loss
        kept = {n: v for n, v in w.items() if ".tiers." not in n or any(f".tiers.tier_{i}." in n for i in tiers)}
        same_output(a, forward(cfg, kept, t, tiers))
        poisoned = {n: (np.full_like(v, np.nan) if n not in kept else v) for n, v in w.items()}
        same_output(a, forward(cfg, poisoned, t, tiers))
    # not vacuous: with the new tier allowed, it is chosen and the logits move
    c = forward(big, w_big, t, (0, 1, 2, 3))
    assert any((r.tier == 3).any() for r in c.routes)
    assert not np.array_equal(c.logits, forward(cfg, w, t, ALL).logits)


# ---------------------------------------------------------------------------------------------
# Errors (MODEL-1.1 .. MODEL-1.4, MODEL-6.1)

@pytest.mark.parametrize("bad, needle", [
    (np.array([1.0, 2.0]), "dtype float64"),
    (np.array([True, False]), "dtype bool"),
    (np.zeros((1, 2, 3), np.int64), "shape (1, 2, 3)"),
    (np.array(5), "shape ()"),
    (list(range(65)), "length 65 exceeds max_seq_len=64"),
    ([3, 256, 1], "token id 256 at position 1"),
    ([[0, 1], [2, -1]], "token id -1 at position (1, 1)"),
    ([[0, 1], [2]], "(T,) or (B, T)"),
    (["a", "b"], "must be integers"),
])
def test_bad_tokens_are_rejected(tiny, bad, needle):
    """MODEL-1.1: E_TOKEN naming the shape, type, length or the first bad position and id."""
    cfg, w = tiny
    with pytest.raises(TokenError) as e:
        forward(cfg, w, bad, ALL)
    assert e.value.code == "E_TOKEN" and e.value.clause == "MODEL-1.1" and "MODEL-1.1" in registry()
    assert needle in str(e.value), str(e.value)


def test_bad_weights_are_rejected_naming_the_tensor(tiny):
    """MODEL-1.3: missing, wrong type, wrong shape, non-finite, not an array, not a mapping."""
    cfg, w = tiny
    t = [1, 2, 3]
    name = "layers.1.tiers.tier_10b.w_up"
    cases = [
        ({k: v for k, v in w.items() if k != name}, "is missing"),
        ({**w, name: w[name].astype(np.float64)}, "dtype float64"),
        ({**w, name: w[name][:, :, :-1]}, "expected (8, 4, 32, 64)"),
        ({**w, name: w[name].tolist()}, "is a list"),
    ]
    nan = w[name].copy()
    nan[2, 1, 0, 5] = np.inf
    cases.append(({**w, name: nan}, "index (2, 1, 0, 5)"))
    for weights, needle in cases:
        with pytest.raises(RouterWeightsError) as e:
            forward(cfg, weights, t, ALL)
        assert e.value.code == "E_WEIGHTS" and e.value.clause == "MODEL-1.3"
        assert name in str(e.value) and needle in str(e.value), str(e.value)
    with pytest.raises(RouterWeightsError, match="lm_head"):
        forward(cfg, {k: v for k, v in w.items() if k != "lm_head"}, t, ALL)
    with pytest.raises(RouterWeightsError, match="mapping"):
        forward(cfg, list(w.items()), t, ALL)


def test_checks_run_in_the_spec_order(tiny):
    """MODEL-1.2: seed, then TierSet, then tokens, then weights."""
    cfg, w = tiny
    no_weights = {}
    with pytest.raises(SeedError):
        forward(cfg, no_weights, [999], ("nope",), seed=-1)
    with pytest.raises(UnknownTierError):
        forward(cfg, no_weights, [999], ("nope",))
    with pytest.raises(DuplicateTierError):
        forward(cfg, no_weights, [999], (0, 0))
    with pytest.raises(TokenError):
        forward(cfg, no_weights, [999], ALL)
    with pytest.raises(RouterWeightsError, match="embed"):
        forward(cfg, no_weights, [1], ALL)


def test_working_precision_is_float32_or_float64(tiny):
    """MODEL-1.4: the reference rejects other working precisions with E_DTYPE."""
    cfg, w = tiny
    with pytest.raises(DTypeError) as e:
        forward(cfg, w, [1], ALL, dtype=np.float16)
    assert e.value.clause == "MODEL-1.4"
