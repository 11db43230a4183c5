"""Router benchmarks: the exact HSER router against float routers, with the memory floors.

S1  one routing level, 64 candidates, top-2: T=16384 tokens, d=4096, bfloat16 hidden states.
    ours: the fused Triton kernel (``lite_llm.optimized.triton.route_flat``: quantize, exact int8 products,
    canonical softmax, top-k with tie keys) and ``route()`` on a 1 tier x 1 group x 64 experts
    configuration; baseline: bf16 matmul + torch.topk (not exact: float sums, topk tie order).
    floor: reading the hidden states once from HBM.
S2  three-level HSER: 5 tiers (k=1) x 32 groups (k=2) x 64 experts (k=2) = 10,240 experts.
    ours: ``route()`` with the Triton kernels (the whole routing record); baseline: a flat top-4
    over all 10,240 experts with a bf16 matmul. floor: hidden states once + every router matrix
    once (as int8 limbs, the form the kernels read; and at one byte per weight).

Bit checks are of the timed outputs themselves: every timed configuration (each config tried by the
tuner, and the CUDA-graph replays) is run once more on every rotated input after timing, and what it
returns is compared bit for bit with the torch path's record of the same input (every token) and with
``lite_llm.reference``'s record of sampled rows of it (``bitcheck``). Baselines get the same
treatment where it applies: the same input rotation, eager and CUDA-graph rows, and each "x baseline"
compares like with like (eager with eager, graph with graph). ``--quick`` runs tiny sizes (on the
CPU the torch path stands in for the kernels; its outputs are checked against the reference).
"""
from __future__ import annotations

import argparse
import json

import torch

from lite_llm.benchmarks.timing import (H100_HBM_TBPS, copies_for_l2, copy_bandwidth_tbps, device_name,
                                        print_table, time_us)
from lite_llm.spec.config import config_from_dict

COLUMNS = ["method", "us", "x baseline", "x floor", "exact", "note"]


