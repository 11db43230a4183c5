"""The KV cache and the graph replays of ``optimized.decode`` (MODEL-5.4) against the uncached forward.

The prompt's pass runs ``model.run``'s operations, so its logits and routes are the same bits; a cached
step computes one position with matrix products of another shape, so its logits are held to MODEL-4.3
and its routing record's index arrays to MODEL-4.3 (c); the record is exact given the step's own router
input (checked bit for bit against ``route``). Padding to a size bucket changes no bit (checked on the
CPU under TRITON_INTERPRET=1, in a subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from lite_llm.optimized.decode import Decoder, bucket_of, greedy_device
from lite_llm.optimized.generate import generate, greedy_token
from lite_llm.optimized.model import forward, load_model
from lite_llm.optimized.router import route
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.configs import resolve_config
from lite_llm.spec.errors import NonFiniteError
from tests.optimized.common import assert_bits, assert_same_route

INDEX_FIELDS = ("tier", "group", "expert", "count", "chosen_tiers", "chosen_groups")
ROOT = Path(__file__).resolve().parents[2]
TIERS = (0, 1, 2)


@lru_cache(maxsize=None)
def tiny_model(seed: int = 0):
    cfg = resolve_config("tiny")
    return cfg, load_model(cfg, init_model_weights(cfg, seed), TIERS, "cpu")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("seed", [0, 1])
def test_prefill_is_the_uncached_forward_bit_for_bit(seed):
    cfg, m = tiny_model(seed)
    tok = torch.from_numpy(np.random.default_rng(seed).integers(0, cfg.vocab_size, 12))
    ref = forward(cfg, m, tok, TIERS, seed=5)
    dec = Decoder(m, 5, 16)
    logits, routes, xs = dec.forward(tok, keep=True)
    assert_bits(logits, ref.logits, "prefill logits")
    for l in range(cfg.n_layers):
        assert_bits(xs[l], ref.router_inputs[l], f"layer {l} router input")
        assert_same_route(routes[l], ref.routes[l])
    assert dec.cache.length == 12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cached_steps_match_the_uncached_forward(seed):
    """Each cached step against the full forward of the sequence so far: logits within MODEL-4.3 (a),
    router inputs within (b), routing index arrays equal (c), every record exact given its input."""
    cfg, m = tiny_model(seed)
    rng = np.random.default_rng(10 + seed)
    seq = rng.integers(0, cfg.vocab_size, 6).tolist()
    dec = Decoder(m, 0, 16)
    dec.forward(torch.tensor(seq))
    worst = 0.0
    for _ in range(6):
        nxt = int(rng.integers(0, cfg.vocab_size))
        seq.append(nxt)
        logits, routes, xs = dec.forward(torch.tensor([nxt]), keep=True)
        ref = forward(cfg, m, torch.tensor(seq), TIERS, seed=0)
        worst = max(worst, rel(logits[0], ref.logits[-1]))
        assert rel(logits[0], ref.logits[-1]) <= 1e-4
        for l in range(cfg.n_layers):
            x_ref = ref.router_inputs[l][-1]
            assert float((xs[l][0] - x_ref).abs().max()) <= 1e-4 * float(x_ref.abs().max())
            got, want = routes[l].to_numpy(), ref.routes[l].to_numpy()
            for f in INDEX_FIELDS:
                assert np.array_equal(got[f][0], want[f][-1]), f"layer {l} {f}"
            assert_same_route(routes[l], route(xs[l], m.moe[l].router, TIERS, 0, backend="torch"))
    print(f"cached vs uncached logits: worst relative difference {worst:.2e}")


def test_generate_with_and_without_the_cache():
    cfg, m = tiny_model(0)
    prompt = [3, 17, 250, 9]
    a = generate(cfg, m, prompt, 10, TIERS, seed=0, cache=True)
    b = generate(cfg, m, prompt, 10, TIERS, seed=0, cache=False)
    assert a == b and len(a) == 10
    assert generate(cfg, m, prompt, 0, TIERS, seed=0) == []


def test_cache_capacity_is_enforced():
    cfg, m = tiny_model(0)
    dec = Decoder(m, 0, 4)
    dec.forward(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="capacity"):
        dec.forward(torch.tensor([4, 5]))


@pytest.mark.parametrize("row", [[1.0, 3.0, 3.0, 2.0], [0.0, -0.0, -1.0], [-0.0, 0.0], [-5.0]])
def test_greedy_on_the_device_is_the_greedy_choice(row):
    t = torch.tensor(row)
    tok, nan = greedy_device(t)
    assert int(tok) == greedy_token(t) and int(nan) == -1


def test_greedy_on_the_device_flags_nan():
    tok, nan = greedy_device(torch.tensor([1.0, float("nan"), 2.0, float("nan")]))
    assert int(nan) == 1
    with pytest.raises(NonFiniteError):
        greedy_token(torch.tensor([1.0, float("nan")]))


def test_buckets():
    assert [bucket_of(n) for n in (1, 2, 3, 8, 9, 16384)] == [1, 2, 4, 8, 16, 16384]
    assert bucket_of(20000) == 20000


PADDING_CHECK = r"""
import json, numpy as np, torch
from lite_llm.spec.configs import resolve_config
from lite_llm.reference.weights import init_model_weights
from lite_llm.optimized.model import load_model
from lite_llm.optimized.moe import moe_forward
from lite_llm.optimized.router import load_router, route
from lite_llm.optimized.decode import GraphMoE, GraphRouter
cfg = resolve_config("tiny")
m = load_model(cfg, init_model_weights(cfg, 0), (0, 1, 2), "cpu")
x = torch.from_numpy(np.random.default_rng(3).standard_normal((5, cfg.d_model)).astype(np.float32))
moe = m.moe[1]
out_ref, r_ref = moe_forward(moe, x, 7, backend="triton")
g = GraphMoE(moe, 7, sizes=(8,), graphs=False)            # 5 tokens padded to 8
out, r = g(x)
gr = GraphRouter(moe.router, moe.tier_ids, 7, sizes=(8,), graphs=False)
r2 = gr.route(x)
torch_r = route(x, moe.router, moe.tier_ids, 7, backend="torch")
same = lambda a, b: all(np.array_equal(a[f].view(np.uint8), b[f].view(np.uint8)) for f in a)
res = {"out": bool(np.array_equal(out.numpy().view(np.int32), out_ref.numpy().view(np.int32))),
       "route": same(r.to_numpy(), r_ref.to_numpy()), "router": same(r2.to_numpy(), torch_r.to_numpy())}
