"""Fused Triton kernels for the exact HSER router (HSER-2 .. HSER-9) on CUDA.

Three kernels and some bucketing in between; every float operation is a correctly rounded IEEE
operation in the order of the spec, compiled with ``enable_fp_fusion=False`` (no FMA contraction,
checked by ``ptxas --fmad=false``), divisions with ``tl.div_rn`` (binary32) or ``/`` on binary64
(``div.rn.f64``), no library ``exp``, no ``tl.sqrt``:

``_quantize_level_kernel``  (one program per BLOCK_T tokens) pass 1 reads the hidden states for
    the absolute maximum (and flags non-finite values, HSER-1.3); pass 2 reads them again (from L2),
    quantizes them (HSER-2.3), splits them into int8 limbs (HSER-2.4), and accumulates exact
    ``tl.dot(int8, int8) -> int32`` products against a dense set of router rows, combined in int64
    (HSER-3.2); the epilogue scales the logits (HSER-3.3), computes the level's softmax with the
    canonical exp and tree sum (HSER-6) and its top-k under the spec's total order (HSER-5). It
    serves level 1 of HSER and the one-level router ``route_flat``; for HSER it also writes the
    int8 limbs of the hidden states, which levels 2 and 3 read.
``_bucket_level_kernel``  levels 2 and 3 read a different router matrix per token. Token-slots are
    bucketed by the matrix they need (sorted by matrix id, cut into blocks of BLOCK_T slots of one
    matrix, like ``moe_align_block_size`` for grouped-GEMM MoE): each program reads one matrix once
    and gathers the int8 limbs of its tokens, then runs the same epilogue.
``_assemble_kernel``  gates (HSER-8) and the active set in output order with padding (HSER-9).

Integer products are exact in any order and tile shape, so the result does not depend on the block
sizes, the batch or the bucket a token lands in (HSER-7.4): tests check it bit for bit against the
reference, on the CPU under ``TRITON_INTERPRET=1``, and on CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from lite_llm.spec.errors import NonFiniteError

from .router import MAX_CANDIDATES
from .validate import first_bad_message

# HSER-6.3 constants as the exact binary32 values (Python floats hold them exactly).
LOG2E = tl.constexpr(1.44269502162933349609375)           # 0x3FB8AA3B
LN2_HI = tl.constexpr(0.693359375)                        # 0x3F318000
LN2_LO = tl.constexpr(-2.12194440048187971115112e-4)      # 0xB95E8083
C7 = tl.constexpr(1.98412701138295233249664e-4)           # 0x39500D01
C6 = tl.constexpr(1.38888892251998186111450e-3)           # 0x3AB60B61
C5 = tl.constexpr(8.33333376795053482055664e-3)           # 0x3C088889
C4 = tl.constexpr(4.16666679084300994873047e-2)           # 0x3D2AAAAB
C3 = tl.constexpr(1.66666671633720397949219e-1)           # 0x3E2AAAAB
RINT_MAGIC = tl.constexpr(12582912.0)                     # 1.5 * 2**23
INT32_MAX = tl.constexpr((1 << 31) - 1)
# Default launch configurations: the largest tiles that compile for sm_90 without register spills
# (cuobjdump -res-usage); the benchmarks time a few others (``CONFIG_CHOICES``) on the GPU.
FLAT_CONFIG = dict(BLOCK_T=32, BLOCK_D=64, num_warps=8, num_stages=2)
BUCKET_CONFIG = dict(BLOCK_T=64, BLOCK_D=64, num_warps=8, num_stages=2)
CONFIG_CHOICES = {
    "flat": [dict(BLOCK_T=32, BLOCK_D=64, num_warps=8, num_stages=2), dict(BLOCK_T=32, BLOCK_D=32, num_warps=8, num_stages=3),
             dict(BLOCK_T=64, BLOCK_D=32, num_warps=8, num_stages=3), dict(BLOCK_T=16, BLOCK_D=128, num_warps=8, num_stages=2),
             dict(BLOCK_T=32, BLOCK_D=32, num_warps=4, num_stages=3)],
    "bucket": [dict(BLOCK_T=64, BLOCK_D=64, num_warps=8, num_stages=2), dict(BLOCK_T=64, BLOCK_D=32, num_warps=8, num_stages=3),
               dict(BLOCK_T=32, BLOCK_D=64, num_warps=8, num_stages=2)],
}


@triton.jit
def _rint(x):
    """round_half_even(x) for binary32 |x| < 2**22 (OVW-2.3): adding 1.5 * 2**23 rounds to an integer
    (round-to-nearest-even), subtracting it is exact. Needs enable_fp_fusion=False."""
    return (x + RINT_MAGIC) - RINT_MAGIC


@triton.jit
def _canonical_exp(t):
    """HSER-6.1 .. HSER-6.2 on binary32 t <= 0: one rounded operation per step, Horner without FMA."""
    flush = t < -87.0
    t = tl.where(flush, 0.0, t)
    n = _rint(t * LOG2E)
    r = (t - n * LN2_HI) - n * LN2_LO
    p = r * C7 + C6                                       # C7 * r: the first Horner step
    p = p * r + C5
    p = p * r + C4
    p = p * r + C3
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    pow2n = ((n.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)    # 2**n from its bits, exact
    return tl.where(flush, 0.0, p * pow2n)


@triton.jit
def _halve(v, B: tl.constexpr, W: tl.constexpr):
    """(B, W) -> (B, W/2): sums of adjacent pairs v[2i] + v[2i+1], one step of the tree sum."""
    a, b = tl.split(tl.reshape(v, (B, W // 2, 2)))
    return a + b


@triton.jit
def _tree_sum(v, B: tl.constexpr, W: tl.constexpr):
    """HSER-6.5 over the last axis of v (B, W), W a power of two <= 256; padding must hold -0.0."""
    if W >= 256:
        v = _halve(v, B, 256)
    if W >= 128:
        v = _halve(v, B, 128)
    if W >= 64:
        v = _halve(v, B, 64)
    if W >= 32:
        v = _halve(v, B, 32)
    if W >= 16:
        v = _halve(v, B, 16)
    if W >= 8:
        v = _halve(v, B, 8)
    if W >= 4:
        v = _halve(v, B, 4)
    if W >= 2:
        v = _halve(v, B, 2)
    return tl.reshape(v, (B,))


@triton.jit
def _quantize_tile(x, safe, LIMBS: tl.constexpr):
    """int8 limbs of Q for a tile x (B, D) binary32 with row absmax ``safe`` (1 where the row is 0)
    (HSER-2.3, HSER-2.4): y = (x / a) * 127, Q = rint(y * 128**(L-1)); hi = floor((Q + 64) / 128),
    lo = Q - 128 hi, so Q = 128 hi + lo with |hi| <= 127, -64 <= lo <= 63."""
    y = tl.div_rn(x, safe[:, None]) * 127.0
    if LIMBS == 2:
        q = _rint(y * 128.0).to(tl.int32)
        hi = (q + 64) >> 7
        lo = q - hi * 128
        return hi.to(tl.int8), lo.to(tl.int8)
    else:
        q = _rint(y).to(tl.int32)
        return q.to(tl.int8), q.to(tl.int8)


@triton.jit
def _accumulate(p2, p1, p0, xh, xl, wh, wl, LX: tl.constexpr, LW: tl.constexpr):
    """Exact int8 products of the limbs, int32 accumulators by weight 2**14, 2**7, 1 (HSER-3.2).
    x limbs (B, D), w limbs (D, N). |each accumulator| < 2**31 for d <= 2**17."""
    if LX == 2 and LW == 2:
        p2 = tl.dot(xh, wh, p2, out_dtype=tl.int32)
        p1 = tl.dot(xh, wl, p1, out_dtype=tl.int32)
        p1 = tl.dot(xl, wh, p1, out_dtype=tl.int32)
        p0 = tl.dot(xl, wl, p0, out_dtype=tl.int32)
    elif LX == 2:
        p1 = tl.dot(xh, wh, p1, out_dtype=tl.int32)
        p0 = tl.dot(xl, wh, p0, out_dtype=tl.int32)
    elif LW == 2:
        p1 = tl.dot(xh, wh, p1, out_dtype=tl.int32)
        p0 = tl.dot(xh, wl, p0, out_dtype=tl.int32)
    else:
        p0 = tl.dot(xh, wh, p0, out_dtype=tl.int32)
    return p2, p1, p0


@triton.jit
def _level_epilogue(p2, p1, p0, sx, sw, valid, keys, rows, row_mask, probs_ptr, probs_stride, n_out,
                    chosen_ptr, ids_ptr, ids_out_ptr, K: tl.constexpr, MAP_IDS: tl.constexpr,
                    BLOCK_T: tl.constexpr, N_PAD: tl.constexpr):
    """Logits, softmax and top-k of one level for BLOCK_T rows (HSER-3.3, HSER-5, HSER-6).

    p2, p1, p0 (B, N) int32 accumulators; sx (B,) and sw (N,) binary64 scales; valid (N,) marks the
    candidates; keys (N,) int32 ranks of the tie keys (``router.KeyTables``; distinct). Writes probabilities (+0.0 beyond the
    candidates) to probs[row, :n_out] and the chosen columns, best first, -1 after, to chosen[row, :K]
    (and, with MAP_IDS, ids[column] to ids_out[row, :K]).
    """
    acc = p2.to(tl.int64) * 16384 + p1.to(tl.int64) * 128 + p0.to(tl.int64)          # exact, < 2**53
    z = (acc.to(tl.float64) * sx[:, None]) * sw[None, :]                                # HSER-3.3 order
    valid2 = valid[None, :] & (rows >= 0)[:, None]                                      # (B, N)
    neg_inf = float("-inf")
    zm = tl.where(valid2, z, neg_inf)
    m = tl.max(zm, axis=1)                                                              # (B,) binary64
    d = z - m[:, None]
    small = (d < -87.0) | (valid2 == False)  # noqa: E712 (a tensor comparison)
    t = tl.where(small, 0.0, d).to(tl.float32)                                          # round to nearest
    e = tl.where(small, 0.0, _canonical_exp(t))
    e = tl.where(valid2, e, -0.0)                                                       # tree padding
    s = _tree_sum(e, BLOCK_T, N_PAD)                                                    # (B,)
    s = tl.where(s > 0.0, s, 1.0)                     # S >= 1 on every row with candidates (HSER-6.6)
    p = tl.where(valid2, tl.div_rn(e, s[:, None]), 0.0)
    cols = tl.arange(0, N_PAD)
    out_mask = row_mask[:, None] & (cols < n_out)[None, :]
    tl.store(probs_ptr + rows.to(tl.int64)[:, None] * probs_stride + cols[None, :], p, mask=out_mask)
    # HSER-5: K times, the largest logit left and, among its holders, the smallest key.
    live = valid2
    for i in tl.static_range(K):
        zl = tl.where(live, z, neg_inf)
        best = tl.max(zl, axis=1)
        tied = live & (zl == best[:, None])
        kmin = tl.min(tl.where(tied, keys[None, :], INT32_MAX), axis=1)                 # smallest key rank
        pick = tl.max(tl.where(tied & (keys[None, :] == kmin[:, None]), cols[None, :], -1), axis=1)   # (B,)
        tl.store(chosen_ptr + rows.to(tl.int64) * K + i, pick, mask=row_mask)
        if MAP_IDS:
            ident = tl.load(ids_ptr + tl.maximum(pick, 0), mask=row_mask, other=0)
            tl.store(ids_out_ptr + rows.to(tl.int64) * K + i, tl.where(pick >= 0, ident, -1), mask=row_mask)
        live = live & (cols[None, :] != pick[:, None])


@triton.jit
def _quantize_level_kernel(
        h_ptr, h_stride, T, d,                       # hidden states (T, d), any float dtype
        wh_ptr, wl_ptr, ws_ptr, row_ids_ptr, keys_ptr, n_cand,   # router rows (R, d) int8 limbs, scales
        probs_ptr, chosen_ptr, ids_out_ptr,          # (T, n_cand) f32, (T, K) i32 columns, (T, K) i32 row ids
        qh_ptr, ql_ptr, sx_ptr, bad_ptr,             # outputs: limbs (T, d) i8, scale (T,) f64, flag (T,) i8
        LX: tl.constexpr, LW: tl.constexpr, K: tl.constexpr, N_PAD: tl.constexpr,
        WRITE_Q: tl.constexpr, MAP_IDS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    toks = pid * BLOCK_T + tl.arange(0, BLOCK_T)                                          # (B,)
    tmask = toks < T
    rows = tl.where(tmask, toks, -1)
    offs_d = tl.arange(0, BLOCK_D)
    h_rows = h_ptr + toks.to(tl.int64)[:, None] * h_stride                                 # (B, 1)

    # Pass 1: absolute maximum (HSER-2.1) and the non-finite flag (HSER-1.3).
    amax = tl.zeros((BLOCK_T,), tl.float32)
    bad = tl.zeros((BLOCK_T,), tl.int32)
    for k0 in range(0, d, BLOCK_D):
        kk = k0 + offs_d
        m2 = tmask[:, None] & (kk < d)[None, :]
        x = tl.load(h_rows + kk[None, :], mask=m2, other=0.0).to(tl.float32)
        ax = tl.abs(x)
        amax = tl.maximum(amax, tl.max(ax, axis=1))
        bad = tl.maximum(bad, tl.max(tl.where(ax < float("inf"), 0, 1), axis=1))       # NaN and inf
    tl.store(bad_ptr + toks, bad.to(tl.int8), mask=tmask)
    safe = tl.where(amax == 0.0, 1.0, amax)
    if LX == 2:
        sx = amax.to(tl.float64) / 16256.0                                                   # HSER-2.5
    else:
        sx = amax.to(tl.float64) / 127.0
    tl.store(sx_ptr + toks, sx, mask=tmask)

    # Pass 2: quantize (HSER-2.3) and accumulate exact products against the candidates' rows.
    cols = tl.arange(0, N_PAD)
    valid = cols < n_cand
    wrow = tl.load(row_ids_ptr + cols, mask=valid, other=0).to(tl.int64)                  # (N,)
    p2 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
    p1 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
    p0 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
    for k0 in range(0, d, BLOCK_D):
        kk = k0 + offs_d
        dmask = kk < d
        m2 = tmask[:, None] & dmask[None, :]
        x = tl.load(h_rows + kk[None, :], mask=m2, other=0.0).to(tl.float32)
        xh, xl = _quantize_tile(x, safe, LX)
        if WRITE_Q:
            q_off = toks.to(tl.int64)[:, None] * d + kk[None, :]
            tl.store(qh_ptr + q_off, xh, mask=m2)
            if LX == 2:
                tl.store(ql_ptr + q_off, xl, mask=m2)
        w_off = wrow[None, :] * d + kk[:, None]                                            # (D, N)
        wm = dmask[:, None] & valid[None, :]
        wh = tl.load(wh_ptr + w_off, mask=wm, other=0)
        if LW == 2:
            wl = tl.load(wl_ptr + w_off, mask=wm, other=0)
        else:
            wl = wh
        p2, p1, p0 = _accumulate(p2, p1, p0, xh, xl, wh, wl, LX, LW)

    sw = tl.load(ws_ptr + wrow, mask=valid, other=1.0)
    keys = tl.load(keys_ptr + cols, mask=valid, other=0)
    _level_epilogue(p2, p1, p0, sx, sw, valid, keys, rows, tmask, probs_ptr, n_cand, n_cand,
                    chosen_ptr, row_ids_ptr, ids_out_ptr, K, MAP_IDS, BLOCK_T, N_PAD)


@triton.jit
def _bucket_level_kernel(
        qh_ptr, ql_ptr, sx_ptr, d, slots_per_token,     # token limbs (T, d) i8, scales (T,) f64
        order_ptr, blk_first_ptr, blk_count_ptr, blk_mat_ptr,   # slots sorted by matrix; blocks
        wh_ptr, wl_ptr, ws_ptr, mat_row0_ptr, mat_n_ptr, keys_ptr, keys_stride,  # matrices
        probs_ptr, probs_stride, chosen_ptr,            # (slots, n_out) f32, (slots, K) i32
        LX: tl.constexpr, LW: tl.constexpr, K: tl.constexpr, N_PAD: tl.constexpr,
        BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    mat = tl.load(blk_mat_ptr + pid)
    if mat >= 0:
        first = tl.load(blk_first_ptr + pid)
        count = tl.load(blk_count_ptr + pid)
        i = tl.arange(0, BLOCK_T)
        smask = i < count
        slots = tl.load(order_ptr + first + i, mask=smask, other=0).to(tl.int64)      # (B,)
        toks = slots // slots_per_token
        rows = tl.where(smask, slots, -1)
        sx = tl.load(sx_ptr + toks, mask=smask, other=1.0)
        row0 = tl.load(mat_row0_ptr + mat).to(tl.int64)
        n = tl.load(mat_n_ptr + mat)
        cols = tl.arange(0, N_PAD)
        valid = cols < n
        wrow = row0 + cols.to(tl.int64)                                                  # (N,)
        offs_d = tl.arange(0, BLOCK_D)
        p2 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
        p1 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
        p0 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
        for k0 in range(0, d, BLOCK_D):
            kk = k0 + offs_d
            dmask = kk < d
            x_off = toks[:, None] * d + kk[None, :]
            xm = smask[:, None] & dmask[None, :]
            xh = tl.load(qh_ptr + x_off, mask=xm, other=0)
            if LX == 2:
                xl = tl.load(ql_ptr + x_off, mask=xm, other=0)
            else:
                xl = xh
            w_off = wrow[None, :] * d + kk[:, None]                                        # (D, N)
            wm = dmask[:, None] & valid[None, :]
            wh = tl.load(wh_ptr + w_off, mask=wm, other=0)
            if LW == 2:
                wl = tl.load(wl_ptr + w_off, mask=wm, other=0)
            else:
                wl = wh
            p2, p1, p0 = _accumulate(p2, p1, p0, xh, xl, wh, wl, LX, LW)
        sw = tl.load(ws_ptr + wrow, mask=valid, other=1.0)
        keys = tl.load(keys_ptr + mat.to(tl.int64) * keys_stride + cols, mask=valid, other=0)
        _level_epilogue(p2, p1, p0, sx, sw, valid, keys, rows, smask, probs_ptr, probs_stride, probs_stride,
                        chosen_ptr, chosen_ptr, chosen_ptr, K, False, BLOCK_T, N_PAD)


@triton.jit
def _tree_sum3(v, B: tl.constexpr, S: tl.constexpr, BS: tl.constexpr, W: tl.constexpr):
    """HSER-6.5 over the last axis of v (B, S, W), W a power of two <= 256; BS = B * S."""
    return tl.reshape(_tree_sum(tl.reshape(v, (BS, W)), BS, W), (B, S))


@triton.jit
def _positive(s):
    """s where s > 0, else 1: a chosen set's sum is > 0 (its best member has p > 0); other lanes are masked."""
    return tl.where(s > 0.0, s, 1.0)


