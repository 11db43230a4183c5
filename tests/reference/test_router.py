"""The reference router end to end (HSER-7 .. HSER-10): determinism, batch invariance, exclusion of
tiers outside the TierSet, ties, the active set and errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lite_llm.reference.router import route
from lite_llm.reference.router_weights import RouterWeights, init_router_weights, quantize_router
from lite_llm.reference.seeds import level_seed, tie_keys
from lite_llm.spec.config import TierConfig
from lite_llm.spec.errors import (DTypeError, DuplicateTierError, EmptyTierSetError, NonFiniteError,
                                  RouterWeightsError, SeedError, ShapeError, UnknownTierError)
from tests.helpers import assert_same_bits, assert_same_record, gaussian, make_config


def routed(cfg, h, tiers="all", seed=None, wseed=3):
    from lite_llm.spec.tierset import parse_tier_set

    return route(h, quantize_router(cfg, init_router_weights(cfg, wseed)), parse_tier_set(cfg, tiers), seed)


def test_same_inputs_same_bits():
    """HSER-7.4: two runs give identical bits."""
    cfg = make_config()
    h = gaussian(64, cfg.d_model)
    assert_same_record(routed(cfg, h), routed(cfg, h.copy()))


@given(st.lists(st.integers(1, 7), min_size=1, max_size=6), st.integers(0, 2 ** 64 - 1))
def test_batch_invariance_for_any_split(sizes, seed):
    """HSER-7.4: a token's routing does not depend on the other tokens: route the batch in pieces."""
    cfg = make_config(k=(2, 2, 3))
    h = gaussian(sum(sizes), cfg.d_model, seed=len(sizes))
    full = routed(cfg, h, seed=seed)
    start = 0
    for n in sizes:
        part = routed(cfg, h[start:start + n], seed=seed)
        for f in ("tier", "group", "expert", "gate", "count", "tier_probs", "chosen_tiers", "chosen_groups"):
            assert_same_bits(getattr(part, f), getattr(full, f)[start:start + n], f)
        start += n


def test_single_token_equals_batch_reversed():
    """HSER-7.4: permuting the batch permutes the record."""
    cfg = make_config()
    h = gaussian(17, cfg.d_model, seed=5)
    a, b = routed(cfg, h), routed(cfg, h[::-1].copy())
    assert_same_bits(a.gate[::-1].copy(), b.gate)
    assert_same_bits(a.expert[::-1].copy(), b.expert)


@given(st.integers(1, 4), st.integers(0, 2 ** 32))
def test_tiers_outside_the_tierset_change_nothing(extra, seed):
    """TIER-2.6, HSER-7.1: adding tiers (with arbitrary, even huge, router rows) outside T leaves the
    routing under T unchanged, bit for bit."""
    cfg = make_config(seed=seed)
    h = gaussian(40, cfg.d_model, seed=seed % 1000)
    big = cfg
    for i in range(extra):
        big = big.with_tier(TierConfig(f"added_{i}", 1 + i, 2 + i, 8))
    w_big = init_router_weights(big, 3)
    # make the new tiers' level-1 rows dominate every logit, as masking with -inf would not survive
    w_big = RouterWeights(tuple(r * np.float32(1e4) if i >= cfg.n_tiers else r for i, r in enumerate(w_big.tier)),
                          w_big.group, w_big.expert)
    for tiers in [(0,), (0, 2), (1, 2), (0, 1, 2)]:
        a = route(h, quantize_router(cfg, init_router_weights(cfg, 3)), tiers)
        b = route(h, quantize_router(big, w_big), tiers)
        assert_same_record(a, b)


def test_masking_with_minus_infinity_would_not_be_bit_exact():
    """Why TIER-2.6 excludes instead of masking: padding the level-1 softmax with excluded candidates
    changes the tree sum's shape, so probabilities move (shown on an input where they do)."""
    from lite_llm.reference.softmax import softmax

    z = np.array([[0.1, 0.2, 0.3]])
    padded = np.concatenate([z, np.full((1, 2), -1e300)], axis=1)     # '-inf'-like excluded tiers
    p, q = softmax(z), softmax(padded)[:, :3]
    # e of the excluded entries is +0.0; the values agree here, but the candidate count differs...
    assert p.shape != softmax(padded).shape
    # ...and with more candidates the tree pairs different elements: find a case where the bits differ
    rng = np.random.default_rng(0)
    differs = 0
    for _ in range(200):
        z = rng.standard_normal((1, 3)) * 3
        pad = np.concatenate([z, np.full((1, 1), -1e300)], axis=1)
        zz = np.concatenate([z[:, :1], np.full((1, 1), -1e300), z[:, 1:]], axis=1)   # excluded tier in the middle
        differs += int(not np.array_equal(softmax(z), softmax(zz)[:, [0, 2, 3]]))
    assert differs > 0


