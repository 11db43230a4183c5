"""Quantization and exact int8 products of the router levels (HSER-2, HSER-3): kernels and launchers.

``_quantize_level_kernel``  (BLOCK_T tokens per program) pass 1 reads the hidden states for the
    absolute maximum as integer bit patterns (HSER-2.1; a maximum >= the bits of +inf flags a
    non-finite value, HSER-1.3); pass 2 reads them again, back to front so that the freshest part is
    still in L2, quantizes them (HSER-2.3; one reciprocal r = 127 / a per row, then y = x r; the
    rounding's integer is read off the bits of ``v + 1.5 * 2**23``), splits them into int8 limbs
    (HSER-2.4), and accumulates exact ``tl.dot(int8, int8) -> int32`` products against a set of
    router rows, combined in int64 (HSER-3.2), then scales them to binary64 logits (HSER-3.3). It
    serves level 1 of HSER and the one-level router ``route_flat``; for HSER it also writes the int8
    limbs, which levels 2 and 3 read. With ``split_absmax`` pass 1 runs as its own kernel
    (``_absmax_kernel``) first.
``_bucket_level_kernel``  levels 2 and 3 read a different router matrix per token-slot. Slots are
    bucketed by the matrix they need (``bucketing``; blocks of at most BLOCK_T slots of one matrix,
    like ``moe_align_block_size`` for grouped-GEMM MoE): each program reads one matrix once and
    gathers the int8 limbs of its slots' tokens.

Integer products are exact in any order and tile shape, so the logits do not depend on the block
sizes, the batch or the bucket a token lands in (HSER-7.4).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..router_types import MAX_CANDIDATES
from .bucketing import Buckets
from .primitives import ABS_MASK, INF_BITS, MAGIC_BITS, RINT_MAGIC, TWO_M64, TWO_P64, _launch_options, _pow2

# Default launch configurations (measured on an H100, benchmarks/README.md); the benchmarks time
# the others in ``CONFIG_CHOICES``. UNROLL: tiles per step of the absolute-maximum pass.
FLAT_CONFIG = dict(BLOCK_T=16, BLOCK_D=64, UNROLL=4, num_warps=4, num_stages=3, split_absmax=False)
BUCKET_CONFIG = dict(BLOCK_T=64, BLOCK_D=128, BLOCK_N=16, num_warps=4, num_stages=3)    # BLOCK_N: columns per program
CONFIG_CHOICES = {
    "flat": [dict(BLOCK_T=16, BLOCK_D=64, UNROLL=4, num_warps=4, num_stages=3, split_absmax=False),
             dict(BLOCK_T=16, BLOCK_D=128, UNROLL=4, num_warps=4, num_stages=2, split_absmax=False),
             dict(BLOCK_T=32, BLOCK_D=64, UNROLL=4, num_warps=8, num_stages=2, split_absmax=False),
             dict(BLOCK_T=32, BLOCK_D=64, UNROLL=4, num_warps=8, num_stages=2, split_absmax=False, maxnreg=64),
             dict(BLOCK_T=32, BLOCK_D=64, UNROLL=4, num_warps=8, num_stages=2, split_absmax=False, maxnreg=72),
             dict(BLOCK_T=16, BLOCK_D=64, UNROLL=4, num_warps=4, num_stages=3, split_absmax=False, maxnreg=64),
             dict(BLOCK_T=64, BLOCK_D=64, UNROLL=2, num_warps=4, num_stages=3, split_absmax=False)],
    "bucket": [dict(BLOCK_T=64, BLOCK_D=128, BLOCK_N=16, num_warps=4, num_stages=3),
               dict(BLOCK_T=64, BLOCK_D=128, BLOCK_N=32, num_warps=8, num_stages=3),
               dict(BLOCK_T=128, BLOCK_D=128, BLOCK_N=16, num_warps=8, num_stages=3),
               dict(BLOCK_T=64, BLOCK_D=128, BLOCK_N=32, num_warps=8, num_stages=3, maxnreg=64)],
}
ABSMAX_CONFIG = dict(BLOCK_T=16, BLOCK_D=256, UNROLL=2, num_warps=8)


@triton.jit
def _row_absmax_bits(h_rows, tmask, d, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, UNROLL: tl.constexpr):
    """max over each row of the bits of |binary32(x)| as int32 (B,): for finite rows the bits of
    a = max |x_i| (HSER-2.1; magnitudes order as their bit patterns), >= INF_BITS when the row holds an
    infinity or NaN after the conversion to binary32 (HSER-1.2, HSER-1.3).

    UNROLL tiles of (BLOCK_T, BLOCK_D) are loaded per step (bytes in flight) into an elementwise
    running maximum of the same shape as pass 2's tiles (so the row maxima land in pass 2's layout);
    one reduction at the end. bfloat16 is compared on its own 16 bits: its binary32 bits are those
    bits followed by 16 zeros."""
    offs = tl.arange(0, BLOCK_D)
    BF16: tl.constexpr = h_rows.dtype.element_ty == tl.bfloat16
    if BF16:
        run = tl.zeros((BLOCK_T, BLOCK_D), tl.int16)
    else:
        run = tl.zeros((BLOCK_T, BLOCK_D), tl.int32)
    for k0 in range(0, d, BLOCK_D * UNROLL):
        for u in tl.static_range(UNROLL):
            kk = k0 + u * BLOCK_D + offs
            x = tl.load(h_rows + kk[None, :], mask=tmask[:, None] & (kk < d)[None, :], other=0.0)
            if BF16:
                xb = x.to(tl.int16, bitcast=True) & 0x7FFF
            else:
                xb = x.to(tl.float32).to(tl.int32, bitcast=True) & ABS_MASK
            run = tl.maximum(run, xb.to(run.dtype))
    amax = tl.max(run, axis=1)
    if BF16:
        amax = amax.to(tl.int32) << 16
    return amax


@triton.jit
def _scale_of(amax, LX: tl.constexpr):
    """HSER-2.5: binary64(a) / (127 * 128**(L-1)), one correctly rounded binary64 division."""
    if LX == 2:
        return amax.to(tl.float64) / 16256.0
    else:
        return amax.to(tl.float64) / 127.0


@triton.jit
def _row_reciprocal(safe, LIMBS: tl.constexpr):
    """Per row (HSER-2.3 steps 1-2) from the absmax ``safe`` (B,) (1 where the row is 0): the exact
    prescale f (2**64 where a < 2**-64, else 1) and r * 128**(L-1) with r = 127 / (a f), one
    correctly rounded division per row; the factor 128 is folded into r, which the spec allows (exact,
    and Q is unchanged: the orders differ only where |x r| < 2**-126, where Q = 0 either way)."""
    f = tl.where(safe < TWO_M64, TWO_P64, 1.0)
    r = tl.div_rn(tl.zeros_like(safe) + 127.0, safe * f)
    if LIMBS == 2:
        r = r * 128.0
    return f, r


@triton.jit
def _quantize_tile(x, f, r, LIMBS: tl.constexpr):
    """int8 limbs of Q for a tile x (B, D) binary32 with the rows' prescale f (B,) and reciprocal r (B,)
    of ``_row_reciprocal`` (HSER-2.3, HSER-2.4): y = (x f) r, Q = round_half_even(y);
    hi = floor((Q + 64) / 128), lo = Q - 128 hi, so Q = 128 hi + lo with |hi| <= 127, -64 <= lo <= 63.

    The rounding: v + 1.5 * 2**23 lies in [2**23, 2**24) for |v| < 2**22, where the spacing is 1, so
    the sum is round_half_even(v) + 1.5 * 2**23 and its bits are 0x4B400000 + Q (no float-to-int
    conversion instruction)."""
    y = (x * f[:, None]) * r[:, None]
    q = (y + RINT_MAGIC).to(tl.int32, bitcast=True) - MAGIC_BITS
    if LIMBS == 2:
        hi = (q + 64) >> 7
        lo = q - (hi << 7)
        return hi.to(tl.int8), lo.to(tl.int8)
    else:
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
def _store_logits(z_ptr, rows, row_mask, p2, p1, p0, sx, sw, N_PAD: tl.constexpr, N: tl.constexpr):
    """z[row, :N] = (acc * sx) * sw in binary64 (HSER-3.3), acc = 2**14 p2 + 2**7 p1 + p0 exact (< 2**53);
    rows of z are N_PAD wide."""
    acc = p2.to(tl.int64) * 16384 + p1.to(tl.int64) * 128 + p0.to(tl.int64)
    z = (acc.to(tl.float64) * sx[:, None]) * sw[None, :]
    cols = tl.arange(0, N)
    tl.store(z_ptr + rows.to(tl.int64)[:, None] * N_PAD + cols[None, :], z, mask=row_mask[:, None])


@triton.jit
def _absmax_kernel(
        # Pointers (operand shapes) and strides
        h_ptr, h_stride,        # (T, d) hidden states, any float dtype; h_stride: elements per row
        amax_ptr,               # out (T,) f32: absmax, 1.0 for a zero row
        sx_ptr,                 # out (T,) f64: dequantization scale (HSER-2.5)
        bad_ptr,                # out (T,) i8: 1 where the row holds a non-finite value (HSER-1.3)
        # Sizes
        T, d,
        # Meta-parameters
        LX: tl.constexpr,       # limbs of the hidden states (1 or 2)
        BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, UNROLL: tl.constexpr):
    """Pass 1 alone: amax (T,) binary32 (1 for a zero row), scale (T,) binary64, non-finite flag (T,) int8."""
    toks = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    tmask = toks < T
    bits = _row_absmax_bits(h_ptr + toks.to(tl.int64)[:, None] * h_stride, tmask, d, BLOCK_T, BLOCK_D, UNROLL)
    amax = bits.to(tl.float32, bitcast=True)
    tl.store(bad_ptr + toks, (bits >= INF_BITS).to(tl.int8), mask=tmask)
    tl.store(sx_ptr + toks, _scale_of(amax, LX), mask=tmask)
    tl.store(amax_ptr + toks, tl.where(bits == 0, 1.0, amax), mask=tmask)


@triton.jit
def _quantize_level_kernel(
        # Pointers (operand shapes) and strides
        h_ptr, h_stride,        # (T, d) hidden states, any float dtype; h_stride: elements per row
        wh_ptr, wl_ptr,         # (R, d) i8 each: router rows' limbs (hi, lo; lo = hi when LW == 1)
        ws_ptr,                 # (R,) f64: router rows' dequantization scales
        row_ids_ptr,            # (n_cand,) i32: the rows of wh/wl/ws that are this level's candidates
        z_ptr,                  # out (T, N_PAD) f64: logits, columns >= n_cand not meaningful
        qh_ptr, ql_ptr,         # out (T, d) i8 each when WRITE_Q: the hidden states' limbs (ql when LX == 2)
        amax_ptr,               # (T,) f32: absmax from _absmax_kernel (read when PASS1 is false)
        sx_ptr,                 # (T,) f64: hidden-state scales, out when PASS1, else in
        bad_ptr,                # out (T,) i8 when PASS1: non-finite flag (HSER-1.3)
        # Sizes
        T, d, n_cand,
        # Meta-parameters
        LX: tl.constexpr, LW: tl.constexpr,    # limbs of the hidden states and of the router rows
        N_PAD: tl.constexpr,                   # n_cand rounded up to a power of two >= 16
        WRITE_Q: tl.constexpr,                 # write the limbs (levels 2 and 3 read them)
        PASS1: tl.constexpr,                   # compute the absmax here (else _absmax_kernel did)
        BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, UNROLL: tl.constexpr):
    pid = tl.program_id(0)
    toks = pid * BLOCK_T + tl.arange(0, BLOCK_T)                                          # (B,)
    tmask = toks < T
    h_rows = h_ptr + toks.to(tl.int64)[:, None] * h_stride                                 # (B, 1)

    if PASS1:   # pass 1: absolute maximum (HSER-2.1) and the non-finite flag (HSER-1.3)
        bits = _row_absmax_bits(h_rows, tmask, d, BLOCK_T, BLOCK_D, UNROLL)
        amax = bits.to(tl.float32, bitcast=True)
        tl.store(bad_ptr + toks, (bits >= INF_BITS).to(tl.int8), mask=tmask)
        sx = _scale_of(amax, LX)
        tl.store(sx_ptr + toks, sx, mask=tmask)
        safe = tl.where(bits == 0, 1.0, amax)
    else:       # _absmax_kernel ran first; amax is read as a (B, BLOCK_D) broadcast so that it lands in
                # the layout of the pass-2 tiles (a (B,) load makes the compiler quantize in the
                # replicated dot-operand layout instead)
        offs = tl.arange(0, BLOCK_D)
        safe2 = tl.load(amax_ptr + toks[:, None] + offs[None, :] * 0, mask=tmask[:, None], other=1.0)
        safe = tl.max(safe2, axis=1)
        sx = tl.load(sx_ptr + toks, mask=tmask, other=1.0)

    f, r = _row_reciprocal(safe, LX)                                                     # (B,) each

    # Pass 2, last columns first: quantize (HSER-2.3) and accumulate exact products with the rows.
    # The next tile of hidden states is loaded one step ahead (its latency hides behind this step's
    # arithmetic; the compiler pipelines only the weight tiles, which feed tl.dot directly).
    cols = tl.arange(0, N_PAD)
    valid = cols < n_cand
    wrow = tl.load(row_ids_ptr + cols, mask=valid, other=0).to(tl.int64)                  # (N,)
    offs_d = tl.arange(0, BLOCK_D)
    p2 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
    p1 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
    p0 = tl.zeros((BLOCK_T, N_PAD), tl.int32)
    n_chunks = tl.cdiv(d, BLOCK_D)
    kk = (n_chunks - 1) * BLOCK_D + offs_d
    x_next = tl.load(h_rows + kk[None, :], mask=tmask[:, None] & (kk < d)[None, :], other=0.0)
    for i in range(0, n_chunks):
        kk = (n_chunks - 1 - i) * BLOCK_D + offs_d
        dmask = kk < d
        m2 = tmask[:, None] & dmask[None, :]
        x = x_next.to(tl.float32)
        kn = kk - BLOCK_D                                                                  # the next tile
        x_next = tl.load(h_rows + kn[None, :], mask=tmask[:, None] & (kn >= 0)[None, :], other=0.0)
        xh, xl = _quantize_tile(x, f, r, LX)
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
    _store_logits(z_ptr, toks, tmask, p2, p1, p0, sx, sw, N_PAD, N_PAD)


@triton.jit
def _bucket_level_kernel(
        # Pointers (operand shapes); rows are contiguous (stride d or N_PAD)
        qh_ptr, ql_ptr,         # (T, d) i8 each: the tokens' limbs (ql read when LX == 2)
        sx_ptr,                 # (T,) f64: the tokens' scales
        order_ptr,              # (n_slots,) i32: slots sorted by matrix (``Buckets.order``)
        blk_first_ptr,          # (n_blocks,) i32: each block's first position in order
        blk_count_ptr,          # (n_blocks,) i32: slots in the block (<= BLOCK_T)
        blk_mat_ptr,            # (n_blocks,) i32: the block's matrix, -1 for unused blocks
        wh_ptr, wl_ptr,         # (R, d) i8 each: the stacked matrices' rows' limbs (lo = hi when LW == 1)
        ws_ptr,                 # (R,) f64: the rows' scales
        mat_row0_ptr,           # (n_mat,) i64: first row of each matrix in wh/wl/ws
        mat_n_ptr,              # (n_mat,) i32: rows of each matrix (<= N_PAD)
        z_ptr,                  # out (n_slots, N_PAD) f64: logits of each slot
        # Sizes
        d, slots_per_token,     # slot s belongs to token s // slots_per_token
        # Meta-parameters
        LX: tl.constexpr, LW: tl.constexpr, N_PAD: tl.constexpr,
        BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Program (block, column tile): the block's slots against BLOCK_N of its matrix's rows; the column
    tiles of a block are neighbours in launch order, so its gathered limbs are re-read from L2."""
    N_TILES: tl.constexpr = N_PAD // BLOCK_N
    blk = tl.program_id(0) // N_TILES
    c0 = (tl.program_id(0) % N_TILES) * BLOCK_N
    mat = tl.load(blk_mat_ptr + blk)
    if mat >= 0:
        first = tl.load(blk_first_ptr + blk)
        count = tl.load(blk_count_ptr + blk)
        i = tl.arange(0, BLOCK_T)
        smask = i < count
        slots = tl.load(order_ptr + first + i, mask=smask, other=0).to(tl.int64)      # (B,)
        toks = slots // slots_per_token
        sx = tl.load(sx_ptr + toks, mask=smask, other=1.0)
        row0 = tl.load(mat_row0_ptr + mat).to(tl.int64)
        n = tl.load(mat_n_ptr + mat)
        cols = c0 + tl.arange(0, BLOCK_N)
        valid = cols < n
        wrow = row0 + cols.to(tl.int64)                                                  # (N,)
        offs_d = tl.arange(0, BLOCK_D)
        x_rows = toks[:, None] * d
        p2 = tl.zeros((BLOCK_T, BLOCK_N), tl.int32)
        p1 = tl.zeros((BLOCK_T, BLOCK_N), tl.int32)
        p0 = tl.zeros((BLOCK_T, BLOCK_N), tl.int32)
        for k0 in range(0, d, BLOCK_D):
            kk = k0 + offs_d
            dmask = kk < d
            x_off = x_rows + kk[None, :]
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
        _store_logits(z_ptr + c0, slots, smask, p2, p1, p0, sx, sw, N_PAD, BLOCK_N)


