"""Gates (HSER-8) and the active set in output order with padding (HSER-9): ``_assemble_kernel``."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..router_types import RouteResult
from .primitives import _pow2, _tree_sum


@triton.jit
def _spread(v, B: tl.constexpr, G: tl.constexpr, R: tl.constexpr):
    """(B, G) -> (B, G * R): each value repeated R times in a row."""
    return tl.reshape(tl.broadcast_to(v[:, :, None], (B, G, R)), (B, G * R))


@triton.jit
def _renormalise(p, chosen, B: tl.constexpr, G: tl.constexpr, P: tl.constexpr):
    """HSER-8.1 on (B, G * P): r = p / tree_sum(p over each run of P siblings); siblings not chosen
    enter the tree as -0.0. A chosen set's sum is > 0 (its best member has p > 0); other lanes are
    masked by the caller."""
    s = _tree_sum(tl.reshape(tl.where(chosen, p, -0.0), (B * G, P)), B * G, P)
    s = tl.reshape(s, (B, G))
    s = tl.where(s > 0.0, s, 1.0)
    return tl.div_rn(p, _spread(s, B, G, P))


@triton.jit
def _assemble_kernel(
        # Pointers (operand shapes) and strides
        tier_pos_ptr,               # (T, K1) i32: column in tier_probs of each chosen tier, -1 padding
        tier_ids_ptr,               # (T, K1) i32: chosen tier ids, -1 padding
        tier_probs_ptr, n1,         # (T, n1) f32: level-1 probabilities; n1 elements per row
        groups_ptr,                 # (T, K1, K2) i32: chosen groups, -1 padding
        group_probs_ptr, g_out,     # (T, K1, g_out) f32: level-2 probabilities; g_out elements per row
        experts_ptr,                # (T, K1, K2, K3) i32: chosen experts, -1 padding
        expert_probs_ptr, e_out,    # (T, K1, K2, e_out) f32: level-3 probabilities; e_out elements per row
        out_tier_ptr,               # out (T, KK) i32: tier of each active slot in output order, -1 padding
        out_group_ptr,              # out (T, KK) i32: group, -1 padding
        out_expert_ptr,             # out (T, KK) i32: expert, -1 padding
        out_gate_ptr,               # out (T, KK) f32: gate (HSER-8.2), +0.0 padding
        count_ptr,                  # out (T,) i32: active slots
        # Sizes
        T,
        # Meta-parameters
        K1: tl.constexpr, K2: tl.constexpr, K3: tl.constexpr,     # k of each level
        KK: tl.constexpr,                                         # K1 * K2 * K3
        P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr,     # the k's rounded up to powers of two
        BLOCK_T: tl.constexpr):
    """Gates (HSER-8.1, HSER-8.2) and the compacted active set (HSER-9.1 .. HSER-9.3) per token.

    Slot s = (a, b, c) in nested rank order with padded strides (P1, P2, P3 = k's rounded up to
    powers of two). Each level's ratios are computed once per chosen candidate, (B, P1), (B, P1 P2),
    (B, P1 P2 P3), and repeated over the slots below it, so no tensor is larger than (B, S).
    """
    S: tl.constexpr = P1 * P2 * P3
    Q: tl.constexpr = P1 * P2
    pid = tl.program_id(0)
    toks = (pid * BLOCK_T + tl.arange(0, BLOCK_T)).to(tl.int64)
    tmask = toks < T
    t_ = toks[:, None]

    # Level 1 over a (B, P1).
    a1 = tl.arange(0, P1)
    m1 = tmask[:, None] & (a1 < K1)[None, :]
    pos = tl.load(tier_pos_ptr + t_ * K1 + a1[None, :], mask=m1, other=-1)
    t_id = tl.load(tier_ids_ptr + t_ * K1 + a1[None, :], mask=m1, other=-1)
    p1 = tl.load(tier_probs_ptr + t_ * n1 + tl.maximum(pos, 0), mask=m1 & (pos >= 0), other=0.0)
    r1 = _renormalise(p1, pos >= 0, BLOCK_T, 1, P1)                                       # (B, P1)

    # Level 2 over (a, b) (B, P1 P2).
    q = tl.arange(0, Q)
    a2 = q // P2
    b2 = q % P2
    m2 = tmask[:, None] & ((a2 < K1) & (b2 < K2))[None, :]
    g_idx = tl.load(groups_ptr + t_ * (K1 * K2) + (a2 * K2 + b2)[None, :], mask=m2, other=-1)
    p2 = tl.load(group_probs_ptr + (t_ * K1 + a2[None, :]) * g_out + tl.maximum(g_idx, 0), mask=m2 & (g_idx >= 0),
                 other=0.0)
    r2 = _renormalise(p2, g_idx >= 0, BLOCK_T, P1, P2)                                    # (B, Q)

    # Level 3 over (a, b, c) (B, S).
    s = tl.arange(0, S)
    a = s // (P2 * P3)
    b = (s // P3) % P2
    c = s % P3
    in_k = (a < K1) & (b < K2) & (c < K3)
    tm = tmask[:, None] & in_k[None, :]
    e_idx = tl.load(experts_ptr + t_ * (K1 * K2 * K3) + (a * K2 * K3 + b * K3 + c)[None, :], mask=tm, other=-1)
    valid = e_idx >= 0                                                                    # (B, S)
    ab = (t_ * K1 + a[None, :]) * K2 + b[None, :]
    p3 = tl.load(expert_probs_ptr + ab * e_out + tl.maximum(e_idx, 0), mask=tm & valid, other=0.0)
    r3 = _renormalise(p3, valid, BLOCK_T, Q, P3)                                          # (B, S)

    gate = (_spread(r1, BLOCK_T, P1, P2 * P3) * _spread(r2, BLOCK_T, Q, P3)) * r3           # HSER-8.2 order
    tier_s = _spread(t_id, BLOCK_T, P1, P2 * P3)
    group_s = _spread(g_idx, BLOCK_T, Q, P3)
    # HSER-9.2: valid slots first in nested rank order, then padding (-1, +0.0).
    dest = tl.cumsum(valid.to(tl.int32), axis=1) - 1
    out = t_ * KK + dest
    tl.store(out_tier_ptr + out, tier_s, mask=valid)
    tl.store(out_group_ptr + out, group_s, mask=valid)
    tl.store(out_expert_ptr + out, e_idx, mask=valid)
    tl.store(out_gate_ptr + out, gate, mask=valid)
    count = tl.sum(valid.to(tl.int32), axis=1)                                            # (B,)
    tl.store(count_ptr + toks, count, mask=tmask)
    pad = tmask[:, None] & (s[None, :] >= count[:, None]) & (s[None, :] < KK)
    tl.store(out_tier_ptr + t_ * KK + s[None, :], tl.full((BLOCK_T, S), -1, tl.int32), mask=pad)
    tl.store(out_group_ptr + t_ * KK + s[None, :], tl.full((BLOCK_T, S), -1, tl.int32), mask=pad)
    tl.store(out_expert_ptr + t_ * KK + s[None, :], tl.full((BLOCK_T, S), -1, tl.int32), mask=pad)
    tl.store(out_gate_ptr + t_ * KK + s[None, :], tl.zeros((BLOCK_T, S), tl.float32), mask=pad)


def assemble_block(k1: int, k2: int, k3: int) -> int:
    """Tokens per program of the assembly kernel: the slot tile (B, S) stays near 1024 elements."""
    S = _pow2(k1) * _pow2(k2) * _pow2(k3)
    return max(2, min(128, 1024 // S))


def assemble_triton(lv, cands: tuple[int, ...], block_t: int | None = None):
    """Gates and the active set (HSER-8, HSER-9) with one kernel; returns ``RouteResult``."""
    T, k1, k2, k3 = lv.chosen_experts.shape
    K = k1 * k2 * k3
    dev = lv.tier_probs.device
    tier = torch.empty((T, K), dtype=torch.int32, device=dev)
    group = torch.empty_like(tier)
    expert = torch.empty_like(tier)
    gate = torch.empty((T, K), dtype=torch.float32, device=dev)
    count = torch.empty((T,), dtype=torch.int32, device=dev)
    block_t = block_t or assemble_block(k1, k2, k3)
    if T:
        tier_pos = lv.tier_pos.to(torch.int32).contiguous()
        _assemble_kernel[(triton.cdiv(T, block_t),)](
            tier_pos, lv.chosen_tiers.contiguous(), lv.tier_probs, lv.tier_probs.shape[1],
            lv.chosen_groups.contiguous(), lv.group_probs.contiguous(), lv.group_probs.shape[-1],
            lv.chosen_experts.contiguous(), lv.expert_probs.contiguous(), lv.expert_probs.shape[-1],
            tier, group, expert, gate, count, T,
            K1=k1, K2=k2, K3=k3, KK=K, P1=_pow2(k1), P2=_pow2(k2), P3=_pow2(k3), BLOCK_T=block_t,
            num_warps=4, enable_fp_fusion=False)
    return RouteResult(tier=tier, group=group, expert=expert, gate=gate, count=count, tier_set=tuple(cands),
                       tier_probs=lv.tier_probs, chosen_tiers=lv.chosen_tiers, group_probs=lv.group_probs,
                       chosen_groups=lv.chosen_groups, expert_probs=lv.expert_probs)
