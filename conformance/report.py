"""Reports of conformance runs: the terminal table, JSON, JUnit XML and Markdown (CONF-5.6, CONF-5.9).

The table has one row per implementation (and device) and one column per level; each cell counts
the cases that passed, failed, errored and were skipped. Failures are listed with the case id, the
clauses, the first differing element and a command that reruns just that case.
"""
from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from .case import LEVELS
from .runner import SuiteRun

SHOWN = ("pass", "fail", "error", "xpass", "xfail", "skip")


def cell(counts: dict[str, int]) -> str:
    """'131 pass', '120 pass, 2 FAIL, 9 skip', or '-' when the level has no case."""
    if not sum(counts.values()):
        return "-"
    parts = []
    for k in SHOWN:
        if counts[k] or (k == "pass" and not any(counts[x] for x in SHOWN[1:])):
            parts.append(f"{counts[k]} {k.upper() if k in ('fail', 'error', 'xpass') else k}")
    return ", ".join(parts)


def levels_of(runs: list[SuiteRun]) -> list[str]:
    present = {o.level for r in runs for o in r.outcomes}
    return [lv for lv in LEVELS if lv in present]


def table_rows(runs: list[SuiteRun]) -> tuple[list[str], list[list[str]]]:
    levels = levels_of(runs)
    head = ["implementation", *levels, "result"]
    rows = []
    for r in runs:
        verdict = "PASS" if r.ok else "FAIL"
        if r.ok and not r.ran:
            verdict = "nothing run"
        rows.append([r.impl, *(cell(r.counts(lv)) for lv in levels), verdict])
    return head, rows


def table(runs: list[SuiteRun]) -> str:
    """The implementations x levels table as aligned text."""
    head, rows = table_rows(runs)
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    line = lambda xs: "  ".join(x.ljust(w) for x, w in zip(xs, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def failures_text(run: SuiteRun, limit: int | None = None) -> str:
    """Each failing case: status, id, clause(s) and explanation, and the rerun command."""
    bad = [o for o in run.outcomes if o.status in ("fail", "error", "xpass")]
    out = []
    for o in bad[:limit]:
        out.append(f"{o.status.upper()} {o.case_id}\n    {o.detail}\n    rerun: {o.rerun}")
    if limit is not None and len(bad) > limit:
        out.append(f"... and {len(bad) - limit} more (see the JSON report)")
    for f in run.unread:
        out.append(f"UNREAD vector file {f}")
    for f in run.stray:
        out.append(f"STRAY vector file {f} (no case declares it)")
    return "\n".join(out)


def to_json(runs: list[SuiteRun], uncovered: list[str] | None = None) -> dict:
    return {
        "format": "lite-llm-conformance-report/1",
        "ok": all(r.ok for r in runs),
        "uncovered_clauses": uncovered or [],
        "runs": [{
            "impl": r.impl, "name": r.name, "ok": r.ok, "ran": r.ran, "counts": r.counts(),
            "levels": {lv: r.counts(lv) for lv in levels_of([r])},
            "unread_files": r.unread, "stray_files": r.stray,
            "cases": [{"id": o.case_id, "level": o.level, "operation": o.operation, "clauses": list(o.clauses),
                       "status": o.status, "detail": o.detail, "seconds": round(o.seconds, 6), "rerun": o.rerun}
                      for o in r.outcomes],
        } for r in runs],
    }


def write_json(path, runs, uncovered=None) -> None:
    """The JSON report into ``path``; ``-`` is standard output (CONF-5.9)."""
    text = json.dumps(to_json(runs, uncovered), indent=1) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(path).write_text(text, encoding="utf-8")


def check_writable(path, what: str, directory: bool = False) -> str | None:
    """Why a report can't be written to ``path`` (its folder missing or read-only, a directory in the
    way), or None; checked before any case runs (CONF-5.7). ``-`` (standard output) is always fine."""
    if path is None or (str(path) == "-" and not directory):
        return None
    p = Path(path)
    if directory and p.exists():
        if not p.is_dir():
            return f"{what} {path}: not a directory"
        return None if os.access(p, os.W_OK | os.X_OK) else f"{what} {path}: directory is not writable"
    if not directory and p.is_dir():
        return f"{what} {path}: is a directory"
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        return f"{what} {path}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{what} {path}: directory {parent} is not writable"
    if p.exists() and not os.access(p, os.W_OK):
        return f"{what} {path}: file is not writable"
    return None


def to_junit(runs: list[SuiteRun]) -> str:
    """JUnit XML: one testsuite per implementation, one testcase per case (classname = impl.level)."""
    root = ET.Element("testsuites", name="lite-llm conformance")
    for r in runs:
        c = r.counts()
        suite = ET.SubElement(root, "testsuite", name=r.impl, tests=str(len(r.outcomes)),
                              failures=str(c["fail"] + c["xpass"]), errors=str(c["error"]),
                              skipped=str(c["skip"] + c["xfail"]),
                              time=f"{sum(o.seconds for o in r.outcomes):.3f}")
        for o in r.outcomes:
            tc = ET.SubElement(suite, "testcase", classname=f"{r.impl}.{o.level}", name=o.case_id,
                               time=f"{o.seconds:.4f}")
            if o.status in ("fail", "xpass"):
                ET.SubElement(tc, "failure", message=o.detail[:200]).text = f"{o.detail}\nrerun: {o.rerun}"
            elif o.status == "error":
                ET.SubElement(tc, "error", message=o.detail[:200]).text = f"{o.detail}\nrerun: {o.rerun}"
            elif o.status in ("skip", "xfail"):
                ET.SubElement(tc, "skipped", message=o.detail[:200])
        for f in r.unread + r.stray:
            tc = ET.SubElement(suite, "testcase", classname=f"{r.impl}.vectors", name=f)
            ET.SubElement(tc, "failure", message="vector file never read" if f in r.unread else "stray vector file")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_markdown(runs: list[SuiteRun], uncovered: list[str] | None = None, max_failures: int = 50) -> str:
    head, rows = table_rows(runs)
    md = ["# Lite LLM conformance", "",
          "| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|",
          *("| " + " | ".join(r) + " |" for r in rows), ""]
    for r in runs:
        bad = [o for o in r.outcomes if o.status in ("fail", "error", "xpass")]
        if bad or r.unread or r.stray:
            md += [f"## Failures of `{r.impl}`", ""]
            for o in bad[:max_failures]:
                md.append(f"- **{o.status}** `{o.case_id}`: {o.detail}  \n  rerun: `{o.rerun}`")
            if len(bad) > max_failures:
                md.append(f"- ... and {len(bad) - max_failures} more")
            md += [f"- unread vector file `{f}`" for f in r.unread] + [f"- stray vector file `{f}`" for f in r.stray]
            md.append("")
    if uncovered:
        md += ["## MUST clauses without a case", "", ", ".join(f"`{c}`" for c in uncovered), ""]
    return "\n".join(md)