def test_all_equal_scores_follow_the_key_order_at_every_level():
    """HSER-5.1, HSER-7.1, HSER-7.2, HSER-7.3: a zero hidden state gives all-zero logits; every choice is the
    key order of its level seed, and different seeds choose differently."""
    cfg = make_config(k=(2, 2, 2))
    h = np.zeros((1, cfg.d_model), np.float32)
    chosen = set()
    for s in range(6):
        first_groups = None
        r = routed(cfg, h, seed=s)
        k1 = tie_keys(level_seed(s, 1), cfg.n_tiers)
        tiers = sorted(range(3), key=lambda t: int(k1[t]))[:2]
        assert r.chosen_tiers[0].tolist() == tiers
        for a, t in enumerate(tiers):
            G = cfg.tiers[t].groups
            k2 = tie_keys(level_seed(s, 2, t), G)
            groups = sorted(range(G), key=lambda g: int(k2[g]))[:2]
            assert r.chosen_groups[0, a].tolist() == groups
            first_groups = first_groups or groups
            assert np.all(r.group_probs[0, a, :G] == np.float32(1 / G))
        E = cfg.tiers[tiers[0]].experts_per_group
        k3 = tie_keys(level_seed(s, 3, tiers[0], first_groups[0]), E)
        assert r.expert[0, :2].tolist() == sorted(range(E), key=lambda e: int(k3[e]))[:2]
        chosen.add(tuple(r.expert[0]))
    assert len(chosen) > 1


def test_constructed_ties_between_identical_rows():
    """HSER-5.1: two experts with identical router rows tie exactly for every token; the key decides."""
    cfg = make_config(tiers=((1, 4),), k=(1, 1, 1))
    w = init_router_weights(cfg, 1)
    e = w.expert[0].copy()
    e[0, 1] = e[0, 3] = np.float32(10) * e[0, 0]     # experts 1 and 3 equal and dominant
    w = RouterWeights(w.tier, w.group, (e,))
    h = gaussian(50, cfg.d_model, seed=9)
    h[:, :] = np.abs(h) * np.sign(e[0, 1])[None, :]   # make the dominant rows score highest
    for s in (0, 1, 2, 3):
        r = route(h, quantize_router(cfg, w), (0,), s)
        k3 = tie_keys(level_seed(s, 3, 0, 0), 4)
        winner = 1 if k3[1] < k3[3] else 3
        assert (r.expert[:, 0] == winner).all()


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=4),
       st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)), st.data())
def test_active_set_size(tiers, k, data):
    """HSER-9.1, HSER-5.3: count = sum over chosen tiers of min(k_g, G_t) * min(k_e, E_t); = K when
    feasible; slots in nested rank order; gates sum to 1."""
    cfg = make_config(tiers=tuple(tiers), k=k)
    tset = tuple(sorted(data.draw(st.sets(st.integers(0, len(tiers) - 1), min_size=1))))
    r = route(gaussian(12, cfg.d_model, seed=len(tiers)), quantize_router(cfg, init_router_weights(cfg, 2)), tset)
    K = k[0] * k[1] * k[2]
    assert r.tier.shape == (12, K)
    for i in range(12):
        chosen = [t for t in r.chosen_tiers[i] if t >= 0]
        assert len(chosen) == min(k[0], len(tset))
        expect = sum(min(k[1], cfg.tiers[t].groups) * min(k[2], cfg.tiers[t].experts_per_group) for t in chosen)
        assert r.count[i] == expect <= K
        feasible = len(tset) >= k[0] and all(cfg.tiers[t].groups >= k[1] and cfg.tiers[t].experts_per_group >= k[2]
                                             for t in tset)
        if feasible:
            assert r.count[i] == K
        n = r.count[i]
        assert (r.tier[i, n:] == -1).all() and (r.gate[i, n:] == 0).all()
        # HSER-9.2: tier ranks are non-decreasing along the slots
        ranks = [list(r.chosen_tiers[i]).index(t) for t in r.tier[i, :n]]
        assert ranks == sorted(ranks)
        assert abs(float(r.gate[i, :n].astype(np.float64).sum()) - 1) < 1e-5
        assert len(set(zip(r.tier[i, :n], r.group[i, :n], r.expert[i, :n]))) == n


