"""``lite-llm conform``: run the conformance vectors (or a differential fuzz) against implementations.

Exit status (CONF-5.2, CONF-5.7; the constants of :mod:`lite_llm.exit_codes`):

==== ============ ===============================================================================
0    OK           every selected case that ran passed (skipped cases excepted), no unread or stray
                  vector file; ``--fuzz``: no difference
1    FAILED       a case failed, errored (a harness that crashed, hung or broke the protocol) or
                  xpassed; an unread or stray vector file; ``--fuzz``: a difference
2    REJECTED     the run could not start: bad usage (an unknown level, a bad ``--timeout``), a
                  ``--vectors`` directory that does not exist, an unreadable case, a bad skips or
                  xfails file, a report path whose folder is missing or read-only, an unknown
                  ``--impl``, a harness that does not start, a missing extra (torch, hypothesis)
5    NOTHING_RAN  nothing ran: no case selected (an empty ``--vectors`` directory, ``--case``
                  matching nothing) or every selected case skipped for every implementation
130  INTERRUPTED  Ctrl-C (every harness is killed, every temporary directory removed)
==== ============ ===============================================================================

Everything that can make the status 2 is checked before the first case runs.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from lite_llm import exit_codes

LEVEL_HELP = "routing, layer, model, checkpoint, selection, loss"
PROG = "lite-llm conform"

# an optional import -> the extra that installs it
EXTRAS = {"torch": "torch", "hypothesis": "dev"}


def seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "conform", help="check implementations against the conformance vectors",
        description="Run the committed conformance vectors against one or more implementations and print an "
                    "implementations x levels table. Exit status 0 only when every selected case that ran "
                    "passes; 5 when nothing ran (no case selected, or every one skipped).")
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
    p.add_argument("--json", metavar="FILE", help="write the full JSON report here ('-': standard output; the "
                                                  "table then goes to standard error)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report here")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown summary here")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    p.add_argument("--max-failures", type=int, default=20, metavar="N", help="print at most N failures per "
                                                                              "implementation (default 20)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every case's status")
    p.add_argument("--timeout", type=seconds, metavar="SECONDS",
                   help="a cmd: harness that gives no reply to one case within SECONDS is killed, the case "
                        "errored and the harness restarted for the next case (default 60)")
    p.add_argument("--start-timeout", type=seconds, metavar="SECONDS",
                   help="a cmd: harness must answer 'start' within SECONDS, at first and after a restart "
                        "(default 60)")
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


def installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(module: str, why: str) -> str:
    return f"{why} needs {module}, which is not installed: pip install 'lite-llm[{EXTRAS[module]}]'"


def error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return exit_codes.REJECTED


def nothing_ran(message: str) -> int:
    print(f"{PROG}: nothing ran: {message}", file=sys.stderr)
    return exit_codes.NOTHING_RAN


def _terminated(signum, frame):  # noqa: ARG001 - a signal handler's signature
    raise SystemExit(128 + signum)            # unwinds through every finally: harnesses killed, temp dirs removed


def run(args) -> int:
    """Validate everything that can reject the run, then run it (handlers for SIGTERM unwind cleanly)."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return _run(args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    from lite_llm.conformance.case import LEVELS

    from lite_llm.conformance.report import check_writable

    out = sys.stderr if args.json == "-" else sys.stdout        # --json -: stdout holds only the JSON report
    impls = args.impl or ["reference"]
    levels = [s.strip() for s in args.levels.split(",") if s.strip()] if args.levels else list(LEVELS)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        return error(f"unknown level(s) {', '.join(bad) or repr(args.levels)}; levels are {', '.join(LEVELS)}")
    for flag, path in (("--junit", args.junit), ("--markdown", args.markdown)):
        if path == "-":
            return error(f"{flag} -: only --json can write to standard output")
    for flag, path, is_dir in (("--json", args.json, False), ("--junit", args.junit, False),
                               ("--markdown", args.markdown, False), ("--fuzz-out", args.fuzz_out, True)):
        why = check_writable(path, flag, directory=is_dir)
        if why:
            return error(why)
    if "optimized" in impls and not installed("torch"):
        return error(missing_extra("torch", "--impl optimized"))
    if args.fuzz is not None:
        if not installed("hypothesis"):
            return error(missing_extra("hypothesis", "--fuzz"))
        return _fuzz(args, impls, out)
    return _conform(args, impls, levels, out)


def _harness_options(args) -> dict:
    return {"timeout_s": args.timeout, "start_timeout_s": args.start_timeout}


