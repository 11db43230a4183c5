"""Routing cost as the expert count grows: flat top-k vs HSER vs product keys, 1e3 .. 1e7 experts per layer.

Three routers pick K = 4 experts per token out of N:

  flat        logits = h @ W.T over all N rows (W (N, d), bfloat16 on CUDA, float32 on the CPU), then
              torch.topk: the usual MoE router; it reads every row for every batch (chunked so the
              logits fit in memory).
  HSER        ``optimized.router.route`` (exact, HSER-7 .. HSER-9) with k = (1, 2, 2) over M tiers of G
              groups of E experts, M G E >= N with M ~ G ~ E ~ N**(1/3) and every level <= 256
              candidates (Triton kernels on CUDA; the torch path on the CPU). A token reads
              M + G + 2 E rows instead of N. Router weights are random int8 limbs (the kernels'
              operands): routing cost does not depend on their values.
  product     PEER-style product keys: two sub-key tables of n = ceil(sqrt(N)) keys on the two halves
              of h, top-K of each, the K*K sums, top-K: N = n*n experts, 2 n rows of d/2 read.

Each is timed at batch 1 (decode) and a large batch (4096; ``--quick``: 256), median of repeated
runs with CUDA events (``timing.time_us``). Beside each time: the bytes of router weights it reads
(flat: N d per chunk of tokens; HSER: the distinct rows the batch's routes read, from the record;
product: 2 n d/2) and a bytes-over-bandwidth model, t = t_floor + bytes / bandwidth, where the
bandwidth is the device's measured copy bandwidth (CUDA) or the measured throughput of a large
matrix-vector product (CPU) and t_floor is the router's time at the smallest N (launches and host
work, which no byte count explains). ``--quick``: CPU, N = 1e3 .. 1e5, d = 128. On the CPU torch runs on one
thread (every router alike).
"""
from __future__ import annotations

import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lite_llm.benchmarks.timing import copy_bandwidth_tbps, device_name, one_cpu_thread, print_table, pyplot, time_us
from lite_llm.optimized.router import QuantizedRouter, QuantizedRows, fits_triton, route
from lite_llm.optimized.router_types import MAX_CANDIDATES
from lite_llm.spec.config import ModelConfig, RouterConfig, TierConfig

K = 4                       # experts per token for every router (HSER: k = (1, 2, 2))
LOGITS_BUDGET = 8 << 30     # bytes of flat logits in one chunk (CUDA); the CPU uses 1 << 28


def hser_shape(n: int) -> tuple[int, int, int]:
    """(M, G, E) with M G E >= n, each <= MAX_CANDIDATES, near N**(1/3) each (fewest rows per token)."""
    c = math.ceil(round(n ** (1 / 3), 9))
    m = min(c, MAX_CANDIDATES)
    g = min(math.ceil(math.sqrt(n / m)), MAX_CANDIDATES)
    e = math.ceil(n / (m * g))
    return m, g, e


def hser_router(n: int, d: int, device, real_q: bool, gen: torch.Generator) -> tuple[QuantizedRouter, ModelConfig]:
    """A one-layer QuantizedRouter of random int8 limbs for ~n experts (HSER-2.4 operands, exact)."""
    M, G, E = hser_shape(n)
    cfg = _cfg_of(n, d)

    def rows(R: int) -> QuantizedRows:
        hi = torch.randint(-127, 128, (R, d), dtype=torch.int8, device=device, generator=gen)
        lo = torch.randint(-64, 65, (R, d), dtype=torch.int8, device=device, generator=gen)
        if real_q:                                                   # the torch path reads Q = 128 hi + lo
            q = hi.to(torch.int32) * 128 + lo.to(torch.int32)
        else:                                                        # the Triton kernels read only the limbs
            q = torch.zeros((1, 1), dtype=torch.int32, device=device).expand(R, d)
        scale = torch.rand((R,), dtype=torch.float64, device=device, generator=gen) * 1e-4 + 1e-5
        return QuantizedRows(q, scale, (hi, lo))

    g_off = tuple(t * G for t in range(M))
    e_off = tuple(t * G * E for t in range(M))
    return QuantizedRouter(cfg, torch.device(device), rows(M), rows(M * G), rows(M * G * E), g_off, e_off), cfg