def level_products(h: torch.Tensor, rows, row_ids: torch.Tensor, hidden_limbs: int, write_q: bool,
                   config: dict | None = None):
    """Launch the quantize + products kernel(s). Returns (z (T, N_PAD) f64, qh, ql, sx (T,) f64, bad (T,) int8)."""
    cfg = {**FLAT_CONFIG, **(config or {})}
    h = h if h.stride(-1) == 1 else h.contiguous()
    T, d = h.shape
    dev = h.device
    n = row_ids.numel()
    n_pad = _pow2(n, 16)
    if n_pad > MAX_CANDIDATES:
        raise ValueError(f"{n} candidates exceed the Triton kernels' {MAX_CANDIDATES}")
    z = torch.empty((T, n_pad), dtype=torch.float64, device=dev)
    qh = torch.empty((T, d) if write_q else (1,), dtype=torch.int8, device=dev)
    ql = torch.empty((T, d) if write_q and hidden_limbs == 2 else (1,), dtype=torch.int8, device=dev)
    sx = torch.empty((T,), dtype=torch.float64, device=dev)
    bad = torch.empty((T,), dtype=torch.int8, device=dev)
    wl = rows.limbs[1] if len(rows.limbs) == 2 else rows.limbs[0]
    split = bool(cfg.get("split_absmax", False))
    amax = torch.empty((T,) if split else (1,), dtype=torch.float32, device=dev)
    if T:
        if split:
            a = ABSMAX_CONFIG
            _absmax_kernel[(triton.cdiv(T, a["BLOCK_T"]),)](
                h, h.stride(0), amax, sx, bad, T, d, LX=hidden_limbs, BLOCK_T=a["BLOCK_T"], BLOCK_D=a["BLOCK_D"],
                UNROLL=a["UNROLL"], num_warps=a["num_warps"], enable_fp_fusion=False)
        _quantize_level_kernel[(triton.cdiv(T, cfg["BLOCK_T"]),)](
            h, h.stride(0), rows.limbs[0], wl, rows.scale, row_ids, z, qh, ql, amax, sx, bad, T, d, n,
            LX=hidden_limbs, LW=len(rows.limbs), N_PAD=n_pad, WRITE_Q=write_q, PASS1=not split,
            BLOCK_T=cfg["BLOCK_T"], BLOCK_D=cfg["BLOCK_D"], UNROLL=cfg.get("UNROLL", 1), **_launch_options(cfg))
    return z, qh, ql, sx, bad


def bucket_products(qh, ql, sx, slots_per_token: int, buckets: Buckets, n_slots: int, rows, mat_row0, mat_n,
                    n_pad: int, hidden_limbs: int, config: dict | None = None) -> torch.Tensor:
    """The bucketed level's logits z (n_slots, n_pad) f64; rows of slots without a matrix are not written."""
    cfg = {**BUCKET_CONFIG, **(config or {})}
    z = torch.empty((n_slots, n_pad), dtype=torch.float64, device=sx.device)
    if n_slots:
        wl = rows.limbs[1] if len(rows.limbs) == 2 else rows.limbs[0]
        block_n = min(n_pad, cfg.get("BLOCK_N") or n_pad)
        _bucket_level_kernel[(buckets.mat.numel() * (n_pad // block_n),)](
            qh, ql, sx, buckets.order, buckets.first, buckets.count, buckets.mat,
            rows.limbs[0], wl, rows.scale, mat_row0, mat_n, z, qh.shape[1], slots_per_token,
            LX=hidden_limbs, LW=len(rows.limbs), N_PAD=n_pad,
            BLOCK_T=cfg["BLOCK_T"], BLOCK_D=cfg["BLOCK_D"], BLOCK_N=block_n, **_launch_options(cfg))
    return z
