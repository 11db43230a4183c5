"""Decoding on torch: a key/value cache (MODEL-5.4, informative) and CUDA-graph replays of the exact
router and of the MoE block per size bucket, for serving a few tokens at a time.

``KVCache``     per layer the rotated keys and the values of the positions seen so far, (H, capacity, dh).
``Decoder``     a loaded ``model.Model`` with a cache: ``prefill(tokens)`` runs the prompt (the same
                operations as ``model.run``, so a prompt's logits and routes are the bits of an
                uncached forward), ``step(token)`` runs one new position against the cache;
                ``generate(prompt, n)`` is greedy decoding (MODEL-5.1) that waits for the device once.
``GraphRouter`` the exact router (HSER-7 .. HSER-9) replayed from a CUDA graph captured once per size
                bucket: a call copies the hidden states into a padded static buffer and replays;
                nothing waits for the device. The non-finite flag (HSER-1.3) is accumulated on the
                device and raised by ``check()``, which the caller runs at its own synchronisation point.
``GraphMoE``    the same for the whole MoE block (route, grouped-GEMM experts, exact combine).

Padding a batch of T tokens to its bucket B >= T changes no bit of the T real rows: routing is exact
per token (HSER-7.4), the experts run on fixed tiles without a split over the reduction (MODEL-3.5),
and the combine is per token (MODEL-3.3). Padding rows are zeros, which are finite, so they never
raise the flag. Without CUDA (or with ``graphs=False``) the same padded bodies run eagerly: that is
how the CPU tests (under ``TRITON_INTERPRET=1``) check the padding.

The results of a replay are views into the graph's static outputs: valid until the next call of the
same object with the same bucket (``clone()`` them to keep them).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch

from lite_llm.spec.errors import NonFiniteError

from .model import Model, apply_rope, ieee_float32, rms_norm, rope_tables
from .moe import MoELayer, moe_forward
from .router_types import MAX_CANDIDATES, RouteResult

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def bucket_of(n: int, sizes: Sequence[int] = SIZE_BUCKETS) -> int:
    """The smallest bucket >= n; n itself beyond the largest bucket (run without padding)."""
    for s in sizes:
        if s >= n:
            return s
    return n


def slice_route(r: RouteResult, n: int) -> RouteResult:
    """The first n tokens of a routing record (views)."""
    return RouteResult(**{f.name: (getattr(r, f.name) if f.name == "tier_set" else getattr(r, f.name)[:n])
                          for f in fields(RouteResult)})


def clone_route(r: RouteResult) -> RouteResult:
    return RouteResult(**{f.name: (getattr(r, f.name) if f.name == "tier_set" else getattr(r, f.name).clone())
                          for f in fields(RouteResult)})


KERNEL_MAX_LIMBS = 2    # the Triton kernels quantize into one or two int8 limbs per side


def graphs_fit(cfg, cands) -> bool:
    """Whether the Triton kernels (and so the graph replays) take this configuration: at most two
    limbs per side and every level within the kernels' candidate limit."""
    from .router import fits_triton

    rc = cfg.router
    return rc.hidden_limbs <= KERNEL_MAX_LIMBS and rc.weight_limbs <= KERNEL_MAX_LIMBS and \
        fits_triton(cfg, tuple(cands))


def _require_fit(cfg, cands) -> None:
    if not graphs_fit(cfg, cands):
        raise ValueError("graph replays run the Triton kernels, which take at most "
                         f"{KERNEL_MAX_LIMBS} limbs per side and {MAX_CANDIDATES} candidates per level; "
                         "use router.route / moe.moe_forward (the torch path gives the same bits)")


