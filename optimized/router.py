"""HSER, the three-level deterministic router, on torch tensors (HSER-7 .. HSER-9), batched.

``load_router`` quantizes one layer's router weights once (HSER-2.6); ``route`` routes a batch of
hidden states through the three levels and returns the routing record of HSER-9.3, bit for bit the
spec's on the CPU and on CUDA. On CUDA it runs the fused Triton kernels of the ``triton`` package
(``backend="torch"`` forces the plain torch path below; both give the same bits). The result types
(``RouteResult``, ``LevelOutputs``) live in ``router_types`` and are re-exported here.

Layout of a quantized router: the rows of each level's matrices are stacked into one tensor, so a
kernel reads any matrix through one pointer and a row offset:
  level 1  ``tier``    (M, d)            row t is tier t's level-1 row
  level 2  ``group``   (sum_t G_t, d)    tier t's matrix is rows group_offset[t] .. + G_t
  level 3  ``expert``  (sum_t G_t E_t, d) matrix (t, g) is rows expert_offset[t] + g E_t .. + E_t
A level-3 matrix (t, g) is numbered ``group_offset[t] + g``, the row of group g in ``group``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.errors import RouterWeightsError
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .logits import exact_dot, logits
from .quantize import dequant_scale, quantize_rows, split_limbs
from .ranking import top_k
from .router_types import MAX_CANDIDATES, RECORD_FIELDS, LevelOutputs, RouteResult  # noqa: F401 (re-exported)
from .seeds import as_signed, group_level_seeds, level_seed, ordered, tie_keys
from .softmax import softmax, tree_sum
from .validate import check_finite, check_hidden, as_tensor, hidden_as_float32


@dataclass(frozen=True)
class QuantizedRows:
    """Quantized rows of router matrices, stacked (HSER-2.6): integers, int8 limbs and binary64 scales."""

    q: torch.Tensor                  # (R, d) int32, |q| <= 127 * 128**(limbs-1)
    scale: torch.Tensor              # (R,) float64 dequantization scale (HSER-2.5)
    limbs: tuple[torch.Tensor, ...]  # (hi, lo) or (q,): (R, d) int8 each, Q = 128 hi + lo (HSER-2.4; rows: <= 2)

    @staticmethod
    def of(rows: torch.Tensor, limbs: int) -> "QuantizedRows":
        q, absmax = quantize_rows(rows, limbs)
        return QuantizedRows(q, dequant_scale(absmax, limbs), tuple(l.contiguous() for l in split_limbs(q, limbs)))


@dataclass(frozen=True)
class KeyTables:
    """Tie keys of one seed (HSER-4.4, HSER-4.5), int64 in ``seeds.ordered`` form; padding columns are 0.

    The ``*_rank`` tables hold each candidate's position in ascending key order among its matrix's
    candidates (int32): the smallest key among tied candidates is the smallest rank, which the
    Triton kernels compare in 32 bits.
    """

    tier: torch.Tensor          # (M,) key of tier t at level 1
    group: torch.Tensor         # (M, G_all) keys of tier t's groups at level 2
    expert: torch.Tensor        # (sum_t G_t, E_all) keys of matrix (t, g)'s experts at level 3
    tier_rank: torch.Tensor     # (M,) int32
    group_rank: torch.Tensor    # (M, G_all) int32
    expert_rank: torch.Tensor   # (sum_t G_t, E_all) int32


def key_ranks(keys: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Rank (int32) of each key within its row among the row's first n[row] columns; padding ranks last."""
    cols = torch.arange(keys.shape[-1], device=keys.device)
    k = torch.where(cols < n[..., None], keys, torch.full_like(keys, (1 << 63) - 1))
    order = torch.argsort(k, dim=-1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, cols.expand_as(order).contiguous())
    return rank.to(torch.int32)


