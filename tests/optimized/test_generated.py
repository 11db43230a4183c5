"""Generated tiers in torch (INIT-3.1 .. INIT-3.3) against the reference and the stored model, bit for bit.

Expert and router slices equal ``reference.generated`` on every device; routing on generated rows is
``router.route``'s record; a forward with every weight generated is ``model.forward``'s logits; the
parameters the runtime counts per token equal PARAM-3 for the tiers the token chose (INIT-3.4).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lite_llm.optimized import generated as gen
from lite_llm.optimized.init import init_model_weights
from lite_llm.optimized.model import forward
from lite_llm.optimized.router import load_router, route
from lite_llm.optimized.router_types import RECORD_FIELDS
from lite_llm.reference import generated as ref
from lite_llm.reference.params import layer_active_for
from lite_llm.spec.configs import resolve_config
from tests.optimized.common import DEVICES, assert_bits

SEED = 0x9E3779B97F4A7C15


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("start", [0, 1000, (1 << 63) - 4, (1 << 63) - 1, (1 << 64) - 2, (1 << 70) + 9])
def test_stream_slice_matches_reference_at_any_index(device, start):
    """INIT-3.1: any element index, past 2**63 and 2**64 included ((i + 1) mod 2**64)."""
    got = gen.stream_slice(5, "layers.1.tiers.tier_1q.w_up", start, 9, 0.03125, device)
    assert_bits(got, ref.uniform_range(5, "layers.1.tiers.tier_1q.w_up", start, 9, np.float32(0.03125)), str(start))


@pytest.mark.parametrize("device", DEVICES)
def test_stream_slice_is_init_uniform_range_across_chunks(device):
    """INIT-1.2, INIT-1.3: the in-place chunked generator is init.uniform_range's arithmetic, every bit."""
    from lite_llm.optimized.init import uniform_range

    n = 2 * gen.STREAM_CHUNK_CPU + 1234
    for start in (0, 77_777_777_777):
        assert_bits(gen.stream_slice(3, "layers.0.tiers.tier_1q.w_gate", start, n, 0.0220970869, device),
                    uniform_range(3, "layers.0.tiers.tier_1q.w_gate", start, n, 0.0220970869, device), str(start))


@pytest.mark.parametrize("device", DEVICES)
def test_experts_and_router_rows_match_reference(device):
    """INIT-3.2, INIT-3.3: one expert's three slices and router rows, generated alone on the device."""
    cfg = resolve_config("tiny")
    src = gen.GeneratedSource(cfg, SEED, device=device)
    for layer, t, g, e in ((0, 0, 0, 0), (1, 2, 7, 7), (1, 1, 3, 2)):
        want = ref.generated_expert(cfg, SEED, layer, t, g, e)
        got = src.read_expert(layer, t, g, e)
        for k in ("w_gate", "w_up", "w_down"):
            assert_bits(got[k], want[k], k)
        E = cfg.tiers[t].experts_per_group
        assert_bits(src.read_router_rows(layer, t, "router_expert", g * E, E),
                    ref.router_rows(cfg, SEED, layer, t, "router_expert", range(g * E, g * E + E)), "router_expert")
        assert_bits(src.read_router_rows(layer, t, "router_group", 0, cfg.tiers[t].groups),
                    ref.router_rows(cfg, SEED, layer, t, "router_group", range(cfg.tiers[t].groups)), "router_group")


def same_record(a, b, where=""):
    for f in RECORD_FIELDS:
        assert_bits(getattr(a, f), getattr(b, f), f"{where} {f}")
    assert a.tier_set == b.tier_set


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tiers", [(0,), (0, 1), (1, 2), (0, 1, 2)])
def test_route_on_generated_rows_is_route(device, tiers):
    """INIT-3.3: routing that generates only the rows its levels read gives router.route's record
    on the whole, stored router (HSER-9.3), and counts the rows PARAM-3.2 counts."""
    cfg = resolve_config("tiny")
    w = init_model_weights(cfg, SEED)
    src = gen.GeneratedSource(cfg, SEED, device=device)
    h = torch.randn(33, cfg.d_model, generator=torch.Generator().manual_seed(1)) * 3
    for layer in range(cfg.n_layers):
        want = route(h, load_router(cfg, w, layer, device), tiers, 7, backend="torch")
        got, rows = gen.route_generated(h, src, layer, tiers, 7)
        same_record(got, want, f"layer {layer}")
        for n in range(h.shape[0]):
            chosen = [t for t in want.chosen_tiers[n].tolist() if t >= 0]
            assert tuple(rows.rows[n].tolist()) == layer_active_for(cfg, tiers, chosen).router_rows


