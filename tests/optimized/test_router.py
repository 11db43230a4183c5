"""The optimized router (torch path, and on CUDA the Triton path) against the reference, bit for bit:
random configurations, seeds and inputs, ties, extreme magnitudes, subnormals, every limb
combination, every input type, errors with the reference's codes, batch invariance (HSER-1 .. HSER-10)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lite_llm.optimized.router import load_router, route
from lite_llm.reference.router import route as ref_route
from lite_llm.reference.router_weights import RouterWeights, init_router_weights, quantize_router
from lite_llm.spec.errors import LiteLLMError
from tests.helpers import gaussian, make_config
from tests.optimized.common import assert_bits, assert_same_route, router_dict

BACKENDS = [("cpu", "torch")] + ([("cuda", "torch"), ("cuda", "triton")] if torch.cuda.is_available() else [])


def both(cfg, w, h, tiers, seed=None, device="cpu", backend="torch", h_ours=None):
    """(ours, reference) routing records of the same inputs."""
    ref = ref_route(h, quantize_router(cfg, w), tiers, seed)
    qr = load_router(cfg, router_dict(cfg, w), 0, device)
    ours = route(torch.from_numpy(h) if h_ours is None else h_ours, qr, tiers, seed, backend=backend)
    return ours, ref


configs = st.tuples(
    st.lists(st.tuples(st.integers(1, 6), st.integers(1, 7)), min_size=1, max_size=4),   # (G_t, E_t)
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4)),                  # k
    st.integers(1, 10).map(lambda m: 4 * m),                                             # d (2 heads of even size)
    st.tuples(st.sampled_from([1, 2]), st.sampled_from([1, 2])),                         # limbs
)


@pytest.mark.parametrize("device,backend", [b for b in BACKENDS if b[1] == "torch"])
@given(c=configs, T=st.integers(0, 24), seed=st.integers(0, 2 ** 64 - 1), data=st.data())
def test_random_configs_equal_reference(device, backend, c, T, seed, data):
    """HSER-7 .. HSER-9: every field of the record, for any configuration, TierSet, seed and input."""
    random_config_case(device, backend, c, T, seed, data)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@settings(max_examples=10)          # each new (k, limbs, width) compiles kernels: fewer examples, same property
@given(c=configs, T=st.integers(0, 24), seed=st.integers(0, 2 ** 64 - 1), data=st.data())
def test_random_configs_equal_reference_triton(c, T, seed, data):
    random_config_case("cuda", "triton", c, T, seed, data)


def random_config_case(device, backend, c, T, seed, data):
    tiers, k, d, limbs = c
    cfg = make_config(tiers=tiers, k=k, d=d, limbs=limbs, seed=seed)
    ts = data.draw(st.lists(st.integers(0, len(tiers) - 1), min_size=1, unique=True))
    h = gaussian(T, d, seed % 1000) * np.float32(10.0 ** data.draw(st.integers(-30, 30)))
    ours, ref = both(cfg, init_router_weights(cfg, seed % 97), h, ts, device=device, backend=backend)
    assert_same_route(ours, ref)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("limbs", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_all_limb_combinations(device, backend, limbs):
    """HSER-2.3, HSER-3.2: each of the four hidden/weight limb combinations, bundled-size config."""
    cfg = make_config(tiers=((4, 4), (8, 4), (8, 8)), k=(2, 2, 2), d=64, limbs=limbs, seed=5)
    h = gaussian(300, 64, 11)
    assert_same_route(*both(cfg, init_router_weights(cfg, 1), h, (0, 1, 2), device=device, backend=backend))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2 ** 63, 2 ** 64 - 1])
def test_ties_at_every_level_follow_the_keys(device, backend, seed):
    """HSER-5.1: identical router rows make every candidate tie at every level; the keys decide."""
    cfg = make_config(tiers=((5, 6), (7, 3), (2, 9)), k=(2, 3, 2), d=16, seed=seed)
    w = init_router_weights(cfg, 2)
    row = np.linspace(-1, 1, 16, dtype=np.float32)
    w = RouterWeights(tuple(row.copy() for _ in w.tier), tuple(np.broadcast_to(row, g.shape).copy() for g in w.group),
                      tuple(np.broadcast_to(row, e.shape).copy() for e in w.expert))
    h = gaussian(40, 16, 3)
    h[5] = 0.0                                                    # a zero token: every logit is +0.0
    h[6] = -h[7]
    ours, ref = both(cfg, w, h, (0, 1, 2), device=device, backend=backend)
    assert_same_route(ours, ref)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_extreme_magnitudes_and_subnormals(device, backend):
    """HSER-2.3, HSER-3.3: the largest binary32 values, subnormal-only tokens, zero tokens and
    near-ties between huge and tiny inputs route as in the reference."""
    cfg = make_config(tiers=((3, 5), (4, 4)), k=(2, 2, 3), d=8, seed=9)
    sub = np.float32(2.0 ** -149)
    h = np.array([
        [3.4028235e38, -3.4028235e38, 1, 0, 0, 0, 0, 0],
        [sub, -2 * sub, 3 * sub, 0, 5 * sub, -sub, 0, 7 * sub],
        [0] * 8, [-0.0] * 8,
        [1e-38, 2e-39, -1e-45, 1, -1, 0.5, 0.25, 1e30],
        [65504, -65504, 1, 2, 3, 4, 5, 6],
    ], np.float32)
    w = init_router_weights(cfg, 4)
    w = RouterWeights(tuple(r * np.float32(3e37) if i == 0 else r * np.float32(1e-40) for i, r in enumerate(w.tier)),
                      tuple(g * np.float32(1e-42) for g in w.group), w.expert)
    ours, ref = both(cfg, w, h, (0, 1), device=device, backend=backend)
    assert_same_route(ours, ref)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_every_input_type(device, backend, dtype):
    """HSER-1.2: binary16 and bfloat16 convert exactly, binary64 rounds to nearest even."""
    cfg = make_config(d=24, seed=3)
    base = gaussian(50, 24, 8) * np.float32(3.0)
    if dtype == "bfloat16":
        h_ours = torch.from_numpy(base).to(torch.bfloat16)
        h_ref = h_ours.to(torch.float32).numpy()
    else:
        h_ref = (base.astype(np.float64) * (1 + 1e-12)).astype(dtype) if dtype == "float64" else base.astype(dtype)
        h_ours = torch.from_numpy(h_ref)
    ours, ref = both(cfg, init_router_weights(cfg, 3), h_ref, (0, 1, 2), device=device,
                     backend=backend, h_ours=h_ours)
    assert_same_route(ours, ref)


@pytest.mark.parametrize("device,backend", BACKENDS)
@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5), seed=st.integers(0, 2 ** 64 - 1))
def test_batch_invariance_for_any_split(device, backend, sizes, seed):
    """HSER-7.4: routing a batch in pieces gives the bits of routing it whole."""
    cfg = make_config(k=(2, 2, 3), seed=seed)
    qr = load_router(cfg, router_dict(cfg, init_router_weights(cfg, 3)), 0, device)
    h = torch.from_numpy(gaussian(sum(sizes), cfg.d_model, len(sizes)))
    full = route(h, qr, (0, 1, 2), backend=backend).to_numpy()
    start = 0
    for n in sizes:
        part = route(h[start:start + n], qr, (0, 1, 2), backend=backend).to_numpy()
        for f, v in part.items():
            if f != "tier_set":
                assert_bits(v, full[f][start:start + n], f)
        start += n


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_record_shapes_and_padding(device, backend):
    """HSER-5.3, HSER-9.1 .. HSER-9.3: fewer candidates than k pads with -1 and +0.0; dtypes and shapes."""
    cfg = make_config(tiers=((1, 1), (2, 3)), k=(3, 3, 4), d=8, seed=1)
    ours, ref = both(cfg, init_router_weights(cfg, 1), gaussian(7, 8, 1), (0, 1), device=device, backend=backend)
    assert_same_route(ours, ref)
    r = ours.to_numpy()
    assert r["tier"].dtype == np.int32 and r["gate"].dtype == np.float32 and r["tier"].shape == (7, 36)
    assert r["expert_probs"].shape == (7, 3, 3, 3) and (r["count"] < 36).all()


def error_code(fn) -> str:
    try:
        fn()
    except LiteLLMError as e:
        return e.code
    return "no error"


BAD_CALLS = {
    "seed negative": dict(seed=-1),
    "seed too big": dict(seed=2 ** 64),
    "seed not int": dict(seed=1.5),
    "unknown tier": dict(tiers=(0, 7)),
    "unknown name": dict(tiers=("tier_0", "nope")),
    "empty tierset": dict(tiers=()),
    "duplicate tier": dict(tiers=(1, "tier_1")),
    "1-D hidden": dict(h=np.zeros(16, np.float32)),
    "3-D hidden": dict(h=np.zeros((2, 2, 16), np.float32)),
    "wrong width": dict(h=np.zeros((3, 15), np.float32)),
    "int hidden": dict(h=np.zeros((3, 16), np.int32)),
    "bool hidden": dict(h=np.zeros((3, 16), bool)),
    "complex hidden": dict(h=np.zeros((3, 16), np.complex64)),
    "nan": dict(h=np.where(np.arange(48).reshape(3, 16) == 20, np.nan, 1.0).astype(np.float32)),
    "inf": dict(h=np.where(np.arange(48).reshape(3, 16) == 47, -np.inf, 1.0).astype(np.float32)),
    "float64 overflow": dict(h=np.where(np.arange(48).reshape(3, 16) == 5, 1e39, 1.0)),
    "seed and shape": dict(seed=-1, h=np.zeros(3, np.float32)),
    "tierset and nan": dict(tiers=(), h=np.full((3, 16), np.nan, np.float32)),
    "shape and type": dict(h=np.zeros((3, 15), np.int64)),
    "type and nan": dict(h=np.full((3, 16), np.nan, np.float16).astype(np.complex64)),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_errors_carry_the_reference_code(device, backend, name):
    """HSER-10.1, HSER-10.3: the same code as the reference, first fault in the spec's order."""
    cfg = make_config(d=16)
    w = init_router_weights(cfg, 0)
    args = dict(h=gaussian(3, 16), tiers=(0, 1), seed=None) | BAD_CALLS[name]
    want = error_code(lambda: ref_route(args["h"], quantize_router(cfg, w), args["tiers"], args["seed"]))
    qr = load_router(cfg, router_dict(cfg, w), 0, device)
    got = error_code(lambda: route(args["h"], qr, args["tiers"], args["seed"], backend=backend))
    assert want != "no error" and got == want, (name, got, want)


