"""``lite-llm fidelity``: how often the exact router agrees with an unquantized float64 router (HSER-2.7)."""
from __future__ import annotations

import numpy as np

from lite_llm.spec.configs import resolve_config
from lite_llm.spec.tierset import parse_tier_set


def add_parser(sub) -> None:
    p = sub.add_parser("fidelity", help="measure quantized-router agreement with a float64 router (HSER-2.7)")
    p.add_argument("--config", default="fidelity-hser", help="config file or bundled name (default fidelity-hser)")
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--hidden", choices=("gaussian", "heavy"), default="heavy",
                   help="Gaussian, or heavy-tailed with outlier channels (default)")
    p.add_argument("--input-seed", type=int, default=0)
    p.add_argument("--weights-seed", type=int, default=1)
    p.add_argument("--tierset", default="all")
    p.set_defaults(func=run)


def hidden_states(kind: str, tokens: int, d: int, seed: int) -> np.ndarray:
    from lite_llm.reference.fidelity import heavy_tailed_hidden

    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((tokens, d)).astype(np.float32)
    return heavy_tailed_hidden(rng, tokens, d)


def run(args) -> int:
    from lite_llm.reference.fidelity import fidelity
    from lite_llm.reference.router_weights import init_router_weights

    cfg = resolve_config(args.config)
    h = hidden_states(args.hidden, args.tokens, cfg.d_model, args.input_seed)
    w = init_router_weights(cfg, args.weights_seed)
    rows = fidelity(cfg, w, h, parse_tier_set(cfg, args.tierset), cfg.router.seed)
    print(f"{args.config}: {args.tokens} {args.hidden} tokens, d={cfg.d_model}, "
          f"k=({cfg.router.k_tier}, {cfg.router.k_group}, {cfg.router.k_expert})")
    print("hidden limbs  weight limbs  agreement with float64 router")
    for f in rows:
        print(f"{f.hidden_limbs:>12}  {f.weight_limbs:>12}  {100 * f.agree:8.3f}%")
    return 0
