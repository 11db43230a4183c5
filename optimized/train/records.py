"""Routing records as files (spec chapter REC: REC-1.1 .. REC-1.5, REC-2.1 .. REC-2.3): write, read, diff,
expert load (TRAIN-4.4), routing margins (MODEL-4.5).

A record file is a safetensors file (readable from Rust, C++ and Python) holding, for ``L`` layers and
``N`` tokens with ``K`` output slots (REC-1.2)::

    tier, group, expert   I32 (L, N, K)   the active set in output order, -1 padding (HSER-9.2, HSER-9.3)
    gate                  F32 (L, N, K)   the gates (HSER-8.2), +0.0 padding
    count                 I32 (L, N)      active slots of each token (HSER-9.1)
    layers                I32 (L,)        the model layer of each row
    tokens                I32 (B, T)      optional: the token ids, N = B * T in row-major order

and the metadata (REC-1.3) as JSON in ``__metadata__["record"]``, validated by
``schemas/routing-record.schema.json``: format version, the config's SHA-256 (REC-1.4), the config,
the TierSet, the routing seed and where the routes came from.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from lite_llm.spec import jsonio
from lite_llm.spec.config import ModelConfig, config_from_dict, config_to_dict, seed_to_json
from lite_llm.spec.errors import LiteLLMError

FORMAT = "lite-llm-routes"
VERSION = 1
ARRAYS = ("tier", "group", "expert", "gate", "count", "layers")


class RecordError(LiteLLMError):
    """A routing-record file is malformed, of an unknown version, or two records cannot be compared."""

    code = "E_RECORD"
    clause = "REC-1.1"


def config_sha256(cfg: ModelConfig) -> str:
    """REC-1.4: SHA-256 of the config's JSON form with sorted keys and no whitespace."""
    text = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@lru_cache(maxsize=None)
def record_schema() -> dict:
    return json.loads(resources.files("lite_llm.spec").joinpath("schemas/routing-record.schema.json").read_text())


@dataclass
class Record:
    """A routing record in memory (REC-1.2, REC-1.3): numpy arrays and the metadata object."""

    tier: np.ndarray       # (L, N, K) int32
    group: np.ndarray
    expert: np.ndarray
    gate: np.ndarray       # (L, N, K) float32
    count: np.ndarray      # (L, N) int32
    layers: np.ndarray     # (L,) int32
    meta: dict
    tokens: np.ndarray | None = None   # (B, T) int32

    @property
    def shape(self):
        return self.tier.shape

    def cfg(self) -> ModelConfig:
        return config_from_dict(self.meta["config"])


@dataclass
class RecordBuilder:
    """Collects per-layer routes of successive batches, then writes one record (REC-1)."""

    cfg: ModelConfig
    tier_set: tuple[int, ...]
    seed: int
    source: dict
    layers: tuple[int, ...] = ()
    parts: list = field(default_factory=list)       # [(routes per layer, tokens or None)]

    def add(self, routes, tokens: torch.Tensor | np.ndarray | None = None) -> None:
        """``routes``: one RouteResult (or HSER-9.3 dict of arrays) per layer, all of the same tokens."""
        arr = []
        for r in routes:
            d = r.to_numpy() if hasattr(r, "to_numpy") else \
                (r if isinstance(r, dict) else {k: getattr(r, k) for k in ("tier", "group", "expert", "gate", "count")})
            arr.append({k: np.asarray(d[k]) for k in ("tier", "group", "expert", "gate", "count")})
        tok = None if tokens is None else np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens)
        self.parts.append((arr, tok))

    def build(self) -> Record:
        L = len(self.parts[0][0]) if self.parts else len(self.layers)
        cat = lambda k, dt: np.concatenate([np.stack([layer[k] for layer in a]) for a, _ in self.parts], axis=1) \
            .astype(dt) if self.parts else np.zeros((L, 0, self.cfg.router.slots), dt)    # noqa: E731
        toks = [t for _, t in self.parts]
        tokens = None
        if toks and all(t is not None for t in toks):
            tokens = np.concatenate([t.reshape(-1, t.shape[-1]) for t in toks]).astype(np.int32)
        layers = np.asarray(self.layers or range(L), np.int32)
        meta = {"format": FORMAT, "version": VERSION, "config_sha256": config_sha256(self.cfg),
                "config": config_to_dict(self.cfg), "tier_set": list(self.tier_set),
                "tier_names": [self.cfg.tiers[t].name for t in self.tier_set], "seed": seed_to_json(self.seed),
                "source": self.source}
        count = cat("count", np.int32)
        return Record(cat("tier", np.int32), cat("group", np.int32), cat("expert", np.int32), cat("gate", np.float32),
                      count.reshape(L, -1), layers, meta, tokens)