@dataclass
class QuantizedRouter:
    """One layer's routers after quantization; what ``route`` reads (HSER-2.6)."""

    cfg: ModelConfig
    device: torch.device
    tier: QuantizedRows                 # (M, d)
    group: QuantizedRows                # (sum_t G_t, d)
    expert: QuantizedRows               # (sum_t G_t E_t, d)
    group_offset: tuple[int, ...]       # first row of tier t in ``group``; also its first level-3 matrix id
    expert_offset: tuple[int, ...]      # first row of tier t in ``expert``
    _keys: dict = field(default_factory=dict, repr=False)    # seed -> KeyTables; "level_tables" -> kernel tables

    def keys(self, seed: int) -> KeyTables:
        """The tie keys of every level for routing seed ``seed`` (cached per seed)."""
        if seed not in self._keys:
            if len(self._keys) >= 8:
                self._keys.pop(next(k for k in self._keys if k != "level_tables"))
            self._keys[seed] = make_key_tables(self.cfg, seed, self.device)
        return self._keys[seed]


def make_key_tables(cfg: ModelConfig, seed: int, device) -> KeyTables:
    M = cfg.n_tiers
    g_all = max(t.groups for t in cfg.tiers)
    e_all = max(t.experts_per_group for t in cfg.tiers)
    word = lambda w: torch.tensor(as_signed(w), dtype=torch.int64, device=device)    # a word as int64
    tier = ordered(tie_keys(word(level_seed(seed, 1)), M))                            # (M,)
    group = torch.zeros((M, g_all), dtype=torch.int64, device=device)
    expert = []
    for t, tc in enumerate(cfg.tiers):
        group[t, : tc.groups] = ordered(tie_keys(word(level_seed(seed, 2, t)), tc.groups))
        e = torch.zeros((tc.groups, e_all), dtype=torch.int64, device=device)
        e[:, : tc.experts_per_group] = ordered(tie_keys(group_level_seeds(seed, t, tc.groups, device),
                                                        tc.experts_per_group))
        expert.append(e)
    expert = torch.cat(expert)
    g_n = torch.tensor([t.groups for t in cfg.tiers], device=device)
    e_n = torch.repeat_interleave(torch.tensor([t.experts_per_group for t in cfg.tiers], device=device), g_n)
    return KeyTables(tier, group, expert, key_ranks(tier[None, :], torch.tensor([M], device=device))[0],
                     key_ranks(group, g_n), key_ranks(expert, e_n))


def router_tensor_names(cfg: ModelConfig, layer: int, tier: int) -> tuple[str, str, str]:
    """The checkpoint names of tier ``tier``'s level-1, -2 and -3 routers in ``layer`` (INIT-2.1)."""
    p = f"layers.{layer}.tiers.{cfg.tiers[tier].name}"
    return f"{p}.router_tier", f"{p}.router_group", f"{p}.router_expert"


def load_router(cfg: ModelConfig, weights: Mapping, layer: int = 0, device="cpu") -> QuantizedRouter:
    """Quantize layer ``layer``'s router weights (the flat name -> tensor dict of a checkpoint) (HSER-2.6).

    Every tier's ``router_tier`` (d,), ``router_group`` (G_t, d) and ``router_expert`` (G_t, E_t, d)
    must be binary32 of these shapes and finite; otherwise E_WEIGHTS names the router and tier (HSER-1.4).
    """
    device = torch.device(device)
    d = cfg.d_model
    rows = {"tier": [], "group": [], "expert": []}
    for t, tc in enumerate(cfg.tiers):
        names = router_tensor_names(cfg, layer, t)
        for what, name, shape in zip(("tier", "group", "expert"), names,
                                     ((d,), (tc.groups, d), (tc.groups, tc.experts_per_group, d))):
            label = f"{what} router of tier {tc.name!r} ({name})"
            if name not in weights:
                raise RouterWeightsError(f"{label} is missing from the weights")
            w = weights[name]
            w = w if isinstance(w, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(w))
            if tuple(w.shape) != shape:
                raise RouterWeightsError(f"{label} has shape {tuple(w.shape)}, expected {shape}")
            if w.dtype != torch.float32:
                raise RouterWeightsError(f"{label} has dtype {w.dtype}, expected float32")
            w = w.to(device)
            check_finite(w, label, RouterWeightsError)
            rows[what].append(w.reshape(-1, d))
    limbs = cfg.router.weight_limbs
    g_off = np.concatenate([[0], np.cumsum([t.groups for t in cfg.tiers])[:-1]]).tolist()
    e_off = np.concatenate([[0], np.cumsum([t.groups * t.experts_per_group for t in cfg.tiers])[:-1]]).tolist()
    return QuantizedRouter(cfg, device, *(QuantizedRows.of(torch.cat(rows[k]).contiguous(), limbs)
                                          for k in ("tier", "group", "expert")),
                           tuple(int(v) for v in g_off), tuple(int(v) for v in e_off))


