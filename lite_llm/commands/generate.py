"""``lite-llm generate``: greedy generation (spec MODEL-5), from memory or streamed from storage (PLACE-4).

``--impl reference`` (the default) runs the NumPy reference with every weight in memory.
``--impl optimized`` runs the torch model with experts served by ``lite_llm.optimized.storage``:
a host cache (and a GPU cache on CUDA) over the checkpoint, read by byte range from a directory or
any fsspec URL, each cache holding what the PLACE-4 policy says. Giving a cache size, a URL or
``--trace`` selects it. Tokens, logits and routing records are the same bits whatever the caches
hold (PLACE-1.3); the storage metrics (hits, misses, bytes moved per storage class) are printed at
the end, on stderr (in the JSON with ``--json``).
"""
from __future__ import annotations

import json
import sys

from lite_llm.spec.configs import resolve_config
from lite_llm.spec.errors import ConfigError, TokenError
from lite_llm.commands.inputs import (UsageError, add_allow_large, check_memory, model_bytes, non_negative_int,
                                      output_path, seed_arg)
from lite_llm.commands.tierset_arg import HELP as TIERSET_HELP, resolve_tier_set


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="greedy generation, in memory or with experts streamed from storage",
                       description="Append --max-new tokens to a prompt by greedy decoding (largest logit, ties "
                                   "to the lowest id), recomputing the whole forward pass for every token. The "
                                   "weights come from a checkpoint (a directory or an fsspec URL such as "
                                   "s3://bucket/ckpt or https://host/ckpt), or are initialised from --weights-seed "
                                   "(INIT chapter). With --impl optimized the experts are streamed through a host "
                                   "cache (and a GPU cache on CUDA) that follow the PLACE-4 policy; the output is "
                                   "the same bits whatever the cache sizes. Prints the new tokens, comma-separated.")
    p.add_argument("--prompt", required=True, help="token ids, comma-separated, e.g. 1,2,3")
    p.add_argument("--max-new", type=non_negative_int, default=8, help="number of tokens to generate (default 8)")
    p.add_argument("--tierset", default="all", help=TIERSET_HELP)
    p.add_argument("--seed", type=seed_arg, default=None, help="routing seed s (default: the config's)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="DIR_OR_URL",
                     help="load config and weights from this checkpoint (CKPT chapter): a directory or a URL")
    src.add_argument("--weights-seed", type=seed_arg, default=None, help="initialise the weights from this seed (default 0)")
    p.add_argument("--config", default=None, help="config JSON file or bundled name (default tiny; not with --checkpoint)")
    p.add_argument("--impl", choices=["reference", "optimized"], default=None,
                   help="reference (NumPy, all in memory; the default) or optimized (torch, experts streamed from "
                        "storage; the default when a cache size, a URL or --trace is given)")
    p.add_argument("--device", default=None, help="optimized: cpu or cuda (default cuda when available)")
    p.add_argument("--cache-gpu", metavar="SIZE", default=None,
                   help="optimized on CUDA: GPU expert cache, e.g. 2GiB, 512MiB, or 10%% of the expert bytes "
                        "(default: all); ignored without a GPU, where host memory is the fast tier")
    p.add_argument("--cache-host", metavar="SIZE", default=None,
                   help="optimized: host-memory expert cache, e.g. 8GiB or 25%% (default: all)")
    p.add_argument("--half-life", type=non_negative_int, default=None,
                   help="cache policy half-life in steps (PLACE-4.5; default: the number of experts)")
    p.add_argument("--no-prefetch", action="store_true", help="optimized: no background prefetch (PLACE-4.9)")
    p.add_argument("--storage-options", metavar="JSON", default=None,
                   help='fsspec options for a URL checkpoint, e.g. \'{"client_kwargs": {"endpoint_url": "..."}}\'')
    p.add_argument("--trace", metavar="FILE.npz", default=None,
                   help="optimized: save the routing trace (the units every step requested, PLACE-4.3)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the prompt, the new tokens "
                                                       "and (optimized) the storage metrics")
    add_allow_large(p)
    p.set_defaults(func=run)


def parse_prompt(text: str) -> list[int]:
    parts = [s.strip() for s in text.split(",")]
    try:
        return [int(s) for s in parts]
    except ValueError:
        raise TokenError(f"--prompt {text!r} is not a comma-separated list of integer token ids") from None