def _rerun_extra(args, impl: str) -> tuple[str, ...]:
    """The harness options a rerun command must repeat (CONF-5.8)."""
    extra: tuple[str, ...] = ()
    if impl.startswith("cmd:"):
        if args.timeout is not None:
            extra += ("--timeout", f"{args.timeout:g}")
        if args.start_timeout is not None:
            extra += ("--start-timeout", f"{args.start_timeout:g}")
    return extra


def _fuzz(args, impls, out) -> int:
    from lite_llm.conformance.fuzz import OPERATIONS, run_fuzz

    ops = tuple(s.strip() for s in args.fuzz_ops.split(",")) if args.fuzz_ops else OPERATIONS
    ok, compared = True, 0
    try:
        for impl, device, label in targets(impls, args.device):
            res = run_fuzz(impl, device, args.fuzz, seed=args.fuzz_seed, out_dir=args.fuzz_out, label=label,
                           operations=ops, stream=out, **_harness_options(args))
            ok &= bool(res)
            compared += res.compared
    except (ValueError, RuntimeError) as e:
        return error(str(e))
    if not ok:
        return exit_codes.FAILED
    if not compared:
        return nothing_ran("no drawn request was compared (the implementation skipped them all)")
    return exit_codes.OK


def _conform(args, impls, levels, out) -> int:
    from tqdm import tqdm

    from lite_llm.conformance.adapters import close_adapter
    from lite_llm.conformance.case import CaseFormatError, LEVELS, default_vectors_root, load_cases
    from lite_llm.conformance.coverage import uncovered
    from lite_llm.conformance.report import failures_text, table, to_junit, to_markdown, write_json
    from lite_llm.conformance.runner import listed, open_adapter, read_id_list, run_suite

    root = args.vectors or default_vectors_root()
    try:
        every = load_cases(root, levels)
        skips, xfails = read_id_list(args.skips), read_id_list(args.xfails)
    except (CaseFormatError, OSError, ValueError, UnicodeDecodeError) as e:
        return error(str(e))
    if not every:
        return nothing_ran(f"no case in {root} (levels {', '.join(levels)})")
    pats = {p: "" for p in args.case or []}
    cases = [c for c in every if not pats or listed(c.id, pats) is not None]
    if not cases:
        return nothing_ran(f"no case matches {', '.join(args.case)}")
    if args.list:
        for c in cases:
            print(f"{c.id:<58} {c.operation:<16} {c.match:<9} {', '.join(c.clauses)}", file=out)
        print(f"{len(cases)} case(s)", file=out)
        return exit_codes.OK

    runs, adapters = [], []
    try:
        # Every implementation is loaded (every harness started) before the first case runs, so that
        # a run that cannot start is rejected (2) before any work is done.
        for impl, device, label in targets(impls, args.device):
            try:
                adapters.append((impl, device, label, open_adapter(impl, device, **_harness_options(args))))
            except (ValueError, OSError, RuntimeError) as e:
                return error(str(e))
        for impl, device, label, adapter in list(adapters):
            print(f"== {label}: {len(cases)} case(s) from {root}", file=out, flush=True)
            with tqdm(total=len(cases), desc=label, unit="case", file=sys.stderr, leave=False,
                      disable=not sys.stderr.isatty(), dynamic_ncols=True) as bar:
                def starting(case, bar=bar):
                    bar.set_postfix_str(case.id, refresh=True)

                def progress(o, bar=bar):
                    bar.update(1)
                    if args.verbose:
                        bar.write(f"  {o.status:<5} {o.case_id}", file=out)

                r = run_suite(adapter, cases, impl=impl, device=device, skips=skips, xfails=xfails,
                              root=None if pats else root, all_cases=every, levels=levels, progress=progress,
                              starting=starting, vectors=args.vectors, rerun_extra=_rerun_extra(args, impl))
            adapters.remove((impl, device, label, adapter))
            close_adapter(adapter)
            r.impl = label
            runs.append(r)
            text = failures_text(r, args.max_failures)
            if text:
                print(text, file=out)
    except BaseException:
        for *_, adapter in adapters:                 # Ctrl-C, SIGTERM, a bug: kill every harness at once
            kill = getattr(adapter, "kill", None)
            if callable(kill):
                kill()
        raise
    finally:
        for *_, adapter in adapters:
            close_adapter(adapter)                   # stop, kill the group, remove the temp dirs
    missing = uncovered(every) if not pats and set(levels) == set(LEVELS) else []
    print(file=out)
    print(table(runs), file=out)
    if missing:
        print(f"\nMUST clauses without a case ({len(missing)}): {', '.join(missing)}", file=out)
    if args.json:
        write_json(args.json, runs, missing)
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(to_junit(runs))
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(to_markdown(runs, missing))
    if not all(r.ok for r in runs):
        return exit_codes.FAILED
    if not any(r.ran for r in runs):
        return nothing_ran("every selected case was skipped")
    return exit_codes.OK
