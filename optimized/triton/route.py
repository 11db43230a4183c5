"""The exact router on the Triton kernels: one flat level (``route_flat``) and the three HSER levels
(``route_levels_triton``); a level is a products launch (``quantize``) and an epilogue launch
(``softmax_topk``), with two small bucketing launches (``bucketing``) between bucketed levels, or
none when a level has at most ``DIRECT_SLOTS`` slots (one block per slot, ``direct_buckets``).
Nothing here waits for the device."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lite_llm.spec.errors import NonFiniteError

from ..router_types import MAX_CANDIDATES, LevelOutputs
from ..validate import first_bad_message
from .bucketing import Buckets, plan_buckets
from .primitives import _pow2
from .quantize import BUCKET_CONFIG, bucket_products, level_products
from .softmax_topk import softmax_topk


@dataclass(frozen=True)
class FlatResult:
    """One routing level over n candidates (``route_flat``)."""

    probs: torch.Tensor      # (T, n) float32: the level's softmax (HSER-6.6)
    chosen: torch.Tensor     # (T, k) int32: top-k candidates, best first, -1 padding (HSER-5.2)


def raise_if_nonfinite(h: torch.Tensor, bad: torch.Tensor) -> None:
    """HSER-1.3 after the kernels ran: if any token was flagged, name the first bad element."""
    if bad.numel() and bool(bad.any()):
        x = h.to(torch.float32)
        raise NonFiniteError(first_bad_message(x, ~torch.isfinite(x), "hidden states"))


_ALL_ROWS: dict = {}


def _all_rows(n: int, device) -> torch.Tensor:
    """arange(n) int32 on ``device``, made once (a launch saved per call)."""
    key = (n, str(device))
    if key not in _ALL_ROWS:
        _ALL_ROWS[key] = torch.arange(n, dtype=torch.int32, device=device)
    return _ALL_ROWS[key]


def _ones(n: int, device) -> torch.Tensor:
    """ones(n) int32 on ``device``, made once."""
    key = ("ones", n, str(device))
    if key not in _ALL_ROWS:
        _ALL_ROWS[key] = torch.ones(n, dtype=torch.int32, device=device)
    return _ALL_ROWS[key]


DIRECT_SLOTS = 32   # a bucketed level with at most this many slots gives each slot its own block


def direct_buckets(mat: torch.Tensor) -> Buckets:
    """One block per slot, in slot order (no bucketing launches): for levels with few slots (decode),
    where sorting by matrix costs more launches than re-reading a matrix's rows once per slot. A
    slot's logits do not depend on its block (exact integer products, HSER-7.4), so the bits are
    those of the bucketed path."""
    n = mat.numel()
    rows = _all_rows(n, mat.device)
    return Buckets(rows, rows, _ones(n, mat.device), mat)


def kernel_limbs(hidden_limbs: int, weight_limbs: int = 2) -> None:
    """The Triton kernels quantize into one or two int8 limbs per side (HSER-2.4); refuse anything else
    rather than compute wrong bits (three hidden limbs run on the exact torch path, ``router.route``)."""
    if hidden_limbs not in (1, 2) or weight_limbs not in (1, 2):
        raise ValueError(f"the Triton router kernels take 1 or 2 limbs per side, not {hidden_limbs} + {weight_limbs}; "
                         f"use backend='torch'")


def route_flat(h: torch.Tensor, rows, keys: torch.Tensor, k: int, hidden_limbs: int = 2,
               config: dict | None = None, check: bool = True) -> FlatResult:
    """One exact routing level: softmax and top-k of h (T, d) against every row of ``rows``.

    ``rows`` is a ``router.QuantizedRows`` (n, d); ``keys`` (n,) int32 ranks of the tie keys
    (``router.key_ranks``). This is HSER level 1 with every row a candidate
    (HSER-2, HSER-3, HSER-5, HSER-6), the whole router of a flat MoE. ``check=False`` skips the
    host-side test of the non-finite flag (for CUDA-graph capture; the caller must check).
    """
    kernel_limbs(hidden_limbs)
    n = rows.q.shape[0]
    z, _, _, _, bad = level_products(h, rows, _all_rows(n, h.device), hidden_limbs, False, config=config)
    probs, chosen, _, _, _ = softmax_topk(z, k, keys, n, n_fixed=n)
    if check:
        raise_if_nonfinite(h, bad)
    return FlatResult(probs, chosen)


def level_tables(router, cands: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Small device tables the kernels index (made once per TierSet and cached on the router, so a
    call copies nothing from the host and can be captured in a CUDA graph)."""
    cache = router._keys.setdefault("level_tables", {})
    if cands not in cache:
        cfg, dev = router.cfg, router.device
        groups = torch.tensor([t.groups for t in cfg.tiers], dtype=torch.int64, device=dev)
        e_per = torch.tensor([t.experts_per_group for t in cfg.tiers], dtype=torch.int64, device=dev)
        g_row0 = torch.tensor(router.group_offset, dtype=torch.int64, device=dev)
        tier_of_mat = torch.repeat_interleave(torch.arange(cfg.n_tiers, device=dev), groups)    # matrix -> tier
        e_row0 = torch.tensor(router.expert_offset, dtype=torch.int64, device=dev)[tier_of_mat] + \
            (torch.arange(tier_of_mat.numel(), device=dev) - g_row0[tier_of_mat]) * e_per[tier_of_mat]
        cache[cands] = {"cands": torch.tensor(cands, dtype=torch.int32, device=dev), "g_row0": g_row0,
                        "g_n": groups.to(torch.int32), "e_row0": e_row0, "e_n": e_per[tier_of_mat].to(torch.int32)}
        if is_flat(cfg, cands):                 # the rows of the one level-3 matrix (``flat_levels``)
            t = cands[0]
            cache[cands]["flat_rows"] = torch.arange(cfg.tiers[t].experts_per_group, dtype=torch.int32,
                                                     device=dev) + router.expert_offset[t]
    return cache[cands]


