"""``lite-llm bench``: the GPU benchmarks (router S1/S2, MoE S3), ours vs baseline vs floor; and the
storage benchmark (expert-cache policy vs LRU, LFU and Belady; decode with streamed experts)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the exact router and the MoE layer (CUDA; --quick on the CPU)",
                       description="Time the optimized implementation against float baselines and memory floors, "
                                   "median of many runs with CUDA events. router: S1 (one level, 64 candidates) "
                                   "and S2 (three-level HSER, 10,240 experts); moe: S3 (64 experts, 4 active), "
                                   "S4 (the whole MoE layer vs the usual one), S5 (route() and the layer at "
                                   "T = 1 .. 16384), E2E (greedy decode of a model, KV cache). "
                                   "storage: the PLACE-4 expert-cache policy against LRU, LFU and Belady's optimum "
                                   "on decode traces (hit rate at 1%% to 50%% of expert bytes), and decode tokens/s "
                                   "with 100/25/10/5%% of expert bytes in the fastest tier (runs on a CPU). "
                                   "See benchmarks/README.md.")
    p.add_argument("what", choices=["router", "moe", "storage", "corollary", "scaling"], help="which benchmark")
    p.add_argument("--scenario", choices=["S1", "S2", "S3", "S4", "S5", "E2E", "all"], default="all",
                   help="router: S1, S2 or all; moe: S3, S4, S5, E2E or all (default all)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the code path, no timing claim")
    p.add_argument("--json", metavar="FILE", nargs="?", const="-",
                   help="also write the results as JSON to FILE; storage: --json alone prints JSON to stdout")
    p.add_argument("--trace", metavar="FILE.npz", default=None,
                   help="storage: replay this trace (PLACE-4.3, e.g. from lite-llm generate --trace) instead of "
                        "the built-in model and Zipf traces")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="storage: plot hit rate against cache size")
    p.add_argument("--no-decode", action="store_true", help="storage: hit rates only, skip the decode timing")
    p.add_argument("--save-traces", metavar="DIR", default=None,
                   help="storage: also save the traces replayed, one .npz each (PLACE-4.3)")
    p.add_argument("--tokens", type=int, default=None, metavar="N",
                   help="corollary: tokens of the stream (default 8; --quick 1)")
    p.add_argument("--reps", type=int, default=None, metavar="N", help="corollary, scaling: timed repetitions")
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="corollary, scaling: time budget; repetitions stop early when it is spent")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="corollary, scaling: write JSON and PNG there (default benchmarks/results; --quick: none)")
    p.add_argument("--plot-from", metavar="FILE.json", default=None,
                   help="corollary, scaling: only draw the PNG of a JSON result (written where matplotlib was missing)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from lite_llm.commands.inputs import UsageError, output_path

    if args.json != "-":
        output_path(args.json, "--json")                               # checked before any timing
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device")
    if args.what == "storage":
        return run_storage(args, device)
    if args.what in ("corollary", "scaling"):
        return run_scale(args, device)
    if args.json == "-":
        raise UsageError("--json needs a FILE for the router and moe benchmarks")
    if args.trace or args.plot or args.no_decode or args.save_traces:
        raise UsageError("--trace, --plot, --no-decode and --save-traces are options of lite-llm bench storage")
    if device == "cpu" and not args.quick:
        raise UsageError("the full-size benchmarks are GPU sizes and take well over 10 minutes on a CPU; "
                         "use --quick for a CPU smoke test of the code paths, or run on a GPU (--device cuda)")
    if args.what == "router":
        if args.scenario not in ("S1", "S2", "all"):
            raise UsageError(f"{args.scenario} is an MoE benchmark: lite-llm bench moe --scenario {args.scenario}")
        from lite_llm.benchmarks.bench_router import run as run_router
        return run_router(args.scenario, device, args.quick, args.json)
    if args.scenario in ("S1", "S2"):
        raise UsageError(f"{args.scenario} is a router scenario: lite-llm bench router --scenario {args.scenario}")
    if args.scenario in ("S4", "S5", "E2E"):
        from lite_llm.benchmarks.bench_layer import run as run_layer
        return run_layer([args.scenario], device, args.quick, args.json)
    from lite_llm.benchmarks.bench_moe import run as run_moe
    return run_moe(device, args.quick, args.json, layer=args.scenario == "all")


def run_storage(args, device: str) -> int:
    """The storage benchmark: hit rates on traces, and decode with streamed experts (CPU or CUDA)."""
    from lite_llm.commands.inputs import UsageError, output_path

    if args.scenario != "all":
        raise UsageError("--scenario is an option of the router and moe benchmarks")
    if args.plot:
        output_path(args.plot, "--plot")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib: pip install 'lite-llm[plots]'") from None
    if args.trace:
        from lite_llm.reference.cache_policy import load_trace

        load_trace(args.trace)                                         # E_SHAPE before any work
    from lite_llm.benchmarks.bench_storage import run as run_bench

    return run_bench(args.trace, args.quick, device, args.json, args.plot, decode_too=not args.no_decode,
                     save_traces=args.save_traces)


def run_scale(args, device: str) -> int:
    """corollary: the quadrillion model swept over its cumulative TierSets (issue 13); scaling: flat vs HSER
    vs product-key routing from 1e3 to 1e7 experts. See benchmarks/README.md."""
    from pathlib import Path

    from lite_llm.commands.inputs import UsageError, output_path

    if args.scenario != "all" or args.trace or args.plot or args.no_decode or args.save_traces:
        raise UsageError("--scenario, --trace, --plot, --no-decode and --save-traces are not options of "
                         f"lite-llm bench {args.what}")
    if args.plot_from:
        if not Path(args.plot_from).is_file():
            raise UsageError(f"--plot-from {args.plot_from}: no such file")
        from lite_llm.benchmarks.bench_corollary import plot_from

        return plot_from(args.plot_from, args.out)
    if args.json == "-":
        raise UsageError(f"--json needs a FILE for lite-llm bench {args.what}")
    for name in ("tokens", "reps"):
        v = getattr(args, name)
        if v is not None and not 1 <= v <= 4096:
            raise UsageError(f"--{name} {v}: expected an integer in [1, 4096]")
    if args.max_seconds is not None and not 0 < args.max_seconds < 1e6:
        raise UsageError(f"--max-seconds {args.max_seconds}: expected a positive number of seconds")
    if device == "cpu" and not args.quick:
        raise UsageError(f"the full {args.what} benchmark is GPU-sized (a 10**15-parameter model, 10**7 experts); "
                         "use --quick on a CPU, or run on a GPU (--device cuda)")
    from lite_llm.benchmarks.bench_corollary import RESULTS

    out = args.out or (None if args.quick else str(RESULTS))
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        output_path(str(Path(out) / "x.json"), "--out")
    import sys

    command = "lite-llm bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    if args.what == "corollary":
        from lite_llm.benchmarks.bench_corollary import run as run_corollary

        return run_corollary(device, args.quick, args.json, args.tokens, args.reps, out, True, args.max_seconds,
                             command)
    if args.tokens is not None:
        raise UsageError("--tokens is an option of lite-llm bench corollary")
    from lite_llm.benchmarks.bench_scaling import run as run_scaling

    return run_scaling(device, args.quick, args.json, args.reps, out, args.max_seconds, command)