class _Replays:
    """``body(x_static)`` captured once per (bucket, dtype) in a CUDA graph and replayed.

    ``body`` must not wait for the device and must return a tuple of tensors whose first axis is the
    token axis (or a ``RouteResult``), plus accumulate its own flags. With ``graphs=False`` the body
    runs eagerly on the same padded static buffer (the CPU path, and a fallback)."""

    def __init__(self, d: int, device, body: Callable, sizes: Sequence[int], graphs: bool | None):
        self.d, self.device, self.body, self.sizes = d, torch.device(device), body, tuple(sizes)
        self.graphs = (self.device.type == "cuda") if graphs is None else bool(graphs)
        self._slots: dict = {}          # (bucket, dtype) -> (static x, graph or None, static outputs)
        self._written: dict = {}        # (bucket, dtype) -> rows the last call wrote (the rest are zeros)
        self._views: dict = {}          # (id of static outputs, n) -> (outputs, their first n rows)
        self.captures = 0               # graphs captured so far (for the benchmarks)

    def _slot(self, n: int, dtype):
        b = bucket_of(n, self.sizes)
        key = (b, dtype)
        if key not in self._slots:
            xs = torch.zeros((b, self.d), dtype=dtype, device=self.device)
            if not self.graphs:
                self._slots[key] = (xs, None, None)
            else:
                s = torch.cuda.Stream(self.device)
                s.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(s):
                    self.body(xs)                              # compiles the kernels outside the capture
                torch.cuda.current_stream(self.device).wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    out = self.body(xs)
                self.captures += 1
                self._slots[key] = (xs, g, out)
        return self._slots[key]

    def views(self, out, n: int, make: Callable):
        """``make(out, n)`` (the first n rows of a graph's static outputs), made once per (outputs, n):
        the views stay valid across replays, so a call slices nothing (host time)."""
        key = (id(out), n)
        v = self._views.get(key)
        if v is None or v[0] is not out:
            v = self._views[key] = (out, make(out, n))
        return v[1]

    def __call__(self, x: torch.Tensor):
        n = x.shape[0]
        key = (bucket_of(n, self.sizes), x.dtype)
        xs, g, out = self._slot(n, x.dtype)
        xs[:n].copy_(x)
        hi = self._written.get(key, 0)              # rows beyond n that earlier calls left non-zero
        if hi > n:
            xs[n:hi].zero_()
        self._written[key] = n
        if g is None:
            out = self.body(xs)
        else:
            g.replay()
        return out, n


class GraphRouter:
    """The exact router of one layer (``router.QuantizedRouter``) for TierSet ``cands`` and seed
    ``seed``, replayed from CUDA graphs per size bucket (Triton kernels; CUDA, or the interpreter).

    ``route(h)`` takes hidden states (T, d) of any accepted float dtype, already on the device and
    shape-checked by the caller (``validate.check_hidden``), and returns the record of HSER-9.3 for
    the T tokens, bit for bit ``router.route``'s. The non-finite check (HSER-1.3) is deferred: the
    flag of every call since the last ``check()`` is kept on the device and ``check()`` raises
    ``NonFiniteError`` if any token was non-finite (one host synchronisation)."""

    def __init__(self, qrouter, cands: tuple[int, ...], seed: int, sizes: Sequence[int] = SIZE_BUCKETS,
                 graphs: bool | None = None, configs: dict | None = None):
        from .triton import assemble_triton, route_levels_triton

        _require_fit(qrouter.cfg, cands)
        self.qrouter, self.cands, self.seed = qrouter, tuple(cands), seed
        self.flag = torch.zeros((), dtype=torch.bool, device=qrouter.device)

        def body(x):
            lv, bad = route_levels_triton(x, qrouter, self.cands, seed, configs=configs)
            r = assemble_triton(lv, self.cands)
            self.flag.logical_or_(bad.any())
            return r
        self._replays = _Replays(qrouter.cfg.d_model, qrouter.device, body, sizes, graphs)

    def route(self, h: torch.Tensor) -> RouteResult:
        r, n = self._replays(h)
        if self._replays.graphs:
            return self._replays.views(r, n, slice_route)
        return slice_route(r, n)

    def check(self, what: str = "hidden states") -> None:
        """Raise ``NonFiniteError`` (HSER-1.3) if a routed token held a non-finite value since the last check."""
        if bool(self.flag):
            self.flag.zero_()
            raise NonFiniteError(f"{what} held a non-finite value (HSER-1.3; found by a deferred check)")