def route(h, router: QuantizedRouter, tiers, seed: int | None = None, backend: str = "auto") -> RouteResult:
    """Route hidden states h (T, d) through the three HSER levels (HSER-7.1 .. HSER-9.3).

    ``h``: a torch tensor or numpy array, float16/bfloat16/float32/float64 (moved to the router's
    device). ``tiers``: the TierSet (names or ids). ``seed``: defaults to the config's router seed.
    ``backend``: "auto" (Triton kernels on CUDA when every level has at most 256 candidates and the
    hidden states take at most two limbs, torch otherwise), "torch" or "triton". The Triton kernels
    handle 1 or 2 limbs per side; with ``hidden_limbs = 3`` "auto" runs the exact torch path (the same
    bits), and "triton" is refused with ValueError.
    Every check runs before a record is returned, in the order of HSER-10.3 (seed, TierSet, shape,
    type, finiteness); a rejected call returns nothing (HSER-10.2).
    """
    cfg = router.cfg
    seed = parse_seed(cfg.router.seed if seed is None else seed)                # HSER-4.1
    cands = resolve_tier_set(cfg, tiers)                                        # TIER-2.2 .. 2.4: sorted ids
    h = check_hidden(as_tensor(h), cfg.d_model)                                 # HSER-1.1, HSER-1.2
    if backend == "auto":
        backend = "triton" if router.device.type == "cuda" and fits_triton(cfg, cands) else "torch"
    if backend == "triton" and cfg.router.hidden_limbs > TRITON_MAX_LIMBS:
        raise ValueError(f"backend 'triton': the kernels take at most {TRITON_MAX_LIMBS} hidden limbs, the config has "
                         f"{cfg.router.hidden_limbs}; use backend 'auto' or 'torch' (the same bits)")
    if backend == "triton":
        from .triton import assemble_triton, raise_if_nonfinite, route_levels_triton
        h = h.to(router.device)
        levels, bad = route_levels_triton(h, router, cands, seed)
        result = assemble_triton(levels, cands)
        raise_if_nonfinite(h, bad)                                              # HSER-1.3, HSER-10.2
        return result
    if backend == "torch":
        levels = route_levels_torch(hidden_as_float32(h, cfg.d_model, router.device), router, cands, seed)
        return active_set(levels, cands)
    raise ValueError(f"backend {backend!r}: expected 'auto', 'torch' or 'triton'")


_TRITON: list[bool] = []


def triton_available() -> bool:
    """Whether Triton is installed (looked up once: the answer is read on every route() call)."""
    if not _TRITON:
        import importlib.util

        _TRITON.append(importlib.util.find_spec("triton") is not None)
    return _TRITON[0]


TRITON_MAX_LIMBS = 2        # optimized/triton/quantize.py splits Q into at most two int8 limbs per side


def fits_triton(cfg: ModelConfig, cands: tuple[int, ...]) -> bool:
    """Whether Triton is installed, the hidden states take at most two limbs (the kernels' split and
    products, HSER-2.4, HSER-3.2) and every level's candidate count fits its kernels."""
    return triton_available() and cfg.router.hidden_limbs <= TRITON_MAX_LIMBS and max(
        len(cands), *(cfg.tiers[t].groups for t in cands),
        *(cfg.tiers[t].experts_per_group for t in cands)) <= MAX_CANDIDATES


