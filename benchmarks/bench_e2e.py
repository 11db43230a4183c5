"""E2E: greedy decode of a whole model, the exact ``decode.Decoder`` (KV cache, graph-replayed MoE blocks, or
one CUDA graph per step) against the same architecture built with the usual pieces (``usual``); prefill and
decode reported separately. Run through ``bench_layer`` (``lite-llm bench moe --scenario E2E``)."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from lite_llm.benchmarks.timing import device_name, sync
from lite_llm.benchmarks.usual import usual_experts, usual_router

# ----------------------------------------------------------------------------------------------------
# end to end: greedy decode of a whole model

def e2e_config(quick: bool):
    from lite_llm.spec.config import config_from_dict

    d, L, H, V, G, E, f = (64, 2, 4, 256, 4, 4, 32) if quick else (1024, 8, 16, 32000, 8, 8, 1024)
    return config_from_dict({
        "spec_version": "0.1", "d_model": d, "n_layers": L, "n_heads": H, "vocab_size": V, "max_seq_len": 1024,
        "tiers": [{"name": "t0", "groups": G, "experts_per_group": E, "d_ff": f}],
        "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "hidden_limbs": 2, "weight_limbs": 2, "seed": 0}})


def e2e_weights(cfg, device) -> dict:
    from lite_llm.spec.tensors import dense_shapes, tier_layer_shapes

    g = torch.Generator(device=device).manual_seed(11)
    shapes = dict(dense_shapes(cfg))
    for l in range(cfg.n_layers):
        shapes.update(tier_layer_shapes(cfg, 0, l))
    out = {}
    for n, s in shapes.items():
        fan_in = s[-1]
        if n.endswith("norm"):
            out[n] = torch.ones(s, device=device)
        else:
            out[n] = torch.randn(s, generator=g, device=device) * fan_in ** -0.5
    out["embed"] = torch.randn(dense_shapes(cfg)["embed"], generator=g, device=device)
    return out


class UsualDecoder:
    """The same architecture with the usual pieces: the same dense code and KV cache, a flat float
    top-k router over the TierSet's experts (k = k_tier k_group k_expert), softmax of the chosen
    logits, argsort permutation, ``_grouped_mm`` experts (per-expert matmuls where it is unavailable
    for the dtype), ``index_add_`` combine, argmax. Not exact, not batch-invariant."""

    def __init__(self, m, weights, capacity):
        from lite_llm.optimized.decode import KVCache

        cfg = m.cfg
        self.m, self.cfg = m, cfg
        self.k = cfg.router.k_tier * cfg.router.k_group * cfg.router.k_expert
        tc = cfg.tiers[0]
        self.wr = [weights[f"layers.{l}.tiers.t0.router_expert"].reshape(tc.groups * tc.experts_per_group, -1)
                   for l in range(cfg.n_layers)]
        ex = [m.moe[l].experts[0] for l in range(cfg.n_layers)]
        self.wgu_t = [torch.cat([e.w_gate, e.w_up], dim=1).transpose(1, 2) for e in ex]
        self.wd_t = [e.w_down.transpose(1, 2) for e in ex]
        self.ex = ex
        self.cache = KVCache.empty(cfg, capacity, m.device)
        self.grouped = "untested"

    def moe(self, l, x):
        ids, gates = usual_router(x, self.wr[l], self.k)
        if self.grouped != "loop":
            try:
                out = usual_experts(x, ids, gates, self.wgu_t[l], self.wd_t[l], "index_add")
                self.grouped = "_grouped_mm"
                return out
            except Exception as e:                                    # e.g. no float32 kernel on this GPU
                self.grouped = "loop"
                self.grouped_error = f"{type(e).__name__}: {str(e)[:120]}"
        T = x.shape[0]
        out = torch.zeros_like(x)
        flat = ids.reshape(-1)
        e = self.ex[l]
        for j in torch.unique(flat).tolist():                         # host sync: the usual HF loop
            sl = torch.nonzero(flat == j)[:, 0]
            tok = sl // self.k
            xe = x[tok]
            y = (F.silu(xe @ e.w_gate[j].T) * (xe @ e.w_up[j].T)) @ e.w_down[j].T
            out.index_add_(0, tok, y * gates.reshape(-1)[sl, None])
        return out

    def moe_gathered(self, l, x):
        """The decode-time MoE of gpt-fast: each token's k experts' weights gathered and applied with
        einsum (no permutation, no host sync, capturable), then a weighted sum over the k."""
        ids, gates = usual_router(x, self.wr[l], self.k)
        e = self.ex[l]
        wg, wu, wd = e.w_gate[ids], e.w_up[ids], e.w_down[ids]                 # (T, k, f, d), (T, k, d, f)
        h = F.silu(torch.einsum("td,tkfd->tkf", x, wg)) * torch.einsum("td,tkfd->tkf", x, wu)
        y = torch.einsum("tkf,tkdf->tkd", h, wd)
        return torch.einsum("tkd,tk->td", y, gates.to(y.dtype))

    def forward(self, tok):
        from lite_llm.optimized.decode import attention_cached
        from lite_llm.optimized.model import ieee_float32, rms_norm, rope_tables

        cfg, w = self.cfg, self.m.dense
        T = tok.shape[0]
        pos0 = self.cache.length
        cos, sin = rope_tables(pos0 + T, cfg.d_model // cfg.n_heads, cfg.rope_theta, self.m.device)
        cos, sin = cos[pos0:], sin[pos0:]
        with ieee_float32():
            h = w["embed"][tok]
            for l in range(cfg.n_layers):
                h = h + attention_cached(self.m, l, rms_norm(h, w[f"layers.{l}.attn_norm"], cfg.norm_eps),
                                         self.cache, cos, sin)
                h = h + self.moe(l, rms_norm(h, w[f"layers.{l}.ffn_norm"], cfg.norm_eps))
            self.cache.length = pos0 + T
            return rms_norm(h, w["final_norm"], cfg.norm_eps) @ w["lm_head"].T

    def generate(self, prompt, n):
        self.cache.length = 0
        out = torch.empty((n,), dtype=torch.int64, device=self.m.device)
        logits = self.forward(prompt)[-1]
        for i in range(n):
            out[i] = torch.argmax(logits)
            if i + 1 < n:
                logits = self.forward(out[i:i + 1])[0]
        return out.tolist()


def bench_e2e(device, quick: bool) -> dict:
    from lite_llm.optimized.decode import Decoder, greedy_device
    from lite_llm.optimized.model import load_model

    cfg = e2e_config(quick)
    w = e2e_weights(cfg, device)
    m = load_model(cfg, w, (0,), device)
    P, N = (8, 4) if quick else (128, 64)
    prompt = torch.randint(0, cfg.vocab_size, (P,), generator=torch.Generator().manual_seed(3)).to(device)
    cuda = torch.device(device).type == "cuda"
    rows = []
    meta = {"d_model": cfg.d_model, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "vocab": cfg.vocab_size,
            "experts": cfg.tiers[0].groups * cfg.tiers[0].experts_per_group, "k": [1, 2, 2],
            "d_ff": cfg.tiers[0].d_ff, "prompt": P, "new_tokens": N, "dtype": "float32 (IEEE, no TF32)"}

    n_steps = 4 if quick else 16

    def measure(name, gen_fn, prefill_fn, reset_fn, step_fn):
        toks = gen_fn()                                   # warm-up: compiles, captures graphs
        sync(device)
        t0 = time.perf_counter()
        toks2 = gen_fn()
        sync(device)
        total = time.perf_counter() - t0
        reset_fn()
        sync(device)
        t0 = time.perf_counter()
        prefill_fn()
        sync(device)
        pre = time.perf_counter() - t0
        t0 = time.perf_counter()
        one = torch.tensor([1], device=device)
        for _ in range(n_steps):
            step_fn(one)
        sync(device)
        step = (time.perf_counter() - t0) / n_steps
        rows.append(dict(method=name, **{"prefill ms": pre * 1e3, "decode ms/token": step * 1e3,
                                          "decode tok/s": 1 / step, "generate s": total,
                                          "same tokens across runs": toks == toks2}))
        return toks

    def attempt(name, fn):
        try:
            fn()
        except Exception as e:                                        # reported, not fatal
            rows.append(dict(method=name, note=f"ERROR {type(e).__name__}: {str(e)[:300]}"))

    cap = P + N + 32
    modes = [("eager", dict(graphs=False))] + ([("MoE blocks as CUDA graphs", dict(graphs=True)),
                                                ("each step one CUDA graph", dict(graphs=True, step_graph=True))]
                                               if cuda else [("each step one step function", dict(step_graph=True))])
    for label, kw in modes:
        def ours(label=label, kw=kw):
            dec = Decoder(m, 0, cap, **kw)
            if dec.stepper is not None:
                st = dec.stepper

                def steps(x):
                    st.step()

                def prefill():
                    st.clear()
                    lg = dec.forward(prompt)[-1]
                    st.start(*greedy_device(lg), P)
                t = measure(f"ours: exact router + experts + combine, KV cache, {label}",
                            lambda: dec.generate(prompt, N), prefill, lambda: None, steps)
            else:
                t = measure(f"ours: exact router + experts + combine, KV cache, {label}",
                            lambda: dec.generate(prompt, N), lambda: dec.forward(prompt), dec.reset,
                            lambda x: dec.forward(x))
            meta.setdefault("ours_tokens", {})[label] = t
        attempt(f"ours, {label}", ours)

    usual = UsualDecoder(m, w, cap)

    def reset_u():
        usual.cache.length = 0

    def usual_eager():
        measure("usual: float top-k router, _grouped_mm, index_add_, argmax; same dense code and KV cache, eager",
                lambda: usual.generate(prompt, N), lambda: usual.forward(prompt), reset_u, lambda x: usual.forward(x))
    attempt("usual, eager", usual_eager)
    meta["usual_experts"] = usual.grouped
    if hasattr(usual, "grouped_error"):
        meta["usual_grouped_mm_error"] = usual.grouped_error
    base = rows[-1].get("decode tok/s", float("nan"))

    for label, moe_fn in (("_grouped_mm experts", lambda l, x: usual.moe(l, x)),
                          ("experts gathered per token (gpt-fast style)", lambda l, x: usual.moe_gathered(l, x))):
        def usual_graph(label=label, moe_fn=moe_fn):
            from lite_llm.optimized.decode import StepGraph
            from lite_llm.optimized.model import rope_tables

            rope = rope_tables(cap, cfg.d_model // cfg.n_heads, cfg.rope_theta, m.device)
            st = StepGraph(m, usual.cache, rope, moe_fn,
                           greedy_fn=lambda lg: (torch.argmax(lg).reshape(1),
                                                 torch.full((1,), -1, dtype=torch.int64, device=lg.device)))

            def gen():
                st.clear()
                lg = usual.forward(prompt)[-1]
                st.start(torch.argmax(lg).reshape(1), torch.full((1,), -1, dtype=torch.int64, device=device), P)
                for _ in range(N - 1):
                    st.step()
                return st.toks[:N].tolist()

            def prefill():
                st.clear()
                lg = usual.forward(prompt)[-1]
                st.start(torch.argmax(lg).reshape(1), torch.full((1,), -1, dtype=torch.int64, device=device), P)
            name = f"usual, each step one {'CUDA graph' if cuda else 'step function'}, {label}"
            measure(name, gen, prefill, lambda: None, lambda x: st.step())
        attempt(f"usual, each step one CUDA graph, {label}", usual_graph)

    eager_usual = next((r for r in rows if r["method"].startswith("usual") and "eager" in r["method"]
                        and "decode tok/s" in r), None)
    graph_usual = max((r for r in rows if r["method"].startswith("usual, each step") and "decode tok/s" in r),
                      key=lambda r: r["decode tok/s"], default=None)
    for r in rows:
        if "decode tok/s" in r:
            r["x usual (decode tok/s)"] = r["decode tok/s"] / base
            if graph_usual is not None:
                r["x usual graph"] = r["decode tok/s"] / graph_usual["decode tok/s"]
    meta["usual_eager_tok_s"] = eager_usual and eager_usual["decode tok/s"]
    return {"scenario": "E2E decode", "device": device_name(device), "meta": meta, "rows": rows}


E2E_COLUMNS = ["method", "prefill ms", "decode ms/token", "decode tok/s", "x usual (decode tok/s)", "x usual graph",
               "same tokens across runs", "note"]
