"""Serving from storage: the forward pass and greedy generation with experts streamed from an
``ExpertStore`` (PLACE-4), bit for bit the all-in-memory optimized model (PLACE-1.3).

The dense tensors and the routers of the TierSet's tiers are loaded once (routers are pinned,
PLACE-4.2); every layer routes its tokens (exact, HSER), asks the store for the units its active
slots read (PLACE-4.2) and runs each expert on its tokens as ``moe.expert_outputs_torch`` does: the
same expert code (``experts.swiglu_rows``, fixed-shape chunks) on the same weights, so the same bits
whatever was resident. The route alone decides what is computed (PLACE-1.4): a unit that is not
resident is waited for, never skipped or replaced.

    sm = open_streaming("ckpt/" or "s3://bucket/ckpt", tiers="all", device="cpu", cache_host=64 << 20)
    out = generate_streaming(sm, [1, 2, 3], 8)          # tokens, per-step logits and routing records
    print(sm.store.sync_metrics().format())
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.tensors import dense_shapes

from ..experts import swiglu_rows, weight_tensor
from ..generate import check_request, greedy_token
from ..model import Model, attention, check_tokens, ieee_float32, rms_norm
from ..moe import MoELayer, combine, slots_by_expert
from ..router import RouteResult, load_router, route
from .sources import CheckpointSource, MemorySource, RetryPolicy
from .store import ExpertStore


@dataclass
class StreamingModel:
    """Dense tensors and pinned routers on the device; experts behind ``store``."""

    cfg: ModelConfig
    tier_ids: tuple[int, ...]
    model: Model                      # dense tensors and per-layer routers (MoELayer.experts empty)
    store: ExpertStore
    timing: dict = field(default_factory=lambda: {"route_s": 0.0, "experts_s": 0.0, "dense_s": 0.0})

    def close(self) -> None:
        self.store.close()


def streaming_model(source, device="cpu", cache_gpu: int | None = None, cache_host: int | None = None,
                    half_life: int | None = None, workers: int = 4, prefetch: bool = True,
                    device_cache: bool = False) -> StreamingModel:
    """A StreamingModel over a source (``CheckpointSource`` or ``MemorySource``)."""
    cfg, tier_ids = source.cfg, source.tier_ids
    device = torch.device(device)
    dw = source.dense()
    dense = {n: weight_tensor(dw, n, s, device, torch.float32) for n, s in dense_shapes(cfg).items()}
    rw_all = source.routers()
    d = cfg.d_model
    layers = []
    for layer in range(cfg.n_layers):
        rw = {}
        for t, tc in enumerate(cfg.tiers):
            p = f"layers.{layer}.tiers.{tc.name}"
            shapes = {"router_tier": (d,), "router_group": (tc.groups, d),
                      "router_expert": (tc.groups, tc.experts_per_group, d)}
            for k, s in shapes.items():
                rw[f"{p}.{k}"] = (weight_tensor(rw_all, f"{p}.{k}", s, device, torch.float32) if t in tier_ids
                                  else torch.zeros(s, dtype=torch.float32, device=device))
        layers.append(MoELayer(cfg, layer, tier_ids, load_router(cfg, rw, layer, device), {}))
    store = ExpertStore(source, device, cache_gpu, cache_host, half_life, workers, prefetch, device_cache)
    return StreamingModel(cfg, tier_ids, Model(cfg, tier_ids, dense, tuple(layers), device), store)


def open_streaming(location, tiers=None, *, device="cpu", cache_gpu=None, cache_host=None, verify=True,
                   retry: RetryPolicy = RetryPolicy(), storage_options=None, **kw) -> StreamingModel:
    """Open a checkpoint directory or fsspec URL for serving (CKPT-5.1 .. 5.4 on what it reads)."""
    src = CheckpointSource(location, tiers, verify=verify, retry=retry, storage_options=storage_options)
    return streaming_model(src, device, cache_gpu, cache_host, **kw)


def in_memory(cfg: ModelConfig, weights, tiers=None, **kw) -> StreamingModel:
    return streaming_model(MemorySource(cfg, weights, tiers), **kw)


def moe_streamed(sm: StreamingModel, layer: int, x: torch.Tensor, seed: int, backend: str,
                 decode_rows=None) -> tuple[torch.Tensor, RouteResult]:
    """One layer's MoE block with experts from the store; same arithmetic as ``moe.moe_forward``."""
    moe = sm.model.moe[layer]
    t0 = time.perf_counter()
    r = route(x, moe.router, moe.tier_ids, seed, backend=backend)
    tier, group, expert, count = (getattr(r, f).cpu() for f in ("tier", "group", "expert", "count"))
    units = sm.store.units.step_units(layer, tier.tolist(), group.tolist(), expert.tolist(), count.tolist())
    handle = sm.store.request(layer, units)                              # misses start fetching now
    sm.store.prefetch_next((layer + 1) % sm.cfg.n_layers)                # PLACE-4.9, background
    t1 = time.perf_counter()
    N, K = r.gate.shape
    y = x.new_zeros((N, K, x.shape[1]))
    for t, i, tok, slot in slots_by_expert(r, {t: sm.cfg.tiers[t].experts_per_group for t in moe.tier_ids}):
        g, e = divmod(i, sm.cfg.tiers[t].experts_per_group)
        w = handle.get(sm.store.units.unit(layer, t, g, e))              # waits; never skipped (PLACE-1.4)
        y[tok, slot] = swiglu_rows(x[tok], w.w_gate, w.w_up, w.w_down)
    out = combine(r.gate, r.count, y)
    sm.timing["route_s"] += t1 - t0
    sm.timing["experts_s"] += time.perf_counter() - t1
    return out, r


