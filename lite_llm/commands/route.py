"""``lite-llm route``: route hidden states with the reference or the optimized router; print or save the record."""
from __future__ import annotations

import json

import numpy as np

from lite_llm.commands.inputs import (UsageError, add_allow_large, check_memory, load_npy, non_negative_int,
                                      output_path, router_bytes, seed_arg)
from lite_llm.commands.tierset_arg import HELP as TIERSET_HELP, resolve_tier_set
from lite_llm.spec.config import parse_seed
from lite_llm.spec.configs import resolve_config
from lite_llm.spec.operations import RECORD_FIELDS


def add_parser(sub) -> None:
    p = sub.add_parser("route", help="route hidden states through HSER (reference or optimized)",
                       description="Route hidden states (T, d) from a .npy file, or random ones, through the three "
                                   "HSER levels and print each token's active experts and gates.")
    p.add_argument("--config", default="tiny", help="config JSON file or bundled name (default: tiny)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--hidden", metavar="FILE.npy", help="hidden states, shape (T, d_model), float16/32/64")
    src.add_argument("--random", type=non_negative_int, metavar="T", default=8,
                     help="route T random Gaussian tokens (default 8)")
    p.add_argument("--input-seed", type=non_negative_int, default=0, help="seed of the random hidden states")
    p.add_argument("--weights-seed", type=seed_arg, default=0, help="seed of the deterministic router weights (INIT chapter)")
    p.add_argument("--layer", type=non_negative_int, default=0, help="which layer's router weights to initialise")
    p.add_argument("--tierset", default="all", help=TIERSET_HELP)
    p.add_argument("--seed", type=seed_arg, default=None, help="routing seed s, decimal or 0x-hex (default: the config's)")
    p.add_argument("--impl", choices=("reference", "optimized"), default="reference",
                   help="which implementation routes (the record is the same bits either way)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of --impl optimized")
    p.add_argument("--out", metavar="FILE.npz", help="save the full routing record (HSER-9.3) to this file")
    p.add_argument("--show", type=non_negative_int, default=16, help="print at most this many tokens (default 16)")
    p.add_argument("--json", action="store_true", help="print the routing record as one JSON object on stdout")
    add_allow_large(p)
    p.set_defaults(func=run)


def route_reference(cfg, weights, h, tiers, seed) -> dict:
    from lite_llm.reference.router import route
    from lite_llm.reference.router_weights import quantize_router

    r = route(h, quantize_router(cfg, weights), tiers, seed)
    return {**{f: getattr(r, f) for f in RECORD_FIELDS}, "tier_set": np.asarray(r.tier_set, np.int32)}


def route_optimized(cfg, weights, h, tiers, seed, device: str) -> dict:
    try:
        import torch
    except ModuleNotFoundError:
        raise UsageError("--impl optimized needs torch: pip install 'lite-llm[torch]'") from None
    from lite_llm.optimized.router import load_router, route

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device")
    named = {}
    for t, tc in enumerate(cfg.tiers):
        for kind, rows in (("tier", weights.tier), ("group", weights.group), ("expert", weights.expert)):
            named[f"layers.0.tiers.{tc.name}.router_{kind}"] = rows[t]
    r = route(h, load_router(cfg, named, 0, device), tiers, seed)
    return {**{f: getattr(r, f).cpu().numpy() for f in RECORD_FIELDS}, "tier_set": np.asarray(r.tier_set, np.int32)}


def active(record: dict, i: int):
    """(tier, group, expert, gate) of token i's active experts, in slot order (HSER-9.2)."""
    n = int(record["count"][i])
    return [(int(record["tier"][i, s]), int(record["group"][i, s]), int(record["expert"][i, s]),
             float(record["gate"][i, s])) for s in range(n)]


def run(args) -> int:
    from lite_llm.reference.router_weights import init_router_weights

    out = output_path(args.out, "--out")                          # checked before any work
    cfg = resolve_config(args.config)
    if args.layer >= cfg.n_layers:
        raise UsageError(f"--layer {args.layer}: the model has layers 0..{cfg.n_layers - 1}")
    tiers = resolve_tier_set(cfg, args.tierset)                  # parsed here, validated once by route()
    check_memory(router_bytes(cfg), "initialising the router weights", args.allow_large, factor=3.0)
    if args.hidden:
        h = load_npy(args.hidden, "--hidden")
    else:
        h = np.random.default_rng(args.input_seed).standard_normal((args.random, cfg.d_model)).astype(np.float32)
    weights = init_router_weights(cfg, parse_seed(args.weights_seed), args.layer)
    seed = args.seed                                              # route() checks it, once (HSER-4.1)
    if args.impl == "reference":
        rec = route_reference(cfg, weights, h, tiers, seed)
    else:
        rec = route_optimized(cfg, weights, h, tiers, seed, args.device)
    if out is not None:
        np.savez(out, **rec)
    names = [t.name for t in cfg.tiers]
    T = int(rec["count"].shape[0])
    if args.json:
        print(json.dumps({"config": args.config, "impl": args.impl, "device": args.device if args.impl == "optimized"
                          else "cpu", "tierset": [names[t] for t in rec["tier_set"]],
                          "tokens": T, "record": {k: v.tolist() for k, v in rec.items()}}))
        return 0
    print(f"routed {T} tokens with {args.impl}"
          f"{f' ({args.device})' if args.impl == 'optimized' else ''}, TierSet "
          f"{{{', '.join(names[t] for t in rec['tier_set'])}}}, "
          f"k = ({cfg.router.k_tier}, {cfg.router.k_group}, {cfg.router.k_expert}), "
          f"limbs {cfg.router.hidden_limbs}+{cfg.router.weight_limbs}")
    for i in range(min(args.show, T)):
        act = ", ".join(f"{names[t]}/g{g}/e{e}:{w:.4f}" for t, g, e, w in active(rec, i))
        print(f"  token {i:>4}: {act}")
    if T > args.show:
        print(f"  ... {T - args.show} more (use --show or --out)")
    if out is not None:
        print(f"saved routing record to {out}")
    return 0
