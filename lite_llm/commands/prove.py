"""``lite-llm prove``: run the machine-checked proofs and write their certificates.

``--check`` regenerates the certificates in a temporary folder and compares them byte for byte with the
committed ones (``proofs/certificates``, or ``--out``): exit 1 naming every file that differs. Certificates
hold no timings (each run writes them to ``timings.json``, which is neither committed nor compared).
"""
from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("prove", help="run the Z3/SymPy proofs and write certificates (exit 1 if any claim "
                                     "differs from what the spec expects)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="prove only this statement (repeatable, or comma-separated)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the certificates (default: proofs/certificates of the package)")
    p.add_argument("--list", action="store_true", help="list the statements and the clauses they cover")
    p.add_argument("--check", action="store_true",
                   help="regenerate the certificates in a temporary folder and compare them byte for byte with "
                        "the committed ones (or those in --out); exit 1 naming each file that differs. Timings "
                        "are not part of a certificate (they go to timings.json) and are not compared")
    p.set_defaults(func=run)


def run(args) -> int:
    from lite_llm.proofs import runner

    if args.list:
        for name in runner.STATEMENTS:
            mod = runner.load(name)
            print(f"{name:<24} {', '.join(mod.CLAUSES):<44} {mod.TITLE}")
        return 0
    names = [n.strip() for arg in (args.only or []) for n in arg.split(",") if n.strip()] or list(runner.STATEMENTS)
    unknown = [n for n in names if n not in runner.STATEMENTS]
    if unknown:
        print(f"lite-llm prove: error: no statement {', '.join(map(repr, unknown))}; known: "
              f"{', '.join(runner.STATEMENTS)}", file=sys.stderr)
        return 2
    if args.check:
        _, status = runner.check(names, args.out or runner.DEFAULT_OUT)
        return status
    _, status = runner.run(names, args.out or runner.DEFAULT_OUT)
    return status
