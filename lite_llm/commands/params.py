"""``lite-llm params``: exact parameter counts of a config: P_total, P_active per token, the paper's bound.

The counts come from ``lite_llm.reference.params`` (spec chapter PARAM); nothing is allocated, so a
quadrillion-parameter config is counted in milliseconds.
"""
from __future__ import annotations

import json

from lite_llm.spec.configs import resolve_config
from lite_llm.spec.tierset import parse_tier_set


def add_parser(sub) -> None:
    p = sub.add_parser("params", help="count total and per-token active parameters of a config (PARAM chapter)",
                       description="Count P_total, the tier budgets B_t and the parameters one token reads "
                                   "(dense, router rows per level, experts; worst case over the level-1 "
                                   "choice), per layer and in total, beside the paper's bound L (C_dense + K max|e|).")
    p.add_argument("config", help="config JSON file or bundled name (e.g. tiny, quadrillion)")
    p.add_argument("--tierset", default="all", help="all | exclusive:NAME | cumulative:NAME | a,b,c (default all)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run)


def short(n: int) -> str:
    """A count in engineering units, e.g. 7.21B, 1.0005Q."""
    for unit, scale in (("Q", 10 ** 15), ("T", 10 ** 12), ("B", 10 ** 9), ("M", 10 ** 6), ("K", 10 ** 3)):
        if n >= scale:
            return f"{n / scale:.5g}{unit}"
    return str(n)


def nbytes(n: int) -> str:
    """A byte count in decimal units, e.g. 3.602 PB."""
    for unit, scale in (("PB", 10 ** 15), ("TB", 10 ** 12), ("GB", 10 ** 9), ("MB", 10 ** 6), ("kB", 10 ** 3)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} B"


def rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def row(label: str, per_layer, total: int | None) -> str:
    pl = "" if per_layer is None else f"{per_layer:,}"
    tot = "" if total is None else f"{total:,}  ({short(total)})"
    return f"  {label:<40} {pl:>16}  {tot:>32}"


def run(args) -> int:
    from lite_llm.reference.params import expert_size, param_report

    cfg = resolve_config(args.config)
    tiers = parse_tier_set(cfg, args.tierset)
    r = param_report(cfg, tiers)
    if args.json:
        print(json.dumps({"config": args.config, "tier_names": [t.name for t in cfg.tiers], **r.to_dict()}))
        return 0
    rc, L, d = cfg.router, cfg.n_layers, cfg.d_model
    names = [t.name for t in cfg.tiers]
    print(f"{args.config}: d={d}, L={L}, V={cfg.vocab_size}, k=({rc.k_tier}, {rc.k_group}, {rc.k_expert}), "
          f"TierSet {{{', '.join(names[t] for t in r.tiers)}}}")
    print()
    print(f"  {'tier':<12} {'G x E':>14} {'d_ff':>6} {'|e|':>12} {'B_t (params)':>26} {'fp32 shard':>12}  placement")
    for t, tc in enumerate(cfg.tiers):
        mark = "" if t in r.tiers else "  (not in TierSet)"
        print(f"  {tc.name:<12} {f'{tc.groups} x {tc.experts_per_group}':>14} {tc.d_ff:>6} "
              f"{expert_size(cfg, t):>12,} {r.tier_budgets[t]:>26,} {nbytes(4 * r.tier_budgets[t]):>12}  "
              f"{tc.placement}{mark}")
    print(row("dense (embed, attention, norms, LM head)", None, r.dense_total))
    print(row("P_total", None, r.p_total))
    print()
    worst = ", ".join(names[t] for t in r.worst_case_tiers)
    print(f"  active per token (worst level-1 choice: {worst})   {'per layer':>16}  {f'x {L} layers + outside':>32}")
    r1, r2, r3 = r.layer_router_rows
    print(row("attention + norms (C_dense)", r.layer_dense, L * r.layer_dense))
    print(row("embedding row + final norm + LM head", None, r.io_active))
    print(row(f"router level 1 ({rows(r1)} of {d})", r.layer_routers[0], L * r.layer_routers[0]))
    print(row(f"router level 2 ({rows(r2)})", r.layer_routers[1], L * r.layer_routers[1]))
    print(row(f"router level 3 ({rows(r3)})", r.layer_routers[2], L * r.layer_routers[2]))
    print(row(f"experts ({r.layer_active_experts} active)", r.layer_experts, r.experts))
    print(row("total", r.layer_active, r.p_active))
    print()
    print(row("P_active = dense + routers + experts", None, r.p_active))
    print(f"    dense {r.dense:,}, routers {r.routers:,}, experts {r.experts:,}")
    print(row("P_active with the whole embedding table", None, r.p_active_full_embed))
    print(row("paper's bound L (C_dense + K max|e|)", None, r.paper_bound))
    print(row("paper's experts alone L K max|e|", None, r.paper_experts_only))
    if r.exceeds_paper_bound:
        print(f"  P_active exceeds the paper's bound by {r.p_active - r.paper_bound:,} "
              f"({100 * (r.p_active / r.paper_bound - 1):.1f}%): router rows and the LM head are not in it (PARAM-4.2)")
    else:
        print(f"  P_active is within the paper's bound ({r.paper_bound - r.p_active:,} below it)")
    return 0
