"""Triton kernels of the optimized implementation on CUDA (``lite_llm.optimized.triton``): the exact
HSER router (HSER-2 .. HSER-9) and the MoE block's grouped GEMMs and exact combine (MODEL-3).

Every float operation of the exact kernels is a correctly rounded IEEE operation in the order of the
spec, compiled with ``enable_fp_fusion=False`` (no FMA contraction, checked by ``ptxas --fmad=false``),
divisions with ``tl.div_rn`` (binary32) or ``/`` on binary64 (``div.rn.f64``), no library ``exp``, no
``tl.sqrt``. A routing level is two launches: a *product* kernel (the exact integer logits, written
as binary64) and an *epilogue* kernel (softmax, top-k, and for HSER the next level's bucket counts);
between bucketed levels two small kernels turn the counts into a slot order (no torch sort, no host
sync). Integer products are exact in any order and tile shape, so the result does not depend on the
block sizes, the batch or the bucket a token lands in (HSER-7.4): tests check it bit for bit against
the reference, on the CPU under ``TRITON_INTERPRET=1``, and on CUDA.

Imports run one way: ``router`` -> this package -> ``router_types``; nothing here imports ``router``
(its ``QuantizedRows`` and ``QuantizedRouter`` are passed in and read by attribute).

Modules (kernels; launchers)
  ``primitives``    @triton.jit helpers: ``_rint``, ``_canonical_exp``, ``_halve``, ``_tree_sum``; the
                    HSER-6.3 and rounding constants; host helpers ``_pow2``, ``_launch_options``.
  ``quantize``      ``_absmax_kernel``, ``_quantize_level_kernel`` (HSER-2 quantization fused with the
                    level-1 products), ``_bucket_level_kernel`` (levels 2, 3); ``level_products``,
                    ``bucket_products``; launch configurations ``FLAT_CONFIG``, ``BUCKET_CONFIG``,
                    ``ABSMAX_CONFIG``, ``CONFIG_CHOICES``.
  ``softmax_topk``  ``_softmax_topk_kernel`` (HSER-5, HSER-6); ``softmax_topk``.
  ``bucketing``     ``_plan_kernel``, ``_count_kernel``, ``_scatter_kernel``; ``plan_buckets``,
                    ``bucket_by_matrix`` -> ``Buckets``.
  ``assemble``      ``_assemble_kernel`` (HSER-8, HSER-9); ``assemble_triton``, ``assemble_block``.
  ``route``         ``route_flat``, ``route_levels_triton``, ``level_tables``, ``raise_if_nonfinite``;
                    ``flat_levels`` (one tier of one group, k_tier = k_group = 1: two launches) and
                    ``direct_buckets`` (levels of at most ``DIRECT_SLOTS`` slots: one block per slot,
                    no bucketing launches; decode sizes).
  ``moe``           ``_gate_up_kernel``, ``_down_kernel``, ``_combine_kernel``; ``grouped_swiglu``,
                    ``combine_triton``, ``expert_outputs_triton``; ``GEMM_CONFIG``, ``GEMM_CHOICES``.

Entry points (re-exported here)
  ``route_levels_triton(h, qrouter, cands, seed, configs=None) -> (LevelOutputs, bad)`` the three
      levels; then ``assemble_triton(levels, cands) -> RouteResult`` and ``raise_if_nonfinite(h, bad)``
      (HSER-1.3, after every kernel is queued). ``router.route(..., backend="triton")`` runs these.
  ``route_flat(h, rows, key_ranks, k, hidden_limbs=2, config=None, check=True) -> FlatResult(probs,
      chosen)``: one exact level over every row of a ``router.QuantizedRows`` (a flat MoE router).
  ``grouped_swiglu(x, expert_of_slot, slots_per_token, w_gate, w_up, w_down, config=None, out=None)``
      the experts of every slot, grouped by expert; ``combine_triton(gate, count, y)`` the exact
      combine (MODEL-3.3); ``expert_outputs_triton(moe_layer, x, route_result)`` (``moe.moe_forward``).
  ``bucket_by_matrix(mat, n_mat, block_t) -> Buckets`` slots grouped by matrix on the device.
"""
from __future__ import annotations

from .assemble import assemble_triton
from .bucketing import Buckets, bucket_by_matrix
from .moe import combine_triton, expert_outputs_triton, grouped_swiglu
from .route import FlatResult, raise_if_nonfinite, route_flat, route_levels_triton

__all__ = ["Buckets", "FlatResult", "assemble_triton", "bucket_by_matrix", "combine_triton", "expert_outputs_triton",
           "grouped_swiglu", "raise_if_nonfinite", "route_flat", "route_levels_triton"]
