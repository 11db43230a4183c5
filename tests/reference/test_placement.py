"""Storage placement policy (PLACE-1 .. PLACE-3): activation statistics from real routing records,
the prefetch order, and that placement never changes routing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lite_llm.spec.configs import resolve_config
from lite_llm.reference.placement import activation_stats, prefetch_order
from lite_llm.reference.router import route
from lite_llm.reference.router_weights import RouterWeights, init_router_weights, quantize_router
from lite_llm.spec.tensors import tier_shapes
from lite_llm.spec.config import config_from_dict, config_to_dict
from lite_llm.spec.errors import LiteLLMError, ShapeError
from tests.helpers import assert_same_record, gaussian


def layer_routes(cfg, h, tiers, seed=3):
    """One routing record per layer, each layer with its own router weights (INIT-2.1)."""
    return [route(h, quantize_router(cfg, init_router_weights(cfg, seed, layer)), tiers)
            for layer in range(cfg.n_layers)]


def shard_bytes(cfg, t):
    """4 bytes per element of the tier's tensors, from their shapes (independent of PARAM's formula)."""
    return 4 * sum(math.prod(s) for s in tier_shapes(cfg, t).values())


def test_statistics_from_real_routes():
    """PLACE-2.1 .. PLACE-2.3, PLACE-3.1, PLACE-3.2 on the tiny config, two layers, 48 tokens: counts by
    a plain loop over chosen_tiers, the probability fold as a plain Python loop (same bits), sizes from
    the tensor shapes, priority = f * size."""
    cfg = resolve_config("tiny")
    routes = layer_routes(cfg, gaussian(48, cfg.d_model, seed=4), (0, 1, 2))
    s = activation_stats(cfg, routes, (0, 1, 2))
    assert s.pairs == 96 and s.tiers == (0, 1, 2)
    for a in s.per_tier:
        n = sum(1 for r in routes for row in r.chosen_tiers for t in row if t == a.tier)
        acc = 0.0
        for r in routes:
            for i in range(r.tier_probs.shape[0]):
                acc += float(r.tier_probs[i, a.tier])
        assert a.chosen == n and a.frequency == n / 96
        assert a.mean_prob == acc / 96                           # the PLACE-2.3 fold, bit for bit
        assert a.size_bytes == shard_bytes(cfg, a.tier)
        assert a.priority == a.frequency * float(a.size_bytes)
        assert a.placement == cfg.tiers[a.tier].placement and a.name == cfg.tiers[a.tier].name
    print("tiny, 96 pairs:", [(a.name, a.frequency, round(a.mean_prob, 4)) for a in s.per_tier])
    assert sum(a.chosen for a in s.per_tier) == 96 * cfg.router.k_tier          # PLACE-2.5
    assert abs(sum(a.mean_prob for a in s.per_tier) - 1) < 1e-6
    assert [a.placement for a in s.per_tier] == ["HBM", "DRAM", "NVMe"]         # PLACE-1.1: from the config
    order = prefetch_order(s)
    prio = [s.per_tier[t].priority for t in order]
    assert sorted(order) == [0, 1, 2] and prio == sorted(prio, reverse=True)


def test_tiers_outside_the_tierset_count_zero_and_are_not_prefetched():
    """PLACE-2.2, PLACE-2.3, PLACE-3.3: TierSet {0, 2}: tier 1 has f = q = 0 and is not in the order."""
    cfg = resolve_config("tiny")
    s = activation_stats(cfg, layer_routes(cfg, gaussian(30, cfg.d_model), (0, 2)), (0, 2))
    t1 = s.per_tier[1]
    assert (t1.in_tierset, t1.chosen, t1.frequency, t1.mean_prob, t1.priority) == (False, 0, 0.0, 0.0, 0.0)
    assert t1.size_bytes == shard_bytes(cfg, 1)
    assert set(prefetch_order(s)) == {0, 2} and set(prefetch_order(s, "probability")) == {0, 2}


def test_every_tier_chosen_orders_by_size_then_id():
    """PLACE-2.5, PLACE-3.3: with k_tier >= |T| every tier has f = 1, so priority is the size; equal sizes
    tie and go by id."""
    cfg = config_from_dict({
        "spec_version": "0.1", "d_model": 16, "n_heads": 2, "n_layers": 1,
        "tiers": [{"name": "a", "groups": 2, "experts_per_group": 2, "d_ff": 4},
                  {"name": "b", "groups": 4, "experts_per_group": 2, "d_ff": 4},
                  {"name": "c", "groups": 2, "experts_per_group": 2, "d_ff": 4}],
        "router": {"k_tier": 3, "k_group": 1, "k_expert": 1}})
    s = activation_stats(cfg, layer_routes(cfg, gaussian(10, 16), (0, 1, 2)), (0, 1, 2))
    assert [a.frequency for a in s.per_tier] == [1.0, 1.0, 1.0]
    assert shard_bytes(cfg, 1) > shard_bytes(cfg, 0) == shard_bytes(cfg, 2)
    assert prefetch_order(s) == (1, 0, 2)


def test_frequency_and_probability_disagree_on_a_never_chosen_tier():
    """PLACE-2.4's example: tier rows r, -r and 0. Every token's level-1 choice is tier 0 or 1 (one of
    +-z is positive), so tier 2 is never read, yet its mean probability is large; it is the biggest tier,
    so the probability reading would prefetch it first."""
    cfg = config_from_dict({
        "spec_version": "0.1", "d_model": 16, "n_heads": 2, "n_layers": 1,
        "tiers": [{"name": "a", "groups": 2, "experts_per_group": 2, "d_ff": 4},
                  {"name": "b", "groups": 2, "experts_per_group": 2, "d_ff": 4},
                  {"name": "big", "groups": 8, "experts_per_group": 8, "d_ff": 64}],
        "router": {"k_tier": 1, "k_group": 1, "k_expert": 1}})
    w = init_router_weights(cfg, 1)
    w = RouterWeights((w.tier[0], -w.tier[0], np.zeros(16, np.float32)), w.group, w.expert)
    r = route(gaussian(200, 16, seed=6), quantize_router(cfg, w), (0, 1, 2))
    s = activation_stats(cfg, r, (0, 1, 2))
    big = s.per_tier[2]
    print(f"never chosen: f = {big.frequency}, q = {big.mean_prob:.4f}")
    assert big.chosen == 0 and big.frequency == 0.0 and big.mean_prob > 0.1
    assert prefetch_order(s)[-1] == 2 and prefetch_order(s, "probability")[0] == 2
    assert s.per_tier[0].chosen + s.per_tier[1].chosen == 200


def test_no_tokens_gives_zeros_and_id_order():
    """PLACE-2.2, PLACE-2.3: N = 0 gives f = q = 0 for every tier, so the order is by id."""
    cfg = resolve_config("tiny")
    s = activation_stats(cfg, layer_routes(cfg, np.zeros((0, cfg.d_model), np.float32), (0, 1, 2)), (0, 1, 2))
    assert s.pairs == 0 and all(a.frequency == a.mean_prob == a.priority == 0.0 for a in s.per_tier)
    assert prefetch_order(s) == (0, 1, 2)
    assert activation_stats(cfg, [], (2, 0)).pairs == 0


def test_records_must_match_the_tierset():
    """PLACE-2.1: a record routed under another TierSet is rejected with E_SHAPE naming it."""
    cfg = resolve_config("tiny")
    h = gaussian(8, cfg.d_model)
    good = layer_routes(cfg, h, (0, 1, 2))
    other = layer_routes(cfg, h, (0, 1))
    with pytest.raises(ShapeError) as e:
        activation_stats(cfg, [good[0], other[1]], (0, 1, 2))
    assert e.value.code == "E_SHAPE" and e.value.clause == "PLACE-2.1" and "record 1" in str(e.value)
    with pytest.raises(LiteLLMError) as e:
        prefetch_order(activation_stats(cfg, good, (0, 1, 2)), "size")
    assert "measure" in str(e.value)


def test_placement_never_changes_routing():
    """PLACE-1.3: the same config with every tier placed differently routes to the same bits."""
    cfg = resolve_config("tiny")
    d = config_to_dict(cfg)
    moved = config_from_dict({**d, "tiers": [{**t, "placement": p} for t, p in zip(d["tiers"], ("Object", "HBM", "DRAM"))]})
    assert [t.placement for t in moved.tiers] != [t.placement for t in cfg.tiers]
    h = gaussian(32, cfg.d_model, seed=8)
    for tiers in ((0, 1, 2), (1, 2)):
        a = route(h, quantize_router(cfg, init_router_weights(cfg, 2)), tiers)
        b = route(h, quantize_router(moved, init_router_weights(moved, 2)), tiers)
        assert_same_record(a, b)
    s = activation_stats(moved, layer_routes(moved, h, (0, 1, 2)), (0, 1, 2))
    assert [a.placement for a in s.per_tier] == ["Object", "HBM", "DRAM"]
