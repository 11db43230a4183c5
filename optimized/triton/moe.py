"""Triton kernels of the MoE block on CUDA: grouped GEMMs for the SwiGLU experts and the exact combine.

Token-slots are sorted by expert and cut into blocks of BLOCK_M slots of one expert, on the device
(``bucketing.bucket_by_matrix``, as ``moe_align_block_size`` does for vLLM's fused MoE; the order
of slots inside an expert may change between runs and changes no bit: every row of a tile is
computed alone). Both GEMMs
run on a one-dimensional grid in grouped order: GROUP_M consecutive slot blocks sweep every column
tile before the next group starts, so a block's gathered rows and an expert's weight tiles are read
from HBM about once and re-read from L2 (a (blocks, tiles) grid re-reads every block's rows from
HBM once per column tile):

``_gate_up_kernel``  per (block, BLOCK_N columns of d_ff): gathers the block's token rows, multiplies
    by the expert's W_gate and W_up (two accumulators, fp32) and writes silu(gate) * up (MODEL-3.2).
``_down_kernel``     per (block, BLOCK_N columns of d): multiplies by W_down and writes each slot's
    expert output y to its own row (slot order), so no two programs write one element.
``_combine_kernel``  per token: c_k = gate_k * y_k for the active slots, -0.0 for padding, and the
    canonical tree over the K slots (MODEL-3.3), compiled without FMA contraction: exact given y.

The experts are floating point (MODEL-4.2); their tile shapes are fixed whatever the batch, with
no split over the reduction, so a token's expert output does not depend on the other tokens
(MODEL-3.5). binary32 inputs use ``input_precision="ieee"`` (no TF32, MODEL-4.3); bfloat16 inputs
(benchmarks) use the tensor cores with fp32 accumulation.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .bucketing import bucket_by_matrix
from .primitives import _pow2, _tree_sum

DOWN_WIDE = dict(BLOCK_N=256, BLOCK_K=64, GROUP_M=16, num_warps=8, num_stages=3)    # a (128 x 256) down tile
GEMM_CONFIG = {   # per input dtype: tile shape and launch options (measured on an H100, benchmarks/README.md;
    # the benchmarks time the others); "down": the down GEMM's own column tiles (the gate/up kernel
    # holds two accumulators, gate and up)
    torch.float32: dict(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, GROUP_M=8, num_warps=4, num_stages=2),
    torch.bfloat16: dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=16, num_warps=8, num_stages=3, down=DOWN_WIDE),
}
GEMM_CHOICES = [dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=16, num_warps=8, num_stages=3, down=DOWN_WIDE),
                dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3,
                     down=dict(DOWN_WIDE, GROUP_M=8)),
                dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=8, num_warps=8, num_stages=3),
                dict(BLOCK_M=128, BLOCK_N=128, BLOCK_K=64, GROUP_M=4, num_warps=8, num_stages=4,
                     down=dict(DOWN_WIDE, GROUP_M=4))]


@triton.jit
def _grouped_pid(n_blocks, n_cols, GROUP_M: tl.constexpr):
    """(block, column tile) of this program: GROUP_M blocks sweep all column tiles, block fastest."""
    pid = tl.program_id(0)
    per_group = GROUP_M * n_cols
    first = (pid // per_group) * GROUP_M
    size = tl.minimum(n_blocks - first, GROUP_M)
    return first + (pid % per_group) % size, (pid % per_group) // size


@triton.jit
def _gate_up_kernel(
        # Pointers (operand shapes); rows are contiguous
        x_ptr,                  # (N, d): token rows
        wg_ptr, wu_ptr,         # (n_experts, f, d) each: W_gate, W_up
        h_ptr,                  # out (n_slots, f): silu(gate) * up, rows in sorted-slot order
        order_ptr,              # (n_slots,) i32: slots sorted by expert (``Buckets.order``)
        blk_first_ptr,          # (n_blocks,) i32: each block's first position in order
        blk_count_ptr,          # (n_blocks,) i32: slots in the block (<= BLOCK_M)
        blk_mat_ptr,            # (n_blocks,) i32: the block's expert, -1 for unused blocks
        # Sizes
        d, f,                   # model width, expert hidden width (d_ff)
        slots_per_token,        # slot s belongs to token s // slots_per_token
        n_blocks,
        # Meta-parameters
        IEEE: tl.constexpr,     # binary32 inputs: input_precision="ieee" (no TF32)
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        GROUP_M: tl.constexpr):
    """h[p, n] = silu(x_tok . W_gate[e, n]) * (x_tok . W_up[e, n]) for the slots p of one expert block."""
    pid_m, pid_n = _grouped_pid(n_blocks, tl.cdiv(f, BLOCK_N), GROUP_M)
    e = tl.load(blk_mat_ptr + pid_m)
    if e >= 0:
        first = tl.load(blk_first_ptr + pid_m)
        count = tl.load(blk_count_ptr + pid_m)
        i = tl.arange(0, BLOCK_M)
        mmask = i < count
        slot = tl.load(order_ptr + first + i, mask=mmask, other=0).to(tl.int64)
        tok = slot // slots_per_token
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = cols < f
        kk = tl.arange(0, BLOCK_K)
        w_base = e.to(tl.int64) * f * d
        acc_g = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
        acc_u = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
        for k0 in range(0, d, BLOCK_K):
            k = k0 + kk
            kmask = k < d
            a = tl.load(x_ptr + tok[:, None] * d + k[None, :], mask=mmask[:, None] & kmask[None, :], other=0.0)
            w_off = w_base + cols[None, :].to(tl.int64) * d + k[:, None]                       # (K, N)
            wm = kmask[:, None] & nmask[None, :]
            wg = tl.load(wg_ptr + w_off, mask=wm, other=0.0)
            wu = tl.load(wu_ptr + w_off, mask=wm, other=0.0)
            if IEEE:
                acc_g = tl.dot(a, wg, acc_g, input_precision="ieee")
                acc_u = tl.dot(a, wu, acc_u, input_precision="ieee")
            else:
                acc_g = tl.dot(a, wg, acc_g)
                acc_u = tl.dot(a, wu, acc_u)
        hid = acc_g / (1.0 + tl.exp(-acc_g)) * acc_u                                          # silu(g) * u
        p = (first + i).to(tl.int64)
        tl.store(h_ptr + p[:, None] * f + cols[None, :], hid.to(h_ptr.dtype.element_ty),
                 mask=mmask[:, None] & nmask[None, :])


@triton.jit
def _down_kernel(
        # Pointers (operand shapes); rows are contiguous
        h_ptr,                  # (n_slots, f): _gate_up_kernel's output, rows in sorted-slot order
        wd_ptr,                 # (n_experts, d, f): W_down
        y_ptr,                  # out (n_slots, d): each slot's expert output, in slot order
        order_ptr,              # (n_slots,) i32: slots sorted by expert
        blk_first_ptr,          # (n_blocks,) i32: each block's first position in order
        blk_count_ptr,          # (n_blocks,) i32: slots in the block (<= BLOCK_M)
        blk_mat_ptr,            # (n_blocks,) i32: the block's expert, -1 for unused blocks
        # Sizes
        f, d, n_blocks,
        # Meta-parameters
        IEEE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        GROUP_M: tl.constexpr):
    """y[slot, n] = h[p] . W_down[e, n] for the slots of one expert block, written in slot order."""
    pid_m, pid_n = _grouped_pid(n_blocks, tl.cdiv(d, BLOCK_N), GROUP_M)
    e = tl.load(blk_mat_ptr + pid_m)
    if e >= 0:
        first = tl.load(blk_first_ptr + pid_m)
        count = tl.load(blk_count_ptr + pid_m)
        i = tl.arange(0, BLOCK_M)
        mmask = i < count
        p = (first + i).to(tl.int64)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = cols < d
        kk = tl.arange(0, BLOCK_K)
        w_base = e.to(tl.int64) * d * f
        acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
        for k0 in range(0, f, BLOCK_K):
            k = k0 + kk
            kmask = k < f
            a = tl.load(h_ptr + p[:, None] * f + k[None, :], mask=mmask[:, None] & kmask[None, :], other=0.0)
            w = tl.load(wd_ptr + w_base + cols[None, :].to(tl.int64) * f + k[:, None],
                        mask=kmask[:, None] & nmask[None, :], other=0.0)
            if IEEE:
                acc = tl.dot(a, w, acc, input_precision="ieee")
            else:
                acc = tl.dot(a, w, acc)
        slot = tl.load(order_ptr + p, mask=mmask, other=0).to(tl.int64)
        tl.store(y_ptr + slot[:, None] * d + cols[None, :], acc.to(y_ptr.dtype.element_ty),
                 mask=mmask[:, None] & nmask[None, :])


@triton.jit
def _combine_kernel(
        # Pointers (operand shapes); contiguous
        y_ptr,                  # (N, K, d): expert outputs per slot, working precision
        gate_ptr,               # (N, K) f32: gates
        count_ptr,              # (N,) i32: active slots per token
        out_ptr,                # out (N, d)
        # Sizes
        N, d,
        # Meta-parameters
        K: tl.constexpr, KP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
        BD: tl.constexpr):
    """out[n, j] = tree_sum_k(c[n, k, j]), c = gate * y (active) or -0.0 (padding) (MODEL-3.3).

    y (N, K, d) in the working precision (bf16 is widened exactly to fp32); gate (N, K) fp32;
    KP = K rounded up to a power of two; BD = BLOCK_T * BLOCK_D. Needs enable_fp_fusion=False.
    """
    n = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    j = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    k = tl.arange(0, KP)
    n64 = n.to(tl.int64)
    nmask = n < N
    cnt = tl.load(count_ptr + n, mask=nmask, other=0)
    active = (k[None, :] < cnt[:, None]) & (k[None, :] < K) & nmask[:, None]                  # (B, KP)
    g = tl.load(gate_ptr + n64[:, None] * K + k[None, :], mask=active, other=0.0)             # (B, KP)
    m3 = active[:, None, :] & (j < d)[None, :, None]
    y = tl.load(y_ptr + (n64[:, None, None] * K + k[None, None, :]) * d + j[None, :, None], mask=m3, other=0.0)
    c = g[:, None, :] * y.to(tl.float32)                                                       # (B, D, KP)
    c = tl.where(m3, c, -0.0)
    s = tl.reshape(_tree_sum(tl.reshape(c, (BD, KP)), BD, KP), (BLOCK_T, BLOCK_D))
    tl.store(out_ptr + n64[:, None] * d + j[None, :], s.to(out_ptr.dtype.element_ty),
             mask=nmask[:, None] & (j < d)[None, :])


_gate_up_kernel.exact_arithmetic = False      # floating-point parts (MODEL-4.2): FMA and exp allowed
_down_kernel.exact_arithmetic = False


def combine_triton(gate: torch.Tensor, count: torch.Tensor, y: torch.Tensor, out_dtype=None) -> torch.Tensor:
    """The exact combine of MODEL-3.3 in one kernel: (N, d) from gate (N, K), count (N,), y (N, K, d)."""
    N, K, d = y.shape
    out = torch.empty((N, d), dtype=out_dtype or (torch.float32 if y.dtype != torch.float64 else y.dtype),
                      device=y.device)
    if N == 0:
        return out
    KP = _pow2(K)
    block_t, block_d = 4, max(16, min(128, 1024 // KP))
    grid = (triton.cdiv(N, block_t), triton.cdiv(d, block_d))
    _combine_kernel[grid](y.contiguous(), gate.contiguous(), count.contiguous(), out, N, d, K=K, KP=KP,
                          BLOCK_T=block_t, BLOCK_D=block_d, BD=block_t * block_d, num_warps=4, enable_fp_fusion=False)
    return out


def grouped_swiglu(x: torch.Tensor, expert_of_slot: torch.Tensor, slots_per_token: int, w_gate: torch.Tensor,
                   w_up: torch.Tensor, w_down: torch.Tensor, config: dict | None = None,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """y (n_slots, d): expert ``expert_of_slot[s]`` (or none, -1) applied to token s // slots_per_token.

    x (N, d); w_gate, w_up (n_experts, d_ff, d); w_down (n_experts, d, d_ff), all of one dtype.
    ``out``: the (n_slots, d) tensor to write, rows of slots without an expert left as they are;
    without it a new tensor is made with those rows zero.
    """
    cfg = {**GEMM_CONFIG.get(x.dtype, GEMM_CONFIG[torch.bfloat16]), **(config or {})}
    n_exp, f, d = w_gate.shape
    n_slots = expert_of_slot.numel()
    y = torch.zeros((n_slots, d), dtype=x.dtype, device=x.device) if out is None else out
    if n_slots == 0:
        return y
    b = bucket_by_matrix(expert_of_slot.to(torch.int32), n_exp, cfg["BLOCK_M"])
    order, first, count, block_mat = b.order, b.first, b.count, b.mat
    h = torch.empty((n_slots, f), dtype=x.dtype, device=x.device)
    ieee = x.dtype == torch.float32
    dcfg = {**cfg, **cfg.get("down", {})}                   # the down GEMM may take other column tiles
    tiles = lambda c: dict(IEEE=ieee, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=c["BLOCK_N"], BLOCK_K=c["BLOCK_K"],  # noqa: E731
                           GROUP_M=c.get("GROUP_M", 1), num_warps=c["num_warps"], num_stages=c["num_stages"])
    nb = block_mat.numel()
    _gate_up_kernel[(nb * triton.cdiv(f, cfg["BLOCK_N"]),)](x, w_gate, w_up, h, order, first, count, block_mat,
                                                            d, f, slots_per_token, nb, **tiles(cfg))
    _down_kernel[(nb * triton.cdiv(d, dcfg["BLOCK_N"]),)](h, w_down, y, order, first, count, block_mat, f, d, nb,
                                                          **tiles(dcfg))
    return y


def expert_outputs_triton(moe, x: torch.Tensor, r) -> torch.Tensor:
    """y (N, K, d) of an ``moe.MoELayer`` with the grouped-GEMM kernels, tier by tier into one tensor
    (padding slots zero)."""
    N, K = r.gate.shape
    d = x.shape[1]
    y = torch.zeros((N * K, d), dtype=x.dtype, device=x.device)
    x = x.contiguous()
    for t, bank in moe.experts.items():
        mine = r.tier.reshape(-1) == t                                                       # (N K,)
        e = torch.where(mine, r.group.reshape(-1).long() * bank.experts_per_group + r.expert.reshape(-1).long(), -1)
        grouped_swiglu(x, e, K, bank.w_gate, bank.w_up, bank.w_down, out=y)
    return y.view(N, K, d)
