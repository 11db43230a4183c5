"""The epilogue of a routing level: canonical softmax (HSER-6) and top-k (HSER-5) per row of logits.

``_softmax_topk_kernel``  per row of logits: the level's canonical softmax (HSER-6) and top-k under
    the spec's total order (HSER-5); for HSER it also names each chosen candidate's next-level matrix
    and counts the slots per matrix (``tl.atomic_add``; the order of slots inside a bucket does not
    change any bit, HSER-7.4).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .primitives import INT32_MAX, _canonical_exp, _tree_sum

EPILOGUE_ELEMENTS = 1024        # rows x padded candidates per program of the softmax/top-k kernel


@triton.jit
def _softmax_topk_kernel(
        # Pointers (operand shapes) and strides
        z_ptr,                  # (n_rows, N_PAD) f64: logits
        row_mat_ptr,            # (n_rows,) i32 when BUCKETED: each row's matrix, -1 none
        mat_n_ptr,              # (n_mat,) i32 when BUCKETED: candidates of each matrix
        mat_row0_ptr,           # (n_mat,) i64 when BUCKETED: first row (next-level matrix id) of each matrix
        keys_ptr, keys_stride,  # (n_mat, keys_stride) i32 tie-key ranks when BUCKETED, else (n_fixed,)
        probs_ptr, probs_stride,    # out (n_rows, probs_stride) f32: probabilities (probs_stride <= N_PAD)
        chosen_ptr,             # out (n_rows, K) i32: chosen columns, best first, -1 padding
        ids_ptr,                # (N_PAD,) i32 when MAP_IDS: column -> id
        ids_out_ptr,            # out (n_rows, K) i32 when MAP_IDS: the chosen ids
        next_mat_ptr,           # out (n_rows * K,) i32 when NEXT: next level's matrix of each choice
        counts_ptr,             # (n_next_mat,) i32 when NEXT: slots per next-level matrix, incremented
        pos_ptr,                # out (n_rows * K,) i32 when NEXT: each choice's place in its matrix
        # Sizes
        n_rows, n_fixed,        # n_fixed: candidates per row when not BUCKETED
        # Meta-parameters
        K: tl.constexpr, N_PAD: tl.constexpr, BUCKETED: tl.constexpr, MAP_IDS: tl.constexpr,
        NEXT: tl.constexpr, BLOCK_R: tl.constexpr):
    """Softmax and top-k of one level for BLOCK_R rows of logits z (rows, N_PAD) (HSER-5, HSER-6).

    A row's candidates: its first n columns, n = ``n_fixed`` or, BUCKETED, ``mat_n[row_mat[row]]``
    (row_mat -1: a slot without a matrix, all +0.0 and -1). Keys: int32 ranks of the tie keys
    (``router.KeyTables``; distinct) at ``keys_ptr + mat * keys_stride``. Writes probabilities (+0.0
    beyond the candidates) to probs[row, :probs_stride], the chosen columns, best first, -1 after, to
    chosen[row, :K] (MAP_IDS: also ids[column] to ids_out[row, :K]). NEXT: the next level's matrix of
    each chosen candidate, ``ids[column]`` (MAP_IDS) or ``mat_row0[mat] + column``, to
    next_mat[row * K + i], and its position among that matrix's slots (an atomic count) to pos.
    """
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = r < n_rows
    r64 = r.to(tl.int64)
    cols = tl.arange(0, N_PAD)
    if BUCKETED:
        mat = tl.load(row_mat_ptr + r, mask=rmask, other=-1)
        live_row = mat >= 0
        m64 = tl.maximum(mat, 0).to(tl.int64)
        n = tl.load(mat_n_ptr + m64, mask=live_row, other=0)
        valid2 = live_row[:, None] & (cols[None, :] < n[:, None])                          # (B, N)
        keys = tl.load(keys_ptr + m64[:, None] * keys_stride + cols[None, :], mask=valid2, other=0)
        base = tl.load(mat_row0_ptr + m64, mask=live_row, other=0).to(tl.int32)
    else:
        valid2 = rmask[:, None] & (cols < n_fixed)[None, :]
        keys = tl.broadcast_to(tl.load(keys_ptr + cols, mask=cols < n_fixed, other=0)[None, :], (BLOCK_R, N_PAD))
        base = tl.zeros((BLOCK_R,), tl.int32)
    z = tl.load(z_ptr + r64[:, None] * N_PAD + cols[None, :], mask=valid2, other=0.0)   # (B, N) binary64

    # HSER-6.6: m, d = z - m (binary64), e = canonical exp, S = tree sum, p = e / S (binary32).
    neg_inf = float("-inf")
    m = tl.max(tl.where(valid2, z, neg_inf), axis=1)
    dz = z - m[:, None]
    small = (dz < -87.0) | (valid2 == False)  # noqa: E712 (a tensor comparison)
    t = tl.where(small, 0.0, dz).to(tl.float32)                                          # round to nearest
    e = tl.where(small, 0.0, _canonical_exp(t))
    e = tl.where(valid2, e, -0.0)                                                        # tree padding
    s = _tree_sum(e, BLOCK_R, N_PAD)
    s = tl.where(s > 0.0, s, 1.0)                     # S >= 1 on every row with candidates (HSER-6.6)
    p = tl.where(valid2, tl.div_rn(e, s[:, None]), 0.0)
    tl.store(probs_ptr + r64[:, None] * probs_stride + cols[None, :], p,
             mask=rmask[:, None] & (cols < probs_stride)[None, :])

    # HSER-5: K times, the largest logit left and, among its holders, the smallest key.
    live = valid2
    for i in tl.static_range(K):
        zl = tl.where(live, z, neg_inf)
        best = tl.max(zl, axis=1)
        tied = live & (zl == best[:, None])
        kmin = tl.min(tl.where(tied, keys, INT32_MAX), axis=1)                            # smallest key rank
        pick = tl.max(tl.where(tied & (keys == kmin[:, None]), cols[None, :], -1), axis=1)   # (B,)
        tl.store(chosen_ptr + r64 * K + i, pick, mask=rmask)
        nxt = base + pick
        if MAP_IDS:
            ident = tl.load(ids_ptr + tl.maximum(pick, 0), mask=rmask, other=0)
            ident = tl.where(pick >= 0, ident, -1)
            tl.store(ids_out_ptr + r64 * K + i, ident, mask=rmask)
            nxt = ident
        if NEXT:
            nxt = tl.where(pick >= 0, nxt, -1)
            tl.store(next_mat_ptr + r64 * K + i, nxt, mask=rmask)
            has = rmask & (nxt >= 0)
            at = tl.atomic_add(counts_ptr + tl.maximum(nxt, 0), 1, mask=has, sem="relaxed")
            tl.store(pos_ptr + r64 * K + i, at, mask=has)
        live = live & (cols[None, :] != pick[:, None])


def softmax_topk(z: torch.Tensor, k: int, keys: torch.Tensor, n_out: int, *, n_fixed: int = 0, row_mat=None,
                 mat_n=None, mat_row0=None, ids=None, counts=None):
    """The epilogue kernel over the rows of z (rows, N_PAD) f64. Returns (probs (rows, n_out) f32,
    chosen (rows, k) i32, ids_out (rows, k) i32 or None, next_mat (rows * k,) i32 or None, pos or None).

    Level 1 / flat: ``n_fixed`` candidates, keys (n,) ranks; ``ids`` maps columns to ids. Bucketed:
    ``row_mat`` (rows,) matrix per row, ``mat_n``, ``mat_row0`` per matrix, keys (n_mat, stride) ranks.
    ``counts`` (n_next_mat,) int32 zeros: count the next level's slots per matrix (NEXT)."""
    rows, n_pad = z.shape
    dev = z.device
    probs = torch.empty((rows, n_out), dtype=torch.float32, device=dev)
    chosen = torch.empty((rows, k), dtype=torch.int32, device=dev)
    ids_out = torch.empty((rows, k), dtype=torch.int32, device=dev) if ids is not None else None
    nxt = counts is not None
    next_mat = ids_out if (nxt and ids is not None) else (
        torch.empty((rows * k,), dtype=torch.int32, device=dev) if nxt else None)
    pos = torch.empty((rows * k,), dtype=torch.int32, device=dev) if nxt else None
    if rows:
        block_r = max(1, min(128, EPILOGUE_ELEMENTS // n_pad))
        dummy = chosen
        _softmax_topk_kernel[(triton.cdiv(rows, block_r),)](
            z, row_mat if row_mat is not None else dummy, mat_n if mat_n is not None else dummy,
            mat_row0 if mat_row0 is not None else dummy, keys, keys.stride(0) if keys.dim() == 2 else 0,
            probs, n_out, chosen, ids if ids is not None else dummy, ids_out if ids_out is not None else dummy,
            next_mat if nxt else dummy, counts if nxt else dummy, pos if nxt else dummy, rows, n_fixed,
            K=k, N_PAD=n_pad, BUCKETED=row_mat is not None, MAP_IDS=ids is not None, NEXT=nxt, BLOCK_R=block_r,
            num_warps=4, enable_fp_fusion=False)
    return probs, chosen, ids_out, (next_mat.view(-1) if nxt else None), pos