@triton.jit
def _assemble_kernel(T, tier_pos_ptr, tier_ids_ptr, tier_probs_ptr, n1,
                     groups_ptr, group_probs_ptr, g_out, experts_ptr, expert_probs_ptr, e_out,
                     out_tier_ptr, out_group_ptr, out_expert_ptr, out_gate_ptr, count_ptr,
                     K1: tl.constexpr, K2: tl.constexpr, K3: tl.constexpr, KK: tl.constexpr,
                     P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr, S: tl.constexpr, BS: tl.constexpr,
                     BLOCK_T: tl.constexpr):
    """Gates (HSER-8.1, HSER-8.2) and the compacted active set (HSER-9.1 .. HSER-9.3) per token.

    Slot s = (a, b, c) in nested rank order with padded strides (P1, P2, P3 = k's rounded up to
    powers of two); each level's renormalising sum is the tree over its k siblings, padded with -0.0.
    """
    pid = tl.program_id(0)
    toks = (pid * BLOCK_T + tl.arange(0, BLOCK_T)).to(tl.int64)
    tmask = toks < T
    s = tl.arange(0, S)
    a = s // (P2 * P3)
    b = (s // P3) % P2
    c = s % P3
    in_k = (a < K1) & (b < K2) & (c < K3)                                                 # (S,)
    tm = tmask[:, None] & in_k[None, :]                                                   # (B, S)
    t_ = toks[:, None]
    e_idx = tl.load(experts_ptr + t_ * (K1 * K2 * K3) + (a * K2 * K3 + b * K3 + c)[None, :], mask=tm, other=-1)
    valid = e_idx >= 0                                                                    # (B, S)
    g_idx = tl.load(groups_ptr + t_ * (K1 * K2) + (a * K2 + b)[None, :], mask=tm, other=-1)
    t_id = tl.load(tier_ids_ptr + t_ * K1 + a[None, :], mask=tm, other=-1)

    # Level 1: p of the slot's tier, and the tree over the k1 chosen tiers (siblings a' = 0 .. P1-1).
    a3 = tl.arange(0, P1)
    pos_s = tl.load(tier_pos_ptr + t_ * K1 + a[None, :], mask=tm, other=-1)
    p1 = tl.load(tier_probs_ptr + t_ * n1 + tl.maximum(pos_s, 0), mask=tm & (pos_s >= 0), other=0.0)
    m3 = tmask[:, None, None] & (a3 < K1)[None, None, :] & in_k[None, :, None]
    pos3 = tl.load(tier_pos_ptr + toks[:, None, None] * K1 + a3[None, None, :], mask=m3, other=-1)
    sib1 = tl.load(tier_probs_ptr + toks[:, None, None] * n1 + tl.maximum(pos3, 0), mask=m3 & (pos3 >= 0), other=0.0)
    sib1 = tl.where(pos3 >= 0, sib1, -0.0)
    r1 = tl.div_rn(p1, _positive(_tree_sum3(sib1, BLOCK_T, S, BS, P1)))

    # Level 2: p of the slot's group within its tier slot a, and the tree over siblings b'.
    b3 = tl.arange(0, P2)
    p2 = tl.load(group_probs_ptr + (t_ * K1 + a[None, :]) * g_out + tl.maximum(g_idx, 0), mask=tm & (g_idx >= 0),
                 other=0.0)
    m3 = tmask[:, None, None] & (b3 < K2)[None, None, :] & in_k[None, :, None]
    g3 = tl.load(groups_ptr + toks[:, None, None] * (K1 * K2) + (a * K2)[None, :, None] + b3[None, None, :],
                 mask=m3, other=-1)
    sib2 = tl.load(group_probs_ptr + (toks[:, None, None] * K1 + a[None, :, None]) * g_out + tl.maximum(g3, 0),
                   mask=m3 & (g3 >= 0), other=0.0)
    sib2 = tl.where(g3 >= 0, sib2, -0.0)
    r2 = tl.div_rn(p2, _positive(_tree_sum3(sib2, BLOCK_T, S, BS, P2)))

    # Level 3: p of the slot's expert within (a, b), and the tree over siblings c'.
    c3 = tl.arange(0, P3)
    ab = (t_ * K1 + a[None, :]) * K2 + b[None, :]                                          # (B, S)
    p3 = tl.load(expert_probs_ptr + ab * e_out + tl.maximum(e_idx, 0), mask=tm & valid, other=0.0)
    m3 = tmask[:, None, None] & (c3 < K3)[None, None, :] & in_k[None, :, None]
    e3 = tl.load(experts_ptr + ab[:, :, None] * K3 + c3[None, None, :], mask=m3, other=-1)
    sib3 = tl.load(expert_probs_ptr + ab[:, :, None] * e_out + tl.maximum(e3, 0), mask=m3 & (e3 >= 0), other=0.0)
    sib3 = tl.where(e3 >= 0, sib3, -0.0)
    r3 = tl.div_rn(p3, _positive(_tree_sum3(sib3, BLOCK_T, S, BS, P3)))

    gate = (r1 * r2) * r3                                                                 # HSER-8.2 order
    # HSER-9.2: valid slots first in nested rank order, then padding (-1, +0.0).
    dest = tl.cumsum(valid.to(tl.int32), axis=1) - 1
    out = t_ * KK + dest
    tl.store(out_tier_ptr + out, t_id, mask=valid)
    tl.store(out_group_ptr + out, g_idx, mask=valid)
    tl.store(out_expert_ptr + out, e_idx, mask=valid)
    tl.store(out_gate_ptr + out, gate, mask=valid)
    count = tl.sum(valid.to(tl.int32), axis=1)                                            # (B,)
    tl.store(count_ptr + toks, count, mask=tmask)
    pad = tmask[:, None] & (s[None, :] >= count[:, None]) & (s[None, :] < KK)
    tl.store(out_tier_ptr + t_ * KK + s[None, :], tl.full((BLOCK_T, S), -1, tl.int32), mask=pad)
    tl.store(out_group_ptr + t_ * KK + s[None, :], tl.full((BLOCK_T, S), -1, tl.int32), mask=pad)
    tl.store(out_expert_ptr + t_ * KK + s[None, :], tl.full((BLOCK_T, S), -1, tl.int32), mask=pad)
    tl.store(out_gate_ptr + t_ * KK + s[None, :], tl.zeros((BLOCK_T, S), tl.float32), mask=pad)


def _pow2(n: int, least: int = 1) -> int:
    return max(least, 1 << (max(n, 1) - 1).bit_length())


def _launch_options(cfg: dict) -> dict:
    return dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], enable_fp_fusion=False)


