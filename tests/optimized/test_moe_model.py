"""The optimized MoE block, forward pass and greedy generation against the reference: routing and
the combine bit for bit, floating-point parts within MODEL-4.3, token and batch independence,
errors with the reference's codes (MODEL-1 .. MODEL-6)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lite_llm.spec.configs import resolve_config
from lite_llm.optimized.generate import generate, greedy_token
from lite_llm.optimized.model import forward, load_model
from lite_llm.optimized.moe import combine, moe_layer
from lite_llm.reference.generate import generate as ref_generate
from lite_llm.reference.model import forward as ref_forward
from lite_llm.reference.moe import moe_combine as ref_combine
from lite_llm.reference.moe import moe_layer as ref_moe_layer
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.errors import LiteLLMError
from tests.optimized.common import DEVICES, assert_bits, assert_same_route

INDEX_FIELDS = ("tier", "group", "expert", "count", "chosen_tiers", "chosen_groups")
ALL = (0, 1, 2)


@lru_cache(maxsize=None)
def tiny(seed: int = 0):
    cfg = resolve_config("tiny")
    return cfg, init_model_weights(cfg, seed)


def rel_err(got, want) -> float:
    got = got.detach().cpu().double().numpy() if isinstance(got, torch.Tensor) else np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("tiers", [ALL, (1,), (0, 2)])
def test_moe_layer_matches_reference(device, tiers):
    """MODEL-3, MODEL-4.1: routing bit for bit, the output within MODEL-4.3 of the binary64 reference."""
    cfg, w = tiny()
    x = np.random.default_rng(1).standard_normal((40, cfg.d_model)).astype(np.float32)
    out, r = moe_layer(cfg, w, 1, torch.from_numpy(x).to(device), tiers, seed=7)
    ref_out, ref_r = ref_moe_layer(cfg, w, 1, x, tiers, 7)
    ref64, _ = ref_moe_layer(cfg, w, 1, x.astype(np.float64), tiers, 7)
    assert_same_route(r, ref_r)
    err = rel_err(out, ref64)
    print(f"MoE block: max relative error vs binary64 reference {err:.2e} (binary32 reference: {rel_err(ref_out, ref64):.2e})")
    assert err <= 1e-4


@pytest.mark.parametrize("device", DEVICES)
@given(K=st.integers(1, 9), seed=st.integers(0, 2 ** 32 - 1))
def test_combine_is_the_spec_tree(device, K, seed):
    """MODEL-3.3, MODEL-4.1: the combine equals the reference's bit for bit for any slots, counts and outputs."""
    rng = np.random.default_rng(seed)
    N, d = 5, 7
    gate = rng.random((N, K)).astype(np.float32)
    count = rng.integers(0, K + 1, N).astype(np.int32)
    y = (rng.standard_normal((N, K, d)) * 10.0 ** rng.integers(-30, 30, (N, K, 1))).astype(np.float32)
    y[0, 0, :3] = [-0.0, 0.0, -0.0]
    want = ref_combine(gate, count, y)
    got = combine(torch.from_numpy(gate).to(device), torch.from_numpy(count).to(device), torch.from_numpy(y).to(device))
    assert_bits(got, want, "combine")


@pytest.mark.parametrize("device", DEVICES)
def test_token_output_does_not_depend_on_the_batch(device):
    """MODEL-3.5: a token's MoE output is the same bits alone, in a small batch and in a large one."""
    cfg, w = tiny()
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((300, cfg.d_model)).astype(np.float32)).to(device)
    full, _ = moe_layer(cfg, w, 0, x, ALL)
    for lo, hi in [(5, 6), (0, 17), (100, 300), (299, 300)]:
        part, _ = moe_layer(cfg, w, 0, x[lo:hi], ALL)
        assert_bits(part, full[lo:hi], f"tokens {lo}:{hi}")


@pytest.mark.parametrize("device", DEVICES)
def test_forward_matches_reference(device):
    """MODEL-2, MODEL-4.3: logits and router inputs within 1e-4 of the binary64 reference, routing
    index arrays equal, for a batch of sequences."""
    cfg, w = tiny()
    tok = np.random.default_rng(3).integers(0, cfg.vocab_size, (3, 24))
    out = forward(cfg, w, tok, ALL, seed=5, device=device)
    ref = ref_forward(cfg, w, tok, ALL, seed=5, dtype=np.float64)
    err = rel_err(out.logits, ref.logits)
    print(f"logits: max relative error {err:.2e}")
    assert out.logits.shape == (3, 24, cfg.vocab_size) and err <= 1e-4
    for layer in range(cfg.n_layers):
        x, xr = out.router_inputs[layer].cpu().double().numpy(), ref.router_inputs[layer]
        per_token = np.abs(x - xr).max(axis=1) / np.abs(xr).max(axis=1)
        assert per_token.max() <= 1e-4
        got = out.routes[layer].to_numpy()
        for f in INDEX_FIELDS:
            assert np.array_equal(got[f], getattr(ref.routes[layer], f)), (layer, f)


