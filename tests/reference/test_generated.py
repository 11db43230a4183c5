"""The reference's generated tiers (INIT-3.1 .. INIT-3.3): slices of the INIT streams, generated alone."""
from __future__ import annotations

import numpy as np
import pytest

from lite_llm.reference import generated as gen
from lite_llm.reference.init import fan_in_bound, uniform_tensor
from lite_llm.reference.weights import init_tier_weights
from lite_llm.spec.configs import resolve_config


def same_bits(a, b) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype == np.float32 and np.array_equal(a.view(np.uint32),
                                                                                       b.view(np.uint32))


@pytest.mark.parametrize("seed", [0, 7, 2**64 - 1])
@pytest.mark.parametrize("start,count", [(0, 1), (0, 100), (37, 63), (99, 1)])
def test_uniform_range_is_a_slice_of_the_stream(seed, start, count):
    """INIT-1.2, INIT-1.3, INIT-3.1: any slice equals the same elements of the whole tensor."""
    b = fan_in_bound(64)
    whole = uniform_tensor(seed, "layers.0.tiers.tier_1b.w_gate", (100,), b)
    assert same_bits(gen.uniform_range(seed, "layers.0.tiers.tier_1b.w_gate", start, count, b),
                     whole[start:start + count])


def test_index_past_2_64_wraps():
    """INIT-3.1: element i uses (i + 1) mod 2**64, so i and i + 2**64 give the same value."""
    b = np.float32(0.5)
    assert same_bits(gen.uniform_range(3, "x", 5, 40, b), gen.uniform_range(3, "x", 5 + (1 << 64), 40, b))
    tail = np.concatenate([gen.uniform_range(3, "x", (1 << 64) - 3, 3, b), gen.uniform_range(3, "x", 0, 3, b)])
    assert same_bits(gen.uniform_range(3, "x", (1 << 64) - 3, 6, b), tail)


@pytest.mark.parametrize("seed", [0, 0x9E3779B97F4A7C15])
def test_every_expert_and_router_row_is_the_initialised_slice(seed):
    """INIT-3.2, INIT-3.3: expert (g, e) and router rows, generated alone, equal the slices of INIT-2's tensors."""
    cfg = resolve_config("tiny")
    tier_ = gen.GeneratedTier(cfg, seed)
    for t, tc in enumerate(cfg.tiers):
        w = init_tier_weights(cfg, seed, t)
        for layer in range(cfg.n_layers):
            p = f"layers.{layer}.tiers.{tc.name}"
            for g in range(tc.groups):
                for e in range(tc.experts_per_group):
                    x = tier_.read_expert(layer, t, g, e)
                    for k in ("w_gate", "w_up", "w_down"):
                        assert same_bits(x[k], w[f"{p}.{k}"][g, e]), (p, k, g, e)
            assert same_bits(tier_.read_router_rows(layer, t, "router_tier")[0], w[f"{p}.router_tier"])
            assert same_bits(tier_.read_router_rows(layer, t, "router_group", range(tc.groups)), w[f"{p}.router_group"])
            flat = w[f"{p}.router_expert"].reshape(-1, cfg.d_model)
            rows = [tc.experts_per_group * (tc.groups - 1), 1, 0]
            assert same_bits(tier_.read_router_rows(layer, t, "router_expert", rows), flat[rows])
    assert tier_.params > 0


def test_counts_what_it_generates():
    """INIT-3.4: the storage class counts the elements it materialises."""
    cfg = resolve_config("tiny")
    t = gen.GeneratedTier(cfg, 1)
    t.read_expert(0, 2, 1, 1)
    t.read_router_rows(0, 2, "router_group", [0, 3])
    assert t.params == 3 * cfg.d_model * cfg.tiers[2].d_ff + 2 * cfg.d_model and t.reads == 2


def test_bad_index_is_refused():
    cfg = resolve_config("tiny")
    with pytest.raises(IndexError):
        gen.generated_expert(cfg, 0, 0, 0, cfg.tiers[0].groups, 0)
    with pytest.raises(IndexError):
        gen.generated_expert(cfg, 0, cfg.n_layers, 0, 0, 0)