@pytest.mark.parametrize("name,mutate", [
    ("missing", lambda d, k: d.pop(k)),
    ("shape", lambda d, k: d.__setitem__(k, d[k][:-1])),
    ("dtype", lambda d, k: d.__setitem__(k, d[k].astype(np.float64))),
    ("nan", lambda d, k: d[k].__setitem__((0,) * d[k].ndim, np.nan)),
    ("inf", lambda d, k: d[k].__setitem__((-1,) * d[k].ndim, np.inf)),
])
@pytest.mark.parametrize("which", ["router_tier", "router_group", "router_expert"])
def test_bad_router_weights_are_rejected(name, mutate, which):
    """HSER-1.4: E_WEIGHTS names the router and tier."""
    cfg = make_config(d=16)
    d = router_dict(cfg, init_router_weights(cfg, 0))
    key = f"layers.0.tiers.tier_1.{which}"
    mutate(d, key)
    with pytest.raises(LiteLLMError) as e:
        load_router(cfg, d, 0)
    assert e.value.code == "E_WEIGHTS" and "tier_1" in str(e.value)


def test_torch_tensor_weights_and_device_moves():
    """load_router takes torch tensors as well as arrays; route takes numpy or torch hidden states."""
    cfg = make_config(d=16)
    w = init_router_weights(cfg, 0)
    d = {k: torch.from_numpy(v) for k, v in router_dict(cfg, w).items()}
    h = gaussian(9, 16)
    a = route(h, load_router(cfg, d), (0, 2)).to_numpy()
    b = route(torch.from_numpy(h), load_router(cfg, router_dict(cfg, w)), (0, 2)).to_numpy()
    for f in a:
        assert_bits(a[f], b[f], f)