def cache_size(text: str | None, what: str, expert_bytes: int) -> int | None:
    """A cache size: bytes ('2GiB', '512MiB', '1000') or a percentage of the expert bytes ('10%')."""
    if text is None:
        return None
    from lite_llm.optimized.storage.store import parse_bytes

    t = text.strip()
    try:
        if t.endswith("%"):
            pct = float(t[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return int(expert_bytes * pct / 100)
        return parse_bytes(t)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a size such as 2GiB, 512MiB, 1000 or 10%") from None


def run(args) -> int:
    streaming = (args.cache_gpu is not None or args.cache_host is not None or args.trace is not None
                 or (args.checkpoint is not None and "://" in args.checkpoint and not args.checkpoint.startswith("file://")))
    impl = args.impl or ("optimized" if streaming else "reference")
    if impl == "reference" and streaming:
        raise UsageError("cache sizes, URL checkpoints and --trace need --impl optimized (the streaming runtime)")
    if impl == "optimized":
        return run_optimized(args)
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
        weights = init_model_weights(cfg, args.weights_seed or 0)
    tiers = resolve_tier_set(cfg, args.tierset)
    prompt = parse_prompt(args.prompt)
    seed = args.seed
    new = generate(cfg, weights, prompt, args.max_new, tiers, seed=seed)
    if args.json:
        print(json.dumps({"prompt": prompt, "generated": new, "tierset": [cfg.tiers[t].name for t in tiers]}))
    else:
        print(",".join(str(t) for t in new))
    return 0


def run_optimized(args) -> int:
    """Generation with experts streamed through the caches (PLACE-4), metrics at the end."""
    try:
        import torch
    except ImportError:
        raise UsageError("--impl optimized needs torch: pip install 'lite-llm[torch]'") from None
    from lite_llm.optimized.storage.serve import generate_streaming, streaming_model
    from lite_llm.optimized.storage.sources import CheckpointSource, MemorySource
    from lite_llm.optimized.storage.units import UnitMap

    trace_path = output_path(args.trace, "--trace")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device {device!r}: expected cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device")
    options = None
    if args.storage_options is not None:
        try:
            options = json.loads(args.storage_options)
        except json.JSONDecodeError as e:
            raise UsageError(f"--storage-options is not JSON: {e}") from None
        if not isinstance(options, dict):
            raise UsageError("--storage-options must be a JSON object")
    if args.checkpoint:
        if args.config is not None:
            raise ConfigError("give --config or --checkpoint, not both: a checkpoint carries its own config")
        from lite_llm.optimized.storage.sources import Location, MANIFEST, parse_manifest, read_whole, RetryPolicy

        loc = Location(args.checkpoint, options) if "://" in args.checkpoint else None
        if loc is None:
            from lite_llm.optimized.checkpoint import read_manifest
            from pathlib import Path

            _, cfg0 = read_manifest(Path(args.checkpoint))
        else:
            m = loc.reader(MANIFEST)
            if not m.exists():
                from lite_llm.spec.errors import CheckpointMissingError
                raise CheckpointMissingError("the manifest does not exist or cannot be reached", path=m.url)
            _, cfg0 = parse_manifest(read_whole(m, m.size(), "manifest", RetryPolicy()), m.url)
        tiers = resolve_tier_set(cfg0, args.tierset)
        source = CheckpointSource(args.checkpoint, tiers, storage_options=options)
    else:
        from lite_llm.reference.weights import init_model_weights

        cfg0 = resolve_config(args.config or "tiny")
        check_memory(model_bytes(cfg0), "initialising the model", args.allow_large)
        tiers = resolve_tier_set(cfg0, args.tierset)
        source = MemorySource(cfg0, init_model_weights(cfg0, args.weights_seed or 0), tiers)
    cfg = source.cfg
    units = UnitMap(cfg)
    expert_bytes = sum(units.size(u) for t in tiers for l in range(cfg.n_layers) for u in units.layer_units(l, [t]))
    gpu = cache_size(args.cache_gpu, "--cache-gpu", expert_bytes)
    host = cache_size(args.cache_host, "--cache-host", expert_bytes)
    notes = []
    if device == "cpu" and gpu is not None:
        notes.append("no GPU: --cache-gpu ignored; host memory is the fast tier")
    if getattr(source, "hash_source", "") == "hash pass":
        notes.append("the checkpoint has no expert-hashes.json: each shard of the TierSet was read once to hash its "
                     "blocks (PLACE-4.10); write the sidecar once with lite_llm.optimized.storage.sources."
                     "write_expert_hashes(DIR_OR_URL) to open without reading whole shards")
    if args.half_life == 0:
        raise UsageError("--half-life must be at least 1")
    sm = streaming_model(source, device, gpu, host, args.half_life, prefetch=not args.no_prefetch)
    try:
        prompt = parse_prompt(args.prompt)
        seed = args.seed
        out = generate_streaming(sm, prompt, args.max_new, seed=seed, keep=False)
        metrics = sm.store.sync_metrics()
        if trace_path is not None:
            from lite_llm.reference.cache_policy import save_trace, trace_from_steps

            sizes = units.sizes()
            save_trace(trace_path, trace_from_steps(sm.store.trace, sizes, sm.store.trace_layers,
                                                    {"source": "lite-llm generate", "rows": "all",
                                                     "checkpoint": args.checkpoint or f"seed {args.weights_seed}",
                                                     "prompt": prompt, "generated": out.tokens,
                                                     "tierset": list(tiers)}))
    finally:
        sm.close()
    secs = sum(out.seconds)
    if args.json:
        print(json.dumps({"prompt": prompt, "generated": out.tokens, "tierset": [cfg.tiers[t].name for t in tiers],
                          "impl": "optimized", "device": device, "seconds": secs, "timing": sm.timing,
                          "metrics": metrics.as_dict(), "notes": notes}))
    else:
        print(",".join(str(t) for t in out.tokens))
        for n in notes:
            print(f"note: {n}", file=sys.stderr)
        print(metrics.format(), file=sys.stderr)
        print(f"{len(out.tokens)} tokens in {secs:.3f} s (routing {sm.timing['route_s']:.3f} s, experts and "
              f"materialisation {sm.timing['experts_s']:.3f} s, of which waiting {metrics.wait_s:.3f} s)",
              file=sys.stderr)
    return 0