def safetensors_bytes(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """A safetensors file (CKPT-2.1) with a deterministic header: ``__metadata__`` first, then the tensors
    in ascending byte order of name, JSON without whitespace, padded with spaces to a multiple of 8."""
    dtypes = {np.dtype("<i4"): "I32", np.dtype("<f4"): "F32"}
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    data, pos = [], 0
    for name in sorted(arrays, key=lambda n: n.encode("utf-8")):
        a = arrays[name]
        b = a.tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [pos, pos + len(b)]}
        data.append(b)
        pos += len(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(data)


def write_record(path, rec: Record) -> None:
    """Write a record file (REC-1.1 .. REC-1.3); the same routes give the same bytes."""
    import jsonschema

    meta = dict(rec.meta)
    meta["n_layers"], meta["n_tokens"], meta["k_slots"] = (int(x) for x in rec.tier.shape)
    meta["batch_shape"] = None if rec.tokens is None else [int(x) for x in rec.tokens.shape]
    jsonschema.validate(meta, record_schema())
    arrays = {"tier": rec.tier, "group": rec.group, "expert": rec.expert, "gate": rec.gate, "count": rec.count,
              "layers": rec.layers}
    if rec.tokens is not None:
        arrays["tokens"] = rec.tokens
    arrays = {k: np.ascontiguousarray(v, dtype="<i4" if k != "gate" else "<f4") for k, v in arrays.items()}
    Path(path).write_bytes(safetensors_bytes(arrays, {"format": FORMAT, "record": json.dumps(meta, sort_keys=True)}))
    rec.meta = meta


def read_record(path) -> Record:
    """Read and check a record file (REC-1.5): E_RECORD names the file and the problem."""
    from safetensors import safe_open

    import jsonschema

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such record file", str(path))
    try:
        with safe_open(str(path), framework="numpy") as f:
            md = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own types
        raise RecordError(f"{path}: not a safetensors file: {e}") from None
    if md.get("format") != FORMAT or "record" not in md:
        raise RecordError(f"{path}: __metadata__ lacks format={FORMAT!r} and a record object")
    try:
        meta = jsonio.loads(md["record"])                               # bounded depth and numbers
    except ValueError as e:
        raise RecordError(f"{path}: the record metadata is not JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("version") != VERSION:
        raise RecordError(f"{path}: record version {meta.get('version') if isinstance(meta, dict) else None!r} is "
                          f"not {VERSION}", clause="REC-1.5")
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(record_schema()).iter_errors(meta))
    if err is not None:
        raise RecordError(f"{path}: record field {'/'.join(map(str, err.absolute_path)) or '(top level)'}: "
                          f"{err.message}", clause="REC-1.3")
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise RecordError(f"{path}: lacks array {missing[0]}", clause="REC-1.2")
    L, N, K = meta["n_layers"], meta["n_tokens"], meta["k_slots"]
    want = {"tier": (L, N, K), "group": (L, N, K), "expert": (L, N, K), "gate": (L, N, K), "count": (L, N),
            "layers": (L,)}
    for k, s in want.items():
        dt = np.float32 if k == "gate" else np.int32
        if arrays[k].shape != s or arrays[k].dtype != dt:
            raise RecordError(f"{path}: array {k} is {arrays[k].dtype} {list(arrays[k].shape)}, expected "
                              f"{np.dtype(dt)} {list(s)}", clause="REC-1.2")
    tokens = arrays.get("tokens")
    if tokens is not None and (tokens.ndim != 2 or tokens.size != N):
        raise RecordError(f"{path}: tokens {list(tokens.shape)} do not hold the record's {N} tokens", clause="REC-1.2")
    return Record(arrays["tier"], arrays["group"], arrays["expert"], arrays["gate"], arrays["count"],
                  arrays["layers"], meta, tokens)


# ----------------------------------------------------------------------------------------------
# Diff (REC-2)

@dataclass
class Diff:
    pairs: int                        # (token, layer) pairs compared
    differing: int                    # pairs whose routes (ids or count) differ
    first: tuple[int, int] | None     # (token, layer) of the first difference, token-major
    per_level: dict                   # level of the first differing slot -> count (REC-2.2)
    gates_differing: int              # pairs with equal routes whose gate bits differ
    gate_max_abs: float               # largest |gate_a - gate_b| over pairs with equal routes
    primary: np.ndarray               # (n, 2) [token, layer] of differences not downstream of another
    downstream: int                   # differences downstream of an earlier one (REC-2.3)
    differ_mask: np.ndarray           # (L, N) bool
    notes: list

    def summary(self) -> dict:
        return {"pairs": self.pairs, "differing": self.differing,
                "rate": self.differing / self.pairs if self.pairs else 0.0,
                "first": None if self.first is None else {"token": self.first[0], "layer": self.first[1]},
                "per_level": self.per_level, "primary": len(self.primary), "downstream": self.downstream,
                "gates_differing": self.gates_differing, "gate_max_abs": self.gate_max_abs, "notes": self.notes}


def diff_records(a: Record, b: Record) -> Diff:
    """Compare two records token for token and layer for layer (REC-2.1 .. REC-2.3)."""
    notes = []
    if a.meta["config_sha256"] != b.meta["config_sha256"]:
        notes.append("the records' configs differ (config_sha256); comparing the routes anyway")
    if a.meta["tier_set"] != b.meta["tier_set"]:
        notes.append(f"TierSets differ: {a.meta['tier_set']} vs {b.meta['tier_set']}")
    if str(a.meta["seed"]) != str(b.meta["seed"]):
        notes.append(f"routing seeds differ: {a.meta['seed']} vs {b.meta['seed']}")
    if a.tier.shape != b.tier.shape or not np.array_equal(a.layers, b.layers):
        raise RecordError(f"records of shape {list(a.tier.shape)} (layers {a.layers.tolist()}) and "
                          f"{list(b.tier.shape)} (layers {b.layers.tolist()}) cannot be compared", clause="REC-2.1")
    if a.tokens is not None and b.tokens is not None and not np.array_equal(a.tokens, b.tokens):
        notes.append("the records route different token ids")
    L, N, K = a.tier.shape
    dt, dg, de = (a.tier != b.tier), (a.group != b.group), (a.expert != b.expert)
    slot_diff = dt | dg | de                                                          # (L, N, K)
    differ = slot_diff.any(axis=2) | (a.count != b.count)                              # (L, N)
    # Level of the first differing slot: tier -> 1, else group -> 2, else expert -> 3 (REC-2.2).
    first_slot = np.where(slot_diff.any(axis=2), slot_diff.argmax(axis=2), 0)
    take = lambda m: np.take_along_axis(m, first_slot[..., None], 2)[..., 0]           # noqa: E731
    level = np.where(take(dt), 1, np.where(take(dg), 2, np.where(take(de), 3, 0)))
    level = np.where(differ & (level == 0), 3, level)                                 # a count-only difference
    per_level = {str(k): int(((level == k) & differ).sum()) for k in (1, 2, 3)}
    same = ~differ
    ga, gb = a.gate.view(np.uint32), b.gate.view(np.uint32)
    gdiff = ((ga != gb).any(axis=2)) & same
    gmax = float(np.abs(a.gate.astype(np.float64) - b.gate.astype(np.float64)).max(axis=2)[same].max()) \
        if same.any() else 0.0
    tn, ln = np.nonzero(differ.T)                                                     # token-major order
    first = (int(tn[0]), int(a.layers[ln[0]])) if tn.size else None
    # Downstream (REC-2.3): an earlier layer of an earlier-or-same position of the same sequence differed.
    bt = a.tokens.shape if a.tokens is not None else (b.tokens.shape if b.tokens is not None else (N, 1))
    D = differ.reshape(L, bt[0], bt[1])
    above = np.zeros_like(D)
    acc = np.zeros(D.shape[1:], bool)
    for l in range(L):
        above[l] = np.logical_or.accumulate(acc, axis=1)
        acc = acc | D[l]
    down = D & above
    prim = D & ~above
    pl, pb, pp = np.nonzero(prim)
    primary = np.stack([pb * bt[1] + pp, a.layers[pl]], axis=1) if pl.size else np.zeros((0, 2), np.int64)
    order = np.lexsort((primary[:, 1], primary[:, 0])) if len(primary) else []
    return Diff(L * N, int(differ.sum()), first, per_level, int(gdiff.sum()), gmax, primary[order],
                int(down.sum()), differ, notes)


# ----------------------------------------------------------------------------------------------
# Expert load (TRAIN-4.4)

def _cv(v: np.ndarray) -> float:
    v = np.asarray(v, np.float64)
    if v.size <= 1 or v.mean() == 0:
        return 0.0
    return float(v.std() / v.mean())


def layer_load(cfg: ModelConfig, tier: np.ndarray, group: np.ndarray, expert: np.ndarray, tier_set) -> dict:
    """Counts of one layer's choices at the three levels from the active slots (N, K), and the
    token-weighted CV of the counts per level, as AUX-1.2/1.3 weight routers (TRAIN-4.4)."""
    N, K = tier.shape
    n_idx = np.repeat(np.arange(N), K)
    t, g, e = tier.reshape(-1), group.reshape(-1), expert.reshape(-1)
    ok = t >= 0
    n_idx, t, g, e = n_idx[ok], t[ok], g[ok], e[ok]
    gmax = max(x.groups for x in cfg.tiers)
    emax = max(x.experts_per_group for x in cfg.tiers)
    c1 = np.bincount(np.unique(n_idx * cfg.n_tiers + t) % cfg.n_tiers, minlength=cfg.n_tiers)
    u2 = np.unique((n_idx * cfg.n_tiers + t) * gmax + g)
    c2 = np.bincount(u2 % (cfg.n_tiers * gmax), minlength=cfg.n_tiers * gmax).reshape(cfg.n_tiers, gmax)
    c3 = np.bincount((t * gmax + g) * emax + e, minlength=cfg.n_tiers * gmax * emax).reshape(cfg.n_tiers, gmax, emax)
    cv1 = _cv(c1[list(tier_set)])
    w2 = [(c1[x], _cv(c2[x, :cfg.tiers[x].groups])) for x in tier_set if c1[x] > 0]
    cv2 = sum(n * c for n, c in w2) / max(1, sum(n for n, _ in w2))
    w3 = [(c2[x, y], _cv(c3[x, y, :cfg.tiers[x].experts_per_group])) for x in tier_set
          for y in range(cfg.tiers[x].groups) if c2[x, y] > 0]
    cv3 = sum(n * c for n, c in w3) / max(1, sum(n for n, _ in w3))
    experts = {cfg.tiers[x].name: c3[x, :cfg.tiers[x].groups, :cfg.tiers[x].experts_per_group].reshape(-1).tolist()
               for x in tier_set}
    return {"cv": [cv1, float(cv2), float(cv3)], "experts": experts}


def load_stats(cfg: ModelConfig, batches, tier_set) -> dict:
    """Load per level, averaged over layers, of routes of several batches (lists of RouteResult per layer)."""
    per_layer = []
    for l in range(cfg.n_layers):
        cat = lambda f: np.concatenate([getattr(b[l], f).cpu().numpy() for b in batches])   # noqa: E731
        per_layer.append(layer_load(cfg, cat("tier"), cat("group"), cat("expert"), tier_set))
    cv = np.mean([p["cv"] for p in per_layer], axis=0).tolist()
    return {"load_cv": cv, "load": [p["experts"] for p in per_layer]}


def record_load(rec: Record) -> dict:
    """``load_stats`` of a record file's routes."""
    cfg = rec.cfg()
    per_layer = [layer_load(cfg, rec.tier[l], rec.group[l], rec.expert[l], rec.meta["tier_set"])
                 for l in range(rec.tier.shape[0])]
    return {"load_cv": np.mean([p["cv"] for p in per_layer], axis=0).tolist() if per_layer else [0, 0, 0],
            "load": [p["experts"] for p in per_layer]}


# ----------------------------------------------------------------------------------------------
# Routing margins (MODEL-4.5), for the tokens a diff names

def routing_margin(qr, x: torch.Tensor, chosen_tiers, chosen_groups, active, limbs: int,
                   tier_set) -> float:
    """The normalised routing margin (MODEL-4.5) of one token with binary32 router input x (d,) under the
    quantized router ``qr`` (router.QuantizedRouter): the minimum over its three levels' decisions of
    (z_c - z_q) / (a (|w_c|_1 + |w_q|_1)), chosen c against every candidate ranked after it; 0 for a tie.
    ``chosen_tiers`` (ids, best first), ``chosen_groups`` {tier: [groups best first]}, ``active``
    {(tier, group): [experts best first]}."""
    from ..logits import exact_dot, logits
    from ..quantize import dequant_scale, quantize_rows

    qx, ax = quantize_rows(x[None].to(torch.float32), limbs)
    sx = dequant_scale(ax, limbs)
    a = float(ax[0])

    def decision(rows, chosen_pos):
        z = logits(exact_dot(qx, rows.q), sx, rows.scale)[0].double()                 # (c,)
        n1 = rows.scale * rows.q.abs().sum(dim=1).double()                            # |w_j|_1
        later = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        best = float("inf")
        for p in chosen_pos:
            later[p] = False
            if not later.any():
                break
            gap = z[p] - z[later]
            den = a * (n1[p] + n1[later])
            m = torch.where(gap > 0, gap / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(gap))
            best = min(best, float(m.min()))
        return best

    from types import SimpleNamespace
    cands = list(tier_set)
    sub = lambda rows, idx: SimpleNamespace(q=rows.q[idx], scale=rows.scale[idx])     # noqa: E731
    m = decision(sub(qr.tier, torch.tensor(cands)), [cands.index(t) for t in chosen_tiers])
    cfg = qr.cfg
    for t in chosen_tiers:
        G, E = cfg.tiers[t].groups, cfg.tiers[t].experts_per_group
        g0 = qr.group_offset[t]
        m = min(m, decision(sub(qr.group, torch.arange(g0, g0 + G)), chosen_groups[t]))
        for g in chosen_groups[t]:
            e0 = qr.expert_offset[t] + g * E
            m = min(m, decision(sub(qr.expert, torch.arange(e0, e0 + E)), active[(t, g)]))
    return m


def token_margin(qr, x: torch.Tensor, tier: np.ndarray, group: np.ndarray, expert: np.ndarray, count: int,
                 tier_set) -> float:
    """``routing_margin`` of a token given its active slots (one row of a record)."""
    chosen_tiers, chosen_groups, active = [], {}, {}
    for k in range(count):
        t, g, e = int(tier[k]), int(group[k]), int(expert[k])
        if t not in chosen_tiers:
            chosen_tiers.append(t)
            chosen_groups[t] = []
        if g not in chosen_groups[t]:
            chosen_groups[t].append(g)
            active[(t, g)] = []
        active[(t, g)].append(e)
    return routing_margin(qr, x, chosen_tiers, chosen_groups, active, qr.cfg.router.hidden_limbs, tier_set)


def margin_bound(cfg: ModelConfig, eps: float) -> float:
    """MODEL-4.5's bound: routes cannot differ when the margin exceeds eps + 1.03 / S."""
    S = 127 * 128 ** (cfg.router.hidden_limbs - 1)
    return eps + 1.03 / S