class GraphMoE:
    """One layer's MoE block (``moe.MoELayer``) replayed from CUDA graphs per size bucket: the exact
    router, the grouped-GEMM experts (``triton.expert_outputs_triton``) and the exact combine
    (``triton.combine_triton``, the bits of ``moe.combine``). ``__call__(x)`` -> (out (T, d), record)
    for router inputs x (T, d) binary32 on the device; the non-finite check is deferred (``check()``)."""

    def __init__(self, moe: MoELayer, seed: int, sizes: Sequence[int] = SIZE_BUCKETS, graphs: bool | None = None):
        from .triton import assemble_triton, combine_triton, expert_outputs_triton, route_levels_triton

        _require_fit(moe.cfg, moe.tier_ids)
        self.moe, self.seed = moe, seed
        cands = moe.tier_ids
        self.flag = torch.zeros((), dtype=torch.bool, device=moe.router.device)

        def body(x):
            lv, bad = route_levels_triton(x, moe.router, cands, seed)
            r = assemble_triton(lv, cands)
            y = expert_outputs_triton(moe, x, r)
            out = combine_triton(r.gate, r.count, y, out_dtype=x.dtype)
            self.flag.logical_or_(bad.any())
            return out, r
        self.body = body                # (for capture inside a larger graph: ``StepGraph``)
        self._replays = _Replays(moe.cfg.d_model, moe.router.device, body, sizes, graphs)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, RouteResult]:
        res, n = self._replays(x)
        if self._replays.graphs:
            return self._replays.views(res, n, lambda o, k: (o[0][:k], slice_route(o[1], k)))
        return res[0][:n], slice_route(res[1], n)

    def check(self) -> None:
        if bool(self.flag):
            self.flag.zero_()
            raise NonFiniteError(f"the router input of layer {self.moe.layer} held a non-finite value "
                                 "(HSER-1.3; found by a deferred check)")


