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

Every run also checks that the Triton path's record equals the torch path's bit for bit on the
first tokens. ``--quick`` runs tiny sizes (on the CPU the torch path stands in for the kernels).
"""
from __future__ import annotations

import argparse
import json

import torch

from lite_llm.benchmarks.timing import (H100_HBM_TBPS, copies_for_l2, copy_bandwidth_tbps, device_name,
                                        print_table, time_us)
from lite_llm.spec.config import config_from_dict

COLUMNS = ["method", "us", "x baseline", "x floor", "exact", "note"]


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


def same_record(a, b) -> bool:
    x, y = a.to_numpy(), b.to_numpy()
    return all(x[f].tobytes() == y[f].tobytes() for f in x)


def exact_label(same: bool | None) -> str:
    """'yes' / 'NO' when the Triton record was compared with the torch path's; 'n/a' on the CPU (one path)."""
    return "n/a" if same is None else ("yes" if same else "NO")


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
    from lite_llm.optimized.router import load_router, route

    T, d, n, k = (256, 128, 64, 2) if quick else (16384, 4096, 64, 2)
    cuda = torch.device(device).type == "cuda"
    cfg = scenario_config(1, 1, n, (1, 1, k), d)
    weights = random_router_weights(cfg, device)
    qr = load_router(cfg, weights, 0, device)
    hs = hidden_copies(T, d, device)
    rows, meta = [], {"T": T, "d": d, "candidates": n, "k": k, "dtype": "bfloat16"}

    w_bf16 = weights["layers.0.tiers.t0.router_expert"].reshape(n, d).to(torch.bfloat16)
    base_us = time_us(lambda i: torch.topk(hs[i % len(hs)] @ w_bf16.T, k, dim=1), device)
    h_bytes = T * d * 2
    bw = copy_bandwidth_tbps(device)
    floor_us = h_bytes / (bw * 1e12) * 1e6 if cuda else float("nan")
    meta.update(copy_TBps=bw, floor_us=floor_us, floor_nominal_us=h_bytes / (H100_HBM_TBPS * 1e12) * 1e6)

    ref = route(hs[0][:512], qr, (0,), backend="torch")
    if cuda:
        failed(rows, "exact level, fused Triton kernel", s1_flat, rows, meta, hs, weights, ref, n, d, k, device)
    backend = "triton" if cuda else "torch"
    failed(rows, f"exact route(), 1x1x{n} config ({backend})", s1_route, rows, hs, qr, ref, backend, cuda, device)
    rows.append(dict(method="bf16 matmul + torch.topk (baseline)", us=base_us, exact="no", note="float logits"))
    if cuda:
        rows.append(dict(method="floor: hidden states once from HBM", us=floor_us, exact="",
                         note=f"{h_bytes / 1e6:.0f} MB at the measured copy rate {bw:.2f} TB/s"))
    for r in rows:
        r["x baseline"] = r["us"] / base_us
        r["x floor"] = r["us"] / floor_us if cuda else float("nan")
    return {"scenario": "S1", "device": device_name(device), "meta": meta, "rows": rows}


def failed(rows, method, fn, *args) -> None:
    """Run one benchmark row; if it raises, record the error as the row (the others still run)."""
    try:
        fn(*args)
    except Exception as e:                                             # reported in the table, not fatal
        rows.append(dict(method=method, us=float("nan"), exact="ERROR", note=f"{type(e).__name__}: {str(e)[:300]}"))