def is_flat(cfg, cands: tuple[int, ...]) -> bool:
    """One tier of one group, k_tier = k_group = 1: levels 1 and 2 have one candidate each and choose it."""
    rc = cfg.router
    return len(cands) == 1 and cfg.tiers[cands[0]].groups == 1 and rc.k_tier == 1 and rc.k_group == 1


def flat_levels(h: torch.Tensor, router, cands: tuple[int, ...], seed: int, config: dict | None = None):
    """``route_levels_triton`` for a flat configuration (``is_flat``): one fused launch of quantization
    and the level-3 products over the one matrix's rows (no limbs written, no bucketing), one epilogue.

    Levels 1 and 2 rank one candidate each: its logit minus the maximum is 0, canonical_exp(0) = 1,
    the tree sum is 1, so its probability is 1.0 exactly (HSER-6.6) and it is chosen (HSER-5); their
    outputs are written as constants."""
    kernel_limbs(router.cfg.router.hidden_limbs, router.cfg.router.weight_limbs)
    cfg, rc, dev = router.cfg, router.cfg.router, router.device
    T = h.shape[0]
    t = cands[0]
    E = cfg.tiers[t].experts_per_group
    tables = level_tables(router, cands)
    m = router.group_offset[t]                                                  # the level-3 matrix id
    z3, _, _, _, bad = level_products(h, router.expert, tables["flat_rows"], rc.hidden_limbs, False, config=config)
    keys = router.keys(seed).expert_rank[m, :E]
    expert_probs, chosen_experts, _, _, _ = softmax_topk(z3, rc.k_expert, keys, E, n_fixed=E)
    i32 = torch.int32
    return LevelOutputs(torch.ones((T, 1), dtype=torch.float32, device=dev),
                        torch.zeros((T, 1), dtype=torch.int64, device=dev),
                        torch.full((T, 1), t, dtype=i32, device=dev),
                        torch.ones((T, 1, 1), dtype=torch.float32, device=dev),
                        torch.zeros((T, 1, 1), dtype=i32, device=dev),
                        expert_probs.view(T, 1, 1, E), chosen_experts.view(T, 1, 1, rc.k_expert)), bad


