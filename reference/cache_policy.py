"""Expert-granular caching (spec chapter PLACE, section 10.4): cache units, traces and the policy.

A token reads a few experts of a tier, not the tier, so a serving runtime caches *units*: one
expert's weights of one layer, or one tier's router matrices of one layer (PLACE-4.1). Routing
records say which units each step read (PLACE-4.2); a *trace* is that sequence of steps (PLACE-4.3).
Given a trace, the unit sizes and a capacity in bytes, the policy of PLACE-4.4 .. PLACE-4.7 decides
at every step which units are resident: decayed request counts (integers), eviction by the total
order (count, last use, id), admission only of a unit requested more often than everything it would
displace. Integer state and total-order tie-breaks make the resident set one answer in every
implementation. Placement changes timing, never bits (PLACE-1.3, PLACE-1.4): nothing here touches a
result of the model.

Written for clarity, not speed: a resident set, a scan for victims.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import ShapeError
from lite_llm.spec.tierset import tier_set

BYTES_PER_PARAM = 4                      # PLACE-3.1: binary32
TRACE_FORMAT = "lite-llm-cache-trace"    # PLACE-4.3
TRACE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Units (PLACE-4.1) and the steps routing records give (PLACE-4.2)

def experts_per_layer(cfg: ModelConfig) -> int:
    """U_L = sum over every tier of T_max of G_t E_t: expert units of one layer (PLACE-4.1)."""
    return sum(t.groups * t.experts_per_group for t in cfg.tiers)


def tier_offset(cfg: ModelConfig, tier: int) -> int:
    """o_t = sum over tiers t' < t of G_t' E_t' (PLACE-4.1)."""
    return sum(t.groups * t.experts_per_group for t in cfg.tiers[:tier])


def expert_unit(cfg: ModelConfig, layer: int, tier: int, group: int, expert: int) -> int:
    """Unit id of expert (g, e) of tier t in layer l: l U_L + o_t + g E_t + e (PLACE-4.1)."""
    return layer * experts_per_layer(cfg) + tier_offset(cfg, tier) + group * cfg.tiers[tier].experts_per_group + expert


def router_unit(cfg: ModelConfig, layer: int, tier: int) -> int:
    """Unit id of tier t's router matrices in layer l: L U_L + l M + t (PLACE-4.1)."""
    return cfg.n_layers * experts_per_layer(cfg) + layer * cfg.n_tiers + tier


def unit_count(cfg: ModelConfig) -> int:
    """U = L U_L + L M: expert units, then router units (PLACE-4.1)."""
    return cfg.n_layers * (experts_per_layer(cfg) + cfg.n_tiers)


def unit_sizes(cfg: ModelConfig) -> np.ndarray:
    """Bytes of every unit (U,) int64: 4 * 3 d d_ff_t per expert, 4 d (1 + G_t + G_t E_t) per router (PLACE-4.1)."""
    d = cfg.d_model
    per_layer = []
    for t in cfg.tiers:
        per_layer += [BYTES_PER_PARAM * 3 * d * t.d_ff] * (t.groups * t.experts_per_group)
    routers = [BYTES_PER_PARAM * d * (1 + t.groups + t.groups * t.experts_per_group) for t in cfg.tiers]
    return np.array(per_layer * cfg.n_layers + routers * cfg.n_layers, np.int64)


def step_units(cfg: ModelConfig, record, layer: int, tiers, rows=None, routers: bool = False) -> list[int]:
    """The units one step reads: the experts in the active slots of the record's token rows ``rows``
    (default every row), plus, with ``routers``, the router unit of every tier of the TierSet
    (PLACE-4.2). Ascending, without repeats."""
    tiers = tier_set(cfg, tiers)
    T = int(np.asarray(record.count).shape[0])
    rows = range(T) if rows is None else rows
    tier, group, expert, count = (np.asarray(getattr(record, f)) for f in ("tier", "group", "expert", "count"))
    out = set()
    for n in rows:
        for k in range(int(count[n])):
            out.add(expert_unit(cfg, layer, int(tier[n, k]), int(group[n, k]), int(expert[n, k])))
    if routers:
        out.update(router_unit(cfg, layer, t) for t in tiers)
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# Traces (PLACE-4.3)

@dataclass(frozen=True)
class Trace:
    """A checked trace: step k requests units[offsets[k]:offsets[k+1]], ascending (PLACE-4.3)."""

    offsets: np.ndarray        # (S + 1,) int64, offsets[0] = 0, non-decreasing
    units: np.ndarray          # (n,) int64: the requests, ascending and distinct within a step
    sizes: np.ndarray          # (U,) int64: bytes of each unit, >= 1
    layers: np.ndarray | None = None   # (S,) int64: the layer of each step, when known (prefetch, PLACE-4.9)
    meta: dict | None = None   # free-form description (source, config, ...)

    @property
    def steps(self) -> int:
        return int(self.offsets.shape[0]) - 1

    def step(self, k: int) -> np.ndarray:
        return self.units[self.offsets[k]:self.offsets[k + 1]]