@dataclass(frozen=True)
class FlatResult:
    """One routing level over n candidates (``route_flat``)."""

    probs: torch.Tensor      # (T, n) float32: the level's softmax (HSER-6.6)
    chosen: torch.Tensor     # (T, k) int32: top-k candidates, best first, -1 padding (HSER-5.2)


def quantize_level(h: torch.Tensor, rows, row_ids: torch.Tensor, keys: torch.Tensor, k: int, hidden_limbs: int,
                   write_q: bool, ids: bool = False, config: dict | None = None):
    """Launch the fused quantize + level kernel. Returns (probs, chosen, ids_out, qh, ql, sx, bad)."""
    cfg = {**FLAT_CONFIG, **(config or {})}
    h = h if h.stride(-1) == 1 else h.contiguous()
    T, d = h.shape
    dev = h.device
    n = row_ids.numel()
    n_pad = _pow2(n, 16)
    if n_pad > MAX_CANDIDATES:
        raise ValueError(f"{n} candidates exceed the Triton kernels' {MAX_CANDIDATES}")
    probs = torch.empty((T, n), dtype=torch.float32, device=dev)
    chosen = torch.empty((T, k), dtype=torch.int32, device=dev)
    ids_out = torch.empty((T, k), dtype=torch.int32, device=dev) if ids else chosen
    qh = torch.empty((T, d) if write_q else (1,), dtype=torch.int8, device=dev)
    ql = torch.empty((T, d) if write_q and hidden_limbs == 2 else (1,), dtype=torch.int8, device=dev)
    sx = torch.empty((T,), dtype=torch.float64, device=dev)
    bad = torch.empty((T,), dtype=torch.int8, device=dev)
    wl = rows.limbs[1] if len(rows.limbs) == 2 else rows.limbs[0]
    if T:
        grid = (triton.cdiv(T, cfg["BLOCK_T"]),)
        _quantize_level_kernel[grid](
            h, h.stride(0), T, d, rows.limbs[0], wl, rows.scale, row_ids, keys, n,
            probs, chosen, ids_out, qh, ql, sx, bad,
            LX=hidden_limbs, LW=len(rows.limbs), K=k, N_PAD=n_pad, WRITE_Q=write_q, MAP_IDS=ids,
            BLOCK_T=cfg["BLOCK_T"], BLOCK_D=cfg["BLOCK_D"], **_launch_options(cfg))
    return probs, chosen, ids_out, qh, ql, sx, bad


