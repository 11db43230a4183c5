"""CPU microbenchmarks of the router's pieces, reference (NumPy) vs optimized (torch), with pytest-benchmark.

Not part of the default test run (``testpaths = tests``); run them with

    pytest benchmarks/micro --benchmark-only                 # add --benchmark-json FILE to keep the numbers

Each piece runs on the same inputs in both implementations, and each benchmark first checks that
the two agree bit for bit, so a number is never reported for a wrong result:
quantization (HSER-2.1 .. HSER-2.5), the exact products and logits (HSER-3.1 .. HSER-3.3), the
canonical softmax (HSER-6.6) and top-k under the total order (HSER-5.1 .. HSER-5.4). Sizes: T = 64
tokens, d = 1024, n = 256 candidates (one level of the Triton kernels' widest matrix); torch runs on one
thread, as NumPy's elementwise code does.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lite_llm.optimized import logits as o_logits, quantize as o_quant, ranking as o_rank, softmax as o_soft
from lite_llm.optimized.seeds import ordered
from lite_llm.reference import logits as r_logits, quantize as r_quant, ranking as r_rank, softmax as r_soft

torch.set_num_threads(1)     # one thread each: NumPy's elementwise code is single-threaded; a shared CPU stays fair
T, D, N, K = 64, 1024, 256, 4
rng = np.random.default_rng(0)
X = (rng.standard_normal((T, D)) * rng.lognormal(0, 1, (T, 1))).astype(np.float32)     # heavy-tailed rows
W = (rng.standard_normal((N, D)) / 32).astype(np.float32)
Z = np.round(rng.standard_normal((T, N)) * 8) / 4                                       # binary64 logits, ties
KEYS = rng.integers(0, 2 ** 63, N, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)


def same(a, b) -> bool:
    a = np.asarray(a.cpu().numpy() if isinstance(a, torch.Tensor) else a)
    b = np.asarray(b.cpu().numpy() if isinstance(b, torch.Tensor) else b)
    return a.shape == b.shape and a.tobytes() == b.astype(a.dtype).tobytes()


@pytest.mark.parametrize("impl", ["reference", "optimized"])
def test_quantize(benchmark, impl):
    """HSER-2: absmax, scale, round half to even, two limbs."""
    x = torch.from_numpy(X)
    ref = r_quant.quantize_rows(X, 2)
    opt = o_quant.quantize_rows(x, 2)
    assert same(opt[0].to(torch.int64), ref[0].astype(np.int64)) and same(opt[1], ref[1])
    fn = (lambda: r_quant.quantize_rows(X, 2)) if impl == "reference" else (lambda: o_quant.quantize_rows(x, 2))
    benchmark(fn)


@pytest.mark.parametrize("impl", ["reference", "optimized"])
def test_exact_products(benchmark, impl):
    """HSER-3.1 .. 3.3: exact integer products of quantized rows, then the binary64 logits."""
    qx, ax = r_quant.quantize_rows(X, 2)
    qw, aw = r_quant.quantize_rows(W, 2)
    sx, sw = r_quant.dequant_scale(ax, 2), r_quant.dequant_scale(aw, 2)
    tq = [torch.from_numpy(np.ascontiguousarray(a)) for a in (qx, qw, sx, sw)]
    ref = r_logits.logits(r_logits.exact_dot(qx, qw), sx, sw)
    opt = o_logits.logits(o_logits.exact_dot(tq[0], tq[1]), tq[2], tq[3])
    assert same(opt, ref)
    if impl == "reference":
        benchmark(lambda: r_logits.logits(r_logits.exact_dot(qx, qw), sx, sw))
    else:
        benchmark(lambda: o_logits.logits(o_logits.exact_dot(tq[0], tq[1]), tq[2], tq[3]))


@pytest.mark.parametrize("impl", ["reference", "optimized"])
def test_canonical_softmax(benchmark, impl):
    """HSER-6.6: the canonical exp from + - * / and a fixed-order tree sum."""
    z = torch.from_numpy(Z)
    assert same(o_soft.softmax(z), r_soft.softmax(Z))
    benchmark((lambda: r_soft.softmax(Z)) if impl == "reference" else (lambda: o_soft.softmax(z)))


@pytest.mark.parametrize("impl", ["reference", "optimized"])
def test_top_k(benchmark, impl):
    """HSER-5: top-k by score, ties broken by the tie keys (a strict total order)."""
    z = torch.from_numpy(Z)
    keys = ordered(torch.from_numpy(KEYS.view(np.int64)))
    assert same(o_rank.top_k(z, keys, K), r_rank.top_k(Z, KEYS, K).astype(np.int64))
    benchmark((lambda: r_rank.top_k(Z, KEYS, K)) if impl == "reference" else (lambda: o_rank.top_k(z, keys, K)))