@dataclass(frozen=True)
class StreamOutput:
    logits: torch.Tensor                  # (T, V) or (B, T, V)
    routes: tuple[RouteResult, ...]       # per layer


def forward_streaming(sm: StreamingModel, tokens, seed=None, backend: str = "auto") -> StreamOutput:
    """The forward pass of ``optimized.model.run`` with streamed experts (MODEL-2.1, PLACE-1.3)."""
    cfg, m = sm.cfg, sm.model
    seed = parse_seed(cfg.router.seed if seed is None else seed)
    tok, single = check_tokens(cfg, tokens)
    B, T = tok.shape
    d = cfg.d_model
    w = m.dense
    tok = tok.to(m.device)
    t0 = time.perf_counter()
    moe_s = 0.0
    with ieee_float32():
        hs = [w["embed"][tok[b]] for b in range(B)]
        routes = []
        for layer in range(cfg.n_layers):
            hs = [h + attention(m, layer, rms_norm(h, w[f"layers.{layer}.attn_norm"], cfg.norm_eps)[None])[0]
                  for h in hs]
            x = torch.cat([rms_norm(h, w[f"layers.{layer}.ffn_norm"], cfg.norm_eps) for h in hs]) if B else \
                torch.empty((0, d), device=m.device)
            t1 = time.perf_counter()
            out, r = moe_streamed(sm, layer, x.contiguous(), seed, backend)
            moe_s += time.perf_counter() - t1
            hs = [h + o for h, o in zip(hs, out.split(T))] if T else hs
            routes.append(r)
        logits = torch.stack([rms_norm(h, w["final_norm"], cfg.norm_eps) @ w["lm_head"].T for h in hs]) \
            if B else torch.empty((0, T, cfg.vocab_size), device=m.device)
    sm.timing["dense_s"] += time.perf_counter() - t0 - moe_s
    return StreamOutput(logits[0] if single else logits, tuple(routes))


@dataclass(frozen=True)
class GenerateOutput:
    tokens: list[int]                          # the new tokens
    logits: list[torch.Tensor]                 # per step: (T_i, V) logits of the whole sequence
    routes: list[tuple[RouteResult, ...]]      # per step: per-layer routing records
    seconds: list[float]                       # per step: wall time


def generate_streaming(sm: StreamingModel, prompt, max_new_tokens: int, seed=None, backend: str = "auto",
                       keep: bool = True) -> GenerateOutput:
    """Greedy generation (MODEL-5) with streamed experts: the tokens ``optimized.generate`` appends."""
    cfg = sm.cfg
    seed = parse_seed(cfg.router.seed if seed is None else seed)
    p = check_request(cfg, prompt, max_new_tokens)                     # MODEL-5.3, as optimized.generate
    seq = p[0].tolist()
    new, logits, routes, secs = [], [], [], []
    for _ in range(max_new_tokens):
        t0 = time.perf_counter()
        o = forward_streaming(sm, torch.tensor(seq), seed, backend)
        nxt = greedy_token(o.logits[-1])
        if sm.model.device.type == "cuda":
            torch.cuda.synchronize(sm.model.device)
        secs.append(time.perf_counter() - t0)
        seq.append(nxt)
        new.append(nxt)
        if keep:
            logits.append(o.logits)
            routes.append(o.routes)
    return GenerateOutput(new, logits, routes, secs)