def raise_if_nonfinite(h: torch.Tensor, bad: torch.Tensor) -> None:
    """HSER-1.3 after the kernels ran: if any token was flagged, name the first bad element."""
    if bad.numel() and bool(bad.any()):
        x = h.to(torch.float32)
        raise NonFiniteError(first_bad_message(x, ~torch.isfinite(x), "hidden states"))


def route_flat(h: torch.Tensor, rows, keys: torch.Tensor, k: int, hidden_limbs: int = 2,
               config: dict | None = None, check: bool = True) -> FlatResult:
    """One exact routing level: softmax and top-k of h (T, d) against every row of ``rows``.

    ``rows`` is a ``router.QuantizedRows`` (n, d); ``keys`` (n,) int32 ranks of the tie keys
    (``router.key_ranks``). This is HSER level 1 with every row a candidate
    (HSER-2, HSER-3, HSER-5, HSER-6), the whole router of a flat MoE. ``check=False`` skips the
    host-side test of the non-finite flag (for CUDA-graph capture; the caller must check).
    """
    n = rows.q.shape[0]
    row_ids = torch.arange(n, dtype=torch.int32, device=h.device)
    probs, chosen, _, _, _, _, bad = quantize_level(h, rows, row_ids, keys, k, hidden_limbs, False, config=config)
    if check:
        raise_if_nonfinite(h, bad)
    return FlatResult(probs, chosen)


