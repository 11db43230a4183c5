"""Generated tiers in torch (INIT-3.1 .. INIT-3.3), CPU or CUDA: weights made on demand, never stored.

Every element is a function of (weights seed, tensor name, element index) (INIT-1.2), so a slice of
a tensor is generated without the rest (``init.uniform_range``). ``GeneratedSource`` is a storage
class built on that: expert (g, e) of a tier is the row-major elements [(g E + e) a b, ...) of each
expert tensor (INIT-3.2), router rows likewise (INIT-3.3); the values are bit for bit those of
``init.init_model_weights`` and of ``reference.generated`` (INIT-3.1).

Two faces of one class:

* the storage-runtime interface of ``optimized.storage.sources`` (``cfg``, ``tier_ids``, ``units``,
  ``counters``, ``storage_class``, ``hash_source``, ``dense()``, ``routers()``, ``read_unit(unit)``,
  ``close()``), so ``storage.store.ExpertStore`` / ``storage.serve.streaming_model`` can serve a small
  generated model exactly as a checkpoint on disk (``dense()`` and ``routers()`` materialise whole
  tensors: fine for small models, not for 10**15 parameters);
* the lazy interface a quadrillion-parameter model needs: ``read_expert(layer, tier, group, expert)``
  -> {"w_gate", "w_up", "w_down"} tensors on the device, ``read_router_rows(layer, tier, kind, first,
  count)``, ``dense_tensor(name)``; ``route_generated`` routes through HSER generating only the router
  rows its levels read, and ``moe_generated`` / ``forward_generated`` run the model on them.

Every slice materialised is counted (``Materialised``): the parameters a token touched, counted by
the runtime, which ``lite-llm bench corollary`` checks against PARAM-3 (INIT-3.4).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.tensors import dense_shapes
from lite_llm.spec.tierset import all_tiers
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .init import GOLDEN, init_bound, stream_base
from .logits import exact_dot, logits
from .quantize import dequant_scale, quantize_rows
from .ranking import top_k
from .router_types import LevelOutputs, RouteResult
from .seeds import MIX_M1, MIX_M2, as_signed, group_level_seeds, level_seed, ordered, tie_keys
from .softmax import softmax
from .validate import as_tensor, check_hidden, hidden_as_float32

EXPERT_KINDS = ("w_gate", "w_up", "w_down")                         # INIT-2.3
ROUTER_KINDS = ("router_tier", "router_group", "router_expert")     # INIT-2.1: levels 1, 2, 3
STREAM_CHUNK_CPU = 1 << 18      # elements per in-place pass on the CPU: 2 MiB of words, cache-resident
STREAM_CHUNK_CUDA = 1 << 26     # on CUDA: few launches; 512 MiB of words at most


def stream_slice(seed, name: str, start: int, count: int, bound: float, device="cpu") -> torch.Tensor:
    """Elements ``start .. start + count - 1`` of tensor ``name``'s stream for any exact integer ``start``
    (INIT-1.2, INIT-1.3; INIT-3.1: the word of element i uses (i + 1) mod 2**64), float32 (count,).

    The arithmetic of ``init.uniform_range`` (which the tests hold it to, bit for bit), done in place
    on one int64 buffer in chunks that stay in cache: 5-10x faster on the CPU, half the memory
    traffic on a GPU. The index i + 1 is added with int64 wrapping, i.e. modulo 2**64.
    """
    device = torch.device(device)
    chunk = STREAM_CHUNK_CUDA if device.type == "cuda" else STREAM_CHUNK_CPU
    base = as_signed(stream_base(seed, name))
    out = torch.empty(count, dtype=torch.float32, device=device)
    b = torch.tensor(bound, dtype=torch.float32, device=device)
    tmp = torch.empty(min(chunk, count), dtype=torch.int64, device=device)
    for s in range(0, count, chunk):
        c = min(chunk, count - s)
        x = torch.arange(c, dtype=torch.int64, device=device).add_(as_signed(start + s + 1))   # i + 1, wrapping
        x.mul_(as_signed(GOLDEN)).add_(base)                                  # B + (i + 1) * GOLDEN mod 2**64
        t = tmp[:c]
        for k, m in ((30, MIX_M1), (27, MIX_M2)):                             # mix64 (HSER-4.3)
            torch.bitwise_right_shift(x, k, out=t).bitwise_and_((1 << (64 - k)) - 1)
            x.bitwise_xor_(t).mul_(as_signed(m))
        torch.bitwise_right_shift(x, 31, out=t).bitwise_and_((1 << 33) - 1)
        x.bitwise_xor_(t)
        x.bitwise_right_shift_(40).bitwise_and_((1 << 24) - 1)               # u_i: the top 24 bits
        x.mul_(2).add_(1 - (1 << 24))                                         # 2 u + 1 - 2**24, |.| < 2**24
        o = out[s:s + c]
        o.copy_(x)                                                            # exact in binary32
        o.mul_(2.0 ** -24).mul_(b)                                            # exact, then one rounding
    return out


@dataclass
class Materialised:
    """What a generated source produced: parameters (elements) per kind of slice, and slice count."""

    dense: int = 0
    router: list = field(default_factory=lambda: [0, 0, 0])     # elements of router rows, levels 1, 2, 3
    experts: int = 0
    slices: int = 0

    @property
    def total(self) -> int:
        return self.dense + sum(self.router) + self.experts


class ReadCounters:
    """The ``counters`` of a storage-runtime source (``storage.sources.ReadCounters``'s fields)."""

    def __init__(self):
        self.reads = self.bytes = self.retries = self.failures = 0

    def add(self, n_bytes: int, retries: int = 0) -> None:
        self.reads += 1
        self.bytes += n_bytes
        self.retries += retries


@dataclass(frozen=True)
class QRows:
    """Quantized router rows (HSER-2.6): integer values as binary64 (exact_dot's operand) and scales."""

    q: torch.Tensor          # (n, d) float64 holding the integers Q of HSER-2.3
    scale: torch.Tensor      # (n,) float64 (HSER-2.5)


class GeneratedSource:
    """A storage class whose weights come from the INIT generator (INIT-3.1 .. INIT-3.3).

    ``cfg``: the model; ``seed``: the weights seed (INIT-1.2); ``tiers``: the TierSet served (default
    every tier); ``device``: where slices are generated. ``router_cache``: how many quantized router
    matrices (one tier's group rows, or one group's expert rows) to keep, least recently used first
    out; 0 generates every row on every read.
    """

    storage_class = "generated"
    hash_source = "none (generated, INIT-3)"

    def __init__(self, cfg: ModelConfig, seed, tiers=None, device="cpu", router_cache: int = 0):
        self.cfg = cfg
        self.seed = parse_seed(seed)
        self.tier_ids = all_tiers(cfg) if tiers is None else resolve_tier_set(cfg, tiers)
        self.device = torch.device(device)
        self.made = Materialised()
        self.counters = ReadCounters()
        self.router_cache = router_cache
        self._cache: dict = {}
        self._units = None

    # --- slices (INIT-3.2, INIT-3.3) ----------------------------------------------------------------
    def _gen(self, name: str, start: int, count: int) -> torch.Tensor:
        return stream_slice(self.seed, name, start, count, init_bound(self.cfg, name), self.device)

    def prefix(self, layer: int, tier: int) -> str:
        return f"layers.{layer}.tiers.{self.cfg.tiers[tier].name}"

    def read_expert(self, layer: int, tier: int, group: int, expert: int) -> dict[str, torch.Tensor]:
        """{"w_gate": (F, d), "w_up": (F, d), "w_down": (d, F)} of expert (group, expert) (INIT-3.2)."""
        tc, d = self.cfg.tiers[tier], self.cfg.d_model
        F = tc.d_ff
        i = group * tc.experts_per_group + expert
        p = self.prefix(layer, tier)
        out = {}
        for kind, (a, b) in (("w_gate", (F, d)), ("w_up", (F, d)), ("w_down", (d, F))):
            out[kind] = self._gen(f"{p}.{kind}", i * a * b, a * b).view(a, b)
        self.made.experts += 3 * F * d
        self.made.slices += 1
        return out

    def read_router_rows(self, layer: int, tier: int, kind: str, first: int = 0, count: int = 1) -> torch.Tensor:
        """Rows ``first .. first + count - 1`` of a router tensor viewed as (rows, d) (INIT-3.3), (count, d).

        "router_tier" has one row; "router_group" row g; "router_expert" row g E_t + e."""
        if kind not in ROUTER_KINDS:
            raise ValueError(f"{kind!r} is not a router tensor kind {ROUTER_KINDS}")
        d = self.cfg.d_model
        r = self._gen(f"{self.prefix(layer, tier)}.{kind}", first * d, count * d).view(count, d)
        self.made.router[ROUTER_KINDS.index(kind)] += count * d
        self.made.slices += 1
        return r

    def dense_tensor(self, name: str, shape=None) -> torch.Tensor:
        """A whole dense tensor (INIT-2.2) on the device; norm weights are ones."""
        shape = shape or dense_shapes(self.cfg)[name]
        n = int(np.prod(shape))
        bound = init_bound(self.cfg, name)
        t = torch.ones(shape, dtype=torch.float32, device=self.device) if bound is None else \
            self._gen(name, 0, n).view(shape)
        self.made.dense += n
        return t

    # --- quantized router matrices (HSER-2.6 row by row, INIT-3.3) ---------------------------------
    def _quantized(self, key, make) -> QRows:
        if self.router_cache and key in self._cache:
            self._cache[key] = self._cache.pop(key)                       # most recently used last
            return self._cache[key]
        rows = make()
        limbs = self.cfg.router.weight_limbs
        q, absmax = quantize_rows(rows, limbs)
        qr = QRows(q.to(torch.float64), dequant_scale(absmax, limbs))
        if self.router_cache:
            self._cache[key] = qr
            while len(self._cache) > self.router_cache:
                self._cache.pop(next(iter(self._cache)))
        return qr

    def level1(self, layer: int, tiers: tuple[int, ...]) -> QRows:
        """The level-1 rows of the TierSet's tiers (HSER-7.1), in TierSet order."""
        return self._quantized(("t", layer, tiers), lambda: torch.cat(
            [self.read_router_rows(layer, t, "router_tier", 0, 1) for t in tiers]))

    def level2(self, layer: int, tier: int) -> QRows:
        """Every group row of tier ``tier`` (HSER-7.2): rows 0 .. G_t - 1 of router_group."""
        G = self.cfg.tiers[tier].groups
        return self._quantized(("g", layer, tier), lambda: self.read_router_rows(layer, tier, "router_group", 0, G))

    def level3(self, layer: int, tier: int, group: int) -> QRows:
        """Every expert row of group ``group`` of tier ``tier`` (HSER-7.3): rows g E_t .. (g + 1) E_t - 1."""
        E = self.cfg.tiers[tier].experts_per_group
        return self._quantized(("e", layer, tier, group),
                               lambda: self.read_router_rows(layer, tier, "router_expert", group * E, E))

    # --- the storage-runtime interface (optimized.storage.sources) ----------------------------------
    @property
    def units(self):
        if self._units is None:
            from .storage.units import UnitMap

            self._units = UnitMap(self.cfg)
        return self._units

    def dense(self) -> dict[str, np.ndarray]:
        """Every dense tensor (INIT-2.2), whole, as NumPy (small models)."""
        return {n: self.dense_tensor(n, s).cpu().numpy() for n, s in dense_shapes(self.cfg).items()}

    def routers(self) -> dict[str, np.ndarray]:
        """The router tensors of the TierSet's tiers in every layer (INIT-2.1), whole (small models)."""
        out, d = {}, self.cfg.d_model
        for t in self.tier_ids:
            tc = self.cfg.tiers[t]
            for layer in range(self.cfg.n_layers):
                p = self.prefix(layer, t)
                out[f"{p}.router_tier"] = self.read_router_rows(layer, t, "router_tier").view(d).cpu().numpy()
                out[f"{p}.router_group"] = self.read_router_rows(layer, t, "router_group", 0, tc.groups).cpu().numpy()
                out[f"{p}.router_expert"] = self.read_router_rows(
                    layer, t, "router_expert", 0, tc.groups * tc.experts_per_group).view(
                    tc.groups, tc.experts_per_group, d).cpu().numpy()
        return out

    def read_unit(self, unit: int) -> list[bytes]:
        """The three blocks (w_gate, w_up, w_down slices, little-endian binary32) of an expert unit."""
        info = self.units.info(unit)
        w = self.read_expert(info.layer, info.tier, info.group, info.expert)
        blocks = [np.ascontiguousarray(w[k].cpu().numpy(), "<f4").tobytes() for k in EXPERT_KINDS]
        self.counters.add(sum(len(b) for b in blocks))
        return blocks

    def close(self) -> None:
        self._cache.clear()


# ---------------------------------------------------------------------------------------------------
# Timing sections (materialisation vs routing vs expert compute), device-synchronised

class Stopwatch:
    """Seconds per named section; on CUDA each section boundary synchronises, so time is attributed."""

    def __init__(self, device="cpu", enabled: bool = True):
        self.cuda = torch.device(device).type == "cuda"
        self.enabled = enabled
        self.s: dict[str, float] = {}

    @contextlib.contextmanager
    def section(self, name: str):
        if not self.enabled:
            yield
            return
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.s[name] = self.s.get(name, 0.0) + time.perf_counter() - t0


NO_WATCH = Stopwatch(enabled=False)


# ---------------------------------------------------------------------------------------------------
# HSER on generated rows: the record of router.route, reading only the rows the levels need

@dataclass(frozen=True)
class RowsRead:
    """Router rows each token read at each level (HSER-7.1 .. 7.3; PARAM-3.2): (T, 3) int64 counts."""

    rows: torch.Tensor


def route_generated(h, src: GeneratedSource, layer: int, tiers, seed=None,
                    watch: Stopwatch = NO_WATCH) -> tuple[RouteResult, RowsRead]:
    """Route hidden states h (T, d) of ``layer`` through HSER on generated router rows (INIT-3.3).

    The record is bit for bit ``router.route``'s on the whole router (the same torch arithmetic:
    quantize_rows, exact_dot, logits, softmax, top_k, active_set), but only the rows the levels read
    are generated: level 1 the TierSet's rows, level 2 every group row of each chosen tier, level 3
    every expert row of each chosen group. Generation (and weight quantization) runs in ``watch``'s
    section "materialise", the rest in "route". The torch path only: any level width (the Triton
    kernels take at most MAX_CANDIDATES candidates per level).
    """
    from .router import active_set

    cfg, rc = src.cfg, src.cfg.router
    dev = src.device
    seed = parse_seed(rc.seed if seed is None else seed)                      # HSER-4.1
    cands = resolve_tier_set(cfg, tiers)                                      # TIER-2.2 .. 2.4
    check_hidden(as_tensor(h), cfg.d_model)                                   # HSER-1.1, HSER-1.2
    x = hidden_as_float32(h, cfg.d_model, dev)                                # HSER-1.3
    T = x.shape[0]
    k1, k2, k3 = rc.k_tier, rc.k_group, rc.k_expert
    g_max = max(cfg.tiers[t].groups for t in cands)
    e_max = max(cfg.tiers[t].experts_per_group for t in cands)
    rows = torch.zeros((T, 3), dtype=torch.int64)
    word = lambda w: torch.tensor(as_signed(w), dtype=torch.int64, device=dev)   # noqa: E731

    with watch.section("materialise"):
        w1 = src.level1(layer, cands)
    with watch.section("route"):
        qx, ax = quantize_rows(x, rc.hidden_limbs)                            # HSER-2 (T, d)
        sx = dequant_scale(ax, rc.hidden_limbs)
        c = torch.tensor(cands, dtype=torch.int64, device=dev)
        z1 = logits(exact_dot(qx, w1.q), sx, w1.scale)                        # (T, n1) HSER-7.1
        key1 = ordered(tie_keys(word(level_seed(seed, 1)), cfg.n_tiers))[c]
        tier_probs = softmax(z1)
        tier_pos = top_k(z1, key1, k1)
        chosen_tiers = torch.where(tier_pos >= 0, c[tier_pos.clamp(min=0)], -1)   # (T, k1)
        rows[:, 0] = len(cands)
        chosen_list = sorted(set(chosen_tiers[chosen_tiers >= 0].tolist()))

    # Level 2 (HSER-7.2): each chosen tier's group rows, generated once for its tokens.
    z2 = torch.zeros((T, k1, g_max), dtype=torch.float64, device=dev)
    v2 = torch.zeros((T, k1, g_max), dtype=torch.bool, device=dev)
    key_tab2 = torch.zeros((cfg.n_tiers, g_max), dtype=torch.int64, device=dev)
    for t in chosen_list:
        G = cfg.tiers[t].groups
        with watch.section("materialise"):
            w2 = src.level2(layer, t)
        with watch.section("route"):
            tok, a = torch.nonzero(chosen_tiers == t, as_tuple=True)
            z2[tok, a, :G] = logits(exact_dot(qx[tok], w2.q), sx[tok], w2.scale)
            v2[tok, a, :G] = True
            key_tab2[t, :G] = ordered(tie_keys(word(level_seed(seed, 2, t)), G))
            rows[:, 1] += G * (chosen_tiers == t).sum(dim=1).cpu()
    with watch.section("route"):
        key2 = key_tab2[chosen_tiers.clamp(min=0)]                            # (T, k1, g_max)
        flat = (T * k1, g_max)
        group_probs = softmax(z2.view(flat), v2.view(flat)).view(T, k1, g_max)
        chosen_groups = top_k(z2.view(flat), key2.view(flat), k2, v2.view(flat)).view(T, k1, k2)
        n3 = T * k1 * k2
        tier3 = chosen_tiers[:, :, None].expand(T, k1, k2).reshape(n3)
        grp3 = chosen_groups.reshape(n3)
        pairs = sorted({(int(t), int(g)) for t, g in zip(tier3.tolist(), grp3.tolist()) if g >= 0})

    # Level 3 (HSER-7.3): each chosen group's expert rows.
    z3 = torch.zeros((n3, e_max), dtype=torch.float64, device=dev)
    v3 = torch.zeros((n3, e_max), dtype=torch.bool, device=dev)
    key3 = torch.zeros((n3, e_max), dtype=torch.int64, device=dev)
    for t, g in pairs:
        E = cfg.tiers[t].experts_per_group
        with watch.section("materialise"):
            w3 = src.level3(layer, t, g)
        with watch.section("route"):
            sl = torch.nonzero((tier3 == t) & (grp3 == g), as_tuple=True)[0]
            tok = sl // (k1 * k2)
            z3[sl, :E] = logits(exact_dot(qx[tok], w3.q), sx[tok], w3.scale)
            v3[sl, :E] = True
            key3[sl, :E] = ordered(tie_keys(group_level_seeds(seed, t, g + 1, dev, first=g), E))
            rows[:, 2].index_add_(0, tok.cpu(), torch.full((tok.numel(),), E, dtype=torch.int64))
    with watch.section("route"):
        expert_probs = softmax(z3, v3).view(T, k1, k2, e_max)
        chosen_experts = top_k(z3, key3, k3, v3).view(T, k1, k2, k3)
        i32 = torch.int32
        lv = LevelOutputs(tier_probs, tier_pos, chosen_tiers.to(i32), group_probs, chosen_groups.to(i32),
                          expert_probs, chosen_experts.to(i32))
        result = active_set(lv, cands)
    return result, RowsRead(rows)


def moe_generated(x: torch.Tensor, src: GeneratedSource, layer: int, tiers, seed=None, watch: Stopwatch = NO_WATCH,
                  compute: bool = True) -> tuple[torch.Tensor | None, RouteResult, torch.Tensor]:
    """One layer's MoE block (MODEL-3) on generated router rows and generated experts.

    Returns (out (N, d) or None, the routing record, per-token touched parameters (N, 3): router
    parameters, expert parameters, experts run). Each distinct expert the step's tokens chose is
    generated once ("materialise") and run on its tokens as ``storage.serve.moe_streamed`` runs it
    ("experts": ``experts.swiglu_rows``, then ``moe.combine``): the bits of the all-in-memory model.
    ``compute=False`` routes for real but only counts the experts (their parameters), generating and
    running none: the counted-not-computed mode of ``lite-llm bench corollary --quick``.
    """
    from .experts import swiglu_rows
    from .moe import combine

    cfg, d = src.cfg, src.cfg.d_model
    r, rr = route_generated(x, src, layer, tiers, seed, watch)
    N, K = r.gate.shape
    tier, group, expert, count = (getattr(r, f).cpu() for f in ("tier", "group", "expert", "count"))
    touched = torch.zeros((N, 3), dtype=torch.int64)
    touched[:, 0] = rr.rows.sum(dim=1) * d
    valid = torch.arange(K)[None, :] < count[:, None]
    for n, k in valid.nonzero().tolist():
        touched[n, 1] += 3 * d * cfg.tiers[int(tier[n, k])].d_ff
        touched[n, 2] += 1
    if not compute:
        return None, r, touched
    y = x.new_zeros((N, K, d))
    slots: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for n, k in valid.nonzero().tolist():
        slots.setdefault((int(tier[n, k]), int(group[n, k]), int(expert[n, k])), []).append((n, k))
    for (t, g, e), ts in sorted(slots.items()):
        with watch.section("materialise"):
            w = src.read_expert(layer, t, g, e)
        with watch.section("experts"):
            tok = torch.tensor([a for a, _ in ts], device=x.device)
            slot = torch.tensor([b for _, b in ts], device=x.device)
            y[tok, slot] = swiglu_rows(x[tok], w["w_gate"], w["w_up"], w["w_down"])
    with watch.section("experts"):
        out = combine(r.gate, r.count, y)
    return out, r, touched


@dataclass(frozen=True)
class GeneratedOutput:
    logits: torch.Tensor | None          # (T, V), None when dense compute was skipped
    routes: tuple[RouteResult, ...]      # per layer
    touched: torch.Tensor                # (T, 4) int64 per token: dense, router, expert parameters, experts run
    chosen_tiers: torch.Tensor           # (L, T) int64: each token's level-1 choice per layer (k_tier = 1: one)


def forward_generated(src: GeneratedSource, tokens, tiers, seed=None, dense: dict | None = None,
                      watch: Stopwatch = NO_WATCH, compute: bool = True) -> GeneratedOutput:
    """The forward pass of ``model.run`` (MODEL-2.1) for one sequence ``tokens`` (T,), every weight
    generated (INIT-3): dense tensors from ``dense`` (a dict already on the device, e.g. generated
    once per run) or generated now; router rows and experts per layer, on demand.

    ``compute=False``: the dense blocks and the experts are counted, not computed; the residual
    stream stays the embedding rows (every block's contribution skipped), each layer routes
    ``rms_norm(embed[token], ffn_norm)`` for real on generated router rows. Counts are the same
    either way (a token reads what its route chooses); only the router inputs differ.
    """
    from .model import Model, attention, ieee_float32, rms_norm

    cfg = src.cfg
    seed = parse_seed(cfg.router.seed if seed is None else seed)
    tier_ids = resolve_tier_set(cfg, tiers)
    tok = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).to(src.device)
    T, d = tok.shape[0], cfg.d_model
    shapes = dense_shapes(cfg)
    touched = torch.zeros((T, 4), dtype=torch.int64)
    routes, chosen = [], []
    w = dense if dense is not None else {}

    def use(name):
        """A dense tensor every token reads whole (INIT-2.2): counted for each token, generated if needed."""
        touched[:, 0] += int(np.prod(shapes[name]))
        if not compute:
            return None
        if name not in w:
            with watch.section("materialise"):
                w[name] = src.dense_tensor(name)
        return w[name]

    with ieee_float32():
        touched[:, 0] += d                                                    # each token's embedding row
        if compute and "embed" in w:
            h = w["embed"][tok]                                               # (T, d)
        else:
            with watch.section("materialise"):                               # only the T rows, generated
                h = torch.stack([stream_slice(src.seed, "embed", int(i) * d, d, 1.0, src.device)
                                 for i in tok.tolist()]) if T else torch.empty((0, d), device=src.device)
                src.made.dense += T * d
        m = Model(cfg, tier_ids, w, (), src.device)
        ones = torch.ones(d, device=src.device)
        for layer in range(cfg.n_layers):
            p = f"layers.{layer}"
            norm1 = use(f"{p}.attn_norm")
            for n in ("wq", "wk", "wv", "wo"):
                use(f"{p}.attn.{n}")
            norm2 = use(f"{p}.ffn_norm")
            if compute:
                with watch.section("dense"):
                    h = h + attention(m, layer, rms_norm(h, norm1, cfg.norm_eps)[None])[0]
                    xin = rms_norm(h, norm2, cfg.norm_eps)
            else:
                xin = rms_norm(h, ones, cfg.norm_eps)                         # ffn_norm is ones (INIT-2.2)
            out, r, t3 = moe_generated(xin.contiguous(), src, layer, tier_ids, seed, watch, compute)
            if compute:
                h = h + out
            touched[:, 1:] += t3
            routes.append(r)
            chosen.append(r.chosen_tiers[:, 0].to(torch.int64).cpu())
        final_norm, lm_head = use("final_norm"), use("lm_head")
        logits_ = None
        if compute:
            with watch.section("dense"):
                logits_ = rms_norm(h, final_norm, cfg.norm_eps) @ lm_head.T
    return GeneratedOutput(logits_, tuple(routes), touched, torch.stack(chosen) if chosen else
                           torch.zeros((0, T), dtype=torch.int64))
