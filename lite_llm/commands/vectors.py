"""``lite-llm vectors``: generate, check, list the conformance vectors and show their clause coverage.

``generate`` and ``check`` show a progress bar on standard error when it is a terminal (a check
regenerates every case through the reference: some seconds).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lite_llm import exit_codes


def add_parser(sub) -> None:
    p = sub.add_parser("vectors", help="generate and check the conformance vectors",
                       description="The conformance vectors are computed by the reference implementation and "
                                   "committed; `check` regenerates them and compares every byte.")
    vs = p.add_subparsers(dest="vectors_command", required=True, metavar="WHAT")
    g = vs.add_parser("generate", help="(re)write the vectors from the reference")
    g.add_argument("--out", metavar="DIR", help="vectors directory (default: the committed one)")
    g.add_argument("--levels", metavar="L1,L2", help="only these levels (the others are left as they are)")
    g.set_defaults(func=run_generate)
    c = vs.add_parser("check", help="regenerate into a temporary directory and compare bytes with the committed vectors")
    c.add_argument("--vectors", metavar="DIR", help="vectors directory to check (default: the committed one)")
    c.add_argument("--levels", metavar="L1,L2", help="only these levels")
    c.set_defaults(func=run_check)
    ls = vs.add_parser("list", help="list the cases: id, operation, match, clauses")
    ls.add_argument("--vectors", metavar="DIR")
    ls.add_argument("--levels", metavar="L1,L2")
    ls.set_defaults(func=run_list)
    cov = vs.add_parser("coverage", help="which cases check each MUST clause; clauses without a case")
    cov.add_argument("--vectors", metavar="DIR")
    cov.add_argument("--all", action="store_true", help="list every MUST clause, not only the uncovered ones")
    cov.set_defaults(func=run_coverage)


def parse_levels(text):
    from lite_llm.conformance.case import LEVELS

    if not text:
        return list(LEVELS)
    levels = [s.strip() for s in text.split(",") if s.strip()]
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        print(f"lite-llm vectors: error: unknown level(s) {', '.join(bad)}; levels are {', '.join(LEVELS)}",
              file=sys.stderr)
        raise SystemExit(exit_codes.REJECTED)
    return levels


def progress_bar(root: Path, levels, desc: str):
    """A progress bar over the cases being generated (on standard error, only when it is a terminal);
    its total is the number of cases ``root`` holds now, the best estimate without generating them."""
    from tqdm import tqdm

    total = sum(1 for lv in levels if (root / lv).is_dir() for _ in (root / lv).rglob("case.json")) or None
    return tqdm(total=total, desc=desc, unit="case", file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty(), dynamic_ncols=True)


def tick(bar):
    """The ``progress`` callback of ``generate`` that advances ``bar``."""
    def progress(case_id: str) -> None:
        bar.set_postfix_str(case_id, refresh=False)
        bar.update(1)
    return progress


def run_generate(args) -> int:
    from lite_llm.conformance.case import default_vectors_root
    from lite_llm.conformance.generate import generate

    root = Path(args.out or default_vectors_root())
    levels = parse_levels(args.levels)
    with progress_bar(root, levels, "generating") as bar:
        ids = generate(root, levels, progress=tick(bar))
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"wrote {len(ids)} case(s) to {root} ({size / 1e6:.2f} MB in all)")
    return 0


def compare_trees(committed: Path, fresh: Path, levels) -> list[str]:
    """Differences between two vector trees, file by file (bytes)."""
    problems = []
    for lv in levels:
        a = {p.relative_to(committed).as_posix(): p for p in (committed / lv).rglob("*") if p.is_file()} \
            if (committed / lv).is_dir() else {}
        b = {p.relative_to(fresh).as_posix(): p for p in (fresh / lv).rglob("*") if p.is_file()} \
            if (fresh / lv).is_dir() else {}
        for rel in sorted(set(a) | set(b)):
            if rel not in a:
                problems.append(f"missing: {rel} (the generator writes it; run `lite-llm vectors generate`)")
            elif rel not in b:
                problems.append(f"extra: {rel} (the generator no longer writes it)")
            elif a[rel].read_bytes() != b[rel].read_bytes():
                problems.append(f"differs: {rel}{describe_difference(a[rel], b[rel])}")
    return problems


def describe_difference(a: Path, b: Path) -> str:
    """For .npy files, where the committed and regenerated values first differ."""
    if a.suffix != ".npy":
        return ""
    from lite_llm.conformance.tensors import bits, read_npy

    try:
        x, y = read_npy(a), read_npy(b)
    except ValueError:
        return ""
    if x.shape != y.shape or x.dtype != y.dtype:
        return f" ({x.dtype}{list(x.shape)} committed, {y.dtype}{list(y.shape)} regenerated)"
    import numpy as np

    d = np.argwhere(bits(x) != bits(y))
    if not d.size:
        return ""
    i = tuple(int(k) for k in d[0])
    return f" ({len(d)} element(s); first at {list(i)}: committed {x[i]!r}, regenerated {y[i]!r})"


def run_check(args) -> int:
    from lite_llm.conformance.case import default_vectors_root
    from lite_llm.conformance.generate import generate

    committed = Path(args.vectors or default_vectors_root())
    levels = parse_levels(args.levels)
    with tempfile.TemporaryDirectory(prefix="lite-llm-vectors-") as tmp:
        fresh = Path(tmp) / committed.name
        with progress_bar(committed, levels, "regenerating") as bar:
            ids = generate(fresh, levels, progress=tick(bar))
            bar.set_description("comparing")
            problems = compare_trees(committed, fresh, levels)
    if problems:
        print(f"lite-llm vectors check: {len(problems)} difference(s) between {committed} and a fresh generation:",
              file=sys.stderr)
        for p in problems[:50]:
            print(f"  {p}", file=sys.stderr)
        if len(problems) > 50:
            print(f"  ... and {len(problems) - 50} more", file=sys.stderr)
        return 1
    print(f"vectors check: {len(ids)} case(s) regenerated, every file byte-identical to {committed}")
    return 0


def run_list(args) -> int:
    from lite_llm.conformance.case import default_vectors_root, load_cases

    cases = load_cases(args.vectors or default_vectors_root(), parse_levels(args.levels))
    for c in cases:
        print(f"{c.id:<58} {c.operation:<16} {c.match:<9} {', '.join(c.clauses)}")
    print(f"{len(cases)} case(s)")
    return 0


def run_coverage(args) -> int:
    from lite_llm.conformance.case import default_vectors_root, load_cases
    from lite_llm.conformance.coverage import clause_cases, exemptions, must_clauses, uncovered

    cases = load_cases(args.vectors or default_vectors_root())
    cited, ex = clause_cases(cases), exemptions()
    if args.all:
        for c in must_clauses():
            where = f"{len(cited[c])} case(s)" if c in cited else (f"exempt: {ex[c]}" if c in ex else "NO CASE")
            print(f"{c:<11} {where}")
    missing = uncovered(cases)
    n = len(must_clauses())
    print(f"{n - len(missing)} of {n} MUST clauses have a case or an exemption"
          + (f"; without: {', '.join(missing)}" if missing else ""))
    return 1 if missing else 0