def route_levels_torch(x: torch.Tensor, router: QuantizedRouter, cands: tuple[int, ...], seed: int) -> LevelOutputs:
    """The three levels on torch tensors for validated binary32 hidden states x (T, d)."""
    cfg, rc, dev = router.cfg, router.cfg.router, router.device
    T = x.shape[0]
    k1, k2, k3 = rc.k_tier, rc.k_group, rc.k_expert
    keys = router.keys(seed)
    qx, ax = quantize_rows(x, rc.hidden_limbs)                                   # HSER-2: (T, d) int32
    sx = dequant_scale(ax, rc.hidden_limbs)                                      # (T,) binary64
    g_max = max(cfg.tiers[t].groups for t in cands)
    e_max = max(cfg.tiers[t].experts_per_group for t in cands)

    # Level 1 (HSER-7.1): only the TierSet's rows are read (TIER-2.6).
    c = torch.tensor(cands, dtype=torch.int64, device=dev)                       # (n1,)
    z1 = logits(exact_dot(qx, router.tier.q[c]), sx, router.tier.scale[c])      # (T, n1) binary64
    tier_probs = softmax(z1)
    tier_pos = top_k(z1, keys.tier[c], k1)                                       # (T, k1) columns, -1 padding
    chosen_tiers = torch.where(tier_pos >= 0, c[tier_pos.clamp(min=0)], -1)      # (T, k1) tier ids

    # Level 2 (HSER-7.2): token-slots bucketed by their chosen tier; one product per tier.
    z2 = torch.zeros((T, k1, g_max), dtype=torch.float64, device=dev)
    v2 = torch.zeros((T, k1, g_max), dtype=torch.bool, device=dev)
    for t in cands:
        tok, a = torch.nonzero(chosen_tiers == t, as_tuple=True)
        if tok.numel() == 0:
            continue
        G, r0 = cfg.tiers[t].groups, router.group_offset[t]
        w = router.group
        z2[tok, a, :G] = logits(exact_dot(qx[tok], w.q[r0:r0 + G]), sx[tok], w.scale[r0:r0 + G])
        v2[tok, a, :G] = True
    key2 = keys.group[chosen_tiers.clamp(min=0), :g_max]                        # (T, k1, g_max)
    group_probs = softmax(z2.view(T * k1, g_max), v2.view(T * k1, g_max)).view(T, k1, g_max)
    chosen_groups = top_k(z2.view(T * k1, g_max), key2.view(T * k1, g_max), k2,
                          v2.view(T * k1, g_max)).view(T, k1, k2)

    # Level 3 (HSER-7.3): token-slots bucketed by matrix (t, g); one product per matrix used.
    n3 = T * k1 * k2
    tier3 = chosen_tiers[:, :, None].expand(T, k1, k2).reshape(n3)
    grp3 = chosen_groups.reshape(n3)
    goff = torch.tensor(router.group_offset, dtype=torch.int64, device=dev)
    mat = torch.where(grp3 >= 0, goff[tier3.clamp(min=0)] + grp3, -1)            # (n3,) matrix id, -1 none
    z3 = torch.zeros((n3, e_max), dtype=torch.float64, device=dev)
    v3 = torch.zeros((n3, e_max), dtype=torch.bool, device=dev)
    slots = torch.nonzero(mat >= 0, as_tuple=True)[0]
    order = slots[torch.argsort(mat[slots])]
    ids, counts = torch.unique_consecutive(mat[order], return_counts=True)
    tier_of_mat = np.repeat(np.arange(cfg.n_tiers), [t.groups for t in cfg.tiers])
    start = 0
    for m, n in zip(ids.tolist(), counts.tolist()):
        sl = order[start:start + n]
        start += n
        t = int(tier_of_mat[m])
        E, r0 = cfg.tiers[t].experts_per_group, router.expert_offset[t] + (m - router.group_offset[t]) * \
            cfg.tiers[t].experts_per_group
        tok = sl // (k1 * k2)
        w = router.expert
        z3[sl, :E] = logits(exact_dot(qx[tok], w.q[r0:r0 + E]), sx[tok], w.scale[r0:r0 + E])
        v3[sl, :E] = True
    key3 = keys.expert[mat.clamp(min=0), :e_max]                                  # (n3, e_max)
    expert_probs = softmax(z3, v3).view(T, k1, k2, e_max)
    chosen_experts = top_k(z3, key3, k3, v3).view(T, k1, k2, k3)
    i32 = torch.int32
    return LevelOutputs(tier_probs, tier_pos, chosen_tiers.to(i32), group_probs, chosen_groups.to(i32),
                        expert_probs, chosen_experts.to(i32))