def route_levels_triton(h: torch.Tensor, router, cands: tuple[int, ...], seed: int, configs: dict | None = None):
    """The three HSER levels with the Triton kernels: returns (``LevelOutputs``, bad (T,) int8).

    h (T, d) of an accepted float dtype (shape and type already checked) on the router's device.
    ``bad`` flags tokens with a non-finite value (HSER-1.3); the caller tests it once every kernel is
    queued (``raise_if_nonfinite``) and raises before returning anything (HSER-10.2). Nothing here
    waits for the device, so the whole call can be captured in a CUDA graph.
    """
    kernel_limbs(router.cfg.router.hidden_limbs, router.cfg.router.weight_limbs)
    configs = configs or {}
    bucket_cfg = {**BUCKET_CONFIG, **(configs.get("bucket") or {})}
    cfg, rc, dev = router.cfg, router.cfg.router, router.device
    T, d = h.shape
    k1, k2, k3 = rc.k_tier, rc.k_group, rc.k_expert
    keys = router.keys(seed)
    g_max = max(cfg.tiers[t].groups for t in cands)
    e_max = max(cfg.tiers[t].experts_per_group for t in cands)
    if max(len(cands), g_max, e_max) > MAX_CANDIDATES:
        raise ValueError(f"a level has more than {MAX_CANDIDATES} candidates; use backend='torch'")
    if is_flat(cfg, cands):
        return flat_levels(h, router, cands, seed, configs.get("level1"))
    tables = level_tables(router, cands)
    c = tables["cands"]
    g_row0, g_n, e_row0, e_n = tables["g_row0"], tables["g_n"], tables["e_row0"], tables["e_n"]
    n_tiers, n_mat3 = cfg.n_tiers, e_row0.numel()
    n2 = T * k1
    n3 = n2 * k2
    direct2, direct3 = n2 <= DIRECT_SLOTS, n3 <= DIRECT_SLOTS
    if direct2 and direct3:                     # the counts feed no plan: a scratch buffer, never read
        counts = tables.get("scratch")
        if counts is None:
            counts = tables["scratch"] = torch.zeros((n_tiers + n_mat3,), dtype=torch.int32, device=dev)
    else:
        counts = torch.zeros((n_tiers + n_mat3,), dtype=torch.int32, device=dev)    # slots per matrix, levels 2, 3
    counts2, counts3 = counts[:n_tiers], counts[n_tiers:]

    # Level 1 (HSER-7.1), fused with quantization: candidates are the TierSet's rows only. Its
    # epilogue names each slot's level-2 matrix (the chosen tier) and counts them.
    z1, qh, ql, sx, bad = level_products(h, router.tier, c, rc.hidden_limbs, True, config=configs.get("level1"))
    ranks1 = tables.get(("tier_rank", seed))
    if ranks1 is None:                          # the TierSet's level-1 key ranks, made once per seed
        ranks1 = tables[("tier_rank", seed)] = keys.tier_rank[c.long()].contiguous()
    tier_probs, tier_pos, chosen_tiers, mat2, pos2 = softmax_topk(
        z1, k1, ranks1, len(cands), n_fixed=len(cands), ids=c, counts=counts2)

    # Level 2 (HSER-7.2): slot (token, a) reads tier chosen_tiers[token, a]'s group matrix; its
    # epilogue names matrix (t, g) = group_offset[t] + g for level 3 and counts those.
    b2 = direct_buckets(mat2) if direct2 else plan_buckets(mat2, pos2, counts2, bucket_cfg["BLOCK_T"])
    z2 = bucket_products(qh, ql, sx, k1, b2, n2, router.group, g_row0, g_n, _pow2(g_max, 16), rc.hidden_limbs,
                         bucket_cfg)
    group_probs, chosen_groups, _, mat3, pos3 = softmax_topk(
        z2, k2, keys.group_rank, g_max, row_mat=mat2, mat_n=g_n, mat_row0=g_row0, counts=counts3)

    # Level 3 (HSER-7.3): slot (token, a, b) reads matrix mat3.
    b3 = direct_buckets(mat3) if direct3 else plan_buckets(mat3, pos3, counts3, bucket_cfg["BLOCK_T"])
    z3 = bucket_products(qh, ql, sx, k1 * k2, b3, n3, router.expert, e_row0, e_n, _pow2(e_max, 16), rc.hidden_limbs,
                         bucket_cfg)
    expert_probs, chosen_experts, _, _, _ = softmax_topk(z3, k3, keys.expert_rank, e_max, row_mat=mat3,
                                                         mat_n=e_n, mat_row0=e_row0)

    return LevelOutputs(tier_probs, tier_pos.long(), chosen_tiers, group_probs.view(T, k1, g_max),
                        chosen_groups.view(T, k1, k2), expert_probs.view(T, k1, k2, e_max),
                        chosen_experts.view(T, k1, k2, k3)), bad
