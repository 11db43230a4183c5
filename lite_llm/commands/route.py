"""``lite-llm route``: route hidden states with the reference router and print or save the result."""
from __future__ import annotations

import numpy as np

from lite_llm.spec.configs import resolve_config
from lite_llm.spec.config import parse_seed
from lite_llm.commands.tierset_arg import HELP as TIERSET_HELP, resolve_tier_set


def add_parser(sub) -> None:
    p = sub.add_parser("route", help="route hidden states through HSER (reference implementation)",
                       description="Route hidden states (T, d) from a .npy file, or random ones, through the three "
                                   "HSER levels and print each token's active experts and gates.")
    p.add_argument("--config", default="tiny", help="config JSON file or bundled name (default: tiny)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--hidden", metavar="FILE.npy", help="hidden states, shape (T, d_model), float16/32/64")
    src.add_argument("--random", type=int, metavar="T", default=8, help="route T random Gaussian tokens (default 8)")
    p.add_argument("--input-seed", type=int, default=0, help="seed of the random hidden states")
    p.add_argument("--weights-seed", default="0", help="seed of the deterministic router weights (INIT chapter)")
    p.add_argument("--layer", type=int, default=0, help="which layer's router weights to initialise")
    p.add_argument("--tierset", default="all", help=TIERSET_HELP)
    p.add_argument("--seed", default=None, help="routing seed s (default: the config's)")
    p.add_argument("--out", metavar="FILE.npz", help="save the full routing record (HSER-9.3) to this file")
    p.add_argument("--show", type=int, default=16, help="print at most this many tokens (default 16)")
    p.set_defaults(func=run)


def run(args) -> int:
    from lite_llm.reference.router import route
    from lite_llm.reference.router_weights import init_router_weights, quantize_router

    cfg = resolve_config(args.config)
    tiers = resolve_tier_set(cfg, args.tierset)
    if args.hidden:
        h = np.load(args.hidden, allow_pickle=False)
    else:
        h = np.random.default_rng(args.input_seed).standard_normal((args.random, cfg.d_model)).astype(np.float32)
    weights = init_router_weights(cfg, parse_seed(args.weights_seed), args.layer)
    r = route(h, quantize_router(cfg, weights), tiers, None if args.seed is None else parse_seed(args.seed))
    names = [t.name for t in cfg.tiers]
    print(f"routed {h.shape[0]} tokens, TierSet {{{', '.join(names[t] for t in r.tier_set)}}}, "
          f"k = ({cfg.router.k_tier}, {cfg.router.k_group}, {cfg.router.k_expert}), "
          f"limbs {cfg.router.hidden_limbs}+{cfg.router.weight_limbs}")
    for i in range(min(args.show, h.shape[0])):
        act = ", ".join(f"{names[t]}/g{g}/e{e}:{w:.4f}" for t, g, e, w in r.active(i))
        print(f"  token {i:>4}: {act}")
    if h.shape[0] > args.show:
        print(f"  ... {h.shape[0] - args.show} more (use --show or --out)")
    if args.out:
        np.savez(args.out, **{k: getattr(r, k) for k in (
            "tier", "group", "expert", "gate", "count", "tier_probs", "chosen_tiers", "group_probs",
            "chosen_groups", "expert_probs")}, tier_set=np.asarray(r.tier_set, np.int32))
        print(f"saved routing record to {args.out}")
    return 0