def bucket_blocks(mat: torch.Tensor, n_mat: int, block_t: int):
    """Sort slots by matrix id and cut them into blocks of at most block_t slots of one matrix.

    mat (n,) int64 matrix id per slot, -1 for none. Returns (order, first, count, block_mat):
    ``order`` the slots sorted by matrix, and per block the first position in ``order``, the number
    of slots and the matrix (-1 for unused blocks). The number of blocks is the bound
    n // block_t + n_mat, so nothing waits for the device. Order within a matrix does not matter:
    every slot's result depends only on its own token (HSER-7.4).
    """
    dev = mat.device
    key = torch.where(mat >= 0, mat, n_mat)
    order = torch.sort(key.to(torch.int32)).indices.to(torch.int32)                   # invalid slots last
    counts = torch.zeros(n_mat + 1, dtype=torch.int64, device=dev)
    counts.scatter_add_(0, key, torch.ones_like(key))
    counts = counts[:n_mat]
    nblk = (counts + block_t - 1) // block_t
    blk_end = torch.cumsum(nblk, 0)
    slot_start = torch.cumsum(counts, 0) - counts
    max_blocks = mat.numel() // block_t + n_mat
    b = torch.arange(max_blocks, dtype=torch.int64, device=dev)
    m = torch.searchsorted(blk_end, b, right=True)                                      # (max_blocks,)
    mc = m.clamp(max=n_mat - 1)
    within = b - (blk_end[mc] - nblk[mc])
    used = m < n_mat
    first = torch.where(used, slot_start[mc] + within * block_t, 0)
    count = torch.where(used, (counts[mc] - within * block_t).clamp(0, block_t), 0)
    block_mat = torch.where(used, mc, -1)
    return order, first.to(torch.int32), count.to(torch.int32), block_mat.to(torch.int32)