bad = x.clone(); bad[2, 1] = float("nan")
gr.route(bad)
try:
    gr.check(); res["flag"] = False
except Exception as e:
    res["flag"] = type(e).__name__ == "NonFiniteError"
from lite_llm.spec.config import config_from_dict
fc = config_from_dict({"spec_version": "0.1", "d_model": 64, "n_heads": 1,
                       "tiers": [{"name": "t0", "groups": 1, "experts_per_group": 12, "d_ff": 16}],
                       "router": {"k_tier": 1, "k_group": 1, "k_expert": 3, "hidden_limbs": 2, "weight_limbs": 2,
                                  "seed": 0}})
g = torch.Generator().manual_seed(0)
fw = {"layers.0.tiers.t0.router_tier": torch.rand(64, generator=g) - 0.5,
      "layers.0.tiers.t0.router_group": torch.rand(1, 64, generator=g) - 0.5,
      "layers.0.tiers.t0.router_expert": torch.rand(1, 12, 64, generator=g) - 0.5}
fq = load_router(fc, fw, 0, "cpu")
fh = torch.randn(9, 64, generator=g).to(torch.bfloat16)
res["flat"] = same(route(fh, fq, (0,), backend="triton").to_numpy(), route(fh, fq, (0,), backend="torch").to_numpy())
print(json.dumps(res))
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="an interpreter check for CPU machines (CI): on a CUDA machine the "
                    "compiled kernels are tested by test_cuda.py, and the H200's NumPy 2.5 breaks Triton 3.6's interpreter")