def check_outputs(fn, hs, torch_recs, ref_router, tiers, extract=None) -> dict:
    """Run the timed callable ``fn`` once more on every rotated input and compare what it returns with
    the torch path's record of that input (whole, bit for bit) and the reference's (sampled rows).
    ``extract(out, torch_rec)`` -> (got, want) tensors for outputs that are not records (route_flat)."""
    from lite_llm.benchmarks.bitcheck import bits_equal, matches_reference, records_equal

    torch_ok, ref_ok = True, True
    for h, want in zip(hs, torch_recs):
        out = fn(h)
        if extract is None:
            torch_ok &= records_equal(out, want)
            ref_ok &= matches_reference(out, h, ref_router, tiers, 0)
        else:
            pairs = extract(out, want)
            torch_ok &= all(bits_equal(a, b) for a, b in pairs)
            rows = torch.arange(0, h.shape[0], max(1, h.shape[0] // 48))
            ref = reference_record(h[rows.to(h.device)], ref_router, tiers)
            ref_ok &= all(bits_equal(a[rows.to(a.device)].cpu(), torch.from_numpy(b)) for a, b in
                          extract(out, ref, sliced=True))
    return {"bits_vs_torch_path": bool(torch_ok), "bits_vs_reference": bool(ref_ok)}


def reference_record(h, ref_router, tiers):
    from lite_llm.reference.router import route as ref_route

    return ref_route(h.float().cpu().numpy(), ref_router, tuple(tiers), 0)


def exact_of(checks: dict) -> str:
    return "yes" if checks["bits_vs_torch_path"] and checks["bits_vs_reference"] else "NO"


def scenario_config(tiers: int, groups: int, experts: int, k: tuple[int, int, int], d: int):
    return config_from_dict({
        "spec_version": "0.1", "d_model": d, "n_heads": 1,
        "tiers": [{"name": f"t{i}", "groups": groups, "experts_per_group": experts, "d_ff": 16} for i in range(tiers)],
        "router": {"k_tier": k[0], "k_group": k[1], "k_expert": k[2], "hidden_limbs": 2, "weight_limbs": 2, "seed": 0},
    })


def random_router_weights(cfg, device, seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniform(-1/sqrt(d), 1/sqrt(d)) router tensors named as INIT-2.1 (values need not follow INIT)."""
    g = torch.Generator(device=device).manual_seed(seed)
    d, b = cfg.d_model, cfg.d_model ** -0.5
    out = {}
    for tc in cfg.tiers:
        p = f"layers.0.tiers.{tc.name}"
        for name, shape in (("router_tier", (d,)), ("router_group", (tc.groups, d)),
                            ("router_expert", (tc.groups, tc.experts_per_group, d))):
            out[f"{p}.{name}"] = (torch.rand(shape, generator=g, device=device) * 2 - 1) * b
    return out


def hidden_copies(T: int, d: int, device, dtype=torch.bfloat16) -> list[torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(1)
    n = copies_for_l2(T * d * torch.tensor([], dtype=dtype).element_size()) if torch.device(device).type == "cuda" else 1
    return [torch.randn((T, d), generator=g, device=device).to(dtype) for _ in range(n)]


def tune(label: str, make_fn, choices: list[dict], device) -> tuple[float, dict, list]:
    """Time ``make_fn(config)`` for each config; returns (best us, best config, all timings)."""
    timings = []
    for c in choices:
        try:
            timings.append((time_us(make_fn(c), device), c))
        except Exception as e:                    # a config that does not compile or fit is reported, not fatal
            timings.append((float("inf"), {**c, "error": f"{type(e).__name__}: {str(e)[:120]}"}))
    best = min(timings, key=lambda t: t[0])
    return best[0], best[1], [{"config": c, "us": us} for us, c in timings]


def bench_s1(device, quick: bool) -> dict:
    from lite_llm.benchmarks.bitcheck import reference_router
    from lite_llm.optimized.router import load_router, route

    T, d, n, k = (256, 128, 64, 2) if quick else (16384, 4096, 64, 2)
    cuda = torch.device(device).type == "cuda"
    cfg = scenario_config(1, 1, n, (1, 1, k), d)
    weights = random_router_weights(cfg, device)
    qr = load_router(cfg, weights, 0, device)
    hs = hidden_copies(T, d, device)
    rows, meta = [], {"T": T, "d": d, "candidates": n, "k": k, "dtype": "bfloat16", "input_copies": len(hs)}
    ref_router = reference_router(cfg, weights, (0,))
    torch_recs = [route(h, qr, (0,), backend="torch") for h in hs]

    w_bf16 = weights["layers.0.tiers.t0.router_expert"].reshape(n, d).to(torch.bfloat16)
    base = lambda h: torch.topk(h @ w_bf16.T, k, dim=1)                     # noqa: E731
    base_us = time_us(lambda i: base(hs[i % len(hs)]), device)
    base_g = graph_us(base, hs, device)
    h_bytes = T * d * 2
    bw = copy_bandwidth_tbps(device)
    floor_us = h_bytes / (bw * 1e12) * 1e6 if cuda else float("nan")
    meta.update(copy_TBps=bw, floor_us=floor_us, floor_nominal_us=h_bytes / (H100_HBM_TBPS * 1e12) * 1e6,
                baseline_eager_us=base_us, baseline_graph_us=base_g)

    if cuda:
        failed(rows, "exact level, fused Triton kernel", s1_flat, rows, meta, hs, weights, torch_recs, ref_router,
               n, d, k, device)
    backend = "triton" if cuda else "torch"
    failed(rows, f"exact route(), 1x1x{n} config ({backend})", s1_route, rows, hs, qr, torch_recs, ref_router,
           backend, cuda, device)
    rows.append(dict(method="bf16 matmul + torch.topk (baseline), eager", us=base_us, exact="no", mode="eager",
                     note="float logits; same input rotation"))
    if base_g is not None:
        rows.append(dict(method="bf16 matmul + torch.topk (baseline), CUDA graph", us=base_g, exact="no",
                         mode="graph", note="float logits; same input rotation"))
    if cuda:
        rows.append(dict(method="floor: hidden states once from HBM", us=floor_us, exact="",
                         note=f"{h_bytes / 1e6:.0f} MB at the measured copy rate {bw:.2f} TB/s"))
    like_with_like(rows, base_us, base_g, floor_us, cuda)
    return {"scenario": "S1", "device": device_name(device), "meta": meta, "rows": rows}


def like_with_like(rows, base_us, base_g, floor_us, cuda) -> None:
    """x baseline: eager rows against the eager baseline, graph rows against the graph baseline."""
    for r in rows:
        b = base_g if (r.get("mode") == "graph" and base_g) else base_us
        r["x baseline"] = r["us"] / b
        r["x floor"] = r["us"] / floor_us if cuda else float("nan")


def failed(rows, method, fn, *args) -> None:
    """Run one benchmark row; if it raises, record the error as the row (the others still run)."""
    try:
        fn(*args)
    except Exception as e:                                             # reported in the table, not fatal
        rows.append(dict(method=method, us=float("nan"), exact="ERROR", note=f"{type(e).__name__}: {str(e)[:300]}"))


def s1_flat(rows, meta, hs, weights, torch_recs, ref_router, n, d, k, device):
    from lite_llm.optimized.router import QuantizedRows, key_ranks
    from lite_llm.optimized.seeds import as_signed, level_seed, ordered, tie_keys
    from lite_llm.optimized.triton import route_flat
    from lite_llm.optimized.triton.quantize import CONFIG_CHOICES

    rows_q = QuantizedRows.of(weights["layers.0.tiers.t0.router_expert"].reshape(n, d), 2)
    keys = ordered(tie_keys(torch.tensor(as_signed(level_seed(0, 3, 0, 0)), device=device), n))
    ranks = key_ranks(keys[None, :], torch.tensor([n], device=device))[0]

    def extract(out, rec, sliced=False):          # the flat level = level 3 of the 1 x 1 x n record
        return [(out.probs, rec.expert_probs[:, 0, 0, :]), (out.chosen, rec.expert[:, :k])]

    make = lambda c: (lambda i: route_flat(hs[i % len(hs)], rows_q, ranks, k, config=c, check=False))  # noqa: E731
    us, cfg_best, tried = tune("flat", make, CONFIG_CHOICES["flat"], device)
    for t in tried:                               # every timed configuration's own outputs
        if t["us"] != float("inf"):
            t.update(check_outputs(lambda h, c=t["config"]: route_flat(h, rows_q, ranks, k, config=c, check=False),
                                   hs, torch_recs, ref_router, (0,), extract))
    meta["flat_configs"] = tried
    best = next(t for t in tried if t["config"] is cfg_best)
    rows.append(dict(method="exact level, fused Triton kernel, eager", us=us, exact=exact_of(best), mode="eager",
                     note=f"best of {len(tried)} configs: {cfg_best}; every config's outputs checked"))
    g = graph_replay(lambda h: route_flat(h, rows_q, ranks, k, config=cfg_best, check=False), hs, device)
    if g is not None:
        replay, g_us = g
        chk = check_outputs(lambda h: clone_flat(replay(h)), hs, torch_recs, ref_router, (0,), extract)
        rows.append(dict(method="same kernels replayed as a CUDA graph", us=g_us, exact=exact_of(chk), mode="graph",
                         note="the device time; flag check left out", **chk))


def clone_flat(out):
    from lite_llm.optimized.triton import FlatResult

    return FlatResult(out.probs.clone(), out.chosen.clone())


def s1_route(rows, hs, qr, torch_recs, ref_router, backend, cuda, device):
    from lite_llm.optimized.router import route

    n = qr.cfg.tiers[0].experts_per_group
    fn = lambda h: route(h, qr, (0,), backend=backend)                        # noqa: E731
    us = time_us(lambda i: fn(hs[i % len(hs)]), device, reps=10 if not cuda else 30)
    chk = check_outputs(fn, hs, torch_recs, ref_router, (0,))
    rows.append(dict(method=f"exact route(), 1x1x{n} config ({backend}), eager", us=us, exact=exact_of(chk),
                     mode="eager", note="whole record: levels, gates, active set, non-finite check (host sync)", **chk))


def bench_s2(device, quick: bool) -> dict:
    from lite_llm.benchmarks.bitcheck import reference_router
    from lite_llm.optimized.router import load_router, route

    T, d, M, G, E = (256, 128, 5, 8, 16) if quick else (16384, 4096, 5, 32, 64)
    cuda = torch.device(device).type == "cuda"
    cfg = scenario_config(M, G, E, (1, 2, 2), d)
    weights = random_router_weights(cfg, device)
    qr = load_router(cfg, weights, 0, device)
    hs = hidden_copies(T, d, device)
    tiers = tuple(range(M))
    n_exp = M * G * E
    meta = {"T": T, "d": d, "tiers": M, "groups": G, "experts_per_group": E, "experts": n_exp, "k": [1, 2, 2],
            "input_copies": len(hs)}
    ref_router = reference_router(cfg, weights, tiers)
    torch_recs = [route(h, qr, tiers, backend="torch") for h in hs]

    flat_w = torch.cat([weights[f"layers.0.tiers.t{t}.router_expert"].reshape(G * E, d) for t in tiers]).to(torch.bfloat16)
    base = lambda h: torch.topk(h @ flat_w.T, 4, dim=1)                      # noqa: E731
    base_us = time_us(lambda i: base(hs[i % len(hs)]), device)
    base_g = graph_us(base, hs, device)
    bw = copy_bandwidth_tbps(device)
    router_int8 = (M + M * G + n_exp) * d * 2                       # two int8 limbs per weight
    h_bytes = T * d * 2
    floor_us = (h_bytes + router_int8) / (bw * 1e12) * 1e6 if cuda else float("nan")
    floor_1b = (h_bytes + router_int8 // 2) / (bw * 1e12) * 1e6 if cuda else float("nan")
    design = design_bytes(T, d, 1, 2, 2, G, E, router_int8)
    design_us = design / (bw * 1e12) * 1e6 if cuda else float("nan")
    meta.update(copy_TBps=bw, floor_us=floor_us, floor_one_byte_router_us=floor_1b, design_floor_us=design_us,
                design_floor_MB=design / 1e6, baseline_eager_us=base_us, baseline_graph_us=base_g)

    rows = []
    if cuda:
        failed(rows, "exact HSER route() (Triton)", s2_triton, rows, meta, qr, hs, tiers, torch_recs, ref_router,
               device)
    else:
        fn = lambda h: route(h, qr, tiers, backend="torch")                   # noqa: E731
        us = time_us(lambda i: fn(hs[i % len(hs)]), device, reps=5)
        chk = check_outputs(fn, hs, torch_recs, ref_router, tiers)
        rows.append(dict(method="exact HSER route() (torch path)", us=us, exact=exact_of(chk), mode="eager",
                         note="CPU", **chk))
    rows.append(dict(method=f"flat top-4 over {n_exp} experts, bf16 matmul (baseline), eager", us=base_us, exact="no",
                     mode="eager", note="float logits, no hierarchy; same input rotation"))
    if base_g is not None:
        rows.append(dict(method="flat top-4 baseline, CUDA graph", us=base_g, exact="no", mode="graph",
                         note="float logits, no hierarchy; same input rotation"))
    if cuda:
        rows.append(dict(method="floor: hidden once + router matrices once", us=floor_us, exact="",
                         note=f"{(h_bytes + router_int8) / 1e6:.0f} MB (router as 2 int8 limbs); "
                              f"{floor_1b:.1f} us with 1 byte per router weight"))
        rows.append(dict(method="floor of the bucketed design", us=design_us, exact="",
                         note=f"{design / 1e6:.0f} MB: hidden read, limbs written, limbs re-read once per "
                              f"level-2 and level-3 slot, router once, logits/probs written and read"))
    like_with_like(rows, base_us, base_g, floor_us, cuda)
    return {"scenario": "S2", "device": device_name(device), "meta": meta, "rows": rows}


def design_bytes(T: int, d: int, k1: int, k2: int, k3: int, G: int, E: int, router_bytes: int) -> int:
    """Bytes the bucketed three-level design must move through HBM: the hidden states read once
    (bf16), the int8 limbs written once and read again by every level-2 slot (k1 per token) and every
    level-3 slot (k1 k2 per token), the router matrices once, and each level's binary64 logits and
    binary32 probabilities written and read once (levels 2, 3)."""
    limbs = T * d * 2
    z = T * k1 * (G * 8 * 2 + G * 4) + T * k1 * k2 * (E * 8 * 2 + E * 4)
    return T * d * 2 + limbs + limbs * k1 + limbs * k1 * k2 + router_bytes + z


def s2_triton(rows, meta, qr, hs, tiers, torch_recs, ref_router, device):
    from lite_llm.optimized.router import route
    from lite_llm.optimized.triton import assemble_triton, raise_if_nonfinite, route_levels_triton
    from lite_llm.optimized.triton.quantize import CONFIG_CHOICES

    def full(configs):
        def one(h):
            lv, bad = route_levels_triton(h, qr, tiers, 0, configs=configs)
            res = assemble_triton(lv, tiers)
            raise_if_nonfinite(h, bad)
            return res
        return one

    timed = lambda configs: (lambda i: full(configs)(hs[i % len(hs)]))           # noqa: E731
    us1, c1, t1 = tune("level1", lambda c: timed({"level1": c}), CONFIG_CHOICES["flat"], device)
    us, c2, t2 = tune("bucket", lambda c: timed({"level1": c1, "bucket": c}), CONFIG_CHOICES["bucket"], device)
    for t in t1:
        if t["us"] != float("inf"):
            t.update(check_outputs(full({"level1": t["config"]}), hs, torch_recs, ref_router, tiers))
    for t in t2:
        if t["us"] != float("inf"):
            t.update(check_outputs(full({"level1": c1, "bucket": t["config"]}), hs, torch_recs, ref_router, tiers))
    best_cfg = {"level1": c1, "bucket": c2}
    meta.update(level1_configs=t1, bucket_configs=t2, best=best_cfg)
    best = next(t for t in t2 if t["config"] is c2)
    rows.append(dict(method="exact HSER route() kernels, tuned, eager", us=us, exact=exact_of(best), mode="eager",
                     note="whole record incl. non-finite check (one host sync); every config's outputs checked",
                     **{k: best[k] for k in ("bits_vs_torch_path", "bits_vs_reference")}))
    fn = lambda h: route(h, qr, tiers)                                          # noqa: E731
    r_us = time_us(lambda i: fn(hs[i % len(hs)]), device)
    chk = check_outputs(fn, hs, torch_recs, ref_router, tiers)
    rows.append(dict(method="exact route() as users call it (default configs), eager", us=r_us, exact=exact_of(chk),
                     mode="eager", note="validation + kernels + non-finite check", **chk))
    g = graph_replay(lambda h: assemble_triton(route_levels_triton(h, qr, tiers, 0, configs=best_cfg)[0], tiers),
                     hs, device)
    if g is not None:
        from lite_llm.optimized.decode import clone_route

        replay, g_us = g
        chk = check_outputs(lambda h: clone_route(replay(h)), hs, torch_recs, ref_router, tiers)
        rows.append(dict(method="same kernels (tuned) replayed as a CUDA graph", us=g_us, exact=exact_of(chk),
                         mode="graph", note="device time; flag check left out", **chk))


def graph_us(work, hs, device) -> float | None:
    g = graph_replay(work, hs, device)
    return None if g is None else g[1]


def graph_replay(work, hs, device):
    """``work(h)`` captured once in a CUDA graph on a static input; returns (replay(h) -> outputs, us),
    us the median replay time with the input copied in (the copy's own time subtracted), or None
    (no CUDA, or the capture failed)."""
    if torch.device(device).type != "cuda":
        return None
    try:
        static_h = hs[0].clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                work(static_h)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = work(static_h)

        def replay_i(i):
            static_h.copy_(hs[i % len(hs)])
            g.replay()
        copy_us = time_us(lambda i: static_h.copy_(hs[i % len(hs)]), device)

        def replay(h):
            static_h.copy_(h)
            g.replay()
            return out
        return replay, time_us(replay_i, device) - copy_us
    except Exception as e:                                            # reported as missing, not fatal
        print(f"CUDA graph capture failed: {type(e).__name__}: {e}")
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", choices=["S1", "S2", "all"], default="all")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    a = p.parse_args(argv)
    return run(a.scenario, a.device, a.quick, a.json)


def run(scenario: str, device: str, quick: bool, json_path: str | None) -> int:
    if quick:
        from lite_llm.benchmarks.timing import quick_mode
        quick_mode()
    results = []
    for name, fn in (("S1", bench_s1), ("S2", bench_s2)):
        if scenario in (name, "all"):
            res = fn(device, quick)
            results.append(res)
            print_table(f"{name} on {res['device']}: {res['meta']}", res["rows"], COLUMNS)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
