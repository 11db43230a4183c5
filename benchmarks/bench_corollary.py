"""The quadrillion-scale corollary, run (issue 13): a model of 10**15 parameters that routes real
tokens at the cost of a 10**9 one.

The bundled ``quadrillion`` model (d = 2048, L = 128, k = (1, 2, 2), seven tiers tier_1b .. tier_1q,
P_total = 1.0005e15) runs under each of its cumulative TierSets (7 points), every weight *generated*
on demand from (seed, tensor name) (INIT-3.1 .. INIT-3.3, ``optimized.generated.GeneratedSource``):
nothing is stored, a token materialises only the router rows and experts its route reads. The same
stream of real tokens (bytes of a Python stdlib source file, token id = byte mod vocab) runs at
every point. For each point:

* P_total of the TierSet (PARAM-2.3 over its tiers);
* the parameters each token touched, *counted by the runtime* from the slices it read (dense tensors
  used, router rows read at each level, expert weights), beside PARAM-3's value for the tiers the
  token chose (``reference.params.layer_active_for`` per layer + the embedding row, final norm and
  LM head): they must be equal, and the run fails if they are not; beside them the paper's 4.1e9
  (``param_report(...).paper_experts_only``, L K max|e|);
* time per token split into routing (quantize, exact products, canonical softmax, top-k), expert
  compute (SwiGLU + exact combine), materialisation (generating router rows and experts) and dense
  (attention, norms, LM head), medians of repeated runs; the log-log slope of each part against
  P_total over the sweep; the routing time against a bytes-over-bandwidth model (router rows a
  token reads x d x 8 bytes over the measured throughput of the exact product, plus the fixed cost
  measured at the first point).

Modes:

* full (CUDA): the dense weights (2.68e9 parameters, 10.7 GB) are generated once per run and kept
  on the GPU; router rows and experts are generated on every read (no cache: materialisation is
  the cold cost); dense blocks and experts are computed. Routing takes the torch path of
  ``route`` on generated rows (``route_generated``): tier_1q has 1326 groups, more than the Triton
  kernels' MAX_CANDIDATES = 256 per level, so ``router.route(backend="auto")`` would also pick torch.
* ``--quick`` (CPU, CI, < 60 s): the whole sweep on 1 token with real routing at every layer (router
  rows generated and read exactly, cached across points), while dense blocks and experts are
  *counted, not computed*: the residual stream stays the token's embedding row, so each layer
  routes rms_norm(embedding) -- real routing decisions on a real token, not the model's hidden
  states. Counts are checked against the formula exactly. CPU runs use one torch thread.

Results: JSON (device, date, command, every point) and a PNG per run under benchmarks/results/
(``corollary-<date>-<device>.json/.png``); ``--plot-from FILE.json`` draws the PNG from a JSON
written where matplotlib was missing.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lite_llm.benchmarks.timing import device_name, one_cpu_thread, print_table, pyplot
from lite_llm.optimized.generated import GeneratedSource, Stopwatch, forward_generated
from lite_llm.optimized.logits import exact_dot
from lite_llm.optimized.router import fits_triton
from lite_llm.optimized.router_types import MAX_CANDIDATES
from lite_llm.reference.params import dense_total, layer_active_for, layer_dense, param_report, tier_budget
from lite_llm.spec.configs import resolve_config

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_ACTIVE = 4.1e9                 # the paper's corollary: "4.1B active parameters"
WEIGHTS_SEED = 0                     # INIT-1.2 weights seed of the generated model
PARTS = ("route", "experts", "materialise", "dense")


def token_stream(n: int, vocab: int) -> tuple[list[int], dict]:
    """The first n bytes of a Python stdlib source file as token ids (byte mod vocab), and its provenance."""
    import json as stdlib_json

    path = Path(stdlib_json.__file__)
    data = path.read_bytes()
    ids = [b % vocab for b in data[:n]]
    return ids, {"file": f"{path.parent.name}/{path.name}", "python": platform.python_version(),
                 "sha256_of_bytes_used": hashlib.sha256(data[:n]).hexdigest(), "tokens": ids}


def cumulative_points(cfg) -> list[tuple[int, ...]]:
    """The cumulative TierSets: {tier 0}, {0, 1}, ..., every tier (TIER-2.4 cumulative:NAME)."""
    return [tuple(range(k + 1)) for k in range(cfg.n_tiers)]


def p_total_of(cfg, tiers) -> int:
    """P_total of the model restricted to a TierSet: dense_total + sum of B_t over it (PARAM-2.3)."""
    return dense_total(cfg) + sum(tier_budget(cfg, t) for t in tiers)


def formula_active(cfg, tiers, chosen_per_layer) -> dict:
    """PARAM-3 for one token that chose ``chosen_per_layer[l]`` at level 1 in each layer: parts and total."""
    d, V = cfg.d_model, cfg.vocab_size
    router = experts = n_exp = 0
    for t in chosen_per_layer:
        la = layer_active_for(cfg, tiers, [int(t)])
        router += sum(la.router_params)
        experts += la.expert_params
        n_exp += la.active_experts
    dense = cfg.n_layers * layer_dense(cfg) + d + d + V * d        # PARAM-3.4: embedding row, final norm, LM head
    return {"dense": dense, "router": router, "experts": experts, "experts_run": n_exp,
            "total": dense + router + experts}


def dot_throughput(device, d: int, rows: int = 1 << 15) -> float:
    """Bytes per second of the routing product ``exact_dot`` (binary64 rows, one token): the bandwidth of
    the bytes-over-bandwidth model of routing time."""
    w = torch.randint(-16000, 16000, (rows, d), device=device).to(torch.float64)
    x = torch.randint(-16000, 16000, (1, d), device=device).to(torch.float64)
    times = []
    for i in range(7):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        exact_dot(x, w)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return rows * d * 8 / statistics.median(times[2:])


def loglog_slope(x, y) -> float | None:
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y) if a > 0 and b and b > 0]
    if len(pts) < 2:
        return None
    xs, ys = np.array(pts).T
    vx = float(((xs - xs.mean()) ** 2).sum())
    return None if vx == 0 else float(((xs - xs.mean()) * (ys - ys.mean())).sum() / vx)    # least squares


def run_point(cfg, tiers, tokens, device, quick: bool, reps: int, src_cache, dense, budget_s: float) -> dict:
    """One TierSet: counts (checked against PARAM-3) and per-part time per token, medians over reps."""
    names = [cfg.tiers[t].name for t in tiers]
    T = len(tokens)
    per_rep, out = [], None
    t_start = time.perf_counter()
    for rep in range(reps):
        src = src_cache if src_cache is not None else GeneratedSource(cfg, WEIGHTS_SEED, tiers, device)
        watch = Stopwatch(device)
        t0 = time.perf_counter()
        out = forward_generated(src, tokens, tiers, dense=dense, watch=watch, compute=not quick)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        per_rep.append({**{p: watch.s.get(p, 0.0) / T for p in PARTS}, "wall": wall / T})
        if rep + 1 < reps and time.perf_counter() - t_start > budget_s:
            break
    # counts: the runtime's, against the formula, token by token
    tokens_rows = []
    for n in range(T):
        chosen = out.chosen_tiers[:, n].tolist()
        f = formula_active(cfg, tiers, chosen)
        c = out.touched[n].tolist()
        counted = {"dense": c[0], "router": c[1], "experts": c[2], "experts_run": c[3], "total": c[0] + c[1] + c[2]}
        hist = {cfg.tiers[t].name: chosen.count(t) for t in tiers}
        tokens_rows.append({"counted": counted, "formula": f, "equal": counted == f, "chosen_tiers": hist})
    rows_per_token = [tr["counted"]["router"] // cfg.d_model for tr in tokens_rows]
    med = {p: statistics.median(r[p] for r in per_rep) for p in (*PARTS, "wall")}
    return {
        "tierset": names, "tier_ids": list(tiers), "p_total": p_total_of(cfg, tiers),
        "max_level_width": max(len(tiers), *(max(cfg.tiers[t].groups, cfg.tiers[t].experts_per_group)
                                             for t in tiers)),
        "route_backend": "torch (route_generated: generated rows; the Triton kernels take at most "
                         f"{MAX_CANDIDATES} candidates per level)",
        "route_auto_backend_on_a_loaded_router": ("triton" if torch.device(device).type == "cuda"
                                                  and fits_triton(cfg, tuple(tiers)) else "torch"),
        "counted_active_mean": statistics.mean(tr["counted"]["total"] for tr in tokens_rows),
        "formula_active_mean": statistics.mean(tr["formula"]["total"] for tr in tokens_rows),
        "counted_equals_formula": all(tr["equal"] for tr in tokens_rows),
        "paper_active": PAPER_ACTIVE,
        "paper_experts_only": param_report(cfg, tiers).paper_experts_only,
        "worst_case_p_active": param_report(cfg, tiers).p_active,
        "router_rows_per_token": statistics.mean(rows_per_token),
        "router_bytes_per_token": statistics.mean(rows_per_token) * cfg.d_model * 8,
        "experts_run_per_token": statistics.mean(tr["counted"]["experts_run"] for tr in tokens_rows),
        "seconds_per_token": med, "reps": len(per_rep), "per_rep": per_rep, "tokens": tokens_rows,
    }


def run(device: str = "cpu", quick: bool = True, json_path: str | None = None, tokens: int | None = None,
        reps: int | None = None, out_dir: str | None = None, plot: bool = True, max_seconds: float | None = None,
        command: str | None = None, config: str = "quadrillion") -> int:
    """The sweep; returns 0 when every token's counted parameters equal the formula at every point, else 1.
    ``config``: another bundled config (tests run the full mode on ``tiny`` on the CPU)."""
    with one_cpu_thread(device):
        return _run(device, quick, json_path, tokens, reps, out_dir, plot, max_seconds, command, config)


def _run(device, quick, json_path, tokens, reps, out_dir, plot, max_seconds, command, config) -> int:
    cfg = resolve_config(config)
    T = tokens or (1 if quick else 8)
    R = reps or (1 if quick else 3)
    budget = max_seconds or (45.0 if quick else 150.0)
    ids, provenance = token_stream(T, cfg.vocab_size)
    dev = torch.device(device)
    t_run = time.perf_counter()
    dense, dense_s = None, 0.0
    shared = None
    if quick:
        shared = GeneratedSource(cfg, WEIGHTS_SEED, None, device, router_cache=1 << 16)   # rows reused across points
    else:
        src0 = GeneratedSource(cfg, WEIGHTS_SEED, None, device)
        watch = Stopwatch(device)
        with watch.section("dense"):
            from lite_llm.spec.tensors import dense_shapes
            dense = {n: src0.dense_tensor(n, s) for n, s in dense_shapes(cfg).items()}
        dense_s = watch.s["dense"]
        forward_generated(src0, ids[:1], (0,), dense=dense)                       # warm-up (kernels, allocator)
    bw = dot_throughput(device, cfg.d_model)
    points = []
    for i, tiers in enumerate(cumulative_points(cfg)):
        left = budget - (time.perf_counter() - t_run)
        points.append(run_point(cfg, tiers, ids, device, quick, R, shared, dense,
                                max(0.0, left / (cfg.n_tiers - i))))
        p = points[-1]
        print(f"  point {i + 1}/{cfg.n_tiers}: {p['tierset'][-1]:<10} P_total {p['p_total']:.4e}  counted "
              f"{p['counted_active_mean']:.6e} formula {p['formula_active_mean']:.6e} "
              f"{'==' if p['counted_equals_formula'] else '!='}  reps {p['reps']}  "
              f"({time.perf_counter() - t_run:.1f} s)", flush=True)
        if i + 1 < cfg.n_tiers:                   # partial results survive a time limit
            partial = summarise(cfg, points, device, quick, ids, provenance, bw, dense_s, command)
            partial["config"], partial["partial"] = config, True
            write_results(partial, json_path, out_dir, False, quiet=True)
    result = summarise(cfg, points, device, quick, ids, provenance, bw, dense_s, command)
    result["config"] = config
    print_report(result)
    write_results(result, json_path, out_dir, plot)
    return 0 if all(p["counted_equals_formula"] for p in points) else 1


def summarise(cfg, points, device, quick, ids, provenance, bw, dense_s, command) -> dict:
    P = [p["p_total"] for p in points]
    slopes = {}
    for part in (*PARTS, "wall"):
        ys = [p["seconds_per_token"][part] for p in points]
        slopes[part] = {"all_points": loglog_slope(P, ys), "from_point_2": loglog_slope(P[1:], ys[1:]),
                        "first_to_last": loglog_slope([P[0], P[-1]], [ys[0], ys[-1]])}
    # expert compute per expert parameter run: flat if the experts' kernels cost the same per parameter
    per_param = [p["seconds_per_token"]["experts"] / max(1, statistics.mean(t["counted"]["experts"]
                                                                            for t in p["tokens"])) for p in points]
    slopes["experts_per_expert_parameter"] = {
        "all_points": loglog_slope(P, per_param), "from_point_2": loglog_slope(P[1:], per_param[1:]),
        "first_to_last": loglog_slope([P[0], P[-1]], [per_param[0], per_param[-1]])}
    # routing model: t(p) = t(p1) + (bytes(p) - bytes(p1)) / bandwidth (bytes of router rows read per token)
    b0, t0 = points[0]["router_bytes_per_token"], points[0]["seconds_per_token"]["route"]
    model = []
    for p in points:
        pred = t0 + (p["router_bytes_per_token"] - b0) / bw
        meas = p["seconds_per_token"]["route"]
        model.append({"tierset": p["tierset"][-1], "router_rows_per_token": p["router_rows_per_token"],
                      "predicted_s": pred, "measured_s": meas,
                      "ratio": meas / pred if pred > 0 else None})
    rows = [p["router_rows_per_token"] for p in points]
    return {
        "benchmark": "corollary", "config": "quadrillion", "issue": 13,
        "mode": ("quick: real routing at every layer on generated router rows; dense blocks and experts "
                 "counted, not computed (the residual stream stays the embedding row)") if quick else
                ("full: every weight generated on demand (dense once per run, kept on the device); routing, "
                 "experts and dense blocks computed"),
        "device": device_name(device), "device_type": torch.device(device).type,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join(sys.argv), "torch": torch.__version__, "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(), "weights_seed": WEIGHTS_SEED, "router_seed": cfg.router.seed, "token_source": provenance,
        "n_tokens": len(ids), "dense_materialise_once_s": dense_s,
        "p_total_all_tiers": param_report(cfg).p_total,
        "all_counts_equal_formula": all(p["counted_equals_formula"] for p in points),
        "slopes_vs_p_total": slopes,
        "routing_model": {"bandwidth_bytes_per_s": bw, "bytes_per_row_element": 8,
                          "form": "t(p) = t(p1) + (rows(p) - rows(p1)) * d * 8 B / bandwidth", "points": model,
                          "router_rows_slope_vs_p_total": loglog_slope(P, rows)},
        "points": points,
    }


def print_report(r: dict) -> None:
    rows = []
    for p in r["points"]:
        s = p["seconds_per_token"]
        rows.append({"TierSet": "1b.." + p["tierset"][-1].split("_")[1], "P_total": f"{p['p_total']:.4e}",
                     "counted": f"{p['counted_active_mean']:.6e}", "formula": f"{p['formula_active_mean']:.6e}",
                     "equal": "yes" if p["counted_equals_formula"] else "NO",
                     "paper": f"{p['paper_active']:.1e}", "rows/tok": f"{p['router_rows_per_token']:.0f}",
                     "experts/tok": f"{p['experts_run_per_token']:.0f}",
                     "route ms": s["route"] * 1e3, "experts ms": s["experts"] * 1e3,
                     "mater. ms": s["materialise"] * 1e3, "dense ms": s["dense"] * 1e3})
    print_table(f"corollary sweep ({r['device']}; {r['n_tokens']} token(s); {r['mode']})", rows, list(rows[0]))
    print("\nlog-log slope vs P_total (fit over all points / fit from point 2 / first -> last): " + ", ".join(
        f"{k} {fmt_slope(v['all_points'])}/{fmt_slope(v['from_point_2'])}/{fmt_slope(v['first_to_last'])}"
        for k, v in r["slopes_vs_p_total"].items()))
    m = r["routing_model"]
    print(f"routing model ({m['form']}, bandwidth {m['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s): measured/predicted "
          + ", ".join(f"{x['tierset']} {x['ratio']:.2f}" if x["ratio"] else f"{x['tierset']} -" for x in m["points"]))
    print(f"router rows per token vs P_total: log-log slope {fmt_slope(m['router_rows_slope_vs_p_total'])} "
          "(rows grow as sqrt(G E): slope 0.5 when P_total grows with G E)")
    print("counted == formula at every point: " + ("yes" if r["all_counts_equal_formula"] else "NO"))


def fmt_slope(v) -> str:
    return "-" if v is None else f"{v:+.3f}"


def write_results(r: dict, json_path, out_dir, plot: bool, quiet: bool = False) -> None:
    stem = f"corollary-{r['date'][:10]}-{r['device_type']}"
    out = Path(out_dir) if out_dir else None
    paths = []
    if json_path:
        paths.append(Path(json_path))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        paths.append(out / f"{stem}.json")
    for p in paths:
        p.write_text(json.dumps(r, indent=1, default=str) + "\n")
        if not quiet:
            print(f"wrote {p}")
    if plot and out is not None:
        png = plot_result(r, out / f"{stem}.png")
        if png:
            print(f"wrote {png}")


def plot_result(r: dict, png: Path) -> Path | None:
    """Two panels: parameters per token (counted, formula, paper) and time per token by part, vs P_total."""
    plt = pyplot()
    if plt is None:
        return None
    pts = r["points"]
    P = [p["p_total"] for p in pts]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    a.loglog(P, P, ":", color="grey", label="P_total")
    a.loglog(P, [p["counted_active_mean"] for p in pts], "o-", label="counted by the runtime")
    a.loglog(P, [p["formula_active_mean"] for p in pts], "x--", label="PARAM-3 formula")
    a.loglog(P, [p["paper_active"] for p in pts], "-", color="black", label="paper: 4.1e9")
    a.set_xlabel("P_total of the TierSet")
    a.set_ylabel("parameters touched per token")
    a.set_title("active parameters per token")
    a.legend(fontsize=8)
    for part, style in zip(("route", "experts", "materialise", "dense"), ("o-", "s-", "^-", "d-")):
        ys = [p["seconds_per_token"][part] for p in pts]
        if any(y > 0 for y in ys):
            sl = r["slopes_vs_p_total"][part]["all_points"]
            b.loglog(P, [max(y, 1e-9) for y in ys], style, label=f"{part} (slope {fmt_slope(sl)})")
    pred = [x["predicted_s"] for x in r["routing_model"]["points"]]
    b.loglog(P, pred, ":", color="grey", label="routing: bytes/bandwidth model")
    b.set_xlabel("P_total of the TierSet")
    b.set_ylabel("seconds per token")
    b.set_title(f"time per token ({r['device']})")
    b.legend(fontsize=8)
    fig.suptitle("quadrillion corollary, " + r["mode"].split(";")[0] + f"; {r['n_tokens']} token(s), {r['date'][:10]}",
                 fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def plot_from(json_file: str, out_dir: str | None = None) -> int:
    """Draw the PNG of a JSON result (``--plot-from``), beside it or in out_dir."""
    src = Path(json_file)
    r = json.loads(src.read_text())
    png = (Path(out_dir) if out_dir else src.parent) / (src.stem + ".png")
    if r.get("benchmark") == "scaling":
        from lite_llm.benchmarks.bench_scaling import plot_result as plot_scaling

        made = plot_scaling(r, png)
    else:
        made = plot_result(r, png)
    if made:
        print(f"wrote {made}")
    return 0 if made else 1