def test_padding_to_a_bucket_changes_no_bit_under_the_interpreter():
    """GraphMoE / GraphRouter bodies on a padded bucket = the unpadded block and route(); the deferred
    flag; and the flat configuration's two-launch route = the torch path (Triton interpreted)."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-c", PADDING_CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, p.stderr[-3000:]
    res = json.loads(lines[-1])
    assert res == {"out": True, "route": True, "router": True, "flag": True, "flat": True}, res


def test_static_step_matches_the_uncached_forward():
    """StepGraph's step (static shapes: attention over the whole capacity, masked; run eagerly on the
    CPU, replayed from one CUDA graph on a GPU): same tokens as the uncached generation, last logits
    within MODEL-4.3."""
    cfg, m = tiny_model(0)
    prompt = [3, 17, 250, 9]
    dec = Decoder(m, 0, 16, step_graph=True)
    toks = dec.generate(torch.tensor(prompt), 7)
    assert toks == generate(cfg, m, prompt, 7, TIERS, seed=0, cache=False)
    ref = forward(cfg, m, torch.tensor(prompt + toks[:-1]), TIERS, seed=0).logits[-1]
    err = rel(dec.stepper.logits[0], ref)
    print(f"static step vs uncached forward: relative difference {err:.2e}")
    assert err <= 1e-4
    assert dec.generate(torch.tensor(prompt), 7) == toks                       # a second generation, same cache


def test_replay_views_are_made_once_per_size():
    """The first-n-rows views of a graph's static outputs are cached (no slicing per call) and track
    the outputs' storage."""
    from lite_llm.optimized.decode import _Replays

    rep = _Replays(4, "cpu", lambda x: x, (8,), graphs=False)
    out = (torch.arange(8.0), torch.arange(16).view(8, 2))
    made = []
    make = lambda o, n: (made.append(n), (o[0][:n], o[1][:n]))[1]                    # noqa: E731
    a = rep.views(out, 3, make)
    b = rep.views(out, 3, make)
    assert a is b and made == [3]
    out[0][1] = 42.0                                   # a replay writes the static outputs in place
    assert float(a[0][1]) == 42.0 and a[1].shape == (3, 2)
    rep.views(out, 5, make)
    assert made == [3, 5]


def test_graph_replays_refuse_what_the_kernels_do_not_take():
    """A level wider than the Triton kernels' limit: GraphRouter refuses; Decoder falls back to moe_forward."""
    pytest.importorskip("triton")
    from lite_llm.optimized.decode import GraphRouter, graphs_fit
    from lite_llm.optimized.router import load_router
    from lite_llm.spec.config import config_from_dict

    cfg = config_from_dict({"spec_version": "0.1", "d_model": 16, "n_heads": 1,
                            "tiers": [{"name": "t0", "groups": 1, "experts_per_group": 300, "d_ff": 4}],
                            "router": {"k_tier": 1, "k_group": 1, "k_expert": 2, "hidden_limbs": 2,
                                       "weight_limbs": 2, "seed": 0}})
    g = torch.Generator().manual_seed(0)
    w = {"layers.0.tiers.t0.router_tier": torch.rand(16, generator=g),
         "layers.0.tiers.t0.router_group": torch.rand(1, 16, generator=g),
         "layers.0.tiers.t0.router_expert": torch.rand(1, 300, 16, generator=g)}
    q = load_router(cfg, w, 0, "cpu")
    assert not graphs_fit(cfg, (0,))
    with pytest.raises(ValueError, match="graph replays"):
        GraphRouter(q, (0,), 0, graphs=False)
    assert graphs_fit(resolve_config("tiny"), TIERS)