@pytest.mark.parametrize("device", DEVICES)
def test_sequences_are_independent(device):
    """MODEL-2.6: a sequence's logits in a batch equal its logits alone (here bit for bit)."""
    cfg, w = tiny()
    tok = np.random.default_rng(4).integers(0, cfg.vocab_size, (4, 16))
    m = load_model(cfg, w, ALL, device)
    batch = forward(cfg, m, tok, ALL).logits
    for b in (0, 3):
        assert_bits(forward(cfg, m, tok[b], ALL).logits, batch[b], f"sequence {b}")


def test_tiers_outside_the_tierset_are_not_read():
    """MODEL-1.3: without the tensors of tiers outside T the forward runs and gives the same bits."""
    cfg, w = tiny()
    tok = np.arange(12) % cfg.vocab_size
    only = {n: a for n, a in w.items() if ".tiers.tier_100b." not in n and ".tiers.tier_10b." not in n}
    assert_bits(forward(cfg, only, tok, (0,)).logits, forward(cfg, w, tok, (0,)).logits, "logits")


@pytest.mark.parametrize("device", DEVICES)
def test_generate_matches_reference(device):
    """MODEL-5.1: the same new tokens as the reference's greedy decoding."""
    cfg, w = tiny(1)
    prompt = [3, 1, 4, 1, 5]
    assert generate(cfg, w, prompt, 6, ALL, seed=2, device=device) == ref_generate(cfg, w, prompt, 6, ALL, seed=2)


def test_greedy_token_ties_and_nan():
    """MODEL-5.2, MODEL-4.1: the lowest id among equal maxima; -0.0 == +0.0; NaN rejected naming the id."""
    assert greedy_token(torch.tensor([1.0, 3.0, 2.0, 3.0])) == 1
    assert greedy_token(torch.tensor([-1.0, -0.0, 0.0])) == 1
    with pytest.raises(LiteLLMError) as e:
        greedy_token(torch.tensor([1.0, float("nan"), 2.0, float("nan")]))
    assert e.value.code == "E_NONFINITE" and "1" in str(e.value)


def code_of(fn) -> str:
    try:
        fn()
    except LiteLLMError as e:
        return e.code
    return "no error"


def drop(w, name):
    return {k: v for k, v in w.items() if k != name}


def replace(w, name, value):
    return {**w, name: value}


BAD = {
    "float tokens": dict(tokens=np.zeros(4, np.float32)),
    "bool tokens": dict(tokens=np.zeros(4, bool)),
    "3-D tokens": dict(tokens=np.zeros((1, 1, 4), np.int64)),
    "too long": dict(tokens=np.zeros(65, np.int64)),
    "id out of range": dict(tokens=np.array([1, 2, 256])),
    "negative id": dict(tokens=np.array([[1, -1]])),
    "missing dense": dict(weights=lambda w: drop(w, "layers.1.attn.wk")),
    "missing tier tensor": dict(weights=lambda w: drop(w, "layers.0.tiers.tier_10b.w_up")),
    "wrong shape": dict(weights=lambda w: replace(w, "embed", w["embed"][:, :-1])),
    "float64 weight": dict(weights=lambda w: replace(w, "lm_head", w["lm_head"].astype(np.float64))),
    "nan weight": dict(weights=lambda w: replace(w, "final_norm", np.full_like(w["final_norm"], np.nan))),
    "nan router weight": dict(weights=lambda w: replace(w, "layers.1.tiers.tier_1b.router_group",
                                                          np.full_like(w["layers.1.tiers.tier_1b.router_group"], np.inf))),
    "bad seed": dict(seed=-3),
    "unknown tier": dict(tiers=(0, 9)),
    "seed before tokens": dict(seed=2 ** 64, tokens=np.zeros(4, np.float32)),
    "tokens before weights": dict(tokens=np.zeros(65, np.int64), weights=lambda w: drop(w, "embed")),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_forward_errors_carry_the_reference_code(name):
    """MODEL-1.1 .. MODEL-1.3, MODEL-6.1: the same code as the reference, first fault first."""
    cfg, w = tiny()
    a = dict(tokens=np.array([1, 2, 3]), weights=lambda w: w, seed=0, tiers=ALL) | BAD[name]
    weights = a["weights"](w)
    want = code_of(lambda: ref_forward(cfg, weights, a["tokens"], a["tiers"], seed=a["seed"]))
    got = code_of(lambda: forward(cfg, weights, a["tokens"], a["tiers"], seed=a["seed"]))
    assert want != "no error" and got == want, (name, got, want)


@pytest.mark.parametrize("prompt,n", [([], 2), ([[1, 2]], 2), ([1, 2], -1), ([1, 2], 63), ([1.0, 2.0], 1)])
def test_generate_errors(prompt, n):
    """MODEL-5.3: bad requests are E_TOKEN before any token is generated, as in the reference."""
    cfg, w = tiny()
    assert code_of(lambda: generate(cfg, w, prompt, n, ALL)) == code_of(lambda: ref_generate(cfg, w, prompt, n, ALL)) \
        == "E_TOKEN"