def distinct_rows(r, cfg) -> int:
    """Router rows a batch's routes read, each counted once: M at level 1, G per distinct chosen tier,
    E per distinct chosen (tier, group) (HSER-7.1 .. 7.3)."""
    tiers = set(r.chosen_tiers[r.chosen_tiers >= 0].tolist())
    T, k1 = r.chosen_tiers.shape
    ct = r.chosen_tiers[:, :, None].expand_as(r.chosen_groups)
    pairs = set(zip(ct[r.chosen_groups >= 0].tolist(), r.chosen_groups[r.chosen_groups >= 0].tolist()))
    M, G, E = cfg.n_tiers, cfg.tiers[0].groups, cfg.tiers[0].experts_per_group
    return M + G * len(tiers) + E * len(pairs)


def flat_topk(h, w, chunk: int):
    out = []
    for c in h.split(chunk):
        out.append(torch.topk(c @ w.T, K, dim=1).indices)
    return torch.cat(out)


def product_topk(h, k1, k2):
    half = h.shape[1] // 2
    s1, i1 = torch.topk(h[:, :half] @ k1.T, K, dim=1)                    # (B, K)
    s2, i2 = torch.topk(h[:, half:] @ k2.T, K, dim=1)
    s = (s1[:, :, None] + s2[:, None, :]).reshape(h.shape[0], K * K)      # the K*K combinations
    top = torch.topk(s, K, dim=1).indices
    n = k2.shape[0]
    return (i1.gather(1, top // K) * n + i2.gather(1, top % K))


def cpu_bandwidth(d: int) -> float:
    """Bytes/s of a float32 matrix-vector product over 256 MiB of rows (the CPU's streaming rate)."""
    w = torch.randn((1 << 26) // d, d)
    x = torch.randn(1, d)
    us = time_us(lambda i: x @ w.T, "cpu", warmup=2, reps=5)
    return w.numel() * 4 / (us * 1e-6)


def run(device: str = "cpu", quick: bool = True, json_path: str | None = None, reps: int | None = None,
        out_dir: str | None = None, max_seconds: float | None = None, command: str | None = None) -> int:
    """The sweep (CPU: torch on one thread, ``timing.one_cpu_thread``); returns 0."""
    with one_cpu_thread(device):
        return _run(device, quick, json_path, reps, out_dir, max_seconds, command)


def _run(device, quick, json_path, reps, out_dir, max_seconds, command) -> int:
    cuda = torch.device(device).type == "cuda"
    # full: the floor (1e3) and the headline (1e7) first, so a run cut short by its time limit keeps them
    sizes = [10 ** 3, 10 ** 4, 10 ** 5] if quick else [10 ** 3, 10 ** 7, 10 ** 5, 10 ** 6, 10 ** 4]
    d = 128 if quick else 1024
    batches = (1, 256) if quick else (1, 4096)
    wdtype = torch.bfloat16 if cuda else torch.float32
    budget = max_seconds or (60.0 if quick else 110.0)
    bw = copy_bandwidth_tbps(device) * 1e12 if cuda else cpu_bandwidth(d)
    use_triton = cuda and fits_triton(_cfg_of(max(sizes), d), tuple(range(hser_shape(max(sizes))[0])))
    gen = torch.Generator(device=device).manual_seed(0)
    t_run = time.perf_counter()
    R = reps or (3 if quick else 10)
    state = {"left": len(sizes) * len(batches) * 3}

    def timed(fn) -> tuple[float, int]:
        """Median us of fn over as many repetitions (<= R) as this measurement's share of the budget allows."""
        share = max(0.05, (budget - (time.perf_counter() - t_run)) / max(1, state["left"]))
        state["left"] -= 1
        fn(0)                                                          # warm-up: compiles, allocates
        _sync(device)
        t0 = time.perf_counter()
        fn(1)
        _sync(device)
        one = time.perf_counter() - t0
        r = max(1, min(R, int(share / max(one, 1e-6))))
        return time_us(fn, device, warmup=0, reps=r), r

    rows = []
    for n in sizes:
        hs = {B: torch.randn((B, d), device=device, generator=gen) for B in batches}
        # flat
        w = random_rows(n, d, wdtype, device, gen)
        for B in batches:
            h = hs[B].to(wdtype)
            chunk = max(1, min(B, (LOGITS_BUDGET if cuda else 1 << 28) // (n * (2 if cuda else 4))))
            us, r_n = timed(lambda i: flat_topk(h, w, chunk))
            nbytes = math.ceil(B / chunk) * n * d * w.element_size()
            rows.append(_row("flat", n, n, d, B, us, nbytes, "torch matmul + topk", f"N={n}, chunk {chunk}", r_n))
        del w
        # product keys
        m = math.ceil(math.sqrt(n))
        k1 = random_rows(m, d // 2, wdtype, device, gen)
        k2 = random_rows(m, d // 2, wdtype, device, gen)
        for B in batches:
            h = hs[B].to(wdtype)
            us, r_n = timed(lambda i: product_topk(h, k1, k2))
            rows.append(_row("product keys", n, m * m, d, B, us, 2 * m * (d // 2) * k1.element_size(), "torch",
                             f"2 x {m} sub-keys of d/2", r_n))
        del k1, k2
        # HSER
        router, cfg = hser_router(n, d, device, real_q=not (cuda and use_triton), gen=gen)
        M, G, E = hser_shape(n)
        backend = "triton" if cuda and use_triton else "torch"
        tiers = tuple(range(M))
        for B in batches:
            h = hs[B]
            r = route(h, router, tiers, 0, backend=backend)
            nrows = distinct_rows(r, cfg)
            us, r_n = timed(lambda i: route(h, router, tiers, 0, backend=backend))
            rows.append(_row("HSER (exact)", n, M * G * E, d, B, us, nrows * d * 2, backend,
                             f"M={M} G={G} E={E}; {M + G + 2 * E} rows/token", r_n))
        del router
        if cuda:
            torch.cuda.empty_cache()
        print(f"  N = {n:.0e} done ({time.perf_counter() - t_run:.1f} s)", flush=True)
        if n != sizes[-1]:                                        # partial results survive a time limit
            write(summary(rows, bw, sizes, batches, device, d, wdtype, use_triton, quick, command, partial=True),
                  json_path, out_dir, quiet=True)
    result = summary(rows, bw, sizes, batches, device, d, wdtype, use_triton, quick, command)
    report(result)
    write(result, json_path, out_dir)
    return 0


def summary(rows, bw, sizes, batches, device, d, wdtype, use_triton, quick, command, partial=False) -> dict:
    cuda = torch.device(device).type == "cuda"
    apply_model(rows, bw)
    return {
        "benchmark": "scaling", "issue": 13, "device": device_name(device), "device_type": torch.device(device).type,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv), "torch": torch.__version__, "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(), "d": d, "batches": list(batches), "k": K, "weights_dtype": str(wdtype).replace("torch.", ""),
        "bandwidth_bytes_per_s": bw, "hser_backend": "triton" if cuda and use_triton else "torch",
        "mode": "quick (CPU, small d): a smoke test, no timing claim" if quick else "full",
        "rows": rows, "targets": targets(rows, sizes, batches), **({"partial": True} if partial else {}),
    }


def random_rows(n: int, d: int, dtype, device, gen) -> torch.Tensor:
    """(n, d) N(0, 1/d) rows in ``dtype``, made in chunks (no float32 copy of a 20 GB table)."""
    w = torch.empty((n, d), dtype=dtype, device=device)
    step = max(1, (256 << 20) // (4 * d))
    for i in range(0, n, step):
        j = min(n, i + step)
        w[i:j] = torch.randn((j - i, d), device=device, generator=gen).mul_(d ** -0.5)
    return w


def _cfg_of(n: int, d: int) -> ModelConfig:
    M, G, E = hser_shape(n)
    return ModelConfig(d_model=d, tiers=tuple(TierConfig(f"t{i}", G, E, 1) for i in range(M)), n_layers=1,
                       n_heads=2, router=RouterConfig(k_tier=1, k_group=2, k_expert=2, hidden_limbs=2,
                                                      weight_limbs=2, seed=0))


def _row(router, n, n_actual, d, B, us, nbytes, backend, shape, reps) -> dict:
    return {"router": router, "n_experts": n, "n_experts_actual": n_actual, "d": d, "batch": B, "us": us,
            "us_per_token": us / B, "bytes": nbytes, "backend": backend, "shape": shape, "reps": reps}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def apply_model(rows: list[dict], bw: float) -> None:
    """t_model = t_floor + bytes / bandwidth, t_floor = the router's time at the smallest N (per batch)."""
    for r in rows:
        same = [x for x in rows if x["router"] == r["router"] and x["batch"] == r["batch"]]
        first = min(same, key=lambda x: x["n_experts"])
        floor = max(0.0, first["us"] - first["bytes"] / bw * 1e6)
        r["model_us"] = floor + r["bytes"] / bw * 1e6
        r["measured_over_model"] = r["us"] / r["model_us"] if r["model_us"] > 0 else None


def targets(rows, sizes, batches) -> dict:
    out = {}
    big = max(sizes)
    for B in batches:
        f = next((r for r in rows if r["router"] == "flat" and r["n_experts"] == big and r["batch"] == B), None)
        h = next((r for r in rows if r["router"] == "HSER (exact)" and r["n_experts"] == big and r["batch"] == B), None)
        if f and h:
            out[f"hser_speedup_over_flat_at_{big:.0e}_batch_{B}"] = f["us"] / h["us"]
    out["hser_speedup_over_flat"] = {}
    for f in (r for r in rows if r["router"] == "flat"):
        h = next((r for r in rows if r["router"] == "HSER (exact)" and r["n_experts"] == f["n_experts"]
                  and r["batch"] == f["batch"]), None)
        if h:
            out["hser_speedup_over_flat"][f"N={f['n_experts']:.0e} B={f['batch']}"] = f["us"] / h["us"]
    ratios = [r["measured_over_model"] for r in rows if r["measured_over_model"]]
    out["routing_within_20pct_of_model"] = {
        r["router"] + f" N={r['n_experts']:.0e} B={r['batch']}": abs(r["measured_over_model"] - 1) <= 0.2
        for r in rows if r["measured_over_model"]}
    out["worst_measured_over_model"] = max(ratios, key=lambda x: abs(x - 1)) if ratios else None
    return out


def report(r: dict) -> None:
    cols = ["router", "N", "batch", "us", "us/token", "MB read", "model us", "meas/model", "backend", "shape"]
    rows = [{"router": x["router"], "N": f"{x['n_experts']:.0e}", "batch": x["batch"], "us": x["us"],
             "us/token": x["us_per_token"], "MB read": x["bytes"] / 1e6, "model us": x["model_us"],
             "meas/model": x["measured_over_model"] or "-", "backend": x["backend"], "shape": x["shape"]}
            for x in r["rows"]]
    print_table(f"routing time vs experts per layer ({r['device']}, d = {r['d']}, K = {r['k']}; {r['mode']})",
                rows, cols)
    for k, v in r["targets"].items():
        if k.startswith("hser_speedup") and not isinstance(v, dict):
            print(f"{k}: {v:.1f}x (target >= 100x on the GPU at 1e7)")
    speed = r["targets"]["hser_speedup_over_flat"]
    print("HSER speedup over flat: " + ", ".join(f"{k} {v:.2g}x" for k, v in speed.items()))
    print(f"worst measured/model ratio: {r['targets']['worst_measured_over_model']}")


def write(r: dict, json_path, out_dir, quiet: bool = False) -> None:
    stem = f"scaling-{r['date'][:10]}-{r['device_type']}"
    paths = [Path(json_path)] if json_path else []
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        paths.append(Path(out_dir) / f"{stem}.json")
    for p in paths:
        p.write_text(json.dumps(r, indent=1, default=str) + "\n")
        if not quiet:
            print(f"wrote {p}")
    if out_dir and not quiet:
        png = plot_result(r, Path(out_dir) / f"{stem}.png")
        if png:
            print(f"wrote {png}")


def plot_result(r: dict, png: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    batches = r["batches"]
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4.4))
    for ax, B in zip(np.atleast_1d(axes), batches):
        for name, style in (("flat", "o-"), ("product keys", "s-"), ("HSER (exact)", "^-")):
            pts = sorted((x["n_experts"], x["us_per_token"], x["model_us"] / B) for x in r["rows"]
                         if x["router"] == name and x["batch"] == B)
            if pts:
                ax.loglog([p[0] for p in pts], [p[1] for p in pts], style, label=name)
                ax.loglog([p[0] for p in pts], [p[2] for p in pts], ":", color="grey")
        ax.set_xlabel("experts per layer")
        ax.set_ylabel("us per token")
        ax.set_title(f"batch {B} (dotted: bytes/bandwidth model)")
        ax.legend(fontsize=8)
    fig.suptitle(f"routing cost vs experts per layer, {r['device']}, d = {r['d']}", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
