#!/usr/bin/env python
"""Train, expand, train the new tier, and compare training routes (GPU) with serving routes (CPU).

    python scripts/gpu_train_check.py --out $OUT            # CUDA, bounded to ~--budget seconds (default 225)
    python scripts/gpu_train_check.py --out /tmp/x --quick  # a small CPU rehearsal of every step

Needs no network: the text is the Python standard library's own sources (byte tokens). The package is
imported from an installed ``lite-llm`` (``pip install -e . --no-deps --no-build-isolation``) or, if
that fails, straight from this source tree.

Steps, each timed; checkpoints, logs and full route records go to --work (a temporary directory by default):
  1. base run: a fresh model (INIT seed 0) trained for a bounded time on CUDA
  2. determinism: two short runs with one seed give byte-identical checkpoints (TRAIN-6.1)
  3. `checkpoint expand` (the reference operator) adds tier "grow" to a copy of the base checkpoint
  4. train only the new tier, with the auxiliary loss (alpha 0.01) and, for as many steps, without (0)
  5. (a) every existing shard byte-identical; (b) routes and logits under the old TierSet
     bit-identical before and after (CUDA and CPU); (c) validation loss under the cumulative TierSet
     vs the old one; (d) load per level (AUX CVs and hard-load CVs) with and without the aux loss
  6. routes of the training forward (optimized, CUDA) vs serving (optimized, CPU worker processes) over
     >= 1,000,000 (token, layer) pairs; every difference not downstream of another gets its routing
     margin (MODEL-4.5) under both router inputs and the relative input difference eps; a subset is
     also served by the NumPy reference
  7. --out receives at most 7 files (what a device run brings back): result.json, logs.jsonl (every
     run's log), loss_across_expansion.png, load_aux_vs_noaux.png, margins.png (when routes differ),
     routes_train_first8k.routes and routes_serve_first8k.routes (the first 8192 tokens of both records)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")        # TRAIN-6.1: before the first cuBLAS call
ROOT = Path(__file__).resolve().parents[1]


def import_package():
    """``lite_llm`` from the installed distribution, else from this source tree (its folders map to
    subpackages as pyproject's package-dir says)."""
    try:
        import lite_llm.optimized.train.loop  # noqa: F401
        import lite_llm.reference.expand  # noqa: F401
        return "installed"
    except Exception:  # noqa: BLE001
        pass
    import importlib.util

    for k in [k for k in sys.modules if k == "lite_llm" or k.startswith("lite_llm.")]:
        del sys.modules[k]
    sys.path.insert(0, str(ROOT))
    import lite_llm  # noqa: F401 - lite_llm/ itself

    for name, folder in (("spec", "spec"), ("reference", "reference"), ("optimized", "optimized"),
                         ("proofs", "proofs"), ("conformance", "conformance"), ("benchmarks", "benchmarks")):
        init = ROOT / folder / "__init__.py"
        if not init.is_file():
            continue
        spec = importlib.util.spec_from_file_location(f"lite_llm.{name}", init,
                                                      submodule_search_locations=[str(ROOT / folder)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"lite_llm.{name}"] = mod
        setattr(sys.modules["lite_llm"], name, mod)
        spec.loader.exec_module(mod)
    import lite_llm.optimized.train.loop  # noqa: F401
    return "source tree"


_W: dict = {}


def _worker_init(ckpt: str, tier_set, threads: int) -> None:
    """A serving process: the optimized model on the CPU (spawned, so it never touches CUDA)."""
    import_package()
    import torch

    torch.set_num_threads(threads)
    from lite_llm.optimized.checkpoint import load_checkpoint
    from lite_llm.optimized.model import load_model
    from lite_llm.optimized.train.forward import quantized_routers

    cfg, w = load_checkpoint(ckpt, tier_set, verify=False)
    _W.update(cfg=cfg, m=load_model(cfg, w, tier_set, "cpu"), qr=quantized_routers(cfg, w, tier_set, "cpu"),
              ts=tuple(tier_set))


def _worker_serve(i: int, tok, train: dict, seed: int):
    """Serve one batch on the CPU; compare with the training routes; margins of the serving side of every
    difference that is not downstream of another (REC-2.3). Returns (i, serve arrays, primaries, seconds)."""
    import numpy as np
    import torch

    from lite_llm.optimized.model import forward
    from lite_llm.optimized.train.records import Record, diff_records, token_margin

    t0 = time.time()
    cfg, ts = _W["cfg"], _W["ts"]
    out = forward(cfg, _W["m"], torch.from_numpy(tok), ts, seed=seed)
    serve = {f: np.stack([getattr(r, f).numpy() for r in out.routes]) for f in ("tier", "group", "expert", "gate", "count")}
    meta = {"config_sha256": "", "tier_set": list(ts), "seed": seed}
    layers = np.arange(cfg.n_layers, dtype=np.int32)
    rec = lambda a: Record(a["tier"], a["group"], a["expert"], a["gate"], a["count"], layers, meta, tok)  # noqa: E731
    d = diff_records(rec(train), rec(serve))
    prim = []
    for n, layer in d.primary.tolist():
        xs = out.router_inputs[layer][n]
        ms = token_margin(_W["qr"][layer], xs, serve["tier"][layer, n], serve["group"][layer, n],
                          serve["expert"][layer, n], int(serve["count"][layer, n]), ts)
        prim.append((n, layer, ms, xs.numpy()))
    return i, serve, prim, time.time() - t0


def gpu_config(quick: bool) -> dict:
    if quick:
        return {"spec_version": "0.1", "d_model": 32, "n_layers": 2, "n_heads": 2, "vocab_size": 256, "max_seq_len": 64,
                "tiers": [{"name": "t1b", "groups": 2, "experts_per_group": 4, "d_ff": 32},
                          {"name": "t10b", "groups": 2, "experts_per_group": 4, "d_ff": 32}],
                "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "seed": 0}}
    return {"spec_version": "0.1", "d_model": 128, "n_layers": 8, "n_heads": 4, "vocab_size": 256, "max_seq_len": 256,
            "tiers": [{"name": "t1b", "groups": 4, "experts_per_group": 4, "d_ff": 64},
                      {"name": "t10b", "groups": 4, "experts_per_group": 8, "d_ff": 64}],
            "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "seed": 0}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="small CPU rehearsal (config, budgets and pairs scaled down)")
    ap.add_argument("--device", default=None, help="training device (default cuda, cpu with --quick)")
    ap.add_argument("--budget", type=float, default=None, help="seconds for everything (default 225; 150 with --quick)")
    ap.add_argument("--pairs", type=int, default=None, help="(token, layer) pairs to compare (default 1,048,576)")
    ap.add_argument("--backend", default="auto", help="router backend of the training forward: auto | torch | triton")
    ap.add_argument("--work", default=None, help="directory for checkpoints, logs and full route records "
                                                  "(default: a new temporary directory); --out gets <= 8 small files")
    args = ap.parse_args()
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    work = Path(args.work or tempfile.mkdtemp(prefix="gpu_train_check_"))
    work.mkdir(parents=True, exist_ok=True)
    how = import_package()
    import numpy as np
    import torch

    from lite_llm.optimized.checkpoint import load_checkpoint, read_manifest
    from lite_llm.optimized.model import forward, load_model  # noqa: F401
    from lite_llm.optimized.train.checkpoint_writer import shard_hashes
    from lite_llm.optimized.train.data import load_corpus, val_batches, train_batch
    from lite_llm.optimized.train.forward import forward_train, quantized_routers
    from lite_llm.optimized.train.loop import TrainSettings, train
    from lite_llm.optimized.train.records import (RecordBuilder, diff_records, margin_bound, read_record, token_margin,
                                                  write_record)
    from lite_llm.reference.expand import expand_checkpoint
    from lite_llm.reference.weights import init_model_weights
    from lite_llm.spec.config import TierConfig, config_from_dict

    quick = args.quick
    device = args.device or ("cpu" if quick else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device; use --quick for a CPU rehearsal", file=sys.stderr)
        return 2
    budget = args.budget or (150.0 if quick else 225.0)
    target_pairs = args.pairs or (40_000 if quick else 1_048_576)
    result: dict = {"import": how, "torch": torch.__version__, "device": device, "quick": quick,
                    "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                    "cpu_threads": torch.get_num_threads(), "budget_s": budget, "timings": {}, "checks": {}}
    timings = result["timings"]

    def left():
        return budget - (time.time() - t_start)

    def save_result():
        (out / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

    def stamp(name, t0):
        timings[name] = round(time.time() - t0, 2)
        print(f"[{time.time() - t_start:6.1f}s] {name}: {timings[name]} s", flush=True)
        save_result()

    t0 = time.time()
    corpus = load_corpus(8 << 20 if quick else 32 << 20)
    cfg = config_from_dict(gpu_config(quick))
    result["config"] = gpu_config(quick)
    result["work_dir"] = str(work)
    init = init_model_weights(cfg, 0)
    result["corpus"] = {"sha256": corpus.digest, "files": corpus.files, "train_bytes": int(corpus.train.size),
                        "val_bytes": int(corpus.val.size)}
    stamp("setup", t0)
    seq = 32 if quick else 256
    batch = 8 if quick else 32
    frac = {"base": 0.18, "grow": 0.13, "grow_noaux": 0.13}      # of --budget; the rest: checks, routes, plots

    def settings(**kw):
        base = dict(steps=100000, batch=batch, seq=seq, lr=3e-3, warmup=20, eval_every=100000,
                    eval_seqs=16 if quick else 64, device=device, backend=args.backend, seed=1)
        base.update(kw)
        return TrainSettings(**base)

    def calibrated_steps(seconds, probe_steps=5, **kw):
        """Steps that fit ``seconds``, from the time of a few probe steps (so the lr schedule ends)."""
        def probe():
            shutil.rmtree(work / "probe", ignore_errors=True)
            return train(cfg_run[0], init_run[0], corpus, settings(steps=probe_steps, eval_seqs=2, save_final=False,
                                                                   **kw), work / "probe", source_hashes=hashes_run[0])
        try:
            r = probe()
        except Exception as e:  # noqa: BLE001 - the Triton router failing: fall back to the torch router
            if args.backend != "auto":
                raise
            args.backend = "torch"
            result["backend_fallback"] = f"auto -> torch after {type(e).__name__}: {e}"
            print(result["backend_fallback"], flush=True)
            r = probe()
        secs = sorted(h["seconds"] for h in r.history if h["kind"] == "train")
        per = max(1e-3, secs[len(secs) // 2])                            # the median step
        shutil.rmtree(work / "probe", ignore_errors=True)
        del r
        return max(5, int(seconds / per * 0.8)), per

    # 1. Base run -------------------------------------------------------------------------------
    t0 = time.time()
    cfg_run, init_run, hashes_run = [cfg], [init], [None]
    steps, per = calibrated_steps(budget * frac["base"])
    base = train(cfg, init, corpus, settings(steps=steps, warmup=max(5, steps // 20), eval_every=max(1, steps // 4),
                                             max_seconds=budget * frac["base"] * 1.5), work / "base")
    result["base"] = {"steps": base.steps, "seconds_per_step": per, "last_eval": {k: v for k, v in base.last_eval.items()
                                                                                  if k != "load"}}
    stamp("base_train", t0)

    # 2. Determinism on this device (TRAIN-6.1) -----------------------------------------------------
    t0 = time.time()
    det = []
    for i in range(2):
        r = train(cfg, init, corpus, settings(steps=4, batch=max(2, batch // 4), eval_every=4), work / f"det{i}")
        det.append({p.name: p.read_bytes() for p in Path(r.final).iterdir()})
    result["checks"]["bit_identical_reruns"] = det[0] == det[1]
    for i in range(2):
        shutil.rmtree(work / f"det{i}", ignore_errors=True)
    stamp("determinism", t0)

    # 3. Expand a copy of the base checkpoint ---------------------------------------------------------
    t0 = time.time()
    shutil.copytree(base.final, work / "expanded")
    new_tier = TierConfig("grow", 4, 4, 32) if quick else TierConfig("grow", 8, 8, 128)
    expand_checkpoint(work / "expanded", new_tier, 1)
    raw0, cfg1 = read_manifest(work / "expanded")
    _, init1 = load_checkpoint(work / "expanded")
    old_ts = tuple(range(cfg.n_tiers))
    all_ts = tuple(range(cfg1.n_tiers))
    stamp("expand", t0)

    # 4. Train only the new tier, with and without the auxiliary loss --------------------------------
    grow_runs = {}
    cfg_run[0], init_run[0], hashes_run[0] = cfg1, init1, shard_hashes(raw0)
    for name, alpha in (("grow", 0.01), ("grow_noaux", 0.0)):
        t0 = time.time()
        kw = dict(train_tiers=(cfg1.n_tiers - 1,), eval_tier_sets=(old_ts,), aux_alpha=alpha, seed=2, lr=6e-3)
        if name == "grow":
            steps, per = calibrated_steps(budget * frac[name], **kw)
        else:                                          # the same steps as with the loss: a like-for-like (d)
            steps = grow_runs["grow"].steps
        grow_runs[name] = train(cfg1, init1, corpus, settings(**{**kw, "steps": steps, "warmup": max(5, steps // 20),
                                                                 "eval_every": max(1, steps // 3),
                                                                 "max_seconds": budget * frac[name] * 1.5}),
                                work / name, source_hashes=shard_hashes(raw0))
        r = grow_runs[name]
        result[name] = {"steps": r.steps, "seconds_per_step": per, "aux_alpha": alpha, "lr": kw["lr"],
                        "evals": [{k: v for k, v in h.items() if k != "load"} for h in r.history if h["kind"] == "eval"]}
        stamp(f"{name}_train", t0)
    grow = grow_runs["grow"]

    # 5. Properties (a)-(d) ------------------------------------------------------------------------
    t0 = time.time()
    raw1, _ = read_manifest(Path(grow.final))
    a_ok = all(e0 == e1 and (Path(base.final) / e0["file"]).read_bytes() == (Path(grow.final) / e1["file"]).read_bytes()
               for e0, e1 in zip([raw0["dense"]] + raw0["tiers"][:-1], [raw1["dense"]] + raw1["tiers"][:-1]))
    result["checks"]["a_existing_shards_byte_identical"] = a_ok
    b_ok = {}
    vb = val_batches(corpus, 8 if quick else 32, 8, seq)
    def same_under_old(dev) -> bool:
        """Routing records and logits under the old TierSet, before vs after training the new tier."""
        _, w_before = load_checkpoint(base.final, old_ts, device=dev)
        _, w_after = load_checkpoint(grow.final, old_ts, device=dev)
        mb, ma = load_model(cfg, w_before, old_ts, dev), load_model(cfg1, w_after, old_ts, dev)
        same = True
        for tb in vb[:2]:
            tok = tb[:, :-1]
            ob = forward(cfg, mb, tok, old_ts, device=dev, backend=args.backend)
            oa = forward(cfg1, ma, tok, old_ts, device=dev, backend=args.backend)
            same &= bool(torch.equal(ob.logits, oa.logits))
            for rb, ra in zip(ob.routes, oa.routes):
                same &= all(bool(torch.equal(getattr(rb, f), getattr(ra, f)))
                            for f in ("tier", "group", "expert", "count", "gate", "tier_probs", "group_probs",
                                      "expert_probs"))
        return same

    for dev in ([device, "cpu"] if device != "cpu" else ["cpu"]):
        try:
            b_ok[dev] = same_under_old(dev)
        except Exception as e:  # noqa: BLE001 - e.g. a device kernel failing: report it, keep going
            b_ok[dev] = False
            result["checks"][f"b_error_{dev}"] = f"{type(e).__name__}: {e}"
    result["checks"]["b_old_tierset_routes_and_logits_bit_identical"] = b_ok
    final = {name: {tuple(h["tier_set"]): h for h in r.history if h["kind"] == "eval" and h["step"] == r.steps}
             for name, r in grow_runs.items()}
    c = {"val_loss_cumulative": final["grow"][all_ts]["val_loss"], "val_loss_old": final["grow"][old_ts]["val_loss"],
         "val_loss_base_final": base.last_eval["val_loss"]}
    c["improves"] = c["val_loss_cumulative"] < c["val_loss_old"]
    result["checks"]["c_cumulative_beats_old"] = c
    result["checks"]["d_load_per_level"] = {
        name: {"aux_cv_per_level": final[name][all_ts]["aux_cv"], "load_cv_per_level": final[name][all_ts]["load_cv"]}
        for name in grow_runs}
    stamp("checks_a_to_d", t0)

    # 6. Training routes (device) vs serving routes (CPU, in worker processes) ----------------------------
    t0 = time.time()
    seed = cfg1.router.seed
    _, w_dev = load_checkpoint(grow.final, all_ts, device=device)
    _, w_cpu = load_checkpoint(grow.final, all_ts, device="cpu")
    routers_dev = quantized_routers(cfg1, w_dev, all_ts, device)
    routers_cpu = quantized_routers(cfg1, w_cpu, all_ts, "cpu")
    src_t = {"kind": "train", "implementation": "lite_llm.optimized (training forward)", "device": device,
             "checkpoint": str(grow.final)}
    src_s = {"kind": "serve", "implementation": "lite_llm.optimized", "device": "cpu", "checkpoint": str(grow.final)}
    S = 127 * 128 ** (cfg1.router.hidden_limbs - 1)
    L = cfg1.n_layers
    rb = 8
    reserve = 25.0                                                      # seconds kept for the rest
    cores = os.cpu_count() or 2
    n_workers = max(1, min(8, cores // 2))
    threads = max(1, cores // n_workers)
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ex = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                             initargs=(str(grow.final), all_ts, threads))
    pending, done_batches, flips = {}, {}, []
    submitted, i, t_dev, t_serve = 0, 0, 0.0, 0.0
    try:
        while (submitted < target_pairs or pending) and left() > reserve:
            while len(pending) < 2 * n_workers and submitted < target_pairs and left() > reserve:
                i += 1
                tok = train_batch(corpus, 12345, i, rb, seq)[:, :-1]
                ta = time.time()
                with torch.no_grad():
                    ot = forward_train(cfg1, w_dev, tok.to(device), all_ts, seed, routers_dev, args.backend)
                arrays = {f: np.stack([getattr(r, f).cpu().numpy() for r in ot.routes])
                          for f in ("tier", "group", "expert", "gate", "count")}
                t_dev += time.time() - ta
                fut = ex.submit(_worker_serve, i, tok.numpy(), arrays, seed)
                pending[fut] = (i, tok, arrays, [lo.router_input for lo in ot.layers])
                submitted += tok.numel() * L
            finished, _ = wait(list(pending), timeout=max(0.5, left() - reserve), return_when=FIRST_COMPLETED)
            for fut in finished:
                bi, tok, arrays, xts = pending.pop(fut)
                _, serve, primaries, secs = fut.result()
                t_serve += secs
                done_batches[bi] = (tok, arrays, serve)
                T = tok.shape[1]
                for n, layer, ms, xs in primaries:
                    xt = xts[layer][n].cpu()
                    xs = torch.from_numpy(xs)
                    eps = float((xt - xs).abs().max() / torch.minimum(xt.abs().max(), xs.abs().max()))
                    mt = token_margin(routers_cpu[layer], xt, arrays["tier"][layer, n], arrays["group"][layer, n],
                                      arrays["expert"][layer, n], int(arrays["count"][layer, n]), all_ts)
                    bound = margin_bound(cfg1, eps)
                    flips.append({"batch": bi, "sequence_in_batch": n // T, "position": n % T, "layer": layer,
                                  "margin_train": mt, "margin_serve": ms, "eps": eps,
                                  "bound_eps_plus_1.03_over_S": bound,
                                  "near_tie": mt <= bound and ms <= bound})       # MODEL-4.5, both sides
    finally:
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for proc in procs:                                              # stop a task still running at the deadline
            proc.terminate()
    rec_t, rec_s = RecordBuilder(cfg1, all_ts, seed, src_t), RecordBuilder(cfg1, all_ts, seed, src_s)
    order = sorted(done_batches)
    for bi in order:
        tok, arrays, serve = done_batches[bi]
        rec_t.add([{f: arrays[f][l] for f in arrays} for l in range(L)], tok)
        rec_s.add([{f: serve[f][l] for f in serve} for l in range(L)], tok)
    base_tok = {bi: k * rb for k, bi in enumerate(order)}              # first sequence of each batch in the files
    for f in flips:
        f["token"] = (base_tok[f["batch"]] + f["sequence_in_batch"]) * seq + f["position"]
    rt_, rs_ = rec_t.build(), rec_s.build()
    write_record(work / "routes_train.routes", rt_)
    write_record(work / "routes_serve.routes", rs_)
    d = diff_records(read_record(work / "routes_train.routes"), read_record(work / "routes_serve.routes"))
    result["routes"] = {"pairs": d.pairs, "target_pairs": target_pairs, "differing": d.differing,
                        "rate": d.differing / max(1, d.pairs), "per_level": d.per_level,
                        "first": d.first, "primary": len(d.primary), "downstream": d.downstream,
                        "gates_differing_on_equal_routes": d.gates_differing, "gate_max_abs": d.gate_max_abs,
                        "primary_flips_with_margins": flips[:5000],
                        "all_primary_are_near_ties": all(f["near_tie"] for f in flips),
                        "primary_margins_checked": len(flips) == len(d.primary),
                        "seconds_training_forward_device": round(t_dev, 2),
                        "seconds_serving_cpu_summed_over_workers": round(t_serve, 2),
                        "cpu_workers": n_workers, "threads_per_worker": threads,
                        "S": S, "files": [str(work / "routes_train.routes"), str(work / "routes_serve.routes")]}
    stamp("routes_train_vs_serve", t0)

    # Reference serving on a subset (the NumPy reference is slow: one expert call per token).
    t0 = time.time()
    try:
        from lite_llm.reference.model import forward as ref_forward

        if left() > 12 and order:
            n_ref = 1 if not quick else 2
            tok = train_batch(corpus, 12345, order[0], rb, seq)[:n_ref, :-1]
            wr = {k: v.numpy() for k, v in w_cpu.items()}
            rr = RecordBuilder(cfg1, all_ts, seed, {"kind": "serve", "implementation": "lite_llm.reference",
                                                   "device": "cpu"})
            rr.add(ref_forward(cfg1, wr, tok.numpy(), all_ts, seed=seed).routes, tok)
            rref = rr.build()
            sub = lambda r: type(r)(r.tier[:, :tok.numel()], r.group[:, :tok.numel()], r.expert[:, :tok.numel()],  # noqa: E731
                                    r.gate[:, :tok.numel()], r.count[:, :tok.numel()], r.layers, r.meta, tok.numpy())
            result["routes"]["reference_subset"] = {
                "pairs": int(tok.numel() * L),
                "vs_serve_optimized_cpu": diff_records(rref, sub(rs_)).summary(),
                "vs_train_device": diff_records(rref, sub(rt_)).summary()}
    except Exception as e:  # noqa: BLE001 - report, never lose the rest
        result["routes"]["reference_subset"] = {"error": f"{type(e).__name__}: {e}"}
    stamp("reference_subset", t0)

    # 7. Plots -----------------------------------------------------------------------------------------------
    t0 = time.time()
    try:
        from lite_llm.optimized.train.plots import load_plot, loss_plot

        names = [t.name for t in cfg1.tiers]
        loss_plot([("base", base.history), ("grow (aux 0.01)", grow.history)], out / "loss_across_expansion.png", names)
        load_plot([(f"{n} (alpha {grow_runs[n].history[0]['settings']['aux_alpha']})", grow_runs[n].last_eval)
                   for n in grow_runs], out / "load_aux_vs_noaux.png", layer=0)
        if flips:
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
            m = [max(1e-12, max(f["margin_train"], f["margin_serve"])) for f in flips]
            b = [f["bound_eps_plus_1.03_over_S"] for f in flips]
            ax.scatter(b, m, s=8)
            lim = [min(m + b) / 2, max(m + b) * 2]
            ax.plot(lim, lim, "k--", lw=1, label="margin = bound")
            ax.set_xscale("log"), ax.set_yscale("log")
            ax.set_xlabel("MODEL-4.5 bound eps + 1.03/S"), ax.set_ylabel("routing margin (max of both sides)")
            ax.set_title(f"{len(flips)} differing routes (not downstream)")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / "margins.png", dpi=110)
            plt.close(fig)
        result["plots"] = sorted(p.name for p in out.glob("*.png"))
    except Exception as e:  # noqa: BLE001 - matplotlib may be missing on an offline machine
        result["plots"] = f"not written: {type(e).__name__}: {e}"
    shutil.rmtree(work / "expanded", ignore_errors=True)              # a copy of base/final plus one tier
    # What comes back from $OUT: at most 8 files of at most 16 MiB. The logs of the three runs in one file,
    # and the first tokens of both route records as small record files (the full ones stay in --work).
    with open(out / "logs.jsonl", "w") as f:
        for name, r in (("base", base), *grow_runs.items()):
            for h in r.history:
                f.write(json.dumps({"run": name, **h}) + "\n")
    n_keep = min(rt_.tier.shape[1], 8192)
    for rec, name in ((rt_, "routes_train_first8k.routes"), (rs_, "routes_serve_first8k.routes")):
        keep = n_keep // seq * seq
        part = type(rec)(rec.tier[:, :keep], rec.group[:, :keep], rec.expert[:, :keep], rec.gate[:, :keep],
                         rec.count[:, :keep], rec.layers, dict(rec.meta),
                         None if rec.tokens is None else rec.tokens[: keep // seq])
        write_record(out / name, part)
    stamp("plots", t0)
    result["seconds_total"] = round(time.time() - t_start, 1)
    ok = (result["checks"]["a_existing_shards_byte_identical"] and all(b_ok.values())
          and result["checks"]["bit_identical_reruns"] and result["routes"]["all_primary_are_near_ties"])
    result["verdict"] = {"a_b_determinism_near_ties_ok": ok, "c_improves": c["improves"],
                         "pairs_reached": d.pairs >= target_pairs}
    save_result()
    print(json.dumps({k: result[k] for k in ("verdict", "checks", "timings", "seconds_total")}, indent=2, default=str))
    print(json.dumps({k: v for k, v in result["routes"].items() if k != "primary_flips_with_margins"}, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - leave the traceback where the caller looks
        traceback.print_exc()
        sys.exit(3)