def bucket_level(qh, ql, sx, slots_per_token, mat, n_mat, rows, mat_row0, mat_n, keys, k, n_pad, n_out,
                 hidden_limbs, config: dict | None = None):
    """Run a bucketed level (2 or 3): every slot with a matrix gets probs (n_out wide) and chosen (k)."""
    cfg = {**BUCKET_CONFIG, **(config or {})}
    n_slots = mat.numel()
    dev = mat.device
    probs = torch.zeros((n_slots, n_out), dtype=torch.float32, device=dev)
    chosen = torch.full((n_slots, k), -1, dtype=torch.int32, device=dev)
    if n_slots == 0:
        return probs, chosen
    order, first, count, block_mat = bucket_blocks(mat, n_mat, cfg["BLOCK_T"])
    wl = rows.limbs[1] if len(rows.limbs) == 2 else rows.limbs[0]
    _bucket_level_kernel[(block_mat.numel(),)](
        qh, ql, sx, qh.shape[1], slots_per_token, order, first, count, block_mat,
        rows.limbs[0], wl, rows.scale, mat_row0, mat_n, keys, keys.stride(0),
        probs, n_out, chosen,
        LX=hidden_limbs, LW=len(rows.limbs), K=k, N_PAD=n_pad,
        BLOCK_T=cfg["BLOCK_T"], BLOCK_D=cfg["BLOCK_D"], **_launch_options(cfg))
    return probs, chosen


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
    return cache[cands]