def s1_flat(rows, meta, hs, weights, ref, n, d, k, device):
    from lite_llm.optimized.router import QuantizedRows, key_ranks
    from lite_llm.optimized.seeds import as_signed, level_seed, ordered, tie_keys
    from lite_llm.optimized.triton import route_flat
    from lite_llm.optimized.triton.quantize import CONFIG_CHOICES

    rows_q = QuantizedRows.of(weights["layers.0.tiers.t0.router_expert"].reshape(n, d), 2)
    keys = ordered(tie_keys(torch.tensor(as_signed(level_seed(0, 3, 0, 0)), device=device), n))
    ranks = key_ranks(keys[None, :], torch.tensor([n], device=device))[0]
    flat = route_flat(hs[0][:512], rows_q, ranks, k)
    exact = bool(torch.equal(flat.probs, ref.expert_probs[:, 0, 0, :]) and torch.equal(flat.chosen, ref.expert[:, :k]))
    us, cfg_best, tried = tune("flat", lambda c: (lambda i: route_flat(hs[i % len(hs)], rows_q, ranks, k, config=c,
                                                                     check=False)),
                               CONFIG_CHOICES["flat"], device)
    rows.append(dict(method="exact level, fused Triton kernel", us=us, exact="yes" if exact else "NO",
                     note=f"best of {len(tried)} configs: {cfg_best}"))
    meta["flat_configs"] = tried
    g_us = graph_us(lambda h: route_flat(h, rows_q, ranks, k, config=cfg_best, check=False), hs, device)
    if g_us is not None:
        rows.append(dict(method="same kernels replayed as a CUDA graph", us=g_us, exact="yes" if exact else "NO",
                         note="the device time: no host launch overhead; flag check left out"))


def s1_route(rows, hs, qr, ref, backend, cuda, device):
    from lite_llm.optimized.router import route

    n = qr.cfg.tiers[0].experts_per_group
    full_exact = same_record(route(hs[0][:512], qr, (0,), backend=backend), ref) if cuda else None
    us = time_us(lambda i: route(hs[i % len(hs)], qr, (0,), backend=backend), device, reps=10 if not cuda else 30)
    rows.append(dict(method=f"exact route(), 1x1x{n} config ({backend})", us=us, exact=exact_label(full_exact),
                     note="whole record: 3 levels, gates, active set, non-finite check"))


