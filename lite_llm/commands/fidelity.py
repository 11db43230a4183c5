"""``lite-llm fidelity``: how often the exact router agrees with an unquantized float64 router (HSER-2.7)."""
from __future__ import annotations

import json

import numpy as np

from lite_llm.commands.inputs import UsageError, load_npy, non_negative_int, positive_int
from lite_llm.spec.configs import resolve_config
from lite_llm.spec.tierset import parse_tier_set

SYNTHETIC = ("gaussian", "heavy")


def add_parser(sub) -> None:
    p = sub.add_parser("fidelity", help="measure quantized-router agreement with a float64 router (HSER-2.7)")
    p.add_argument("--config", default="fidelity-hser", help="config file or bundled name (default fidelity-hser)")
    p.add_argument("--tokens", type=positive_int, default=4096, help="synthetic tokens to route (default 4096)")
    p.add_argument("--hidden", default="heavy", metavar="gaussian|heavy|FILE.npy",
                   help="Gaussian, heavy-tailed with outlier channels (default), or your hidden states (T, d_model)")
    p.add_argument("--input-seed", type=non_negative_int, default=0)
    p.add_argument("--weights-seed", type=non_negative_int, default=1)
    p.add_argument("--tierset", default="all")
    p.add_argument("--limbs", type=limb_settings, default=None, metavar="H+W[,H+W...]",
                   help="limb settings to measure, hidden+weight, e.g. 2+2,3+2 (default: all six TIER-1.5 allows: "
                        "1+1, 1+2, 2+1, 2+2, 3+1, 3+2)")
    p.add_argument("--json", action="store_true", help="print the table as one JSON object on stdout")
    p.set_defaults(func=run)


def limb_settings(text: str) -> tuple[tuple[int, int], ...]:
    """``2+2,3+2`` -> ((2, 2), (3, 2)); hidden limbs 1-3, weight limbs 1-2 (TIER-1.5)."""
    import argparse

    out = []
    for part in text.split(","):
        h, sep, w = part.strip().partition("+")
        if not sep or h not in ("1", "2", "3") or w not in ("1", "2"):
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: expected HIDDEN+WEIGHT with hidden limbs 1, 2 or 3 "
                                             "and weight limbs 1 or 2 (TIER-1.5), e.g. 3+2")
        out.append((int(h), int(w)))
    return tuple(dict.fromkeys(out))


def hidden_states(kind: str, tokens: int, d: int, seed: int) -> np.ndarray:
    from lite_llm.reference.fidelity import heavy_tailed_hidden

    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.standard_normal((tokens, d)).astype(np.float32)
    return heavy_tailed_hidden(rng, tokens, d)


def run(args) -> int:
    from lite_llm.reference.fidelity import LIMB_SETTINGS, fidelity
    from lite_llm.reference.router_weights import init_router_weights

    cfg = resolve_config(args.config)
    if args.hidden in SYNTHETIC:
        h = hidden_states(args.hidden, args.tokens, cfg.d_model, args.input_seed)
    else:
        h = load_npy(args.hidden, "--hidden")
        if h.ndim != 2 or h.shape[0] == 0 or h.shape[1] != cfg.d_model:
            raise UsageError(f"--hidden {args.hidden}: shape {h.shape}, expected (T >= 1, d_model={cfg.d_model})")
    w = init_router_weights(cfg, args.weights_seed)
    rows = fidelity(cfg, w, h, parse_tier_set(cfg, args.tierset), cfg.router.seed, args.limbs or LIMB_SETTINGS)
    source = args.hidden if args.hidden in SYNTHETIC else f"hidden states from {args.hidden}"
    if args.json:
        print(json.dumps({"config": args.config, "tokens": int(h.shape[0]), "hidden": source, "d_model": cfg.d_model,
                          "rows": [{"hidden_limbs": f.hidden_limbs, "weight_limbs": f.weight_limbs,
                                    "agreement": f.agree} for f in rows]}))
        return 0
    print(f"{args.config}: {h.shape[0]} tokens ({source}), d={cfg.d_model}, "
          f"k=({cfg.router.k_tier}, {cfg.router.k_group}, {cfg.router.k_expert})")
    print("hidden limbs  weight limbs  agreement with float64 router")
    for f in rows:
        print(f"{f.hidden_limbs:>12}  {f.weight_limbs:>12}  {100 * f.agree:8.3f}%")
    return 0
