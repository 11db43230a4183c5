"""``lite-llm bench``: the GPU benchmarks (router S1/S2, MoE S3), ours vs baseline vs floor."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the exact router and the MoE layer (CUDA; --quick on the CPU)",
                       description="Time the optimized implementation against float baselines and memory floors, "
                                   "median of many runs with CUDA events. router: S1 (one level, 64 candidates) "
                                   "and S2 (three-level HSER, 10,240 experts); moe: S3 (64 experts, 4 active). "
                                   "See benchmarks/README.md.")
    p.add_argument("what", choices=["router", "moe"], help="which benchmark")
    p.add_argument("--scenario", choices=["S1", "S2", "S3", "all"], default="all",
                   help="router: S1, S2 or all; moe: S3 (default all)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the code path, no timing claim")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from lite_llm.commands.inputs import UsageError, output_path

    output_path(args.json, "--json")                                   # checked before any timing
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device")
    if device == "cpu" and not args.quick:
        raise UsageError("the full-size benchmarks are GPU sizes and take well over 10 minutes on a CPU; "
                         "use --quick for a CPU smoke test of the code paths, or run on a GPU (--device cuda)")
    if args.what == "router":
        if args.scenario == "S3":
            raise UsageError("S3 is the MoE benchmark: lite-llm bench moe")
        from lite_llm.benchmarks.bench_router import run as run_router
        return run_router(args.scenario, device, args.quick, args.json)
    if args.scenario not in ("S3", "all"):
        raise UsageError(f"{args.scenario} is a router scenario: lite-llm bench router --scenario {args.scenario}")
    from lite_llm.benchmarks.bench_moe import run as run_moe
    return run_moe(device, args.quick, args.json)