def bench_s2(device, quick: bool) -> dict:
    from lite_llm.optimized.router import load_router, route

    T, d, M, G, E = (256, 128, 5, 8, 16) if quick else (16384, 4096, 5, 32, 64)
    cuda = torch.device(device).type == "cuda"
    cfg = scenario_config(M, G, E, (1, 2, 2), d)
    weights = random_router_weights(cfg, device)
    qr = load_router(cfg, weights, 0, device)
    hs = hidden_copies(T, d, device)
    tiers = tuple(range(M))
    n_exp = M * G * E
    meta = {"T": T, "d": d, "tiers": M, "groups": G, "experts_per_group": E, "experts": n_exp, "k": [1, 2, 2]}

    flat_w = torch.cat([weights[f"layers.0.tiers.t{t}.router_expert"].reshape(G * E, d) for t in tiers]).to(torch.bfloat16)
    base_us = time_us(lambda i: torch.topk(hs[i % len(hs)] @ flat_w.T, 4, dim=1), device)
    bw = copy_bandwidth_tbps(device)
    router_int8 = (M + M * G + n_exp) * d * 2                       # two int8 limbs per weight
    h_bytes = T * d * 2
    floor_us = (h_bytes + router_int8) / (bw * 1e12) * 1e6 if cuda else float("nan")
    floor_1b = (h_bytes + router_int8 // 2) / (bw * 1e12) * 1e6 if cuda else float("nan")
    design = design_bytes(T, d, 1, 2, 2, G, E, router_int8)
    design_us = design / (bw * 1e12) * 1e6 if cuda else float("nan")
    meta.update(copy_TBps=bw, floor_us=floor_us, floor_one_byte_router_us=floor_1b, design_floor_us=design_us,
                design_floor_MB=design / 1e6)

    rows = []
    ref = route(hs[0][:512], qr, tiers, backend="torch")
    backend = "triton" if cuda else "torch"
    exact = exact_label(same_record(route(hs[0][:512], qr, tiers, backend=backend), ref) if cuda else None)
    if cuda:
        failed(rows, "exact HSER route() (Triton)", s2_triton, rows, meta, qr, hs, tiers, exact, device)
    else:
        us = time_us(lambda i: route(hs[i % len(hs)], qr, tiers, backend="torch"), device, reps=5)
        rows.append(dict(method="exact HSER route() (torch path)", us=us, exact=exact, note="CPU"))
    rows.append(dict(method=f"flat top-4 over {n_exp} experts, bf16 matmul (baseline)", us=base_us, exact="no",
                     note="float logits, no hierarchy"))
    if cuda:
        rows.append(dict(method="floor: hidden once + router matrices once", us=floor_us, exact="",
                         note=f"{(h_bytes + router_int8) / 1e6:.0f} MB (router as 2 int8 limbs); "
                              f"{floor_1b:.1f} us with 1 byte per router weight"))
        rows.append(dict(method="floor of the bucketed design", us=design_us, exact="",
                         note=f"{design / 1e6:.0f} MB: hidden read, limbs written, limbs re-read once per "
                              f"level-2 and level-3 slot, router once, logits/probs written and read"))
    for r in rows:
        r["x baseline"] = r["us"] / base_us
        r["x floor"] = r["us"] / floor_us if cuda else float("nan")
    return {"scenario": "S2", "device": device_name(device), "meta": meta, "rows": rows}


def design_bytes(T: int, d: int, k1: int, k2: int, k3: int, G: int, E: int, router_bytes: int) -> int:
    """Bytes the bucketed three-level design must move through HBM: the hidden states read once
    (bf16), the int8 limbs written once and read again by every level-2 slot (k1 per token) and every
    level-3 slot (k1 k2 per token), the router matrices once, and each level's binary64 logits and
    binary32 probabilities written and read once (levels 2, 3)."""
    limbs = T * d * 2
    z = T * k1 * (G * 8 * 2 + G * 4) + T * k1 * k2 * (E * 8 * 2 + E * 4)
    return T * d * 2 + limbs + limbs * k1 + limbs * k1 * k2 + router_bytes + z


def s2_triton(rows, meta, qr, hs, tiers, exact, device):
    from lite_llm.optimized.triton import assemble_triton, raise_if_nonfinite, route_levels_triton
    from lite_llm.optimized.triton.quantize import CONFIG_CHOICES

    def full(configs):
        def run(i):
            h = hs[i % len(hs)]
            lv, bad = route_levels_triton(h, qr, tiers, 0, configs=configs)
            res = assemble_triton(lv, tiers)
            raise_if_nonfinite(h, bad)
            return res
        return run

    us1, c1, t1 = tune("level1", lambda c: full({"level1": c}), CONFIG_CHOICES["flat"], device)
    us, c2, t2 = tune("bucket", lambda c: full({"level1": c1, "bucket": c}), CONFIG_CHOICES["bucket"], device)
    meta.update(level1_configs=t1, bucket_configs=t2, best={"level1": c1, "bucket": c2})
    rows.append(dict(method="exact HSER route() (Triton)", us=us, exact=exact,
                     note="whole record incl. non-finite check (one host sync)"))
    graph_us = cuda_graph_us(qr, hs, tiers, {"level1": c1, "bucket": c2}, device)
    if graph_us is not None:
        rows.append(dict(method="same kernels replayed as a CUDA graph", us=graph_us, exact=exact,
                         note="no host launch overhead; flag check left out"))


def cuda_graph_us(qr, hs, tiers, configs, device) -> float | None:
    """The Triton route kernels captured once in a CUDA graph and replayed (None if capture fails)."""
    from lite_llm.optimized.triton import assemble_triton, route_levels_triton

    return graph_us(lambda h: assemble_triton(route_levels_triton(h, qr, tiers, 0, configs=configs)[0], tiers),
                    hs, device)


def graph_us(work, hs, device) -> float | None:
    """``work(h)`` captured once in a CUDA graph on a static input and replayed with the input copied
    in (the copy's own time subtracted); None if the capture fails."""
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
            work(static_h)

        def replay(i):
            static_h.copy_(hs[i % len(hs)])
            g.replay()
        copy_us = time_us(lambda i: static_h.copy_(hs[i % len(hs)]), device)
        return time_us(replay, device) - copy_us
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
