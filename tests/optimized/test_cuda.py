"""CUDA only: the Triton kernels at benchmark-like sizes against the torch path and the reference, bit
for bit; batch invariance on the device; the compiled versions of the interpreter checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

from lite_llm.spec.config import config_from_dict  # noqa: E402
from tests.optimized.common import assert_bits, assert_same_route  # noqa: E402
from tests.optimized.triton_interp_checks import CHECKS  # noqa: E402


def hser_config(M=5, G=32, E=64, k=(1, 2, 2), d=1024, limbs=(2, 2), seed=0):
    return config_from_dict({
        "spec_version": "0.1", "d_model": d, "n_heads": 1,
        "tiers": [{"name": f"t{i}", "groups": G, "experts_per_group": E, "d_ff": 16} for i in range(M)],
        "router": {"k_tier": k[0], "k_group": k[1], "k_expert": k[2], "hidden_limbs": limbs[0],
                   "weight_limbs": limbs[1], "seed": seed}})


def router_weights(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    d, b = cfg.d_model, cfg.d_model ** -0.5
    out = {}
    for tc in cfg.tiers:
        p = f"layers.0.tiers.{tc.name}"
        for name, shape in (("router_tier", (d,)), ("router_group", (tc.groups, d)),
                            ("router_expert", (tc.groups, tc.experts_per_group, d))):
            out[f"{p}.{name}"] = ((torch.rand(shape, generator=g) * 2 - 1) * b).numpy()
    return out


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_interpreter_checks_compiled_on_cuda(name):
    """The checks of triton_interp_checks, with the kernels compiled for the GPU."""
    CHECKS[name]("cuda")


@pytest.mark.parametrize("limbs", [(2, 2), (1, 1)])
def test_s2_shape_triton_equals_torch_and_reference(limbs):
    """S2's router (5 x 32 x 64, k = (1, 2, 2)) at d = 1024: Triton on CUDA = torch on CUDA = torch
    on the CPU for 4096 tokens; = the NumPy reference on the first 256."""
    from lite_llm.optimized.router import load_router, route
    from lite_llm.reference.router import route as ref_route
    from lite_llm.reference.router_weights import RouterWeights, quantize_router

    cfg = hser_config(limbs=limbs)
    w = router_weights(cfg)
    h = torch.randn((4096, cfg.d_model), generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    tiers = tuple(range(5))
    q_cuda, q_cpu = load_router(cfg, w, 0, "cuda"), load_router(cfg, w, 0, "cpu")
    tri = route(h.cuda(), q_cuda, tiers, backend="triton").to_numpy()
    tor = route(h.cuda(), q_cuda, tiers, backend="torch").to_numpy()
    cpu = route(h, q_cpu, tiers, backend="torch").to_numpy()
    for f in tri:
        assert_bits(tri[f], tor[f], f"triton vs torch cuda: {f}")
        assert_bits(tri[f], cpu[f], f"triton vs torch cpu: {f}")
    rw = RouterWeights(*(tuple(w[f"layers.0.tiers.t{t}.router_{k}"] for t in tiers) for k in ("tier", "group", "expert")))
    ref = ref_route(h[:256].float().numpy(), quantize_router(cfg, rw), tiers)
    small = route(h[:256].cuda(), q_cuda, tiers, backend="triton")
    assert_same_route(small, ref)


def test_s1_flat_level_at_full_width():
    """S1's level (64 candidates, top-2) at d = 4096: the fused kernel = the reference's level."""
    from lite_llm.optimized.router import QuantizedRows, key_ranks
    from lite_llm.optimized.seeds import as_signed, level_seed, ordered, tie_keys
    from lite_llm.optimized.triton import route_flat
    from lite_llm.reference.router import route as ref_route
    from lite_llm.reference.router_weights import RouterWeights, quantize_router

    n, k, d = 64, 2, 4096
    cfg = config_from_dict({"spec_version": "0.1", "d_model": d, "n_heads": 1,
                            "tiers": [{"name": f"t{i}", "groups": 1, "experts_per_group": 1, "d_ff": 4} for i in range(n)],
                            "router": {"k_tier": k, "k_group": 1, "k_expert": 1, "seed": 5}})
    g = torch.Generator().manual_seed(3)
    rows = ((torch.rand((n, d), generator=g) * 2 - 1) * d ** -0.5)
    h = torch.randn((1024, d), generator=g).to(torch.bfloat16)
    rw = RouterWeights(tuple(rows[i].numpy() for i in range(n)), tuple(np.zeros((1, d), np.float32) for _ in range(n)),
                       tuple(np.zeros((1, 1, d), np.float32) for _ in range(n)))
    ref = ref_route(h.float().numpy(), quantize_router(cfg, rw), tuple(range(n)))
    keys = ordered(tie_keys(torch.tensor(as_signed(level_seed(5, 1)), device="cuda"), n))
    ranks = key_ranks(keys[None, :], torch.tensor([n], device="cuda"))[0]
    out = route_flat(h.cuda(), QuantizedRows.of(rows.cuda(), 2), ranks, k)
    assert_bits(out.probs, ref.tier_probs, "probs")
    assert_bits(out.chosen, ref.chosen_tiers, "chosen")


def test_triton_route_is_batch_invariant_on_device():
    """HSER-7.4 on CUDA: tokens routed alone, in odd batches and in a big batch give the same bits."""
    from lite_llm.optimized.router import load_router, route

    cfg = hser_config(M=3, G=8, E=16, k=(2, 2, 2), d=256)
    q = load_router(cfg, router_weights(cfg), 0, "cuda")
    h = torch.randn((3000, 256), device="cuda")
    full = route(h, q, (0, 1, 2)).to_numpy()
    for lo, hi in [(0, 1), (17, 18), (5, 100), (1000, 2999)]:
        part = route(h[lo:hi], q, (0, 1, 2)).to_numpy()
        for f in part:
            if f != "tier_set":
                assert_bits(part[f], full[f][lo:hi], f"{f} [{lo}:{hi}]")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_grouped_gemm_is_batch_invariant(dtype):
    """MODEL-3.5: a token's expert output from the grouped GEMM is the same bits whatever else is in the batch."""
    from lite_llm.optimized.triton import grouped_swiglu

    E, d, f, k = 8, 256, 128, 2
    g = torch.Generator(device="cuda").manual_seed(0)
    wg, wu = (torch.randn((E, f, d), generator=g, device="cuda") * d ** -0.5).to(dtype), \
        (torch.randn((E, f, d), generator=g, device="cuda") * d ** -0.5).to(dtype)
    wd = (torch.randn((E, d, f), generator=g, device="cuda") * f ** -0.5).to(dtype)
    x = torch.randn((2000, d), generator=g, device="cuda").to(dtype)
    ex = torch.randint(0, E, (2000 * k,), generator=g, device="cuda")
    full = grouped_swiglu(x, ex, k, wg, wu, wd).view(2000, k, d)
    for lo, hi in [(0, 1), (3, 70), (1500, 2000)]:
        part = grouped_swiglu(x[lo:hi].contiguous(), ex[lo * k:hi * k].contiguous(), k, wg, wu, wd).view(hi - lo, k, d)
        assert_bits(part.float(), full[lo:hi].float(), f"tokens {lo}:{hi}")


