"""Checks of the Triton router kernels against the reference, run by test_triton_interpret.py in a
subprocess with TRITON_INTERPRET=1 (the kernels then run on the CPU, in NumPy), and usable on CUDA.

``python -m tests.optimized.triton_interp_checks [DEVICE]`` runs every check and prints one JSON
line per check: {"name", "ok", "detail"}.
"""
from __future__ import annotations

import json
import sys
import traceback

import numpy as np
import torch

from lite_llm.optimized.router import load_router, route
from lite_llm.reference.router import route as ref_route
from lite_llm.reference.router_weights import RouterWeights, init_router_weights, quantize_router
from lite_llm.spec.errors import LiteLLMError
from tests.helpers import gaussian, make_config
from tests.optimized.common import assert_bits, assert_same_route, router_dict

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def compare(cfg, w, h, tiers, device, seed=None, h_ours=None):
    ref = ref_route(h, quantize_router(cfg, w), tiers, seed)
    qr = load_router(cfg, router_dict(cfg, w), 0, device)
    hh = (torch.from_numpy(h) if h_ours is None else h_ours).to(device)
    assert_same_route(route(hh, qr, tiers, seed, backend="triton"), ref)


@check
def configs_and_limbs(device):
    for tiers, k, limbs, ts, T in [
        (((4, 4), (8, 4), (8, 8)), (1, 2, 2), (2, 2), (0, 1, 2), 37),
        (((4, 4), (8, 4), (8, 8)), (2, 3, 3), (1, 2), (0, 2), 20),
        (((1, 1), (2, 3), (5, 7)), (3, 2, 4), (2, 1), (0, 1, 2), 17),
        (((3, 5),), (1, 1, 1), (1, 1), (0,), 1),
        (((2, 2), (3, 3)), (2, 2, 2), (2, 2), (1,), 0),
        (((20, 40), (3, 17)), (2, 3, 5), (2, 2), (0, 1), 25),          # wider levels: 32 and 64 lanes
    ]:
        for seed in (0, 2 ** 64 - 1):
            cfg = make_config(tiers=tiers, k=k, d=40, limbs=limbs, seed=seed)
            compare(cfg, init_router_weights(cfg, 3), gaussian(T, 40, T), ts, device)


@check
def ties(device):
    cfg = make_config(tiers=((5, 6), (7, 3), (2, 9)), k=(2, 3, 2), d=16, seed=2 ** 63)
    w = init_router_weights(cfg, 2)
    row = np.linspace(-1, 1, 16, dtype=np.float32)
    w = RouterWeights(tuple(row.copy() for _ in w.tier), tuple(np.broadcast_to(row, g.shape).copy() for g in w.group),
                      tuple(np.broadcast_to(row, e.shape).copy() for e in w.expert))
    h = gaussian(20, 16, 3)
    h[5] = 0.0
    h[6] = -h[7]
    compare(cfg, w, h, (0, 1, 2), device)


@check
def extremes_and_subnormals(device):
    cfg = make_config(tiers=((3, 5), (4, 4)), k=(2, 2, 3), d=8, seed=9)
    sub = np.float32(2.0 ** -149)
    h = np.array([[3.4028235e38, -3.4028235e38, 1, 0, 0, 0, 0, 0],
                  [sub, -2 * sub, 3 * sub, 0, 5 * sub, -sub, 0, 7 * sub],
                  [0] * 8, [-0.0] * 8,
                  [1e-38, 2e-39, -1e-45, 1, -1, 0.5, 0.25, 1e30],
                  [65504, -65504, 1, 2, 3, 4, 5, 6]], np.float32)
    w = init_router_weights(cfg, 4)
    w = RouterWeights(tuple(r * np.float32(3e37) if i == 0 else r * np.float32(1e-40) for i, r in enumerate(w.tier)),
                      tuple(g * np.float32(1e-42) for g in w.group), w.expert)
    compare(cfg, w, h, (0, 1), device)


@check
def input_types(device):
    cfg = make_config(d=24, seed=3)
    base = gaussian(19, 24, 8) * np.float32(3.0)
    bf = torch.from_numpy(base).to(torch.bfloat16)
    compare(cfg, init_router_weights(cfg, 3), bf.to(torch.float32).numpy(), (0, 1, 2), device, h_ours=bf)
    for dt in (np.float16, np.float64):
        compare(cfg, init_router_weights(cfg, 3), base.astype(dt), (0, 1, 2), device)


