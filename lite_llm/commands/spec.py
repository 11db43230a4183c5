"""``lite-llm spec clauses``: list the clause ids of the spec with their text."""
from __future__ import annotations

import json
import textwrap

from lite_llm.spec.clauses import all_clauses


def add_parser(sub) -> None:
    p = sub.add_parser("spec", help="read the specification's clause registry")
    ssub = p.add_subparsers(dest="spec_command", required=True, metavar="WHAT")
    c = ssub.add_parser("clauses", help="list clause ids with their text")
    c.add_argument("prefix", nargs="?", default="", help="only ids starting with this, e.g. HSER or HSER-6")
    c.add_argument("--normative", action="store_true", help="only MUST / MUST NOT clauses")
    c.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    c.add_argument("--width", type=int, default=100, help="wrap text to this width (0: no wrapping)")
    c.set_defaults(func=run_clauses)


def run_clauses(args) -> int:
    shown = [c for c in all_clauses() if c.id.startswith(args.prefix) and (c.normative or not args.normative)]
    for c in shown:
        if args.json:
            print(json.dumps({"id": c.id, "strength": c.strength, "chapter": c.chapter, "section": c.section,
                              "text": c.text}))
        else:
            head = f"{c.id:<11} {c.strength:<11} "
            body = c.text if args.width <= 0 else textwrap.fill(
                c.text, args.width, initial_indent=head, subsequent_indent=" " * len(head))[len(head):]
            print(head + body)
    if not shown:
        print(f"no clause id starts with {args.prefix!r}")
        return 1
    return 0