def test_grouped_gemm_bf16_matches_a_float32_loop():
    """The bfloat16 grouped GEMM (S3's kernels) against expert-by-expert float32 products of the same
    bf16 values: within bf16 rounding of the intermediate (the Triton interpreter cannot check bf16 dots)."""
    import torch.nn.functional as F

    from lite_llm.optimized.triton.moe import GEMM_CHOICES, grouped_swiglu

    E, d, f, k, T = 8, 512, 256, 2, 700
    g = torch.Generator(device="cuda").manual_seed(1)
    wg, wu = (torch.randn((E, f, d), generator=g, device="cuda") * d ** -0.5).bfloat16(), \
        (torch.randn((E, f, d), generator=g, device="cuda") * d ** -0.5).bfloat16()
    wd = (torch.randn((E, d, f), generator=g, device="cuda") * f ** -0.5).bfloat16()
    x = torch.randn((T, d), generator=g, device="cuda").bfloat16()
    ex = torch.randint(0, E, (T * k,), generator=g, device="cuda")
    tok = torch.arange(T * k, device="cuda") // k
    want = torch.empty((T * k, d), device="cuda")
    for e in range(E):
        s = ex == e
        xe = x[tok[s]].float()
        want[s] = (F.silu(xe @ wg[e].float().T) * (xe @ wu[e].float().T)) @ wd[e].float().T
    for cfg in GEMM_CHOICES:
        got = grouped_swiglu(x, ex, k, wg, wu, wd, cfg).float()
        err = float((got - want).abs().max() / want.abs().max())
        print(cfg, f"max relative difference {err:.2e}")
        assert err < 2e-2


