"""Representative compilations of every Triton kernel of ``lite_llm.optimized.triton``, for
test_triton_compile.py (sm_90, no GPU): (kernel, argument types by name, constexprs, options).

Importing this module imports every kernel module of the package; a module that fails to import
fails the test (it is not skipped).
"""
from __future__ import annotations

from lite_llm.optimized.triton.assemble import _assemble_kernel, assemble_block
from lite_llm.optimized.triton.bucketing import _count_kernel, _plan_kernel, _scatter_kernel
from lite_llm.optimized.triton.moe import GEMM_CHOICES, _combine_kernel, _down_kernel, _gate_up_kernel
from lite_llm.optimized.triton.primitives import _pow2
from lite_llm.optimized.triton.quantize import _absmax_kernel, _bucket_level_kernel, _quantize_level_kernel
from lite_llm.optimized.triton.softmax_topk import EPILOGUE_ELEMENTS, _softmax_topk_kernel


def aot_cases():
    """Every case, router kernels then MoE kernels."""
    return router_cases() + moe_cases()


def router_cases():
    """The router kernels' cases."""
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


def moe_cases():
    """The MoE kernels' cases."""
    gu = {"x_ptr": "*bf16", "d": "i32", "wg_ptr": "*bf16", "wu_ptr": "*bf16", "f": "i32", "h_ptr": "*bf16",
          "slots_per_token": "i32", "order_ptr": "*i32", "blk_first_ptr": "*i32", "blk_count_ptr": "*i32",
          "blk_mat_ptr": "*i32", "n_blocks": "i32"}
    dn = {"h_ptr": "*bf16", "f": "i32", "wd_ptr": "*bf16", "d": "i32", "y_ptr": "*bf16", "order_ptr": "*i32",
          "blk_first_ptr": "*i32", "blk_count_ptr": "*i32", "blk_mat_ptr": "*i32", "n_blocks": "i32"}
    cb = {"y_ptr": "*bf16", "gate_ptr": "*fp32", "count_ptr": "*i32", "out_ptr": "*fp32", "N": "i32", "d": "i32"}
    f32 = {k: v.replace("bf16", "fp32") for k, v in gu.items()}
    cases = []
    for c in GEMM_CHOICES[:2]:
        for kernel, types, k in ((_gate_up_kernel, gu, c), (_down_kernel, dn, {**c, **c.get("down", {})})):
            tiles = dict(IEEE=False, BLOCK_M=c["BLOCK_M"], BLOCK_N=k["BLOCK_N"], BLOCK_K=k["BLOCK_K"],
                         GROUP_M=k["GROUP_M"])
            cases.append((kernel, types, tiles, dict(num_warps=k["num_warps"], num_stages=k["num_stages"])))
    cases.append((_gate_up_kernel, f32, dict(IEEE=True, BLOCK_M=32, BLOCK_N=32, BLOCK_K=32, GROUP_M=8),
                  dict(num_warps=4)))
    for K in (1, 4, 6):
        KP = _pow2(K)
        bd = max(16, min(128, 1024 // KP))
        cases.append((_combine_kernel, cb, dict(K=K, KP=KP, BLOCK_T=4, BLOCK_D=bd, BD=4 * bd), dict(num_warps=4)))
    return cases