@check
def flat_level_equals_reference_level1(device):
    """route_flat (one level, n candidates) = the reference's level 1 over n one-expert tiers."""
    from lite_llm.optimized.router import QuantizedRows, key_ranks
    from lite_llm.optimized.seeds import as_signed, level_seed, ordered, tie_keys
    from lite_llm.optimized.triton import route_flat

    n, k, d = 24, 3, 32
    cfg = make_config(tiers=tuple((1, 1) for _ in range(n)), k=(k, 1, 1), d=d, seed=77)
    w = init_router_weights(cfg, 5)
    h = gaussian(21, d, 4)
    ref = ref_route(h, quantize_router(cfg, w), tuple(range(n)))
    rows = QuantizedRows.of(torch.from_numpy(np.stack(w.tier)).to(device), cfg.router.weight_limbs)
    keys = ordered(tie_keys(torch.tensor(as_signed(level_seed(77, 1)), device=device), n))
    ranks = key_ranks(keys[None, :], torch.tensor([n], device=device))[0]
    out = route_flat(torch.from_numpy(h).to(device), rows, ranks, k)
    assert_bits(out.probs, ref.tier_probs, "probs")
    assert_bits(out.chosen, ref.chosen_tiers, "chosen")


@check
def quantize_multiplies_by_one_reciprocal_per_row(device):
    """HSER-2.3 in the products kernel: the int8 limbs it writes reassemble to x * (127 / a) rounded,
    on inputs where (x / a) * 127 and (x * 127) / a give other integers (test_numerics' search), with
    pass 1 fused and split, for both limb counts."""
    from lite_llm.optimized.router import QuantizedRows
    from lite_llm.optimized.triton.quantize import level_products
    from tests.optimized.test_numerics import other_orders, reciprocal_order_rows, spec_quantize

    for limbs in (1, 2):
        x = reciprocal_order_rows(limbs)
        want = spec_quantize(x, limbs)
        assert all(np.all(q[:, 1:] != want[:, 1:]) for q in other_orders(x, limbs).values())
        rows = QuantizedRows.of(torch.from_numpy(gaussian(3, x.shape[1], 1)).to(device), 2)
        ids = torch.arange(3, dtype=torch.int32, device=device)
        for cfg in (dict(BLOCK_T=16, BLOCK_D=32, UNROLL=1), dict(BLOCK_T=16, BLOCK_D=32, UNROLL=1, split_absmax=True)):
            _, qh, ql, _, _ = level_products(torch.from_numpy(x).to(device), rows, ids, limbs, True, config=cfg)
            q = qh.long() * 128 + ql.long() if limbs == 2 else qh.long()
            assert_bits(q.cpu().numpy(), want, f"Q ({limbs} limbs, {cfg})")


@check
def non_finite_is_rejected(device):
    cfg = make_config(d=16)
    qr = load_router(cfg, router_dict(cfg, init_router_weights(cfg, 0)), 0, device)
    for bad in (np.nan, np.inf, -np.inf, 1e39):
        h = gaussian(40, 16).astype(np.float64)
        h[33, 7] = bad
        try:
            route(torch.from_numpy(h).to(device), qr, (0, 1), backend="triton")
        except LiteLLMError as e:
            assert e.code == "E_NONFINITE" and "(33, 7)" in str(e), str(e)
        else:
            raise AssertionError(f"{bad} was not rejected")


@check
def block_sizes_do_not_change_bits(device):
    """HSER-7.4: other tile shapes and buckets of the kernels give the same bits."""
    from lite_llm.optimized.triton import assemble_triton, route_levels_triton

    cfg = make_config(tiers=((4, 4), (8, 4), (3, 40)), k=(2, 2, 2), d=48, seed=4)
    qr = load_router(cfg, router_dict(cfg, init_router_weights(cfg, 1)), 0, device)
    h = torch.from_numpy(gaussian(45, 48, 2)).to(device)
    outs = []
    for c1, c2 in [(dict(BLOCK_T=16, BLOCK_D=32, UNROLL=1), dict(BLOCK_T=16, BLOCK_D=64, BLOCK_N=16)),
                   (dict(BLOCK_T=32, BLOCK_D=64, UNROLL=2), dict(BLOCK_T=32, BLOCK_D=32, BLOCK_N=64)),
                   (dict(BLOCK_T=16, BLOCK_D=32, UNROLL=4, split_absmax=True), dict(BLOCK_T=64, BLOCK_D=32, BLOCK_N=32))]:
        lv, _ = route_levels_triton(h, qr, (0, 1, 2), 0, configs={"level1": c1, "bucket": c2})
        outs.append(assemble_triton(lv, (0, 1, 2)).to_numpy())
    for f in outs[0]:
        assert_bits(outs[0][f], outs[1][f], f)


@check
def k_exceeds_every_level(device):
    """k = (5, 5, 5) above every level's candidate count (the conformance case of that name): every
    tier, group and expert active; the assembly kernel's slot tile is 8 x 8 x 8."""
    for limbs in ((2, 2), (1, 2)):
        cfg = make_config(tiers=((2, 4), (4, 2), (3, 3)), k=(5, 5, 5), d=16, limbs=limbs, seed=0)
        compare(cfg, init_router_weights(cfg, 6), gaussian(5, 16, 11), (0, 1, 2), device)