def test_gates_are_products_of_renormalised_level_probabilities():
    """HSER-8.1, HSER-8.2: recompute one token's gates from the record's probabilities."""
    from lite_llm.reference.softmax import tree_sum

    cfg = make_config(k=(2, 2, 2))
    r = routed(cfg, gaussian(3, cfg.d_model, seed=4))
    f = np.float32
    for i in range(3):
        tiers = list(r.chosen_tiers[i])
        p1 = [r.tier_probs[i, list(r.tier_set).index(t)] for t in tiers]
        s1 = tree_sum(np.array(p1, f))
        slot = 0
        for a, t in enumerate(tiers):
            groups = [g for g in r.chosen_groups[i, a] if g >= 0]
            p2 = [r.group_probs[i, a, g] for g in groups]
            s2 = tree_sum(np.array(p2 + [-0.0] * (2 - len(p2)), f))
            for b, g in enumerate(groups):
                experts = [int(e) for e, tt, gg in zip(r.expert[i], r.tier[i], r.group[i]) if tt == t and gg == g]
                p3 = [r.expert_probs[i, a, b, e] for e in experts]
                s3 = tree_sum(np.array(p3 + [-0.0] * (2 - len(p3)), f))
                for e, pe in zip(experts, p3):
                    expect = f(f(f(p1[a] / s1) * f(p2[b] / s2)) * f(pe / s3))
                    assert r.gate[i, slot] == expect and r.expert[i, slot] == e
                    slot += 1


def test_k_one_everywhere_gives_gate_one():
    """HSER-8.1: with one chosen candidate per level, r = 1 exactly and the gate is 1."""
    cfg = make_config(k=(1, 1, 1))
    r = routed(cfg, gaussian(20, cfg.d_model))
    assert (r.gate[:, 0] == 1).all() and (r.count == 1).all()


def test_empty_batch():
    """HSER-1.1: T = 0 is valid."""
    cfg = make_config()
    r = routed(cfg, np.zeros((0, cfg.d_model), np.float32))
    assert r.gate.shape == (0, cfg.router.slots) and r.count.shape == (0,)


def test_float16_and_float64_inputs():
    """HSER-1.2: float16 converts exactly; float64 rounds to nearest-even first."""
    cfg = make_config()
    h = gaussian(8, cfg.d_model)
    assert_same_record(routed(cfg, h.astype(np.float16)), routed(cfg, h.astype(np.float16).astype(np.float32)))
    h64 = h.astype(np.float64) + 1e-12
    assert_same_record(routed(cfg, h64), routed(cfg, h64.astype(np.float32)))


@pytest.mark.parametrize("bad, err, msg", [
    (np.zeros((4,), np.float32), ShapeError, r"shape \(T, 32\).*got \(4,\)"),
    (np.zeros((2, 31), np.float32), ShapeError, r"shape \(T, 32\).*got \(2, 31\)"),
    (np.zeros((2, 32), np.int32), DTypeError, "int32"),
    (np.zeros((2, 32), np.bool_), DTypeError, "bool"),
])
def test_bad_hidden_states(bad, err, msg):
    """HSER-1.1, HSER-1.2, HSER-10.1: clear errors with the spec's codes."""
    cfg = make_config()
    with pytest.raises(err, match=msg):
        routed(cfg, bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39])
def test_non_finite_hidden_states_name_the_position(value):
    """HSER-1.3: NaN, +-inf and float64 values that overflow binary32 are rejected with their index."""
    cfg = make_config()
    h = gaussian(4, cfg.d_model).astype(np.float64)
    h[2, 7] = value
    with pytest.raises(NonFiniteError, match=r"\(2, 7\)") as e:
        routed(cfg, h)
    assert e.value.code == "E_NONFINITE"