@dataclass
class KVCache:
    """Rotated keys and values of the positions seen so far, per layer (H, capacity, dh) binary32."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    length: int = 0

    @classmethod
    def empty(cls, cfg, capacity: int, device) -> "KVCache":
        H = cfg.n_heads
        dh = cfg.d_model // H
        z = lambda: torch.zeros((H, capacity, dh), dtype=torch.float32, device=device)   # noqa: E731
        return cls([z() for _ in range(cfg.n_layers)], [z() for _ in range(cfg.n_layers)])

    @property
    def capacity(self) -> int:
        return self.k[0].shape[1] if self.k else 0


def attention_cached(m: Model, layer: int, a: torch.Tensor, cache: KVCache, cos: torch.Tensor,
                     sin: torch.Tensor) -> torch.Tensor:
    """Causal attention (MODEL-2.3) of T new positions a (T, d) at positions cache.length .. + T - 1,
    writing their rotated keys and values into the cache. ``cos``, ``sin``: (T, dh/2) of those positions.

    With an empty cache this is ``model.attention`` operation for operation (the same bits); later
    positions attend over the cached keys 0 .. length + T - 1."""
    cfg, w = m.cfg, m.dense
    T, d = a.shape
    H = cfg.n_heads
    dh = d // H
    p = f"layers.{layer}.attn"
    pos0 = cache.length
    a = a[None]                                                               # (1, T, d) as model.attention

    def heads(z):                                                             # (1, T, d) -> (1, H, T, dh)
        return z.view(1, T, H, dh).transpose(1, 2)

    q = apply_rope(heads(a @ w[f"{p}.wq"].T), cos, sin)
    k = apply_rope(heads(a @ w[f"{p}.wk"].T), cos, sin)
    v = heads(a @ w[f"{p}.wv"].T)
    cache.k[layer][:, pos0:pos0 + T] = k[0]
    cache.v[layer][:, pos0:pos0 + T] = v[0]
    if pos0:
        k, v = cache.k[layer][None, :, :pos0 + T], cache.v[layer][None, :, :pos0 + T]
    s = (q @ k.transpose(-1, -2)) * (1.0 / dh ** 0.5)                           # (1, H, T, pos0 + T)
    if T > 1:
        causal = torch.ones(T, pos0 + T, dtype=torch.bool, device=a.device).tril(diagonal=pos0)
        s = s.masked_fill(~causal, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v                                          # (1, H, T, dh)
    return (o.transpose(1, 2).reshape(1, T, d) @ w[f"{p}.wo"].T)[0]


def attention_static(m: Model, layer: int, a: torch.Tensor, cache: KVCache, cos: torch.Tensor, sin: torch.Tensor,
                     pos: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """``attention_cached`` for one new position whose index ``pos`` (1,) is a device tensor, over the
    cache's whole capacity with later positions masked (``masked`` (capacity,) bool): every shape is
    static, so a decode step can be captured once and replayed. The softmax then runs over the
    capacity (the masked scores are -inf, weight +0.0), a different summation from the cached step's:
    within MODEL-4.3, not the same bits."""
    cfg, w = m.cfg, m.dense
    d = a.shape[1]
    H = cfg.n_heads
    dh = d // H
    p = f"layers.{layer}.attn"
    a = a[None]                                                               # (1, 1, d)

    def heads(z):
        return z.view(1, 1, H, dh).transpose(1, 2)                            # (1, H, 1, dh)

    q = apply_rope(heads(a @ w[f"{p}.wq"].T), cos, sin)
    k = apply_rope(heads(a @ w[f"{p}.wk"].T), cos, sin)
    v = heads(a @ w[f"{p}.wv"].T)
    cache.k[layer].index_copy_(1, pos, k[0])
    cache.v[layer].index_copy_(1, pos, v[0])
    s = (q @ cache.k[layer][None].transpose(-1, -2)) * (1.0 / dh ** 0.5)       # (1, H, 1, capacity)
    s = s.masked_fill(masked, float("-inf"))
    o = torch.softmax(s, dim=-1) @ cache.v[layer][None]                       # (1, H, 1, dh)
    return (o.transpose(1, 2).reshape(1, 1, d) @ w[f"{p}.wo"].T)[0]


class StepGraph:
    """One decode position of a whole model as a single CUDA graph: token and position live on the
    device, the step writes its keys and values into the cache, runs every layer (``moe_fn(layer, x)``
    for the MoE block), makes the greedy choice (``greedy_fn``), stores it and advances; the host only
    replays. Without CUDA (``graphs=False``) the same step runs eagerly (how the CPU tests check it)."""

    def __init__(self, m: Model, cache: KVCache, rope: tuple, moe_fn: Callable, greedy_fn: Callable | None = None,
                 graphs: bool | None = None):
        dev = m.device
        self.m, self.cache, self.rope, self.moe_fn = m, cache, rope, moe_fn
        self.greedy_fn = greedy_fn or greedy_device
        C = cache.capacity
        i64 = torch.int64
        self.tok, self.pos, self.i = (torch.zeros((1,), dtype=i64, device=dev) for _ in range(3))
        self.toks = torch.zeros((C,), dtype=i64, device=dev)           # generated ids, in order
        self.nans = torch.full((C,), -1, dtype=i64, device=dev)        # first NaN logit id per step, -1 none
        self.cols = torch.arange(C, device=dev)
        self.graphs = (dev.type == "cuda") if graphs is None else bool(graphs)
        self.graph = None
        if self.graphs:
            s = torch.cuda.Stream(dev)
            s.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(s):
                self.body()                                             # compiles; its writes are undone below
            torch.cuda.current_stream(dev).wait_stream(s)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.body()
            self.clear()

    def clear(self) -> None:
        for t in (*self.cache.k, *self.cache.v, self.tok, self.pos, self.i, self.toks):
            t.zero_()
        self.nans.fill_(-1)
        self.cache.length = 0

    def body(self) -> None:
        cfg, w = self.m.cfg, self.m.dense
        cos, sin = self.rope[0].index_select(0, self.pos), self.rope[1].index_select(0, self.pos)
        masked = self.cols > self.pos
        with ieee_float32():
            h = w["embed"].index_select(0, self.tok)                                    # (1, d)
            for layer in range(cfg.n_layers):
                a = rms_norm(h, w[f"layers.{layer}.attn_norm"], cfg.norm_eps)
                h = h + attention_static(self.m, layer, a, self.cache, cos, sin, self.pos, masked)
                x = rms_norm(h, w[f"layers.{layer}.ffn_norm"], cfg.norm_eps)
                h = h + self.moe_fn(layer, x)
            self.logits = rms_norm(h, w["final_norm"], cfg.norm_eps) @ w["lm_head"].T      # (1, V)
        nxt, nan = self.greedy_fn(self.logits[0])
        self.toks.index_copy_(0, self.i, nxt)
        self.nans.index_copy_(0, self.i, nan)
        self.tok.copy_(nxt)
        self.pos.add_(1)
        self.i.add_(1)

    def step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.body()

    def start(self, first: torch.Tensor, first_nan: torch.Tensor, pos: int) -> None:
        """After a prefill of ``pos`` positions whose greedy choice is ``first`` (1,)."""
        self.toks[:1].copy_(first)
        self.nans[:1].copy_(first_nan)
        self.tok.copy_(first)
        self.pos.fill_(pos)
        self.i.fill_(1)


@dataclass
class Decoder:
    """Greedy decoding of one sequence on a loaded model with a KV cache (MODEL-5.1, MODEL-5.4).

    ``graphs``: replay each layer's MoE block from CUDA graphs (``GraphMoE``; default on CUDA with
    Triton); otherwise ``moe.moe_forward`` runs (the CPU path). ``backend`` as ``moe.moe_forward``."""

    m: Model
    seed: int
    capacity: int
    graphs: bool | None = None
    backend: str = "auto"
    sizes: Sequence[int] = SIZE_BUCKETS
    step_graph: bool = False            # generate's steps as one CUDA graph per position (``StepGraph``)
    cache: KVCache = field(init=False)
    moes: list = field(init=False)
    _rope: tuple = field(init=False)

    def __post_init__(self):
        from .router import triton_available

        cfg, dev = self.m.cfg, self.m.device
        if self.graphs is None:
            self.graphs = dev.type == "cuda" and triton_available() and self.backend in ("auto", "triton") and \
                graphs_fit(cfg, self.m.tier_ids)
        self.cache = KVCache.empty(cfg, self.capacity, dev)
        self.moes = [GraphMoE(self.m.moe[l], self.seed, self.sizes) for l in range(cfg.n_layers)] if self.graphs \
            else []
        self._rope = rope_tables(self.capacity, cfg.d_model // cfg.n_heads, cfg.rope_theta, dev)
        self.stepper = None
        if self.step_graph:
            moe_fn = (lambda l, x: self.moes[l].body(x)[0]) if self.moes else \
                (lambda l, x: moe_forward(self.m.moe[l], x.contiguous(), self.seed, self.backend)[0])
            self.stepper = StepGraph(self.m, self.cache, self._rope, moe_fn,
                                     graphs=dev.type == "cuda" and bool(self.moes))

    def reset(self) -> None:
        self.cache.length = 0

    def _moe(self, layer: int, x: torch.Tensor):
        if self.moes:
            return self.moes[layer](x)
        return moe_forward(self.m.moe[layer], x.contiguous(), self.seed, self.backend)

    def forward(self, tok: torch.Tensor, keep: bool = False):
        """Logits (T, V) of T new tokens (int64 on the device) after the cached positions; with
        ``keep`` also the per-layer routes and router inputs (cloned)."""
        cfg, w = self.m.cfg, self.m.dense
        T = tok.shape[0]
        pos0 = self.cache.length
        if pos0 + T > self.capacity:
            raise ValueError(f"{pos0} cached + {T} new positions exceed the cache's capacity {self.capacity}")
        if pos0 == 0:                       # the tables model.run makes: rope_tables(T), the same bits per row
            cos, sin = rope_tables(T, cfg.d_model // cfg.n_heads, cfg.rope_theta, self.m.device)
        else:
            cos, sin = self._rope[0][pos0:pos0 + T], self._rope[1][pos0:pos0 + T]
        routes, xs = [], []
        with ieee_float32():
            h = w["embed"][tok]                                                             # (T, d)
            for layer in range(cfg.n_layers):
                a = rms_norm(h, w[f"layers.{layer}.attn_norm"], cfg.norm_eps)
                h = h + attention_cached(self.m, layer, a, self.cache, cos, sin)
                x = rms_norm(h, w[f"layers.{layer}.ffn_norm"], cfg.norm_eps)
                out, r = self._moe(layer, x)
                h = h + out
                if keep:
                    routes.append(clone_route(r))
                    xs.append(x.clone())
            self.cache.length = pos0 + T
            logits = rms_norm(h, w["final_norm"], cfg.norm_eps) @ w["lm_head"].T                # (T, V)
        return (logits, routes, xs) if keep else logits

    def check(self) -> None:
        """Raise the deferred non-finite errors of the MoE graphs (HSER-1.3)."""
        for g in self.moes:
            g.check()

    def generate(self, prompt: torch.Tensor, n: int) -> list[int]:
        """The n tokens greedy decoding appends to ``prompt`` (T,) (MODEL-5.1): the prompt in one pass,
        then one cached step per token; the greedy choice (MODEL-5.2) is made on the device, so the
        host waits once, at the end (then the NaN and non-finite checks run, before anything is returned)."""
        self.reset()
        prompt = prompt.to(self.m.device)
        if n == 0:
            return []
        if self.stepper is not None:
            return self._generate_steps(prompt, n)
        out = torch.empty((n,), dtype=torch.int64, device=self.m.device)
        first_nan = torch.full((n,), -1, dtype=torch.int64, device=self.m.device)
        logits = self.forward(prompt)[-1]
        for i in range(n):
            out[i:i + 1], first_nan[i:i + 1] = greedy_device(logits)
            if i + 1 < n:
                logits = self.forward(out[i:i + 1])[0]
        return self._finish(out.tolist(), first_nan.tolist())

    def _generate_steps(self, prompt: torch.Tensor, n: int) -> list[int]:
        """``generate`` with each new position one replay of ``StepGraph``."""
        st = self.stepper
        st.clear()
        logits = self.forward(prompt)[-1]
        first, first_nan = greedy_device(logits)
        st.start(first, first_nan, prompt.shape[0])
        for _ in range(n - 1):
            st.step()
        self.cache.length = prompt.shape[0] + n - 1
        return self._finish(st.toks[:n].tolist(), st.nans[:n].tolist())

    def _finish(self, tokens: list[int], nan: list[int]) -> list[int]:
        """The deferred checks, before anything is returned: non-finite router inputs, NaN logits."""
        self.check()
        for v in nan:
            if v >= 0:
                raise NonFiniteError(f"logit of token id {v} is NaN; greedy choice is undefined", clause="MODEL-5.2")
        return tokens


def greedy_device(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The greedy choice (MODEL-5.2) of logits (V,) on the device: (id (1,), first NaN id or -1 (1,)).

    The smallest id among the largest logits, found with ``max``, ``==`` and ``min`` (exact; -0.0 ==
    +0.0), not argmax's tie order. A NaN row gives id 0 and its first NaN id (the caller raises)."""
    V = logits.shape[0]
    ids = torch.arange(V, device=logits.device)
    nan = torch.isnan(logits)
    best = torch.where(logits == logits.max(), ids, V).min().clamp(max=V - 1)
    first_nan = torch.where(nan, ids, V).min()
    bad = first_nan < V
    return (torch.where(bad, 0, best).reshape(1), torch.where(bad, first_nan, -1).reshape(1))
