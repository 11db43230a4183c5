"""S4, S5 and the end-to-end decode: the exact MoE layer and router against the usual non-deterministic
ones, from one token to 16k, and greedy decoding of a whole model.

S4  the whole MoE layer at the S3 shape (T = 16384, d = 4096, d_ff = 2048, 64 experts, k = 4, bf16):
    ours   exact router (1 tier x 1 group x 64 experts, k = (1, 1, 4)) + Triton grouped-GEMM SwiGLU
           experts + exact combine (``decode.GraphMoE``: eager and replayed as a CUDA graph)
    usual  bf16 matmul router + topk + softmax of the top-k, argsort permutation, ``torch._grouped_mm``
           SwiGLU, combine by ``index_add_`` or by un-permuting and a weighted sum (the faster is the
           baseline), eager and as a CUDA graph
    Each is checked for bit-identity across two runs and across batch sizes (the first half of the
    batch alone vs inside the whole batch).
S5  the decode regime, T = 1, 8, 64, 512, 4096, 16384: ``route()`` of the S2 configuration (5 x 32 x 64,
    k = (1, 2, 2)), eager and through ``decode.GraphRouter`` (CUDA graphs per size bucket, the
    non-finite check deferred), against the flat bf16 float router (matmul + topk over 10,240
    experts), eager and graph; and the S4 layer at the same T. Host time per call = the time the host
    takes to issue the call (``perf_counter`` over back-to-back calls, before the device is waited for).
E2E greedy decode of a whole model (``decode.Decoder``: KV cache, graph-replayed MoE blocks) against
    the same architecture with the usual pieces (same dense code and cache, a flat float top-k router,
    ``_grouped_mm`` experts, ``index_add_`` combine, argmax); prefill and decode reported separately.
probe whether ``torch._grouped_mm`` is batch-invariant for the S3 shapes (bits of rows of one group
    independent of the other groups' sizes, of the group's position among the groups, of the rows'
    order within the group and of the group's size).

Every timed "ours" configuration is run once more on each rotated input after timing and its output
checked bit for bit: the routing record against the torch path's (whole input) and the reference's
(sampled rows); the layer output across runs and batch sizes. ``--quick``: tiny sizes, CPU or GPU.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from lite_llm.benchmarks.bitcheck import bits_equal, matches_reference, records_equal, reference_router
from lite_llm.benchmarks.bench_e2e import E2E_COLUMNS, bench_e2e
from lite_llm.benchmarks.timing import device_name, print_table, time_us
from lite_llm.benchmarks.usual import usual_layer

T_SWEEP = (1, 8, 64, 512, 4096, 16384)
COLUMNS = ["T", "method", "us", "host us", "x baseline", "bits", "note"]


def host_us(fn, n: int = 20) -> float:
    """Microseconds the host spends issuing one call (back-to-back calls, no wait for the device)."""
    if not torch.cuda.is_available():
        n = 2
    fn(0)
    sync_all()
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    t = (time.perf_counter() - t0) / n * 1e6
    sync_all()
    return t


def sync_all():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def graph_of(work, example_inputs, device):
    """Capture ``work(*static)`` once; returns replay(*inputs) -> static outputs, or None without CUDA
    or when the capture fails (printed)."""
    if torch.device(device).type != "cuda":
        return None
    static = [t.clone() for t in example_inputs]
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                work(*static)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = work(*static)
    except Exception as e:                                           # reported, not fatal
        print(f"CUDA graph capture failed: {type(e).__name__}: {str(e)[:300]}")
        torch.cuda.synchronize()
        return None

    def replay(*inputs):
        for st, x in zip(static, inputs):
            st.copy_(x)
        g.replay()
        return out
    return replay


# ----------------------------------------------------------------------------------------------------
# our MoE layer on the S3 shape

def moe_setup(T_max, E, k, d, f, device, dtype=torch.bfloat16):
    """An ``MoELayer`` of 1 tier x 1 group x E experts (k = (1, 1, k)), random weights, and the same
    weights for the usual layer."""
    from lite_llm.benchmarks.bench_router import random_router_weights, scenario_config
    from lite_llm.optimized.experts import TierExperts
    from lite_llm.optimized.moe import MoELayer
    from lite_llm.optimized.router import load_router

    cfg = scenario_config(1, 1, E, (1, 1, k), d)
    rw = random_router_weights(cfg, device)
    qr = load_router(cfg, rw, 0, device)
    g = torch.Generator(device=device).manual_seed(2)
    wg = (torch.randn((E, f, d), generator=g, device=device) * d ** -0.5).to(dtype)
    wu = (torch.randn((E, f, d), generator=g, device=device) * d ** -0.5).to(dtype)
    wd = (torch.randn((E, d, f), generator=g, device=device) * f ** -0.5).to(dtype)
    moe = MoELayer(cfg, 0, (0,), qr, {0: TierExperts(wg, wu, wd, E)})
    usual = dict(w_router=rw["layers.0.tiers.t0.router_expert"].reshape(E, d).to(dtype), k=k,
                 wgu_t=torch.cat([wg, wu], dim=1).transpose(1, 2), wd_t=wd.transpose(1, 2))
    return cfg, rw, moe, usual


def our_layer_eager(moe, seed=0):
    from lite_llm.optimized.router import route

    if moe.router.device.type == "cuda":
        from lite_llm.optimized.triton import combine_triton, expert_outputs_triton

        def run(x):
            r = route(x, moe.router, moe.tier_ids, seed)
            return combine_triton(r.gate, r.count, expert_outputs_triton(moe, x, r), out_dtype=x.dtype)
        return run
    from lite_llm.optimized.moe import combine, expert_outputs_torch

    def run_cpu(x):
        r = route(x, moe.router, moe.tier_ids, seed, backend="torch")
        return combine(r.gate, r.count, expert_outputs_torch(moe, x.float(), r)).to(x.dtype)
    return run_cpu


def layer_rows(T, moe, usual, device, xs, note_dict) -> list[dict]:
    """Ours (eager, graph) and the usual layer (two combines, eager and graph) at T tokens."""
    from lite_llm.optimized.decode import GraphMoE

    cuda = torch.device(device).type == "cuda"
    rows = []
    ins = [x[:T] for x in xs]
    reps = 30 if cuda else 3

    def invariant(fn) -> dict:
        a, b = fn(ins[0]).clone(), fn(ins[0]).clone()
        h = max(1, T // 2)
        c = fn(ins[0][:h]).clone()
        return {"same_across_runs": bits_equal(a, b), "same_across_batch_sizes": bits_equal(a[:h], c)}

    ours_e = our_layer_eager(moe)
    e_us = time_us(lambda i: ours_e(ins[i % len(ins)]), device, reps=reps)
    rows.append(dict(T=T, method="ours, eager (route + experts + exact combine)", us=e_us,
                     **{"host us": host_us(lambda i: ours_e(ins[i % len(ins)]))}, **invariant(ours_e)))
    if cuda:
        gm = GraphMoE(moe, 0)
        run_g = lambda x: gm(x)[0]                                       # noqa: E731
        g_us = time_us(lambda i: run_g(ins[i % len(ins)]), device, reps=reps)
        inv = invariant(run_g)
        same_as_eager = bits_equal(run_g(ins[0]).clone(), ours_e(ins[0]))
        gm.check()
        rows.append(dict(T=T, method="ours, GraphMoE (CUDA graph per size bucket)", us=g_us,
                         **{"host us": host_us(lambda i: run_g(ins[i % len(ins)]))}, **inv,
                         note=f"= eager bits: {same_as_eager}"))
    if hasattr(torch, "_grouped_mm"):
        for combine in ("index_add", "unpermute"):
            fn = usual_layer(combine)
            try:
                run_u = lambda x, fn=fn: fn(x, **usual)                  # noqa: E731
                u_us = time_us(lambda i: run_u(ins[i % len(ins)]), device, reps=reps)
                rows.append(dict(T=T, method=f"usual ({combine}), eager", us=u_us,
                                 **{"host us": host_us(lambda i: run_u(ins[i % len(ins)]))}, **invariant(run_u)))
                rep = graph_of(lambda x, fn=fn: fn(x, **usual), [ins[0]], device)
                if rep is not None:
                    ug = time_us(lambda i: rep(ins[i % len(ins)]), device, reps=reps)
                    rows.append(dict(T=T, method=f"usual ({combine}), CUDA graph", us=ug,
                                     **{"host us": host_us(lambda i: rep(ins[i % len(ins)]))},
                                     **invariant(lambda x: rep(x) if x.shape[0] == T else run_u(x))))
            except Exception as e:                                       # reported, not fatal
                rows.append(dict(T=T, method=f"usual ({combine})", us=float("nan"),
                                 note=f"ERROR {type(e).__name__}: {str(e)[:200]}"))
    usual_us = [r["us"] for r in rows if r["method"].startswith("usual") and r["us"] == r["us"]]
    base = min(usual_us) if usual_us else float("nan")
    for r in rows:
        r["x baseline"] = r["us"] / base
        if "same_across_runs" in r:
            r["bits"] = f"runs {'same' if r['same_across_runs'] else 'DIFFER'}, " \
                        f"batch {'same' if r['same_across_batch_sizes'] else 'DIFFER'}"
    note_dict[T] = {"baseline_us": base}
    return rows


def bench_s4(device, quick: bool, sweep: tuple[int, ...] | None = None) -> dict:
    """S4 (T = 16384) and the layer half of S5 (the T sweep)."""
    E, k, d, f = (8, 2, 64, 32) if quick else (64, 4, 4096, 2048)
    cuda = torch.device(device).type == "cuda"
    Ts = sweep or ((1, 8) if quick else T_SWEEP)
    dtype = torch.bfloat16 if cuda else torch.float32
    cfg, rw, moe, usual = moe_setup(max(Ts), E, k, d, f, device, dtype)
    g = torch.Generator(device=device).manual_seed(5)
    xs = [torch.randn((max(Ts), d), generator=g, device=device).to(dtype) for _ in range(2)]
    meta = {"experts": E, "k": k, "d": d, "d_ff": f, "dtype": str(dtype), "T": list(Ts), "baseline": {}}
    rows = []
    for T in Ts:
        rows += layer_rows(T, moe, usual, device, xs, meta["baseline"])
    return {"scenario": "S4/S5 layer", "device": device_name(device), "meta": meta, "rows": rows}


# ----------------------------------------------------------------------------------------------------
# S5: route() at decode sizes

def bench_s5_route(device, quick: bool, sweep: tuple[int, ...] | None = None) -> dict:
    from lite_llm.benchmarks.bench_router import random_router_weights, scenario_config
    from lite_llm.optimized.decode import GraphRouter
    from lite_llm.optimized.router import load_router, route

    T_, d, M, G, E = (None, 128, 5, 8, 16) if quick else (None, 4096, 5, 32, 64)
    cuda = torch.device(device).type == "cuda"
    Ts = sweep or ((1, 8) if quick else T_SWEEP)
    cfg = scenario_config(M, G, E, (1, 2, 2), d)
    rw = random_router_weights(cfg, device)
    qr = load_router(cfg, rw, 0, device)
    ref_r = reference_router(cfg, rw, range(M))
    tiers = tuple(range(M))
    gen = torch.Generator(device=device).manual_seed(1)
    dtype = torch.bfloat16
    xs = [torch.randn((max(Ts), d), generator=gen, device=device).to(dtype) for _ in range(2)]
    flat_w = torch.cat([rw[f"layers.0.tiers.t{t}.router_expert"].reshape(G * E, d) for t in tiers]).to(dtype)
    rows = []
    backend = "triton" if cuda else "torch"
    gr = GraphRouter(qr, tiers, 0) if cuda else None
    for T in Ts:
        ins = [x[:T] for x in xs]
        torch_rec = [route(h, qr, tiers, 0, backend="torch") for h in ins]
        reps = 30 if cuda else 3

        def check(fn) -> dict:
            outs = [fn(h) for h in ins]
            return {"bits_vs_torch_path": all(records_equal(o, t) for o, t in zip(outs, torch_rec)),
                    "bits_vs_reference": all(matches_reference(o, h, ref_r, tiers, 0, n=16 if quick else 48)
                                             for o, h in zip(outs, ins))}

        run_e = lambda h: route(h, qr, tiers, 0, backend=backend)               # noqa: E731
        us = time_us(lambda i: run_e(ins[i % 2]), device, reps=reps)
        rows.append(dict(T=T, method=f"ours: route() eager ({backend})", us=us,
                         **{"host us": host_us(lambda i: run_e(ins[i % 2]))}, **check(run_e),
                         note="full API: checks, non-finite test (host sync)"))
        if gr is not None:
            run_g = gr.route
            us = time_us(lambda i: run_g(ins[i % 2]), device, reps=reps)
            c = check(lambda h: __import__("lite_llm.optimized.decode", fromlist=["clone_route"]).clone_route(run_g(h)))
            gr.check()
            rows.append(dict(T=T, method="ours: GraphRouter (graph per size bucket)", us=us,
                             **{"host us": host_us(lambda i: run_g(ins[i % 2]))}, **c,
                             note="copy in + replay; non-finite check deferred to check()"))
        base = lambda h: torch.topk(h @ flat_w.T, 4, dim=1)                     # noqa: E731
        b_us = time_us(lambda i: base(ins[i % 2]), device, reps=reps)
        rows.append(dict(T=T, method=f"flat bf16 top-4 over {M * G * E} (eager)", us=b_us,
                         **{"host us": host_us(lambda i: base(ins[i % 2]))}, note="float logits, not exact"))
        rep = graph_of(base, [ins[0]], device)
        if rep is not None:
            bg = time_us(lambda i: rep(ins[i % 2]), device, reps=reps)
            rows.append(dict(T=T, method="flat bf16 top-4 (CUDA graph)", us=bg,
                             **{"host us": host_us(lambda i: rep(ins[i % 2]))}, note="float logits, not exact"))
        b = min(r["us"] for r in rows if r["T"] == T and r["method"].startswith("flat"))
        for r in rows:
            if r["T"] == T:
                r["x baseline"] = r["us"] / b
                if "bits_vs_torch_path" in r:
                    r["bits"] = "exact" if r["bits_vs_torch_path"] and r["bits_vs_reference"] else "MISMATCH"
    meta = {"config": f"{M} tiers x {G} groups x {E} experts, k = (1, 2, 2), d = {d}", "T": list(Ts)}
    return {"scenario": "S5 route", "device": device_name(device), "meta": meta, "rows": rows}


# ----------------------------------------------------------------------------------------------------
# _grouped_mm batch invariance probe

def probe_grouped_mm(device, quick: bool) -> dict:
    """Rows of one group through _grouped_mm alone and among other groups of several sizes, at several
    positions: are their bits the same? (bf16, the S3 GEMM shapes)."""
    if not hasattr(torch, "_grouped_mm"):
        return {"available": False}
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    res = {"available": True, "shapes": {}}
    shapes = [(64, 64)] if quick else [(4096, 4096), (2048, 4096)]          # (K, N): gate/up, down
    g = torch.Generator(device=device).manual_seed(9)
    for K, N in shapes:
        E = 8
        w_nk = (torch.randn((E, N, K), generator=g, device=device) * K ** -0.5).to(dtype)   # (E, N, K) as stored
        wt = lambda idx: w_nk[idx].transpose(1, 2)          # (G, K, N) column-major, as bench_moe passes  # noqa: E731
        rows = torch.randn((37, K), generator=g, device=device).to(dtype)
        try:
            want = torch._grouped_mm(rows, wt([0]), offs=torch.tensor([37], dtype=torch.int32, device=device))
            same, cases = True, 0
            for others in ([1], [5, 300], [4000, 1], [128, 128, 128], [9000]):
                for where in range(len(others) + 1):
                    sizes = others[:where] + [37] + others[where:]
                    xs = [torch.randn((n, K), generator=g, device=device).to(dtype) for n in others]
                    parts = xs[:where] + [rows] + xs[where:]
                    x = torch.cat(parts)
                    offs = torch.cumsum(torch.tensor(sizes, device=device), 0).to(torch.int32)
                    gi = where                                           # the group index of our rows
                    idx = list(range(1, 1 + where)) + [0] + list(range(1 + where, 1 + len(others)))
                    out = torch._grouped_mm(x, wt(idx), offs=offs)
                    start = sum(sizes[:gi])
                    same &= bits_equal(out[start:start + 37], want)
                    cases += 1
            one = lambda x: torch._grouped_mm(x, wt([0]), offs=torch.tensor([x.shape[0]], dtype=torch.int32,  # noqa: E731
                                                                                device=device))
            perm = torch.randperm(37, generator=torch.Generator().manual_seed(1)).to(device)
            more = torch.cat([torch.randn((100, K), generator=g, device=device).to(dtype), rows])
            within = {"row order within the group": bits_equal(one(rows[perm]), want[perm]),
                      "group of 20 of the rows": bits_equal(one(rows[:20]), want[:20]),
                      "rows inside a group of 137": bits_equal(one(more)[100:], want)}
            same &= all(within.values())
            res["shapes"][f"K={K},N={N}"] = {"batch_invariant": bool(same), "cases": cases + 3, **within}
        except Exception as e:                                               # reported, not fatal
            res["shapes"][f"K={K},N={N}"] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    res["all_invariant"] = all(v.get("batch_invariant", False) for v in res["shapes"].values())
    return res


def run(scenarios, device: str, quick: bool, json_path: str | None) -> int:
    if quick:
        from lite_llm.benchmarks.timing import quick_mode
        quick_mode()
    results = []
    for name in scenarios:
        if name == "S4":
            res = bench_s4(device, quick)
        elif name == "S5":
            res = bench_s5_route(device, quick)
        elif name == "E2E":
            res = bench_e2e(device, quick)
        elif name == "probe":
            res = {"scenario": "probe _grouped_mm", "device": device_name(device),
                   "meta": probe_grouped_mm(device, quick), "rows": []}
        results.append(res)
        cols = E2E_COLUMNS if name == "E2E" else COLUMNS
        if not res["rows"]:
            print(f"\n{res['scenario']} on {res['device']}: {json.dumps(res['meta'], default=str)}")
            continue
        print_table(f"{res['scenario']} on {res['device']}: {json.dumps(res['meta'], default=str)[:400]}",
                    res["rows"], cols)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", nargs="+", default=["probe", "S5", "S4", "E2E"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    return run(a.scenario, a.device, a.quick, a.json)


if __name__ == "__main__":
    raise SystemExit(main())
