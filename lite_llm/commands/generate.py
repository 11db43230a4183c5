"""``lite-llm generate``: greedy generation with the reference model (spec MODEL-5)."""
from __future__ import annotations

import json

from lite_llm.spec.configs import resolve_config
from lite_llm.spec.config import parse_seed
from lite_llm.spec.errors import ConfigError, TokenError
from lite_llm.commands.inputs import add_allow_large, check_memory, model_bytes, non_negative_int
from lite_llm.commands.tierset_arg import HELP as TIERSET_HELP, resolve_tier_set


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="greedy generation with the NumPy reference model (MODEL-5)",
                       description="Append --max-new tokens to a prompt by greedy decoding (largest logit, ties "
                                   "to the lowest id), recomputing the whole forward pass for every token. The "
                                   "weights come from a checkpoint, or are initialised from --weights-seed "
                                   "(INIT chapter). Prints the new tokens, comma-separated.")
    p.add_argument("--prompt", required=True, help="token ids, comma-separated, e.g. 1,2,3")
    p.add_argument("--max-new", type=non_negative_int, default=8, help="number of tokens to generate (default 8)")
    p.add_argument("--tierset", default="all", help=TIERSET_HELP)
    p.add_argument("--seed", default=None, help="routing seed s (default: the config's)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="DIR", help="load config and weights from this checkpoint (CKPT chapter)")
    src.add_argument("--weights-seed", default=None, help="initialise the weights from this seed (default 0)")
    p.add_argument("--config", default=None, help="config JSON file or bundled name (default tiny; not with --checkpoint)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the prompt and the new tokens")
    add_allow_large(p)
    p.set_defaults(func=run)


def parse_prompt(text: str) -> list[int]:
    parts = [s.strip() for s in text.split(",")]
    try:
        return [int(s) for s in parts]
    except ValueError:
        raise TokenError(f"--prompt {text!r} is not a comma-separated list of integer token ids") from None


def run(args) -> int:
    from lite_llm.reference.generate import generate

    if args.checkpoint:
        if args.config is not None:
            raise ConfigError("give --config or --checkpoint, not both: a checkpoint carries its own config")
        from lite_llm.reference.checkpoint import load_checkpoint, read_manifest

        tiers = resolve_tier_set(read_manifest(args.checkpoint).cfg, args.tierset)
        check_memory(model_bytes(read_manifest(args.checkpoint).cfg, tiers), "loading the checkpoint",
                     args.allow_large)
        cfg, weights = load_checkpoint(args.checkpoint, tiers)          # reads only the TierSet's shards
    else:
        from lite_llm.reference.weights import init_model_weights

        cfg = resolve_config(args.config or "tiny")
        check_memory(model_bytes(cfg), "initialising the model", args.allow_large)
        weights = init_model_weights(cfg, parse_seed(args.weights_seed or "0"))
    tiers = resolve_tier_set(cfg, args.tierset)
    prompt = parse_prompt(args.prompt)
    seed = None if args.seed is None else parse_seed(args.seed)
    new = generate(cfg, weights, prompt, args.max_new, tiers, seed=seed)
    if args.json:
        print(json.dumps({"prompt": prompt, "generated": new, "tierset": [cfg.tiers[t].name for t in tiers]}))
    else:
        print(",".join(str(t) for t in new))
    return 0