def route_levels_triton(h: torch.Tensor, router, cands: tuple[int, ...], seed: int, configs: dict | None = None):
    """The three HSER levels with the Triton kernels: returns (``router.LevelOutputs``, bad (T,) int8).

    h (T, d) of an accepted float dtype (shape and type already checked) on the router's device.
    ``bad`` flags tokens with a non-finite value (HSER-1.3); the caller tests it once every kernel is
    queued (``raise_if_nonfinite``) and raises before returning anything (HSER-10.2).
    """
    from .router import LevelOutputs

    configs = configs or {}
    cfg, rc, dev = router.cfg, router.cfg.router, router.device
    T, d = h.shape
    k1, k2, k3 = rc.k_tier, rc.k_group, rc.k_expert
    keys = router.keys(seed)
    g_max = max(cfg.tiers[t].groups for t in cands)
    e_max = max(cfg.tiers[t].experts_per_group for t in cands)
    if max(len(cands), g_max, e_max) > MAX_CANDIDATES:
        raise ValueError(f"a level has more than {MAX_CANDIDATES} candidates; use backend='torch'")
    tables = level_tables(router, cands)
    c = tables["cands"]

    # Level 1 (HSER-7.1), fused with quantization: candidates are the TierSet's rows only.
    tier_probs, tier_pos, chosen_tiers, qh, ql, sx, bad = quantize_level(
        h, router.tier, c, keys.tier_rank[c.long()].contiguous(), k1, rc.hidden_limbs, True, ids=True,
        config=configs.get("level1"))

    # Level 2 (HSER-7.2): slot (token, a) needs tier chosen_tiers[token, a]'s group matrix.
    n_tiers = cfg.n_tiers
    g_row0, g_n = tables["g_row0"], tables["g_n"]
    group_probs, chosen_groups = bucket_level(
        qh, ql, sx, k1, chosen_tiers.reshape(-1).long(), n_tiers, router.group, g_row0, g_n, keys.group_rank, k2,
        _pow2(g_max, 16), g_max, rc.hidden_limbs, configs.get("bucket"))

    # Level 3 (HSER-7.3): slot (token, a, b) needs matrix (t, g), numbered group_offset[t] + g.
    tier3 = chosen_tiers.long()[:, :, None].expand(T, k1, k2).reshape(-1)
    grp3 = chosen_groups.long().reshape(-1)
    mat = torch.where(grp3 >= 0, g_row0[tier3.clamp(min=0)] + grp3, -1)
    expert_probs, chosen_experts = bucket_level(
        qh, ql, sx, k1 * k2, mat, tables["e_row0"].numel(), router.expert, tables["e_row0"], tables["e_n"],
        keys.expert_rank, k3, _pow2(e_max, 16), e_max, rc.hidden_limbs, configs.get("bucket"))

    return LevelOutputs(tier_probs, tier_pos.long(), chosen_tiers, group_probs.view(T, k1, g_max),
                        chosen_groups.view(T, k1, k2), expert_probs.view(T, k1, k2, e_max),
                        chosen_experts.view(T, k1, k2, k3)), bad