@check
def bucket_plan_covers_every_slot_once(device):
    """plan_buckets: every slot with a matrix lands in exactly one block of its matrix, blocks hold at
    most BLOCK_T slots, blocks past the last are marked -1 (checked against counts made with numpy)."""
    from lite_llm.optimized.triton.bucketing import plan_buckets

    rng = np.random.default_rng(5)
    for n, n_mat, bt in ((0, 3, 4), (1, 1, 16), (37, 5, 4), (200, 7, 16), (90, 300, 8)):
        mat = rng.integers(-1, n_mat, n).astype(np.int32)
        if n:
            mat[rng.integers(0, n)] = n_mat - 1
        counts = np.bincount(mat[mat >= 0], minlength=n_mat).astype(np.int32)
        pos = np.zeros(n, np.int32)
        for m in range(n_mat):                                    # any distinct places 0 .. count-1
            idx = np.nonzero(mat == m)[0]
            pos[idx] = rng.permutation(len(idx))
        t = lambda a: torch.from_numpy(a).to(device)             # noqa: E731
        b = plan_buckets(t(mat), t(pos), t(counts), bt)
        order, first, count, bmat = (a.cpu().numpy() for a in (b.order, b.first, b.count, b.mat))
        assert len(bmat) == n // bt + n_mat
        used = bmat >= 0
        assert np.all(bmat[:used.sum()] >= 0) and not np.any(bmat[used.sum():] >= 0), bmat
        assert np.all((count[used] >= 1) & (count[used] <= bt)), count
        seen = np.concatenate([order[f:f + c] for f, c in zip(first[used], count[used])]) if used.any() else []
        assert sorted(seen) == sorted(np.nonzero(mat >= 0)[0].tolist()), "every slot with a matrix exactly once"
        for f, c, m in zip(first[used], count[used], bmat[used]):
            assert np.all(mat[order[f:f + c]] == m), "a block holds slots of its own matrix only"
        want_blocks = sum(-(-int(c) // bt) for c in counts)
        assert used.sum() == want_blocks, (used.sum(), want_blocks)
    print("plan_buckets: blocks cover every slot once")


@check
def moe_grouped_gemm_and_combine(device):
    """The MoE kernels: experts within 1e-5 of the torch path, the combine bit for bit, and a token's
    output the same bits alone and in a batch (MODEL-3.3, MODEL-3.5)."""
    from lite_llm.spec.configs import resolve_config
    from lite_llm.optimized.moe import combine, expert_outputs_torch, load_moe_layer, moe_forward
    from lite_llm.optimized.triton import combine_triton, expert_outputs_triton, grouped_swiglu
    from lite_llm.reference.weights import init_model_weights

    cfg = resolve_config("tiny")
    moe = load_moe_layer(cfg, init_model_weights(cfg, 0), 1, (0, 1, 2), device)
    x = torch.from_numpy(gaussian(37, cfg.d_model, 6)).to(device)
    r = route(x, moe.router, (0, 1, 2), 0, backend="triton")
    yt, yg = expert_outputs_torch(moe, x, r), expert_outputs_triton(moe, x, r)
    err = float((yt - yg).abs().max() / yt.abs().max())
    assert err < 1e-5, err
    bank = moe.experts[0]
    slot_e = torch.where(r.tier.reshape(-1) == 0, r.group.reshape(-1).long() * bank.experts_per_group +
                         r.expert.reshape(-1).long(), -1)
    base = grouped_swiglu(x, slot_e, r.gate.shape[1], bank.w_gate, bank.w_up, bank.w_down)
    for c in ({"GROUP_M": 1}, {"GROUP_M": 3, "down": {"BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 2, "num_warps": 2,
                                                      "num_stages": 1}}):    # program order only
        other = grouped_swiglu(x, slot_e, r.gate.shape[1], bank.w_gate, bank.w_up, bank.w_down, c,
                               out=torch.full_like(base, 7.0))
        mine = slot_e >= 0
        assert_bits(other[mine], base[mine], f"grouped order {c}")
        assert bool((other[~mine] == 7.0).all()), "rows of slots without an expert are left as they were"
    assert_bits(combine_triton(r.gate, r.count, yg), combine(r.gate, r.count, yg), "combine")
    assert_bits(combine_triton(r.gate, r.count, yg.to(torch.bfloat16)),
                combine(r.gate, r.count, yg.to(torch.bfloat16).float()), "combine bf16")
    full, _ = moe_forward(moe, x, 0, backend="triton")
    part, _ = moe_forward(moe, x[20:23], 0, backend="triton")
    assert_bits(part, full[20:23], "batch invariance")


def main(argv: list[str]) -> int:
    device = argv[1] if len(argv) > 1 else "cpu"
    names = argv[2:] or list(CHECKS)
    failed = 0
    for name in names:
        try:
            CHECKS[name](device)
            print(json.dumps({"name": name, "ok": True, "detail": ""}), flush=True)
        except Exception:                                                   # reported, not swallowed
            failed += 1
            print(json.dumps({"name": name, "ok": False, "detail": traceback.format_exc()[-3000:]}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