def _int_array(a, name: str, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ShapeError(f"trace field {name!r} must be {ndim}-d, got shape {a.shape}", clause="PLACE-4.3")
    if a.size and (a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer)):
        raise ShapeError(f"trace field {name!r} must hold integers, got {a.dtype}", clause="PLACE-4.3")
    return a.astype(np.int64)


def check_trace(offsets, units, sizes, layers=None, meta=None) -> Trace:
    """A Trace from its arrays, or E_SHAPE naming the first problem (PLACE-4.3)."""
    offsets, units, sizes = _int_array(offsets, "offsets", 1), _int_array(units, "units", 1), _int_array(sizes, "sizes", 1)
    if offsets.shape[0] < 1 or offsets[0] != 0:
        raise ShapeError("trace offsets must start with 0", clause="PLACE-4.3")
    if np.any(np.diff(offsets) < 0):
        k = int(np.flatnonzero(np.diff(offsets) < 0)[0])
        raise ShapeError(f"trace offsets decrease at step {k}", clause="PLACE-4.3")
    if offsets[-1] != units.shape[0]:
        raise ShapeError(f"trace offsets end at {int(offsets[-1])}, the trace has {units.shape[0]} requests",
                         clause="PLACE-4.3")
    if np.any(sizes < 1):
        u = int(np.flatnonzero(sizes < 1)[0])
        raise ShapeError(f"unit {u} has size {int(sizes[u])}; sizes must be >= 1 byte", clause="PLACE-4.3")
    bad = (units < 0) | (units >= sizes.shape[0])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ShapeError(f"request {i} names unit {int(units[i])}, outside [0, {sizes.shape[0]})", clause="PLACE-4.3")
    for k in range(offsets.shape[0] - 1):
        s = units[offsets[k]:offsets[k + 1]]
        if s.size > 1 and np.any(np.diff(s) <= 0):
            raise ShapeError(f"step {k} requests {s.tolist()}: units must be ascending and distinct",
                             clause="PLACE-4.3")
    if layers is not None:
        layers = _int_array(layers, "layers", 1)
        if layers.shape[0] != offsets.shape[0] - 1:
            raise ShapeError(f"trace layers has {layers.shape[0]} entries for {offsets.shape[0] - 1} steps",
                             clause="PLACE-4.3")
    return Trace(offsets, units, sizes, layers, meta)


def trace_from_steps(steps: Sequence[Sequence[int]], sizes, layers=None, meta=None) -> Trace:
    """A Trace from a list of steps (each a list of unit ids; sorted and de-duplicated here)."""
    rows = [sorted(set(int(u) for u in s)) for s in steps]
    offsets = np.zeros(len(rows) + 1, np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows]) if rows else []
    units = np.array([u for r in rows for u in r], np.int64)
    return check_trace(offsets, units, sizes, layers, meta)


def trace_from_records(cfg: ModelConfig, forwards, tiers, *, decode: bool = False, routers: bool = False,
                       meta=None) -> Trace:
    """The trace of forwards' routing records (PLACE-4.2): ``forwards`` is a sequence of per-layer
    record lists (one list per forward call); each (forward, layer) is one step, layers in order.
    ``decode``: only the last token row of each record (what a decoder with a key-value cache
    reads for the new token)."""
    steps, layers = [], []
    for records in forwards:
        for layer, r in enumerate(records):
            T = int(np.asarray(r.count).shape[0])
            rows = [T - 1] if decode and T else None
            steps.append(step_units(cfg, r, layer, tiers, rows, routers))
            layers.append(layer)
    return trace_from_steps(steps, unit_sizes(cfg), layers, meta)


