"""``lite-llm conform``: run the conformance vectors (or a differential fuzz) against implementations."""
from __future__ import annotations

import sys

LEVEL_HELP = "routing, layer, model, checkpoint, selection, loss"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "conform", help="check implementations against the conformance vectors",
        description="Run the committed conformance vectors against one or more implementations and print an "
                    "implementations x levels table. Exit status 0 only when every selected case passes.")
    p.add_argument("--impl", action="append", metavar="IMPL",
                   help="reference | optimized | module:attr (a Python adapter) | cmd:'COMMAND' (a JSON-lines "
                        "harness in any language); repeat for several (default: reference)")
    p.add_argument("--device", action="append", metavar="DEV",
                   help="device of --impl optimized: cpu, cuda, or auto (cpu, plus cuda when present); repeatable")
    p.add_argument("--levels", metavar="L1,L2", help=f"only these levels ({LEVEL_HELP})")
    p.add_argument("--case", action="append", metavar="ID", help="only this case id (a glob, e.g. 'routing/op/*'); "
                                                                   "repeatable")
    p.add_argument("--skips", metavar="FILE", help="file of 'ID-or-glob  reason' lines: cases not to run")
    p.add_argument("--xfails", metavar="FILE", help="file of 'ID-or-glob  reason' lines: cases expected to fail")
    p.add_argument("--vectors", metavar="DIR", help="vectors directory (default: the committed vectors of this "
                                                     "spec version)")
    p.add_argument("--json", metavar="FILE", help="write the full JSON report here")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report here")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown summary here")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("--max-failures", type=int, default=20, metavar="N", help="print at most N failures per "
                                                                              "implementation (default 20)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every case's status")
    p.add_argument("--fuzz", type=int, metavar="N", help="differential mode: N random configs and inputs "
                                                          "(Hypothesis), compared with the reference live")
    p.add_argument("--fuzz-seed", type=int, default=0, metavar="S", help="seed of the fuzz run (default 0)")
    p.add_argument("--fuzz-out", metavar="DIR", help="write a failing fuzz example as a case directory here")
    p.add_argument("--fuzz-ops", metavar="OP1,OP2", help="fuzz only these operations (route, canonical_exp, tree_sum, "
                                                         "softmax, top_k; default all)")
    p.set_defaults(func=run)


def targets(impls: list[str], devices: list[str] | None) -> list[tuple[str, str | None, str]]:
    """(impl, device, label) for every implementation and device to run."""
    out = []
    for impl in impls:
        if impl != "optimized":
            out.append((impl, None, impl))
            continue
        devs = []
        for d in devices or ["cpu"]:
            if d == "auto":
                devs += ["cpu"] + (["cuda"] if cuda_available() else [])
            else:
                devs.append(d)
        for d in dict.fromkeys(devs):
            out.append((impl, d, f"optimized ({d})"))
    return out


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def run(args) -> int:
    from lite_llm.conformance.adapters import close_adapter
    from lite_llm.conformance.implementations import load_adapter
    from lite_llm.conformance.case import CaseFormatError, LEVELS, default_vectors_root, load_cases
    from lite_llm.conformance.coverage import uncovered
    from lite_llm.conformance.report import failures_text, table, to_junit, to_markdown, write_json
    from lite_llm.conformance.runner import listed, read_id_list, run_suite

    impls = args.impl or ["reference"]
    levels = [s.strip() for s in args.levels.split(",")] if args.levels else list(LEVELS)
    if args.fuzz is not None:
        from lite_llm.conformance.fuzz import run_fuzz

        from lite_llm.conformance.fuzz import OPERATIONS

        ops = tuple(s.strip() for s in args.fuzz_ops.split(",")) if args.fuzz_ops else OPERATIONS
        ok = True
        try:
            for impl, device, label in targets(impls, args.device):
                ok &= run_fuzz(impl, device, args.fuzz, seed=args.fuzz_seed, out_dir=args.fuzz_out, label=label,
                               operations=ops)
        except (ValueError, RuntimeError) as e:
            print(f"lite-llm conform: error: {e}", file=sys.stderr)
            return 2
        return 0 if ok else 1
    root = args.vectors or default_vectors_root()
    try:
        every = load_cases(root, levels)
        skips, xfails = read_id_list(args.skips), read_id_list(args.xfails)
    except (CaseFormatError, OSError, ValueError) as e:
        print(f"lite-llm conform: error: {e}", file=sys.stderr)
        return 2
    pats = {p: "" for p in args.case or []}
    cases = [c for c in every if not pats or listed(c.id, pats) is not None]
    if pats and not cases:
        print(f"lite-llm conform: error: no case matches {', '.join(args.case)}", file=sys.stderr)
        return 2
    if args.list:
        for c in cases:
            print(f"{c.id:<58} {c.operation:<16} {c.match:<9} {', '.join(c.clauses)}")
        print(f"{len(cases)} case(s)")
        return 0
    runs = []
    for impl, device, label in targets(impls, args.device):
        try:
            adapter = load_adapter(impl, device or "cpu")
        except (ValueError, OSError, RuntimeError) as e:
            print(f"lite-llm conform: error: {e}", file=sys.stderr)
            return 2
        print(f"== {label}: {len(cases)} case(s) from {root}", flush=True)
        progress = (lambda o: print(f"  {o.status:<5} {o.case_id}", flush=True)) if args.verbose else None
        try:
            r = run_suite(adapter, cases, impl=impl, device=device, skips=skips, xfails=xfails,
                          root=None if pats else root, all_cases=every, levels=levels, progress=progress)
        finally:
            close_adapter(adapter)
        r.impl = label
        runs.append(r)
        text = failures_text(r, args.max_failures)
        if text:
            print(text)
    missing = uncovered(every) if not pats and set(levels) == set(LEVELS) else []
    print()
    print(table(runs))
    if missing:
        print(f"\nMUST clauses without a case ({len(missing)}): {', '.join(missing)}")
    if args.json:
        write_json(args.json, runs, missing)
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(to_junit(runs))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(to_markdown(runs, missing))
    return 0 if all(r.ok for r in runs) else 1
