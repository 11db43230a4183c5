"""Slots bucketed by the matrix they read, on the device (no torch sort, no host sync).

``_plan_kernel``, ``_scatter_kernel``  bucket counts -> (first, count, matrix) per block and the
    slots sorted by matrix; ``_count_kernel`` counts them where no epilogue did (the MoE experts).
The order of slots inside a bucket may change from run to run and changes no bit (HSER-7.4): every
slot's result depends only on its own token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl


@dataclass(frozen=True)
class Buckets:
    """Slots of a level bucketed by the matrix they read, made on the device (``plan_buckets``)."""

    order: torch.Tensor      # (n_slots,) int32: slots sorted by matrix (slots without one are not listed)
    first: torch.Tensor      # (max_blocks,) int32: each block's first position in ``order``
    count: torch.Tensor      # (max_blocks,) int32: slots in the block (<= BLOCK_T)
    mat: torch.Tensor        # (max_blocks,) int32: the block's matrix, -1 for unused blocks


@triton.jit
def _plan_kernel(
        # Pointers (operand shapes)
        counts_ptr,             # (n_mat,) i32: slots per matrix
        starts_ptr,             # out (n_mat,) i32: each matrix's first position in the sorted order
        blk_first_ptr,          # out (max_blocks,) i32: each block's first position
        blk_count_ptr,          # out (max_blocks,) i32: slots in the block
        blk_mat_ptr,            # out (max_blocks,) i32: the block's matrix, -1 after the last block
        # Sizes
        n_mat, max_blocks,
        # Meta-parameters
        BLOCK_T: tl.constexpr,  # slots per block at most
        CHUNK: tl.constexpr,    # matrices per step
        JV: tl.constexpr):      # blocks of every matrix per inner step
    """One program: slot counts per matrix -> each matrix's first position in the sorted order, and per
    block (at most BLOCK_T slots of one matrix) its first position, slot count and matrix; blocks after
    the last get matrix -1."""
    slot_carry = 0
    blk_carry = 0
    for m0 in range(0, n_mat, CHUNK):
        m = m0 + tl.arange(0, CHUNK)
        mm = m < n_mat
        c = tl.load(counts_ptr + m, mask=mm, other=0)
        nb = (c + BLOCK_T - 1) // BLOCK_T
        start = slot_carry + tl.cumsum(c, 0) - c
        bstart = blk_carry + tl.cumsum(nb, 0) - nb
        tl.store(starts_ptr + m, start, mask=mm)
        for j0 in range(0, tl.max(nb, 0), JV):                     # JV blocks of every matrix per step
            j = j0 + tl.arange(0, JV)
            sel = mm[:, None] & (j[None, :] < nb[:, None])                                  # (CHUNK, JV)
            b = bstart[:, None] + j[None, :]
            tl.store(blk_mat_ptr + b, tl.broadcast_to(m[:, None], (CHUNK, JV)), mask=sel)
            tl.store(blk_first_ptr + b, start[:, None] + j[None, :] * BLOCK_T, mask=sel)
            tl.store(blk_count_ptr + b, tl.minimum(c[:, None] - j[None, :] * BLOCK_T, BLOCK_T), mask=sel)
        slot_carry += tl.sum(c, 0)
        blk_carry += tl.sum(nb, 0)
    for b0 in range(0, max_blocks, CHUNK):
        b = b0 + tl.arange(0, CHUNK)
        tl.store(blk_mat_ptr + b, tl.full((CHUNK,), -1, tl.int32), mask=(b >= blk_carry) & (b < max_blocks))


@triton.jit
def _count_kernel(
        # Pointers (operand shapes)
        mat_ptr,                # (n_slots,) i32: each slot's matrix, -1 none
        counts_ptr,             # (n_mat,) i32 zeros: incremented to the slots per matrix
        pos_ptr,                # out (n_slots,) i32: each slot's place among its matrix's slots
        # Sizes
        n_slots,
        # Meta-parameters
        BLOCK: tl.constexpr):
    """pos[s] = the number of slots of matrix mat[s] counted before it (an atomic count); counts[m] ends
    as the number of slots of matrix m. Which slot gets which place may change from run to run."""
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = tl.load(mat_ptr + s, mask=s < n_slots, other=-1)
    ok = m >= 0
    at = tl.atomic_add(counts_ptr + tl.maximum(m, 0), 1, mask=ok, sem="relaxed")
    tl.store(pos_ptr + s, at, mask=ok)


@triton.jit
def _scatter_kernel(
        # Pointers (operand shapes)
        mat_ptr,                # (n_slots,) i32: each slot's matrix, -1 none
        pos_ptr,                # (n_slots,) i32: each slot's place among its matrix's slots
        starts_ptr,             # (n_mat,) i32: each matrix's first position (``_plan_kernel``)
        order_ptr,              # out (n_slots,) i32: slots sorted by matrix
        # Sizes
        n_slots,
        # Meta-parameters
        BLOCK: tl.constexpr):
    """order[starts[mat[s]] + pos[s]] = s for every slot with a matrix."""
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = tl.load(mat_ptr + s, mask=s < n_slots, other=-1)
    ok = m >= 0
    at = tl.load(starts_ptr + tl.maximum(m, 0), mask=ok, other=0) + tl.load(pos_ptr + s, mask=ok, other=0)
    tl.store(order_ptr + at, s, mask=ok)


def plan_buckets(mat: torch.Tensor, pos: torch.Tensor, counts: torch.Tensor, block_t: int) -> Buckets:
    """Slots -> blocks of at most block_t slots of one matrix, on the device (no host sync).

    mat (n,) int32 matrix per slot (-1: none); pos (n,) each slot's place among its matrix's slots
    (distinct, 0 .. counts[m] - 1); counts (n_mat,) int32. The number of blocks is the bound
    n // block_t + n_mat. Order within a matrix does not matter: every slot's result depends only
    on its own token (HSER-7.4)."""
    n, n_mat = mat.numel(), counts.numel()
    dev = mat.device
    max_blocks = n // block_t + n_mat
    order = torch.empty((max(n, 1),), dtype=torch.int32, device=dev)
    starts = torch.empty((max(n_mat, 1),), dtype=torch.int32, device=dev)
    first = torch.empty((max_blocks,), dtype=torch.int32, device=dev)
    count = torch.empty_like(first)
    block_mat = torch.empty_like(first)
    _plan_kernel[(1,)](counts, starts, first, count, block_mat, n_mat, max_blocks, BLOCK_T=block_t, CHUNK=256,
                       JV=16, num_warps=4)
    if n:
        _scatter_kernel[(triton.cdiv(n, 1024),)](mat, pos, starts, order, n, BLOCK=1024, num_warps=4)
    return Buckets(order, first, count, block_mat)


def bucket_by_matrix(mat: torch.Tensor, n_mat: int, block_t: int) -> Buckets:
    """Slots -> blocks of at most block_t slots of one matrix (``plan_buckets``) for mat (n,) int32,
    the matrix of each slot or -1, counting the slots on the device (``_count_kernel``)."""
    n = mat.numel()
    counts = torch.zeros((max(n_mat, 1),), dtype=torch.int32, device=mat.device)
    pos = torch.empty((max(n, 1),), dtype=torch.int32, device=mat.device)
    if n:
        _count_kernel[(triton.cdiv(n, 1024),)](mat, counts, pos, n, BLOCK=1024, num_warps=4)
    return plan_buckets(mat, pos, counts[:n_mat], block_t)