def test_error_order_and_tierset_errors():
    """HSER-10.3: the seed is checked before the TierSet, the TierSet before the hidden states;
    HSER-10.2: a rejected call raises and returns no record at all."""
    cfg = make_config()
    q = quantize_router(cfg, init_router_weights(cfg, 1))
    nan = np.full((1, cfg.d_model), np.nan, np.float32)
    with pytest.raises(SeedError):
        route(nan, q, ["nope"], seed=-1)
    with pytest.raises(UnknownTierError):
        route(nan, q, ["nope"])
    with pytest.raises(EmptyTierSetError):
        route(nan, q, [])
    with pytest.raises(DuplicateTierError):
        route(nan, q, [0, 0])
    with pytest.raises(NonFiniteError):
        route(nan, q, [0])


def test_bad_router_weights():
    """HSER-1.4: wrong shape, wrong dtype, non-finite weights: E_WEIGHTS naming the tier."""
    cfg = make_config()
    w = init_router_weights(cfg, 1)
    bad_shape = RouterWeights(w.tier, (w.group[0][:2],) + w.group[1:], w.expert)
    bad_dtype = RouterWeights(w.tier, w.group, (w.expert[0].astype(np.float64),) + w.expert[1:])
    nan = w.tier[2].copy(); nan[5] = np.nan
    bad_value = RouterWeights(w.tier[:2] + (nan,), w.group, w.expert)
    for bad, msg in ((bad_shape, "group router of tier 'tier_0'"), (bad_dtype, "float64"), (bad_value, "tier_2")):
        with pytest.raises(RouterWeightsError, match=msg):
            quantize_router(cfg, bad)
    with pytest.raises(RouterWeightsError):
        quantize_router(cfg, RouterWeights(w.tier[:2], w.group[:2], w.expert[:2]))


def test_routing_record_shapes_and_padding():
    """HSER-9.3: shapes, types and padding values of the record."""
    cfg = make_config(tiers=((4, 4), (2, 3)), k=(2, 3, 4))
    r = routed(cfg, gaussian(5, cfg.d_model))
    assert r.tier.dtype == np.int32 and r.gate.dtype == np.float32 and r.count.dtype == np.int32
    assert r.tier_probs.shape == (5, 2) and r.chosen_tiers.shape == (5, 2)
    assert r.group_probs.shape == (5, 2, 4) and r.chosen_groups.shape == (5, 2, 3)
    assert r.expert_probs.shape == (5, 2, 3, 4)
    for i in range(5):
        for a, t in enumerate(r.chosen_tiers[i]):
            G, E = cfg.tiers[t].groups, cfg.tiers[t].experts_per_group
            assert (r.group_probs[i, a, G:] == 0).all() and (r.chosen_groups[i, a, min(3, G):] == -1).all()
            assert (r.expert_probs[i, a, :, E:] == 0).all()


def test_tierset_forms_and_numpy_ids():
    """TIER-2.1: names and ids mixed, NumPy integer ids; a non-collection is E_UNKNOWN_TIER."""
    cfg = make_config()
    q = quantize_router(cfg, init_router_weights(cfg, 1))
    h = gaussian(3, cfg.d_model)
    assert_same_record(route(h, q, [np.int64(1), "tier_2"]), route(h, q, (1, 2)))
    assert_same_record(route(h, q, np.array([0, 2])), route(h, q, ("tier_0", "tier_2")))
    for bad in (1, "tier_1", None):
        with pytest.raises(UnknownTierError):
            route(h, q, bad)
    with pytest.raises(DuplicateTierError):
        route(h, q, ["tier_1", 1])


def test_seed_forms_for_routing():
    """HSER-4.1: NumPy integer seeds route like Python ints; the config seed is the default."""
    cfg = make_config(seed=2 ** 64 - 7)
    q = quantize_router(cfg, init_router_weights(cfg, 1))
    h = gaussian(6, cfg.d_model)
    assert_same_record(route(h, q, (0, 1, 2), np.uint64(2 ** 64 - 7)), route(h, q, (0, 1, 2)))
    assert_same_record(route(h, q, (0, 1, 2), "0xFFFFFFFFFFFFFFF9"), route(h, q, (0, 1, 2)))


def test_non_array_hidden_states_get_a_code():
    """HSER-1.2: an object NumPy cannot turn into a float array is E_DTYPE, not a bare TypeError."""
    cfg = make_config()
    q = quantize_router(cfg, init_router_weights(cfg, 1))
    with pytest.raises(DTypeError):
        route([[object()] * cfg.d_model], q, (0,))
