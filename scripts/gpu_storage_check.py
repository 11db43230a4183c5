"""GPU check of serving from storage (PLACE-4, PLACE-1.3): run on a CUDA machine from the repository root.

    python scripts/gpu_storage_check.py --out $OUT            # CUDA; about 3-6 minutes
    python scripts/gpu_storage_check.py --out /tmp/x --quick  # a small model, CPU or CUDA (smoke test)

1. Bit identity: greedy generation with experts streamed through the GPU cache (and the pinned host
   cache) at 100%, 25%, 10% and 5% of expert bytes, from a checkpoint on local disk, against the
   all-in-memory optimized model (``optimized.generate`` / ``optimized.forward`` with the torch expert
   path): tokens, logits of every step and the routing records, bit for bit. Also a run with both
   caches small (host 25%, GPU 5%: disk -> host -> GPU), and one over S3 (moto's server on loopback,
   through s3fs) when both are installed; skipped otherwise.
2. Time per decode token at 100/25/10/5% GPU residency (host cache holding everything, so the
   moves measured are host -> GPU over PCIe/NVLink-C2C), against the bound
   ``bytes copied host -> GPU / measured H2D bandwidth + all-resident compute time per token``.
   Generation recomputes the sequence for every token (MODEL-5), so a token's step reads the
   experts of every position.

Writes ``$OUT/gpu_storage_check.json`` (and prints a summary). No network needed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

FRACTIONS = (1.0, 0.25, 0.10, 0.05)


def config(quick: bool):
    from lite_llm.spec.config import config_from_dict

    if quick:
        d, L, G, E, F, V = 32, 2, 4, 4, 16, 64
    else:
        d, L, G, E, F, V = 1024, 4, 8, 8, 1024, 4096      # 64 experts of 12 MiB per layer: 3 GiB of experts
    return config_from_dict({
        "spec_version": "0.1", "d_model": d, "n_layers": L, "n_heads": 8 if not quick else 4, "vocab_size": V,
        "max_seq_len": 128,
        "tiers": [{"name": "tier_a", "groups": G, "experts_per_group": E, "d_ff": F, "placement": "NVMe"}],
        "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "hidden_limbs": 2, "weight_limbs": 2, "seed": 0}})


def weights(cfg, quick: bool) -> dict:
    """Random binary32 weights of the INIT-2 shapes (fast; the values need not be INIT's)."""
    from lite_llm.spec.tensors import dense_shapes, tier_shapes

    if quick:
        from lite_llm.reference.weights import init_model_weights
        return init_model_weights(cfg, 0)
    rng = np.random.default_rng(0)
    out = {}
    shapes = {**dense_shapes(cfg), **{k: v for t in range(cfg.n_tiers) for k, v in tier_shapes(cfg, t).items()}}
    for name, shape in shapes.items():
        if name.endswith("_norm"):
            out[name] = np.ones(shape, np.float32)
        else:
            fan_in = shape[-1]
            out[name] = (rng.standard_normal(shape, dtype=np.float32) * np.float32(1.0 / np.sqrt(fan_in)))
    return out


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.detach().cpu(), b.detach().cpu()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        return torch.equal(a.view(torch.int32), b.view(torch.int32))
    return torch.equal(a, b)


FIELDS = ("tier", "group", "expert", "gate", "count", "tier_probs", "chosen_tiers", "group_probs", "chosen_groups",
          "expert_probs")


def compare(out, base_tokens, base_outs) -> dict:
    ok_tokens = out.tokens == base_tokens
    bad = []
    for i, o in enumerate(base_outs):
        if not same_bits(o.logits, out.logits[i]):
            bad.append(f"logits step {i}")
        for layer, (a, b) in enumerate(zip(o.routes, out.routes[i])):
            for f in FIELDS:
                if not same_bits(getattr(a, f), getattr(b, f)):
                    bad.append(f"route step {i} layer {layer} {f}")
    return {"tokens_equal": ok_tokens, "bit_identical": ok_tokens and not bad, "differences": bad[:10]}


def h2d_bandwidth(device) -> float:
    n = 256 << 20
    src = torch.empty(n // 4, dtype=torch.float32, pin_memory=True)
    dst = torch.empty(n // 4, dtype=torch.float32, device=device)
    for _ in range(2):
        dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    reps = 8
    for _ in range(reps):
        dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize(device)
    return reps * n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for gpu_storage_check.json")
    ap.add_argument("--quick", action="store_true", help="small model, runs on a CPU too")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda and not args.quick:
        print("no CUDA device: run with --quick for the CPU smoke test", file=sys.stderr)
        return 2

    from lite_llm.optimized.generate import generate
    from lite_llm.optimized.model import forward, load_model
    from lite_llm.optimized.storage.serve import generate_streaming, open_streaming
    from lite_llm.optimized.storage.sources import write_expert_hashes
    from lite_llm.reference.checkpoint import save_checkpoint

    res = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
           "torch": torch.__version__, "quick": args.quick, "checks": [], "timing": [], "notes": []}
    t_start = time.perf_counter()
    cfg = config(args.quick)
    tiers = tuple(range(cfg.n_tiers))
    prompt = list(range(1, 9))
    new = 3 if args.quick else 8
    w = weights(cfg, args.quick)
    tmp = tempfile.mkdtemp(prefix="lite-llm-gpu-storage-")
    ck = Path(tmp) / "ck"
    t0 = time.perf_counter()
    save_checkpoint(ck, cfg, w)
    write_expert_hashes(ck)
    res["checkpoint_s"] = time.perf_counter() - t0

    # the all-in-memory baseline: the optimized model with the torch expert path
    m = load_model(cfg, w, tiers, device)
    base_tokens = generate(cfg, m, prompt, new, tiers, device=device, backend="torch")
    base_outs = [forward(cfg, m, prompt + base_tokens[:i], tiers, device=device, backend="torch")
                 for i in range(new)]
    if cuda:
        torch.cuda.synchronize()
    del m
    total = None

    def run(label, **kw):
        nonlocal total
        t0 = time.perf_counter()
        sm = open_streaming(ck, device=device, **kw)
        try:
            total = sum(sm.store.sizes)
            out = generate_streaming(sm, prompt, new)
            r = {"run": label, **compare(out, base_tokens, base_outs), "seconds": time.perf_counter() - t0,
                 "metrics": sm.store.sync_metrics().as_dict()}
        finally:
            sm.close()
        res["checks"].append(r)
        print(f"{label}: bit-identical={r['bit_identical']} ({r['seconds']:.2f} s)", flush=True)
        return r

    try:
        sm = open_streaming(ck, device=device)
        total = sum(sm.store.sizes)
        sm.close()
        for f in FRACTIONS:
            cap = int(f * total)
            run(f"{'gpu' if cuda else 'host'} cache {100 * f:.0f}%",
                **({"cache_gpu": cap} if cuda else {"cache_host": cap}))
        run("host 25% + gpu 5% (disk -> host -> gpu)", cache_host=int(0.25 * total), cache_gpu=int(0.05 * total))
    except Exception:  # noqa: BLE001
        res["notes"].append("bit-identity runs failed: " + traceback.format_exc())

    # object storage (optional)
    try:
        from moto.server import ThreadedMotoServer
        import boto3
        import s3fs
    except ImportError as e:
        res["notes"].append(f"object storage skipped: {e}")
    else:
        try:
            srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            srv.start()
            host, port = srv.get_host_and_port()
            url = f"http://{host}:{port}"
            boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_bucket(Bucket="lite-llm-ck")
            opts = {"key": "testing", "secret": "testing", "skip_instance_cache": True,
                    "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"}}
            fs = s3fs.S3FileSystem(**opts)
            for f in ck.iterdir():
                fs.put_file(str(f), f"lite-llm-ck/ck/{f.name}")
            t0 = time.perf_counter()
            sm = open_streaming("s3://lite-llm-ck/ck", device=device, storage_options=opts, cache_host=int(0.25 * total),
                                **({"cache_gpu": int(0.1 * total)} if cuda else {}))
            try:
                out = generate_streaming(sm, prompt, new)
                r = {"run": "s3 (moto) host 25% gpu 10%", **compare(out, base_tokens, base_outs),
                     "seconds": time.perf_counter() - t0, "metrics": sm.store.sync_metrics().as_dict()}
            finally:
                sm.close()
                srv.stop()
            res["checks"].append(r)
            print(f"{r['run']}: bit-identical={r['bit_identical']}", flush=True)
        except Exception:  # noqa: BLE001
            res["notes"].append("object storage run failed: " + traceback.format_exc())

    # timing: GPU residency with the host cache holding everything (warm), against the bound
    if cuda:
        try:
            bw = h2d_bandwidth(device)
            res["h2d_bytes_per_s"] = bw
            base_per_token = None
            for f in FRACTIONS:
                sm = open_streaming(ck, device=device, cache_gpu=int(f * total), prefetch=False)
                try:
                    generate_streaming(sm, prompt, new, keep=False)      # warm: host cache holds every unit used
                    for c in sm.store.metrics.classes:
                        c.hits = c.misses = c.bytes_moved = 0
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    out = generate_streaming(sm, prompt, new, keep=False)
                    torch.cuda.synchronize()
                    dt = (time.perf_counter() - t0) / new
                    moved = sm.store.metrics.by_name("gpu").bytes_moved / new
                finally:
                    sm.close()
                if f == 1.0:
                    base_per_token = dt
                bound = moved / bw + base_per_token
                r = {"fraction": f, "seconds_per_token": dt, "h2d_bytes_per_token": moved,
                     "bound_seconds_per_token": bound, "ratio_to_bound": dt / bound}
                res["timing"].append(r)
                print(f"gpu {100 * f:.0f}%: {1000 * dt:.2f} ms/token, bound {1000 * bound:.2f} ms "
                      f"({moved / 2**20:.1f} MiB/token at {bw / 2**30:.1f} GiB/s)", flush=True)
        except Exception:  # noqa: BLE001
            res["notes"].append("timing failed: " + traceback.format_exc())
    else:
        res["notes"].append("no CUDA: timing against the H2D bound skipped")
    res["seconds"] = time.perf_counter() - t_start
    res["ok"] = bool(res["checks"]) and all(c["bit_identical"] for c in res["checks"])
    (out_dir / "gpu_storage_check.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(json.dumps({"ok": res["ok"], "checks": [(c["run"], c["bit_identical"]) for c in res["checks"]],
                      "notes": [n.splitlines()[0] for n in res["notes"]]}, indent=1))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