@pytest.mark.parametrize("device", DEVICES)
def test_forward_with_every_weight_generated_is_forward(device):
    """INIT-3.1 (PLACE-1.3): the logits and routes of a model whose every weight is generated on demand
    are the stored model's, bit for bit (the same torch expert code; on CUDA the Triton experts of
    backend "auto" round differently, within MODEL-4.3); the router cache changes nothing."""
    cfg = resolve_config("tiny")
    w = init_model_weights(cfg, SEED, device)
    tokens = [1, 200, 3, 77, 5, 255]
    want = forward(cfg, w, tokens, (0, 1, 2), seed=9, device=device, backend="torch")   # swiglu_rows experts
    for cache in (0, 64):
        src = gen.GeneratedSource(cfg, SEED, device=device, router_cache=cache)
        got = gen.forward_generated(src, tokens, (0, 1, 2), seed=9)
        assert_bits(got.logits, want.logits, "logits")
        for layer, (a, b) in enumerate(zip(got.routes, want.routes)):
            same_record(a, b, f"layer {layer}")


def test_counted_mode_counts_what_the_computed_mode_reads():
    """INIT-3.4: compute=False routes for real but only counts dense and expert parameters; the counts
    are the formula's (PARAM-3) for the tiers each token chose, and equal the computed run's when the
    routes agree (the routes themselves differ: the skipped blocks change the router inputs)."""
    cfg = resolve_config("tiny")
    tokens = [4, 9, 250]
    d, V = cfg.d_model, cfg.vocab_size
    for compute in (True, False):
        src = gen.GeneratedSource(cfg, SEED)
        out = gen.forward_generated(src, tokens, (0, 1, 2), seed=2, compute=compute)
        for n in range(len(tokens)):
            formula = sum(
                (la := layer_active_for(cfg, (0, 1, 2), [int(out.chosen_tiers[l, n])])).expert_params
                + sum(la.router_params) + 4 * d * d + 2 * d for l in range(cfg.n_layers)) + 2 * d + V * d
            assert int(out.touched[n, :3].sum()) == formula
        if not compute:
            assert out.logits is None and src.made.experts == 0


def test_generated_source_serves_the_storage_runtime():
    """The storage-runtime interface (dense, routers, read_unit) gives the initialised tensors' bytes."""
    cfg = resolve_config("tiny")
    w = init_model_weights(cfg, SEED)
    src = gen.GeneratedSource(cfg, SEED)
    dense = src.dense()
    assert all(np.array_equal(dense[k], w[k].numpy()) for k in dense)
    routers = src.routers()
    assert all(np.array_equal(v, w[k].numpy()) for k, v in routers.items())
    unit = src.units.unit(1, 2, 5, 3)
    blocks = src.read_unit(unit)
    p = "layers.1.tiers.tier_100b"
    assert blocks == [w[f"{p}.{k}"][5, 3].numpy().astype("<f4").tobytes() for k in ("w_gate", "w_up", "w_down")]


def test_streaming_model_over_a_generated_source():
    """PLACE-1.3: the tiered-storage runtime (ExpertStore) over a GeneratedSource gives forward's logits."""
    serve = pytest.importorskip("lite_llm.optimized.storage.serve")
    cfg = resolve_config("tiny")
    w = init_model_weights(cfg, SEED)
    sm = serve.streaming_model(gen.GeneratedSource(cfg, SEED), "cpu", cache_host=1 << 16)
    try:
        got = serve.forward_streaming(sm, [3, 1, 4, 1, 5], seed=0)
    finally:
        sm.close()
    assert_bits(got.logits, forward(cfg, w, [3, 1, 4, 1, 5], (0, 1, 2), seed=0).logits, "logits")