# ---- issue 14: flat fast path, graph replays, KV-cache decoding on the device ----------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_flat_configuration_route_equals_torch_path(dtype):
    """One tier, one group, k = (1, 1, 4): the two-launch flat path = the torch path, every field."""
    from lite_llm.optimized.router import load_router, route

    cfg = hser_config(M=1, G=1, E=64, k=(1, 1, 4), d=4096)
    q = load_router(cfg, router_weights(cfg), 0, "cuda")
    h = torch.randn((3000, 4096), device="cuda").to(dtype)
    h[7] = 0
    assert_same_route(route(h, q, (0,), backend="triton"), route(h, q, (0,), backend="torch"))


@pytest.mark.parametrize("T", [1, 3, 8, 100, 2048])
def test_graph_router_equals_route(T):
    """GraphRouter (a CUDA graph per size bucket, T padded) gives route()'s bits; the deferred check raises."""
    from lite_llm.optimized.decode import GraphRouter, clone_route
    from lite_llm.optimized.router import load_router, route
    from lite_llm.spec.errors import NonFiniteError

    cfg = hser_config(M=3, G=8, E=16, k=(1, 2, 2), d=512)
    q = load_router(cfg, router_weights(cfg), 0, "cuda")
    gr = GraphRouter(q, (0, 1, 2), 0)
    for _ in range(2):
        h = torch.randn((T, 512), device="cuda").to(torch.bfloat16)
        assert_same_route(clone_route(gr.route(h)), route(h, q, (0, 1, 2), 0))
    gr.check()
    h[T // 2, 3] = float("inf")
    gr.route(h)
    with pytest.raises(NonFiniteError):
        gr.check()
    gr.check()                                                             # the flag was reset


def tiny_cuda_model():
    from lite_llm.optimized.model import load_model
    from lite_llm.reference.weights import init_model_weights
    from lite_llm.spec.configs import resolve_config

    cfg = resolve_config("tiny")
    return cfg, load_model(cfg, init_model_weights(cfg, 0), (0, 1, 2), "cuda")


@pytest.mark.parametrize("T", [1, 5, 64])
def test_graph_moe_equals_the_eager_block(T):
    from lite_llm.optimized.decode import GraphMoE
    from lite_llm.optimized.moe import moe_forward

    cfg, m = tiny_cuda_model()
    g = GraphMoE(m.moe[1], 7)
    x = torch.randn((T, cfg.d_model), device="cuda")
    out, r = g(x)
    out_ref, r_ref = moe_forward(m.moe[1], x, 7)
    assert_bits(out, out_ref, f"MoE block, T={T}")
    assert_same_route(r, r_ref)
    g.check()


def test_cached_decoding_on_cuda_matches_the_uncached_forward():
    """Decoder with graph-replayed MoE blocks: prefill = forward bits; steps within MODEL-4.3; same tokens."""
    from lite_llm.optimized.decode import Decoder
    from lite_llm.optimized.generate import generate
    from lite_llm.optimized.model import forward

    cfg, m = tiny_cuda_model()
    seq = [5, 99, 3, 200, 17, 42]
    dec = Decoder(m, 0, 32)
    assert dec.graphs
    logits = dec.forward(torch.tensor(seq, device="cuda"))
    assert_bits(logits, forward(cfg, m, seq, (0, 1, 2), seed=0).logits, "prefill logits")
    for nxt in (7, 8, 9):
        seq.append(nxt)
        step = dec.forward(torch.tensor([nxt], device="cuda"))[0]
        ref = forward(cfg, m, seq, (0, 1, 2), seed=0).logits[-1]
        assert float((step - ref).abs().max() / ref.abs().max()) <= 1e-4
    assert generate(cfg, m, [3, 17, 250, 9], 8, (0, 1, 2), seed=0, device="cuda") == \
        generate(cfg, m, [3, 17, 250, 9], 8, (0, 1, 2), seed=0, device="cuda", cache=False)


def test_step_graph_decoding_on_cuda():
    """Each decode position as one CUDA graph replay: the uncached generation's tokens, logits within MODEL-4.3."""
    from lite_llm.optimized.decode import Decoder
    from lite_llm.optimized.generate import generate
    from lite_llm.optimized.model import forward

    cfg, m = tiny_cuda_model()
    prompt = [3, 17, 250, 9]
    dec = Decoder(m, 0, 32, step_graph=True)
    assert dec.stepper is not None and dec.stepper.graph is not None
    toks = dec.generate(torch.tensor(prompt, device="cuda"), 8)
    assert toks == generate(cfg, m, prompt, 8, (0, 1, 2), seed=0, device="cuda", cache=False)
    ref = forward(cfg, m, prompt + toks[:-1], (0, 1, 2), seed=0).logits[-1]
    assert float((dec.stepper.logits[0] - ref).abs().max() / ref.abs().max()) <= 1e-4
    assert dec.generate(torch.tensor(prompt, device="cuda"), 8) == toks
