"""Triton kernels for the exact HSER router (HSER-2 .. HSER-9) on CUDA.

Every float operation is a correctly rounded IEEE operation in the order of the spec, compiled with
``enable_fp_fusion=False`` (no FMA contraction, checked by ``ptxas --fmad=false``), divisions with
``tl.div_rn`` (binary32) or ``/`` on binary64 (``div.rn.f64``), no library ``exp``, no ``tl.sqrt``.
A level is two launches: a *product* kernel (the exact integer logits, written as binary64) and an
*epilogue* kernel (softmax, top-k, and for HSER the next level's bucket counts); between bucketed
levels two small kernels turn the counts into a slot order (no torch sort, no host sync):

``_quantize_level_kernel``  (BLOCK_T tokens per program) pass 1 reads the hidden states for the
    absolute maximum as integer bit patterns (HSER-2.1; a maximum >= the bits of +inf flags a
    non-finite value, HSER-1.3); pass 2 reads them again, back to front so that the freshest part is
    still in L2, quantizes them (HSER-2.3; the rounding's integer is read off the bits of
    ``v + 1.5 * 2**23``), splits them into int8 limbs (HSER-2.4), and accumulates exact
    ``tl.dot(int8, int8) -> int32`` products against a set of router rows, combined in int64
    (HSER-3.2), then scales them to binary64 logits (HSER-3.3). It serves level 1 of HSER and the
    one-level router ``route_flat``; for HSER it also writes the int8 limbs, which levels 2 and 3
    read. With ``split_absmax`` pass 1 runs as its own kernel (``_absmax_kernel``) first.
``_bucket_level_kernel``  levels 2 and 3 read a different router matrix per token-slot. Slots are
    bucketed by the matrix they need (blocks of at most BLOCK_T slots of one matrix, like
    ``moe_align_block_size`` for grouped-GEMM MoE): each program reads one matrix once and gathers
    the int8 limbs of its slots' tokens.
``_softmax_topk_kernel``  per row of logits: the level's canonical softmax (HSER-6) and top-k under
    the spec's total order (HSER-5); for HSER it also names each chosen candidate's next-level matrix
    and counts the slots per matrix (``tl.atomic_add``; the order of slots inside a bucket does not
    change any bit, HSER-7.4).
``_plan_kernel``, ``_scatter_kernel``  bucket counts -> (first, count, matrix) per block and the
    slots sorted by matrix (``_count_kernel`` counts them where no epilogue did: the MoE experts).
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
MAGIC_BITS = tl.constexpr(0x4B400000)                     # the bits of 1.5 * 2**23
TWO_M64 = tl.constexpr(5.421010862427522e-20)             # 2**-64: rows with a smaller absmax are prescaled
TWO_P64 = tl.constexpr(1.8446744073709552e19)             # 2**64 (HSER-2.3 step 1)
ABS_MASK = tl.constexpr(0x7FFFFFFF)                       # binary32 sign bit off
INF_BITS = tl.constexpr(0x7F800000)                       # |x| bits >= this: inf or NaN
INT32_MAX = tl.constexpr((1 << 31) - 1)
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
EPILOGUE_ELEMENTS = 1024        # rows x padded candidates per program of the softmax/top-k kernel


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
def _absmax_kernel(h_ptr, h_stride, T, d, amax_ptr, sx_ptr, bad_ptr,
                   LX: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, UNROLL: tl.constexpr):
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
        h_ptr, h_stride, T, d,                       # hidden states (T, d), any float dtype
        wh_ptr, wl_ptr, ws_ptr, row_ids_ptr, n_cand,  # router rows (R, d) int8 limbs, scales (R,) f64
        z_ptr,                                       # out: logits (T, N_PAD) f64
        qh_ptr, ql_ptr, amax_ptr, sx_ptr, bad_ptr,   # limbs (T, d) i8 out; amax (T,) f32 in or out; sx, flag out
        LX: tl.constexpr, LW: tl.constexpr, N_PAD: tl.constexpr, WRITE_Q: tl.constexpr, PASS1: tl.constexpr,
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
        qh_ptr, ql_ptr, sx_ptr, d, slots_per_token,     # token limbs (T, d) i8, scales (T,) f64
        order_ptr, blk_first_ptr, blk_count_ptr, blk_mat_ptr,   # slots sorted by matrix; blocks
        wh_ptr, wl_ptr, ws_ptr, mat_row0_ptr, mat_n_ptr,         # stacked matrices: first row, rows
        z_ptr,                                          # out: logits (slots, N_PAD) f64
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


@triton.jit
def _softmax_topk_kernel(
        z_ptr, n_rows, row_mat_ptr, mat_n_ptr, mat_row0_ptr, n_fixed, keys_ptr, keys_stride,
        probs_ptr, probs_stride, chosen_ptr, ids_ptr, ids_out_ptr, next_mat_ptr, counts_ptr, pos_ptr,
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


@triton.jit
def _plan_kernel(counts_ptr, n_mat, starts_ptr, blk_first_ptr, blk_count_ptr, blk_mat_ptr, max_blocks,
                 BLOCK_T: tl.constexpr, CHUNK: tl.constexpr, JV: tl.constexpr):
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
def _count_kernel(mat_ptr, n_slots, counts_ptr, pos_ptr, BLOCK: tl.constexpr):
    """pos[s] = the number of slots of matrix mat[s] counted before it (an atomic count); counts[m] ends
    as the number of slots of matrix m. Which slot gets which place may change from run to run."""
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = tl.load(mat_ptr + s, mask=s < n_slots, other=-1)
    ok = m >= 0
    at = tl.atomic_add(counts_ptr + tl.maximum(m, 0), 1, mask=ok, sem="relaxed")
    tl.store(pos_ptr + s, at, mask=ok)


@triton.jit
def _scatter_kernel(mat_ptr, pos_ptr, starts_ptr, order_ptr, n_slots, BLOCK: tl.constexpr):
    """order[starts[mat[s]] + pos[s]] = s for every slot with a matrix."""
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = tl.load(mat_ptr + s, mask=s < n_slots, other=-1)
    ok = m >= 0
    at = tl.load(starts_ptr + tl.maximum(m, 0), mask=ok, other=0) + tl.load(pos_ptr + s, mask=ok, other=0)
    tl.store(order_ptr + at, s, mask=ok)


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
def _assemble_kernel(T, tier_pos_ptr, tier_ids_ptr, tier_probs_ptr, n1,
                     groups_ptr, group_probs_ptr, g_out, experts_ptr, expert_probs_ptr, e_out,
                     out_tier_ptr, out_group_ptr, out_expert_ptr, out_gate_ptr, count_ptr,
                     K1: tl.constexpr, K2: tl.constexpr, K3: tl.constexpr, KK: tl.constexpr,
                     P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr, BLOCK_T: tl.constexpr):
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


def _pow2(n: int, least: int = 1) -> int:
    return max(least, 1 << (max(n, 1) - 1).bit_length())


def _launch_options(cfg: dict) -> dict:
    """Launch options of a config; ``maxnreg`` caps the registers per thread (ptxas may spill)."""
    opts = dict(num_warps=cfg["num_warps"], num_stages=cfg["num_stages"], enable_fp_fusion=False)
    if cfg.get("maxnreg"):
        opts["maxnreg"] = cfg["maxnreg"]
    return opts


@dataclass(frozen=True)
class FlatResult:
    """One routing level over n candidates (``route_flat``)."""

    probs: torch.Tensor      # (T, n) float32: the level's softmax (HSER-6.6)
    chosen: torch.Tensor     # (T, k) int32: top-k candidates, best first, -1 padding (HSER-5.2)


@dataclass(frozen=True)
class Buckets:
    """Slots of a level bucketed by the matrix they read, made on the device (``plan_buckets``)."""

    order: torch.Tensor      # (n_slots,) int32: slots sorted by matrix (slots without one are not listed)
    first: torch.Tensor      # (max_blocks,) int32: each block's first position in ``order``
    count: torch.Tensor      # (max_blocks,) int32: slots in the block (<= BLOCK_T)
    mat: torch.Tensor        # (max_blocks,) int32: the block's matrix, -1 for unused blocks


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
                h, h.stride(0), T, d, amax, sx, bad, LX=hidden_limbs, BLOCK_T=a["BLOCK_T"], BLOCK_D=a["BLOCK_D"],
                UNROLL=a["UNROLL"], num_warps=a["num_warps"], enable_fp_fusion=False)
        _quantize_level_kernel[(triton.cdiv(T, cfg["BLOCK_T"]),)](
            h, h.stride(0), T, d, rows.limbs[0], wl, rows.scale, row_ids, n, z, qh, ql, amax, sx, bad,
            LX=hidden_limbs, LW=len(rows.limbs), N_PAD=n_pad, WRITE_Q=write_q, PASS1=not split,
            BLOCK_T=cfg["BLOCK_T"], BLOCK_D=cfg["BLOCK_D"], UNROLL=cfg.get("UNROLL", 1), **_launch_options(cfg))
    return z, qh, ql, sx, bad


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
            z, rows, row_mat if row_mat is not None else dummy, mat_n if mat_n is not None else dummy,
            mat_row0 if mat_row0 is not None else dummy, n_fixed, keys, keys.stride(0) if keys.dim() == 2 else 0,
            probs, n_out, chosen, ids if ids is not None else dummy, ids_out if ids_out is not None else dummy,
            next_mat if nxt else dummy, counts if nxt else dummy, pos if nxt else dummy,
            K=k, N_PAD=n_pad, BUCKETED=row_mat is not None, MAP_IDS=ids is not None, NEXT=nxt, BLOCK_R=block_r,
            num_warps=4, enable_fp_fusion=False)
    return probs, chosen, ids_out, (next_mat.view(-1) if nxt else None), pos


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
    _plan_kernel[(1,)](counts, n_mat, starts, first, count, block_mat, max_blocks, BLOCK_T=block_t, CHUNK=256,
                       JV=16, num_warps=4)
    if n:
        _scatter_kernel[(triton.cdiv(n, 1024),)](mat, pos, starts, order, n, BLOCK=1024, num_warps=4)
    return Buckets(order, first, count, block_mat)


def bucket_products(qh, ql, sx, slots_per_token: int, buckets: Buckets, n_slots: int, rows, mat_row0, mat_n,
                    n_pad: int, hidden_limbs: int, config: dict | None = None) -> torch.Tensor:
    """The bucketed level's logits z (n_slots, n_pad) f64; rows of slots without a matrix are not written."""
    cfg = {**BUCKET_CONFIG, **(config or {})}
    z = torch.empty((n_slots, n_pad), dtype=torch.float64, device=sx.device)
    if n_slots:
        wl = rows.limbs[1] if len(rows.limbs) == 2 else rows.limbs[0]
        block_n = min(n_pad, cfg.get("BLOCK_N") or n_pad)
        _bucket_level_kernel[(buckets.mat.numel() * (n_pad // block_n),)](
            qh, ql, sx, qh.shape[1], slots_per_token, buckets.order, buckets.first, buckets.count, buckets.mat,
            rows.limbs[0], wl, rows.scale, mat_row0, mat_n, z,
            LX=hidden_limbs, LW=len(rows.limbs), N_PAD=n_pad,
            BLOCK_T=cfg["BLOCK_T"], BLOCK_D=cfg["BLOCK_D"], BLOCK_N=block_n, **_launch_options(cfg))
    return z


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


def route_flat(h: torch.Tensor, rows, keys: torch.Tensor, k: int, hidden_limbs: int = 2,
               config: dict | None = None, check: bool = True) -> FlatResult:
    """One exact routing level: softmax and top-k of h (T, d) against every row of ``rows``.

    ``rows`` is a ``router.QuantizedRows`` (n, d); ``keys`` (n,) int32 ranks of the tie keys
    (``router.key_ranks``). This is HSER level 1 with every row a candidate
    (HSER-2, HSER-3, HSER-5, HSER-6), the whole router of a flat MoE. ``check=False`` skips the
    host-side test of the non-finite flag (for CUDA-graph capture; the caller must check).
    """
    n = rows.q.shape[0]
    z, _, _, _, bad = level_products(h, rows, _all_rows(n, h.device), hidden_limbs, False, config=config)
    probs, chosen, _, _, _ = softmax_topk(z, k, keys, n, n_fixed=n)
    if check:
        raise_if_nonfinite(h, bad)
    return FlatResult(probs, chosen)


def bucket_by_matrix(mat: torch.Tensor, n_mat: int, block_t: int) -> Buckets:
    """Slots -> blocks of at most block_t slots of one matrix (``plan_buckets``) for mat (n,) int32,
    the matrix of each slot or -1, counting the slots on the device (``_count_kernel``)."""
    n = mat.numel()
    counts = torch.zeros((max(n_mat, 1),), dtype=torch.int32, device=mat.device)
    pos = torch.empty((max(n, 1),), dtype=torch.int32, device=mat.device)
    if n:
        _count_kernel[(triton.cdiv(n, 1024),)](mat, n, counts, pos, BLOCK=1024, num_warps=4)
    return plan_buckets(mat, pos, counts[:n_mat], block_t)


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
    queued (``raise_if_nonfinite``) and raises before returning anything (HSER-10.2). Nothing here
    waits for the device, so the whole call can be captured in a CUDA graph.
    """
    from .router import LevelOutputs

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
    tables = level_tables(router, cands)
    c = tables["cands"]
    g_row0, g_n, e_row0, e_n = tables["g_row0"], tables["g_n"], tables["e_row0"], tables["e_n"]
    n_tiers, n_mat3 = cfg.n_tiers, e_row0.numel()
    counts = torch.zeros((n_tiers + n_mat3,), dtype=torch.int32, device=dev)        # slots per matrix, levels 2, 3
    counts2, counts3 = counts[:n_tiers], counts[n_tiers:]

    # Level 1 (HSER-7.1), fused with quantization: candidates are the TierSet's rows only. Its
    # epilogue names each slot's level-2 matrix (the chosen tier) and counts them.
    z1, qh, ql, sx, bad = level_products(h, router.tier, c, rc.hidden_limbs, True, config=configs.get("level1"))
    tier_probs, tier_pos, chosen_tiers, mat2, pos2 = softmax_topk(
        z1, k1, keys.tier_rank[c.long()].contiguous(), len(cands), n_fixed=len(cands), ids=c, counts=counts2)

    # Level 2 (HSER-7.2): slot (token, a) reads tier chosen_tiers[token, a]'s group matrix; its
    # epilogue names matrix (t, g) = group_offset[t] + g for level 3 and counts those.
    n2 = T * k1
    b2 = plan_buckets(mat2, pos2, counts2, bucket_cfg["BLOCK_T"])
    z2 = bucket_products(qh, ql, sx, k1, b2, n2, router.group, g_row0, g_n, _pow2(g_max, 16), rc.hidden_limbs,
                         bucket_cfg)
    group_probs, chosen_groups, _, mat3, pos3 = softmax_topk(
        z2, k2, keys.group_rank, g_max, row_mat=mat2, mat_n=g_n, mat_row0=g_row0, counts=counts3)

    # Level 3 (HSER-7.3): slot (token, a, b) reads matrix mat3.
    n3 = n2 * k2
    b3 = plan_buckets(mat3, pos3, counts3, bucket_cfg["BLOCK_T"])
    z3 = bucket_products(qh, ql, sx, k1 * k2, b3, n3, router.expert, e_row0, e_n, _pow2(e_max, 16), rc.hidden_limbs,
                         bucket_cfg)
    expert_probs, chosen_experts, _, _, _ = softmax_topk(z3, k3, keys.expert_rank, e_max, row_mat=mat3,
                                                         mat_n=e_n, mat_row0=e_row0)

    return LevelOutputs(tier_probs, tier_pos.long(), chosen_tiers, group_probs.view(T, k1, g_max),
                        chosen_groups.view(T, k1, k2), expert_probs.view(T, k1, k2, e_max),
                        chosen_experts.view(T, k1, k2, k3)), bad


def assemble_block(k1: int, k2: int, k3: int) -> int:
    """Tokens per program of the assembly kernel: the slot tile (B, S) stays near 1024 elements."""
    S = _pow2(k1) * _pow2(k2) * _pow2(k3)
    return max(2, min(128, 1024 // S))


def assemble_triton(lv, cands: tuple[int, ...], block_t: int | None = None):
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
    block_t = block_t or assemble_block(k1, k2, k3)
    if T:
        tier_pos = lv.tier_pos.to(torch.int32).contiguous()
        _assemble_kernel[(triton.cdiv(T, block_t),)](
            T, tier_pos, lv.chosen_tiers.contiguous(), lv.tier_probs, lv.tier_probs.shape[1],
            lv.chosen_groups.contiguous(), lv.group_probs.contiguous(), lv.group_probs.shape[-1],
            lv.chosen_experts.contiguous(), lv.expert_probs.contiguous(), lv.expert_probs.shape[-1],
            tier, group, expert, gate, count,
            K1=k1, K2=k2, K3=k3, KK=K, P1=_pow2(k1), P2=_pow2(k2), P3=_pow2(k3), BLOCK_T=block_t,
            num_warps=4, enable_fp_fusion=False)
    return RouteResult(tier=tier, group=group, expert=expert, gate=gate, count=count, tier_set=tuple(cands),
                       tier_probs=lv.tier_probs, chosen_tiers=lv.chosen_tiers, group_probs=lv.group_probs,
                       chosen_groups=lv.chosen_groups, expert_probs=lv.expert_probs)


def AOT_CASES():
    """(kernel, argument types, constexprs, options) of representative compilations, for the test that
    compiles every kernel for sm_90 without a GPU (tests/optimized/test_triton_compile.py)."""
    quant = {"h_ptr": "*bf16", "h_stride": "i32", "T": "i32", "d": "i32", "wh_ptr": "*i8", "wl_ptr": "*i8",
             "ws_ptr": "*fp64", "row_ids_ptr": "*i32", "n_cand": "i32", "z_ptr": "*fp64", "qh_ptr": "*i8",
             "ql_ptr": "*i8", "amax_ptr": "*fp32", "sx_ptr": "*fp64", "bad_ptr": "*i8"}
    absmax = {"h_ptr": "*bf16", "h_stride": "i32", "T": "i32", "d": "i32", "amax_ptr": "*fp32", "sx_ptr": "*fp64",
              "bad_ptr": "*i8"}
    bucket = {"qh_ptr": "*i8", "ql_ptr": "*i8", "sx_ptr": "*fp64", "d": "i32", "slots_per_token": "i32",
              "order_ptr": "*i32", "blk_first_ptr": "*i32", "blk_count_ptr": "*i32", "blk_mat_ptr": "*i32",
              "wh_ptr": "*i8", "wl_ptr": "*i8", "ws_ptr": "*fp64", "mat_row0_ptr": "*i64", "mat_n_ptr": "*i32",
              "z_ptr": "*fp64"}
    epi = {"z_ptr": "*fp64", "n_rows": "i32", "row_mat_ptr": "*i32", "mat_n_ptr": "*i32", "mat_row0_ptr": "*i64",
           "n_fixed": "i32", "keys_ptr": "*i32", "keys_stride": "i32", "probs_ptr": "*fp32", "probs_stride": "i32",
           "chosen_ptr": "*i32", "ids_ptr": "*i32", "ids_out_ptr": "*i32", "next_mat_ptr": "*i32",
           "counts_ptr": "*i32", "pos_ptr": "*i32"}
    plan = {"counts_ptr": "*i32", "n_mat": "i32", "starts_ptr": "*i32", "blk_first_ptr": "*i32",
            "blk_count_ptr": "*i32", "blk_mat_ptr": "*i32", "max_blocks": "i32"}
    scatter = {"mat_ptr": "*i32", "pos_ptr": "*i32", "starts_ptr": "*i32", "order_ptr": "*i32", "n_slots": "i32"}
    count = {"mat_ptr": "*i32", "n_slots": "i32", "counts_ptr": "*i32", "pos_ptr": "*i32"}
    assemble = {"T": "i32", "tier_pos_ptr": "*i32", "tier_ids_ptr": "*i32", "tier_probs_ptr": "*fp32", "n1": "i32",
                "groups_ptr": "*i32", "group_probs_ptr": "*fp32", "g_out": "i32", "experts_ptr": "*i32",
                "expert_probs_ptr": "*fp32", "e_out": "i32", "out_tier_ptr": "*i32", "out_group_ptr": "*i32",
                "out_expert_ptr": "*i32", "out_gate_ptr": "*fp32", "count_ptr": "*i32"}
    opts = {"num_warps": 8, "num_stages": 2}
    cases = []
    for lx, lw, n_pad, write_q, pass1, bt, bd in ((2, 2, 64, False, True, 32, 64), (2, 2, 16, True, True, 32, 64),
                                                  (1, 2, 32, True, False, 64, 64), (2, 1, 256, False, True, 16, 64)):
        cases.append((_quantize_level_kernel, quant, dict(LX=lx, LW=lw, N_PAD=n_pad, WRITE_Q=write_q, PASS1=pass1,
                                                          BLOCK_T=bt, BLOCK_D=bd, UNROLL=4), opts))
    cases.append((_absmax_kernel, absmax, dict(LX=2, BLOCK_T=16, BLOCK_D=256, UNROLL=2), opts))
    for lx, lw, n_pad, bt, bd, bn in ((2, 2, 64, 64, 128, 32), (2, 2, 32, 64, 128, 32), (1, 1, 128, 32, 64, 128)):
        cases.append((_bucket_level_kernel, bucket, dict(LX=lx, LW=lw, N_PAD=n_pad, BLOCK_T=bt, BLOCK_D=bd, BLOCK_N=bn),
                      {"num_warps": 8, "num_stages": 3}))
    for k, n_pad, bucketed, map_ids, nxt in ((1, 16, False, True, True), (2, 64, False, False, False),
                                             (2, 32, True, False, True), (2, 64, True, False, False),
                                             (5, 256, True, False, False)):
        cases.append((_softmax_topk_kernel, epi, dict(K=k, N_PAD=n_pad, BUCKETED=bucketed, MAP_IDS=map_ids,
                                                      NEXT=nxt, BLOCK_R=max(1, min(128, EPILOGUE_ELEMENTS // n_pad))),
                      {"num_warps": 4}))
    cases.append((_plan_kernel, plan, dict(BLOCK_T=64, CHUNK=256, JV=16), {"num_warps": 4}))
    cases.append((_scatter_kernel, scatter, dict(BLOCK=1024), {"num_warps": 4}))
    cases.append((_count_kernel, count, dict(BLOCK=1024), {"num_warps": 4}))
    for k1, k2, k3 in ((1, 2, 2), (2, 3, 3), (1, 1, 1), (5, 5, 5)):
        cases.append((_assemble_kernel, assemble, dict(K1=k1, K2=k2, K3=k3, KK=k1 * k2 * k3, P1=_pow2(k1),
                                                       P2=_pow2(k2), P3=_pow2(k3), BLOCK_T=assemble_block(k1, k2, k3)),
                      {"num_warps": 4}))
    return cases