def assemble_triton(lv, cands: tuple[int, ...], block_t: int = 32):
    """Gates and the active set (HSER-8, HSER-9) with one kernel; returns ``router.RouteResult``."""
    from .router import RouteResult

    T, k1, k2, k3 = lv.chosen_experts.shape
    K = k1 * k2 * k3
    dev = lv.tier_probs.device
    tier = torch.empty((T, K), dtype=torch.int32, device=dev)
    group = torch.empty_like(tier)
    expert = torch.empty_like(tier)
    gate = torch.empty((T, K), dtype=torch.float32, device=dev)
    count = torch.empty((T,), dtype=torch.int32, device=dev)
    S = _pow2(k1) * _pow2(k2) * _pow2(k3)
    if T:
        tier_pos = lv.tier_pos.to(torch.int32).contiguous()
        _assemble_kernel[(triton.cdiv(T, block_t),)](
            T, tier_pos, lv.chosen_tiers.contiguous(), lv.tier_probs, lv.tier_probs.shape[1],
            lv.chosen_groups.contiguous(), lv.group_probs.contiguous(), lv.group_probs.shape[-1],
            lv.chosen_experts.contiguous(), lv.expert_probs.contiguous(), lv.expert_probs.shape[-1],
            tier, group, expert, gate, count,
            K1=k1, K2=k2, K3=k3, KK=K, P1=_pow2(k1), P2=_pow2(k2), P3=_pow2(k3), S=S, BS=block_t * S,
            BLOCK_T=block_t,
            num_warps=4, enable_fp_fusion=False)
    return RouteResult(tier=tier, group=group, expert=expert, gate=gate, count=count, tier_set=tuple(cands),
                       tier_probs=lv.tier_probs, chosen_tiers=lv.chosen_tiers, group_probs=lv.group_probs,
                       chosen_groups=lv.chosen_groups, expert_probs=lv.expert_probs)


def AOT_CASES():
    """(kernel, argument types, constexprs, options) of representative compilations, for the test that
    compiles every kernel for sm_90 without a GPU (tests/optimized/test_triton_compile.py)."""
    quant = {"h_ptr": "*bf16", "h_stride": "i32", "T": "i32", "d": "i32", "wh_ptr": "*i8", "wl_ptr": "*i8",
             "ws_ptr": "*fp64", "row_ids_ptr": "*i32", "keys_ptr": "*i32", "n_cand": "i32", "probs_ptr": "*fp32",
             "chosen_ptr": "*i32", "ids_out_ptr": "*i32", "qh_ptr": "*i8", "ql_ptr": "*i8", "sx_ptr": "*fp64",
             "bad_ptr": "*i8"}
    bucket = {"qh_ptr": "*i8", "ql_ptr": "*i8", "sx_ptr": "*fp64", "d": "i32", "slots_per_token": "i32",
              "order_ptr": "*i32", "blk_first_ptr": "*i32", "blk_count_ptr": "*i32", "blk_mat_ptr": "*i32",
              "wh_ptr": "*i8", "wl_ptr": "*i8", "ws_ptr": "*fp64", "mat_row0_ptr": "*i64", "mat_n_ptr": "*i32",
              "keys_ptr": "*i32", "keys_stride": "i32", "probs_ptr": "*fp32", "probs_stride": "i32",
              "chosen_ptr": "*i32"}
    assemble = {"T": "i32", "tier_pos_ptr": "*i32", "tier_ids_ptr": "*i32", "tier_probs_ptr": "*fp32", "n1": "i32",
                "groups_ptr": "*i32", "group_probs_ptr": "*fp32", "g_out": "i32", "experts_ptr": "*i32",
                "expert_probs_ptr": "*fp32", "e_out": "i32", "out_tier_ptr": "*i32", "out_group_ptr": "*i32",
                "out_expert_ptr": "*i32", "out_gate_ptr": "*fp32", "count_ptr": "*i32"}
    opts = {"num_warps": 8, "num_stages": 2}
    cases = []
    for lx, lw, k, n_pad, write_q, map_ids in ((2, 2, 2, 64, False, False), (2, 2, 1, 16, True, True),
                                               (1, 2, 3, 32, True, False), (2, 1, 2, 256, False, False)):
        cases.append((_quantize_level_kernel, quant, dict(LX=lx, LW=lw, K=k, N_PAD=n_pad, WRITE_Q=write_q,
                                                          MAP_IDS=map_ids, BLOCK_T=32, BLOCK_D=64), opts))
    for lx, lw, k, n_pad, bt in ((2, 2, 2, 64, 64), (2, 2, 2, 32, 64), (1, 1, 4, 128, 32)):
        cases.append((_bucket_level_kernel, bucket, dict(LX=lx, LW=lw, K=k, N_PAD=n_pad, BLOCK_T=bt, BLOCK_D=64),
                      opts))
    for k1, k2, k3 in ((1, 2, 2), (2, 3, 3), (1, 1, 1)):
        P = [_pow2(k) for k in (k1, k2, k3)]
        S = P[0] * P[1] * P[2]
        cases.append((_assemble_kernel, assemble, dict(K1=k1, K2=k2, K3=k3, KK=k1 * k2 * k3, P1=P[0], P2=P[1], P3=P[2],
                                                       S=S, BS=32 * S, BLOCK_T=32), opts))
    return cases