def save_trace(path, trace: Trace) -> None:
    """Write a trace as .npz (PLACE-4.3): offsets, units, sizes, optional layers, and meta (JSON text)."""
    meta = {"format": TRACE_FORMAT, "version": TRACE_VERSION, **(trace.meta or {})}
    arrays = {"offsets": trace.offsets, "units": trace.units, "sizes": trace.sizes,
              "meta": np.array(json.dumps(meta, sort_keys=True))}
    if trace.layers is not None:
        arrays["layers"] = trace.layers
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_trace(path) -> Trace:
    """Read and check a .npz trace (PLACE-4.3); E_SHAPE for a malformed one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ShapeError(f"{path}: not a trace file (.npz): {e}", clause="PLACE-4.3") from None
    missing = [k for k in ("offsets", "units", "sizes", "meta") if k not in arrays]
    if missing:
        raise ShapeError(f"{path}: trace lacks {missing}", clause="PLACE-4.3")
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as e:
        raise ShapeError(f"{path}: meta is not JSON: {e}", clause="PLACE-4.3") from None
    if not isinstance(meta, dict) or meta.get("format") != TRACE_FORMAT or meta.get("version") != TRACE_VERSION:
        raise ShapeError(f"{path}: meta does not say format {TRACE_FORMAT!r} version {TRACE_VERSION}",
                         clause="PLACE-4.3")
    return check_trace(arrays["offsets"], arrays["units"], arrays["sizes"], arrays.get("layers"), meta)


# ---------------------------------------------------------------------------------------------
# The policy (PLACE-4.4 .. PLACE-4.7)

def default_half_life(n_units: int) -> int:
    """H = max(1, U): counts halve once every U steps by default (PLACE-4.5)."""
    return max(1, int(n_units))


def check_policy_params(capacity, half_life) -> tuple[int, int]:
    for name, v, low in (("capacity", capacity, 0), ("half_life", half_life, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ShapeError(f"{name}={v!r} must be an integer >= {low}", clause="PLACE-4.4")
    return int(capacity), int(half_life)


@dataclass(frozen=True)
class CacheRun:
    """What the policy did on a trace (PLACE-4.8): per request and per step."""

    hit: np.ndarray            # (n,) bool: the unit was resident when its step began
    admitted: np.ndarray       # (n,) bool: a miss that the step made resident
    resident: np.ndarray       # (S, U) bool: the resident set after each step
    counts: np.ndarray         # (U,) int64: the decayed counts after the last step
    bytes_fetched: int         # sum of the sizes of the misses (each miss is read from the slower store once)


def simulate(trace: Trace, capacity: int, half_life: int | None = None) -> CacheRun:
    """Run the policy of PLACE-4.4 .. PLACE-4.7 over ``trace`` with ``capacity`` bytes.

    State: count n_u and last use l_u of every unit (0 and -1 at the start), the resident set R
    (empty at the start) and its bytes. Step k requesting the ascending units S:
      1. if k > 0 and k % H == 0, every count becomes floor(n_u / 2)        (PLACE-4.5)
      2. n_u += 1 for every u in S                                           (PLACE-4.5)
      3. for each u in S, ascending: a hit if u is in R; else a miss, and   (PLACE-4.6)
         the victims are the shortest prefix of R \\ S in eviction order, ascending (n, l, id),
         whose removal makes room for u; u is admitted (victims evicted) when room can be made
         and every victim's count is below n_u; otherwise u is used once and not kept (PLACE-4.7)
      4. l_u = k for every u in S
    """
    U = int(trace.sizes.shape[0])
    capacity, H = check_policy_params(capacity, default_half_life(U) if half_life is None else half_life)
    sizes = [int(s) for s in trace.sizes]
    n = [0] * U
    last = [-1] * U
    resident: set[int] = set()
    used = 0
    hit = np.zeros(trace.units.shape[0], bool)
    admitted = np.zeros(trace.units.shape[0], bool)
    snapshot = np.zeros((trace.steps, U), bool)
    fetched = 0
    for k in range(trace.steps):
        S = [int(u) for u in trace.step(k)]
        if k > 0 and k % H == 0:                                             # 1. decay
            n = [c >> 1 for c in n]
        for u in S:                                                          # 2. count
            n[u] += 1
        protected = set(S)
        for i, u in enumerate(S):                                            # 3. decide, ascending ids
            j = int(trace.offsets[k]) + i
            if u in resident:
                hit[j] = True
                continue
            fetched += sizes[u]
            if sizes[u] > capacity:
                continue                                                     # can never fit
            order = sorted((v for v in resident if v not in protected), key=lambda v: (n[v], last[v], v))
            victims, free = [], capacity - used
            for v in order:
                if free >= sizes[u]:
                    break
                victims.append(v)
                free += sizes[v]
            if free < sizes[u]:
                continue                                                     # the step's own units fill it
            if any(n[v] >= n[u] for v in victims):
                continue                                                     # admission refused
            for v in victims:
                resident.discard(v)
                used -= sizes[v]
            resident.add(u)
            used += sizes[u]
            admitted[j] = True
        for u in S:                                                          # 4. last use
            last[u] = k
        if resident:
            snapshot[k, sorted(resident)] = True
    return CacheRun(hit, admitted, snapshot, np.array(n, np.int64), fetched)