def renormalise(p: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """r_j = p_j / tree_sum(p of the chosen, in rank order) over the last axis, binary32 (HSER-8.1).

    Slots not chosen enter the tree as -0.0 (the identity) and come out as +0.0. Chosen
    probabilities that sum to zero (never in routing) give 1 / m each, m the number chosen.
    """
    pw = torch.where(chosen, p, torch.full_like(p, -0.0))
    total = tree_sum(pw)[..., None]
    m = chosen.sum(dim=-1, keepdim=True).clamp(min=1).to(p.dtype)
    zero = total == 0
    r = torch.where(zero, 1.0 / m, p / torch.where(zero, torch.ones_like(total), total))
    return torch.where(chosen, r, torch.zeros_like(p))


def active_set(lv: LevelOutputs, cands: tuple[int, ...]) -> RouteResult:
    """Gates (HSER-8.1, HSER-8.2) and the active set in output order with padding (HSER-9.1 .. HSER-9.3)."""
    T, k1, k2, k3 = lv.chosen_experts.shape
    K = k1 * k2 * k3
    dev = lv.tier_probs.device
    shape4 = (T, k1, k2, k3)
    # Nested rank order (HSER-9.2): tier rank, then group rank, then expert rank.
    tier = lv.chosen_tiers[:, :, None, None].expand(shape4).reshape(T, K)
    group = lv.chosen_groups[:, :, :, None].expand(shape4).reshape(T, K)
    expert = lv.chosen_experts.reshape(T, K)
    valid = expert >= 0                                                                # (T, K)

    # Each level's chosen probabilities (padding reads column 0, masked by renormalise).
    long = torch.int64
    p1 = torch.gather(lv.tier_probs, 1, lv.tier_pos.clamp(min=0))                       # (T, k1)
    p2 = torch.gather(lv.group_probs, 2, lv.chosen_groups.to(long).clamp(min=0))        # (T, k1, k2)
    e_max = lv.expert_probs.shape[-1]
    p3 = torch.gather(lv.expert_probs.reshape(T, k1 * k2, e_max), 2,
                      lv.chosen_experts.to(long).clamp(min=0).reshape(T, k1 * k2, k3)).reshape(shape4)
    r1 = renormalise(p1, lv.tier_pos >= 0)
    r2 = renormalise(p2, lv.chosen_groups >= 0)
    r3 = renormalise(p3, lv.chosen_experts >= 0)
    gate = ((r1[:, :, None, None] * r2[:, :, :, None]) * r3).reshape(T, K)            # HSER-8.2 order

    # HSER-9.2: valid slots first, in nested rank order; then padding.
    dest = torch.where(valid, torch.cumsum(valid.to(long), dim=1) - 1, torch.full_like(tier, K, dtype=long))

    def compact(a: torch.Tensor, pad) -> torch.Tensor:
        out = torch.full((T, K + 1), pad, dtype=a.dtype, device=dev)
        return out.scatter_(1, dest, a)[:, :K]

    return RouteResult(
        tier=compact(tier.to(torch.int32), -1), group=compact(group.to(torch.int32), -1),
        expert=compact(expert.to(torch.int32), -1),
        gate=compact(torch.where(valid, gate, torch.zeros_like(gate)), 0.0),
        count=valid.sum(dim=1).to(torch.int32), tier_set=tuple(cands), tier_probs=lv.tier_probs,
        chosen_tiers=lv.chosen_tiers, group_probs=lv.group_probs, chosen_groups=lv.chosen_groups,
        expert_probs=lv.expert_probs)
