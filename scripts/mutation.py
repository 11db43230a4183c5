"""The conformance suite's mutation score: mutants of reference/ and optimized/ run against the vectors alone.

Cosmic Ray (the well-kept mutation tool) enumerates every mutant its operators make in the chosen
modules; a deterministic sample of them (or all) is applied, one at a time, to a *staged copy* of
the package (the working tree is never touched), and the conformance levels that cover the module
are run on it with ``lite-llm conform``. A mutant is *killed* when the suite fails (exit status 1),
*survived* when every case still passes, *incompetent* when the package no longer imports or the
run crashes (counted apart, in neither the numerator nor the denominator of the score). Only the
vectors judge: no unit test takes part.

    python scripts/mutation.py --group routing --sample 300 --seed 0 --out benchmarks/results/mutation
    python scripts/mutation.py --only 'reference/quantize.py:core/NumberReplacer#42' -v    # one mutant, its output
    python scripts/mutation.py --rerun benchmarks/results/mutation-routing.json        # survivors, after new vectors
    python scripts/mutation.py --render benchmarks/results/mutation-routing.json       # the .md again, annotated
    python scripts/mutation.py --check benchmarks/results/mutation-routing.json --sample 6 --seed 1   # CI

``--out PREFIX`` writes PREFIX-<group>.json (every mutant: key, module, operator, occurrence, line,
outcome, diff) and PREFIX-<group>.md (the score per module and each survivor's diff). A mutant's
key is ``module:operator#occurrence`` (``reference/quantize.py:core/NumberReplacer#42``).

``--rerun REPORT.json`` runs the report's survivors again (or the ``--only`` keys) against the
current vectors and records the new outcome; a row whose outcome changed keeps the first one as
``before``, so the report carries the score before and after the vectors added to kill survivors.

The annotations file (``benchmarks/results/mutation-annotations.json``, ``--annotations``) maps a
key to ``{"verdict": "equivalent", "argument": ...}`` or ``{"verdict": "killed", "case": ...}``;
the .md shows each survivor with its verdict and the *non-equivalent score*,
killed / (killed + survivors not argued equivalent). A survivor without an annotation counts as
non-equivalent.

``--check REPORT.json`` replays a fixed sample of a committed report (drawn with --seed) and exits 1
if a mutant the report records as killed is no longer killed: the suite must go on killing what it
killed. A mutant whose code is gone (the module was edited since the report) is *stale* and skipped;
a survivor that is now killed is printed (the report is out of date) but does not fail the check.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from lint_imports import stage  # noqa: E402  (the package staged as installed)

ROUTING = ["validate", "quantize", "logits", "seeds", "ranking", "cexp", "softmax", "router"]
GROUPS = {   # group -> (modules as impl/module, the levels whose cases cover them)
    "routing": ([f"reference/{m}" for m in ROUTING + ["router_weights"]] + [f"optimized/{m}" for m in ROUTING],
                "routing"),
    "model": ([f"reference/{m}" for m in ("moe", "model", "norm", "attention", "rope", "experts", "init",
                                            "weights", "generate")]
              + [f"optimized/{m}" for m in ("moe", "model", "experts", "init", "generate")], "layer,model"),
    "other": ([f"reference/{m}" for m in ("aux_loss", "selection", "placement", "params", "checkpoint", "expand")]
              + [f"optimized/{m}" for m in ("aux_loss", "checkpoint")], "loss,selection,model,checkpoint"),
}
OPERATORS_SKIPPED = ("core/RemoveDecorator",)       # decorators here are dataclass/lru_cache: no semantics
ANNOTATIONS = ROOT / "benchmarks" / "results" / "mutation-annotations.json"
KEY = re.compile(r"^(?P<module>[^:]+):(?P<operator>[^#]+)#(?P<occurrence>\d+)$")


def key_of(row: dict) -> str:
    return f"{row['module']}:{row['operator']}#{row['occurrence']}"


def stage_package(dest: Path, rev: str | None = None) -> Path:
    """The package as installed (code and data) under dest/lite_llm, importable with PYTHONPATH=dest: from
    the working tree, or from commit ``rev`` (``git archive``: other people's uncommitted edits left out)."""
    import lint_imports

    src = ROOT
    if rev:
        src = dest.parent / "source"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    lint_imports.ROOT = src
    stage(dest)
    pairs = {"spec": ["chapters", "schemas", "configs"], "conformance": ["vectors", "case.schema.json",
                                                                        "protocol.schema.json", "exemptions.json"]}
    for folder, items in pairs.items():
        for item in items:
            dst = dest / "lite_llm" / folder / item
            if (src / folder / item).is_dir():
                shutil.copytree(src / folder / item, dst, dirs_exist_ok=True)
            elif (src / folder / item).exists():
                shutil.copy2(src / folder / item, dst)
    return dest


def enumerate_mutants(paths: list[Path], db_path: Path) -> list:
    from cosmic_ray.commands import init
    from cosmic_ray.work_db import WorkDB, use_db

    with use_db(str(db_path), WorkDB.Mode.create) as db:
        init(paths, db, {})
        items = [w for w in db.work_items if not any(m.operator_name in OPERATORS_SKIPPED for m in w.mutations)]
    return items


def item_for(key: str, stage_root: Path):
    """A work item for a key without enumerating the module (positions are not needed to apply it)."""
    from cosmic_ray.work_item import MutationSpec, WorkItem

    m = KEY.match(key)
    if not m:
        raise SystemExit(f"bad mutant key {key!r}: expected module:operator#occurrence")
    spec = MutationSpec(stage_root / "lite_llm" / m["module"], m["operator"], int(m["occurrence"]), (0, 0), (0, 1))
    return WorkItem.single(key, spec)


def normalized_diff(diff: str) -> str:
    """A diff without file names and hunk positions: the same mutant after unrelated edits elsewhere."""
    return "\n".join(line for line in diff.splitlines()
                     if line.strip() and not line.startswith(("---", "+++", "@@")))


def clean_diff(diff: str) -> str:
    """A diff with the temporary staging directory left out of its file names."""
    return re.sub(r"[^\s]*/lite-llm-mutation-[^/\s]+/stage/", "", diff or "")


def current_diff(key: str, stage_root: Path) -> str | None:
    """The diff the mutant makes to the staged module now; None if there is no such mutant."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import _make_diff, mutate_code

    m = KEY.match(key)
    path = stage_root / "lite_llm" / m["module"]
    if not path.exists():
        return None
    code = path.read_text()
    mutated = mutate_code(code, cosmic_ray.plugins.get_operator(m["operator"])(), int(m["occurrence"]))
    return None if mutated is None else "\n".join(_make_diff(code, mutated, Path(m["module"])))


def changed_line(diff: str) -> int:
    """The first line of the original module that a unified diff removes (0 if none)."""
    line = 0
    for text in diff.splitlines():
        if text.startswith("@@"):
            line = int(re.match(r"@@ -(\d+)", text)[1])
        elif text.startswith("-") and not text.startswith("---"):
            return line
        elif line and not text.startswith("+"):
            line += 1
    return 0


def resolve(key: str, old_diff: str, stage_root: Path) -> str | None:
    """The key that makes the recorded mutant in the staged code now: the same key if its diff is unchanged,
    else the occurrence of the same operator in the same module whose removed and added lines are the
    recorded ones (the nearest, if several); None if there is none (the mutant is stale)."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code

    now = current_diff(key, stage_root)
    if now is not None and normalized_diff(now) == normalized_diff(old_diff):
        return key
    changed = lambda d: [x for x in d.splitlines() if x[:1] in "+-" and x[:3] not in ("---", "+++")]  # noqa: E731
    want = changed(old_diff)
    m = KEY.match(key)
    path = stage_root / "lite_llm" / m["module"]
    if not path.exists():
        return None
    code, op, hits, n = path.read_text(), cosmic_ray.plugins.get_operator(m["operator"])(), [], 0
    while (mutated := mutate_code(code, op, n)) is not None:
        from cosmic_ray.mutating import _make_diff
        if changed("\n".join(_make_diff(code, mutated, Path(m["module"])))) == want:
            hits.append(n)
        n += 1
    if not hits:
        return None
    best = min(hits, key=lambda h: abs(h - int(m["occurrence"])))
    return f"{m['module']}:{m['operator']}#{best}"


def test_command(impl: str, levels: str) -> str:
    return f"{sys.executable} -m lite_llm.cli conform --impl {impl} --levels {levels} --json -"


def statuses(output: str | None) -> dict | None:
    """case id -> status from a `conform --json -` report on standard output; None if there is none."""
    try:
        runs = json.loads(output or "")["runs"]
    except (ValueError, KeyError, TypeError):
        return None
    out = {c["id"]: c["status"] for run in runs for c in run["cases"]}
    if any(not run.get("ok", True) and not any(c["status"] in ("fail", "error", "xpass") for c in run["cases"])
           for run in runs):
        out["<vector files>"] = "fail"                             # an unread or stray file (CONF-5.4)
    return out


BASELINE: dict[str, dict] = {}                                     # impl -> case id -> status, unmutated


def baseline(impls: set[str], levels: str, timeout: float) -> None:
    """The unmutated package must pass the suite, or every mutant would be 'killed' by a broken baseline;
    the statuses are kept to tell a mutant that makes the implementation decline cases it passed."""
    for impl in sorted(impls):
        proc = subprocess.run(test_command(impl, levels).split(), capture_output=True, text=True, timeout=timeout)
        got = statuses(proc.stdout)
        if proc.returncode != 0 or got is None:
            raise SystemExit(f"the unmutated {impl} does not pass `conform --levels {levels}` (exit "
                             f"{proc.returncode}): no mutant can be judged\n{proc.stderr[-3000:]}")
        BASELINE[impl] = got


def judge(impl: str, test_outcome: str, output: str | None) -> tuple[str, str]:
    """(outcome, why) of one mutant's suite run.

    killed: a case failed or errored (why ``fail``), the run timed out (``timeout``), or a case the
    unmutated implementation passes is now *skipped* (``skip``): the implementation raised
    NotImplementedError, which CONF-3.3 lets an implementation use to decline an operation, but an
    implementation that declines cases it used to pass has changed (torch raises NotImplementedError
    for an operator on a dtype it lacks, e.g. ``|`` on float tensors). incompetent: the suite gave no
    report (the package or the runner broke). survived: every case has its unmutated status.
    """
    if output == "timeout":
        return "killed", "timeout"
    got = statuses(output)
    if got is None:
        return ("incompetent", "crash") if test_outcome == "killed" else ("survived", "")
    if any(st in ("fail", "error", "xpass") for st in got.values()):
        return "killed", "fail"
    base = BASELINE.get(impl, {})
    if any(base.get(cid) == "pass" and st != "pass" for cid, st in got.items()):
        return "killed", "skip"
    return "survived", ""


def run_mutant(item, stage_root: Path, levels: str, timeout: float, verbose: bool = False) -> dict:
    from cosmic_ray.mutating import mutate_and_test

    spec = item.mutations[0]
    rel = spec.module_path.relative_to(stage_root / "lite_llm")
    impl = rel.parts[0]                                          # reference | optimized
    t0 = time.perf_counter()
    result = mutate_and_test(item.mutations, test_command(impl, levels), timeout)
    raw = result.test_outcome.value if result.test_outcome else result.worker_outcome.value
    outcome, why = judge(impl, raw, result.output) if result.test_outcome else (raw, "")
    if verbose:
        got = statuses(result.output) or {}
        base = BASELINE.get(impl, {})
        print(clean_diff(result.diff or ""))
        print("\n".join(f"  {st} (unmutated: {base.get(cid)}): {cid}" for cid, st in got.items()
                        if st != base.get(cid)) or "  every case has its unmutated status")
        if got == {} or statuses(result.output) is None:
            print((result.output or "")[-3000:])
    row = {"module": str(rel), "operator": spec.operator_name, "occurrence": spec.occurrence,
           "line": spec.start_pos[0], "outcome": outcome, "why": why, "seconds": round(time.perf_counter() - t0, 2),
           "diff": clean_diff(result.diff or "")}
    if row["line"] == 0:                           # built from a key: the line from the diff
        row["line"] = changed_line(row["diff"])
    return {"key": key_of(row), **row}


def load_annotations(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


EQUIVALENT_KINDS = ("semantic", "message", "unreachable", "undefined", "tolerance")
STRICT_KINDS = ("semantic", "message")          # the strict score counts only these as equivalent


def scores(rows: list[dict], notes: dict, outcome: str = "outcome") -> dict:
    """Counts and scores of ``rows`` by their ``outcome`` (or ``before``, the outcome before the new vectors).

    score: killed / (killed + survived). non_equivalent_score: survivors argued equivalent (any kind) left out.
    strict_score: only survivors argued semantically equivalent or message-only left out.
    """
    def out(r):
        return r.get(outcome, r["outcome"])

    k = sum(out(r) == "killed" for r in rows)
    s = sum(out(r) == "survived" for r in rows)
    eq = [r for r in rows if out(r) == "survived" and notes.get(r["key"], {}).get("verdict") == "equivalent"]
    strict = sum(notes[r["key"]].get("kind") in STRICT_KINDS for r in eq)
    pct = lambda a, b: round(100 * a / b, 1) if b else 100.0  # noqa: E731
    return {"killed": k, "survived": s, "equivalent": len(eq), "other": len(rows) - k - s,
            "score": pct(k, k + s), "non_equivalent_score": pct(k, k + s - len(eq)),
            "strict_score": pct(k, k + s - strict)}


def markdown(report: dict, notes: dict) -> str:
    rows, group = report["mutants"], report["group"]
    sample, seed = report.get("sample"), report.get("seed")
    by_mod: dict[str, list[dict]] = {}
    for r in rows:
        by_mod.setdefault(r["module"], []).append(r)
    lines = [f"# Mutation score: {group} modules", "",
             f"{len(rows)} mutants ({'all' if sample is None else f'a sample of {sample}, seed {seed}'}) of the "
             f"{report['total_mutants']} that Cosmic Ray makes in these modules (staged from "
             f"{report.get('rev', 'the working tree')}), each judged by `lite-llm conform --impl <the module's "
             f"implementation> --levels {report['levels']} --json -`: the conformance vectors alone, no unit test "
             f"(`scripts/mutation.py`). A mutant is killed when a case fails or errors, or when a case the "
             f"unmutated implementation passes is skipped (NotImplementedError); incompetent when the suite gives no "
             f"report.", "",
             "*score* = killed / (killed + survived). *non-equivalent score* leaves out the survivors argued "
             "equivalent in `mutation-annotations.json` (kinds: semantic, message, unreachable on the CPU suite, "
             "undefined input, within tolerance); *strict* leaves out only the semantic and message-only ones. A "
             "survivor without an argument counts against both.", "",
             "| module | killed | survived | argued equivalent | incompetent | score | non-equivalent score | strict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for mod in sorted(by_mod):
        c = scores(by_mod[mod], notes)
        lines.append(f"| {mod} | {c['killed']} | {c['survived']} | {c['equivalent']} | {c['other']} | "
                     f"{c['score']}% | {c['non_equivalent_score']}% | {c['strict_score']}% |")
    c, b = scores(rows, notes), scores(rows, notes, "before")
    lines += [f"| **all** | {c['killed']} | {c['survived']} | {c['equivalent']} | {c['other']} | "
              f"**{c['score']}%** | **{c['non_equivalent_score']}%** | {c['strict_score']}% |", ""]
    first = report.get("first_pass")
    if first:
        lines += [f"First pass ({first['rule']}): {first['killed']} killed, {first['survived']} survived. Judged by "
                  f"the JSON report instead, {len(report.get('rejudged', []))} of those survivors are killed (a "
                  f"case they make the implementation skip), on the same code ({first.get('rev', '')}).", ""]
    changed = [r for r in rows if r.get("before", r["outcome"]) != r["outcome"]]
    lines += [f"**Before** the vectors added for survivors: {b['killed']} killed, {b['survived']} survived: score "
              f"{b['score']}%, non-equivalent score {b['non_equivalent_score']}%, strict {b['strict_score']}%. "
              f"**After** (re-run on {report.get('after_rev', 'the current code')}): {c['killed']} killed, "
              f"{c['survived']} survived: score {c['score']}%, non-equivalent score {c['non_equivalent_score']}%, "
              f"strict {c['strict_score']}% ({len(changed)} mutants now killed).", ""]
    kinds: dict[str, int] = {}
    for r in rows:
        if r["outcome"] == "survived":
            n = notes.get(r["key"], {})
            kind = n.get("kind", n.get("verdict", "not argued")) if n.get("verdict") != "killed" else "not argued"
            kinds[kind] = kinds.get(kind, 0) + 1
    rejudged = report.get("rejudged", [])
    if rejudged:
        keys = ", ".join("`" + x["key"] + "`" for x in rejudged)
        lines += [f"Killed by the skip rule (first-pass survivors that make the implementation skip a case it "
                  f"passes): {keys}.", ""]
    lines += ["Survivors by verdict: " + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) + ".", "",
              "## Survivors of the first run and their verdicts", ""]
    for r in rows:
        if r["outcome"] != "survived" and r.get("before") != "survived":
            continue
        note = notes.get(r["key"], {})
        if r["outcome"] == "killed":
            verdict = f"**killed by** `{note.get('case', '?')}`" + (f" ({note['argument']})" if note.get("argument") else "")
        elif note.get("verdict") == "equivalent":
            verdict = f"**equivalent ({note.get('kind', '?')})**: {note.get('argument', '')}"
        elif note.get("verdict") == "open":
            verdict = f"**open** (not equivalent, not killed): {note.get('argument', '')}"
        else:
            verdict = "**not argued**: counts as a non-equivalent survivor"
        lines += [f"### `{r['key']}` (line {r['line']}): {r['outcome']}", "", verdict, "",
                  "```diff", normalized_diff(r["diff"]), "```", ""]
    return "\n".join(lines) + "\n"


def write_report(path: Path, report: dict, notes: dict) -> None:
    for r in report["mutants"]:
        r["diff"] = clean_diff(r["diff"])
        r.setdefault("key", key_of(r))
    report.update(scores(report["mutants"], notes))
    report["before_new_vectors"] = scores(report["mutants"], notes, "before")
    path.write_text(json.dumps(report, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(report, notes))


def summary(paths: list[Path], notes: dict) -> str:
    """A table of several reports (one per group) and their total, before and after the new vectors."""
    lines = ["# Mutation score of the conformance suite", "",
             "Per group: the sample, and killed / survived / argued equivalent after the vectors of "
             "`conformance/gen_mutants.py`; scores before and after them (`scripts/mutation.py`, "
             "`mutation-<group>.md` for every survivor's verdict).", "",
             "| group | mutants | killed | survived | argued equivalent | score before | after | non-equivalent "
             "before | after | strict after |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    every = []
    for path in paths:
        rep = json.loads(path.read_text())
        rows = rep["mutants"]
        every += rows
        c, b = scores(rows, notes), scores(rows, notes, "before")
        lines.append(f"| [{rep['group']}]({path.with_suffix('.md').name}) | {len(rows)} of {rep['total_mutants']} | "
                     f"{c['killed']} | {c['survived']} | {c['equivalent']} | {b['score']}% | {c['score']}% | "
                     f"{b['non_equivalent_score']}% | {c['non_equivalent_score']}% | {c['strict_score']}% |")
    c, b = scores(every, notes), scores(every, notes, "before")
    lines.append(f"| **all** | {len(every)} | {c['killed']} | {c['survived']} | {c['equivalent']} | {b['score']}% | "
                 f"**{c['score']}%** | {b['non_equivalent_score']}% | **{c['non_equivalent_score']}%** | "
                 f"{c['strict_score']}% |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", choices=sorted(GROUPS), default="routing")
    p.add_argument("--sample", type=int, default=None, help="run this many mutants, drawn with --seed (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant's suite run")
    p.add_argument("--out", metavar="PREFIX", help="write PREFIX-<group>.json and .md")
    p.add_argument("--only", metavar="KEY", action="append", help="only this mutant (module:operator#occurrence)")
    p.add_argument("--rerun", metavar="REPORT.json", help="run a report's survivors (or --only) again, record outcomes")
    p.add_argument("--rejudge", action="store_true",
                   help="with --rerun: record changed outcomes as corrections of the judging, not as kills by new vectors")
    p.add_argument("--render", metavar="REPORT.json", help="write the report's .md again (with the annotations)")
    p.add_argument("--summary", nargs="+", metavar="FILE", help="OUT.md REPORT.json ...: one table of several reports")
    p.add_argument("--check", metavar="REPORT.json", help="replay a sample of a committed report's mutants")
    p.add_argument("--annotations", type=Path, default=ANNOTATIONS, help="verdicts on survivors (JSON)")
    p.add_argument("--rev", metavar="COMMIT", help="stage the package from this commit (default: the working tree)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each mutant's diff and the suite's output")
    a = p.parse_args(argv)
    notes = load_annotations(a.annotations)
    report_path = next((Path(x) if Path(x).is_absolute() else ROOT / x for x in (a.check, a.rerun, a.render) if x),
                       None)
    report = json.loads(report_path.read_text()) if report_path else None
    if a.render:
        write_report(report_path, report, notes)
        return 0
    if a.summary:
        out, *reports = a.summary
        Path(out).write_text(summary([Path(x) for x in reports], notes))
        return 0
    with tempfile.TemporaryDirectory(prefix="lite-llm-mutation-") as tmp:
        root = stage_package(Path(tmp) / "stage", a.rev)
        os.environ["PYTHONPATH"] = str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")
        os.chdir(root)                 # `python -m` puts the cwd first on sys.path: never the repository's lite_llm/
        group = report["group"] if report else a.group
        modules, levels = GROUPS[group]
        if a.check:
            return check(report, root, levels, a)
        if a.rerun:
            return rerun(report, report_path, notes, root, levels, a)
        if a.only:
            items, chosen = None, [item_for(k, root) for k in a.only]
        else:
            paths = [root / "lite_llm" / f"{m}.py" for m in modules if (root / "lite_llm" / f"{m}.py").exists()]
            items = enumerate_mutants(paths, Path(tmp) / "session.sqlite")
            key = lambda w: (str(w.mutations[0].module_path), w.mutations[0].operator_name, w.mutations[0].occurrence)  # noqa: E731
            items.sort(key=key)
            chosen = items if a.sample is None else random.Random(a.seed).sample(items, min(a.sample, len(items)))
        baseline({str(w.mutations[0].module_path.relative_to(root / "lite_llm")).split("/")[0] for w in chosen},
                 levels, a.timeout)
        rows = []
        for n, item in enumerate(chosen, 1):
            r = run_mutant(item, root, levels, a.timeout, a.verbose)
            rows.append(r)
            print(f"[{n}/{len(chosen)}] {r['outcome']:<11} {r['module']}:{r['line']} {r['operator']} "
                  f"#{r['occurrence']} ({r['seconds']} s)", flush=True)
        c = scores(rows, notes)
        print(f"{group}: {c['killed']} killed, {c['survived']} survived, {c['other']} incompetent of {len(rows)}"
              f"{'' if items is None else f' (of {len(items)})'}: score {c['score']}%")
        if a.out and items is not None:
            out = Path(a.out) if Path(a.out).is_absolute() else ROOT / a.out
            out.parent.mkdir(parents=True, exist_ok=True)
            write_report(Path(f"{out}-{group}.json"), {"group": group, "levels": levels, "total_mutants": len(items),
                                                       "sample": a.sample, "seed": a.seed, "rev": a.rev or "working tree",
                                                       "mutants": rows}, notes)
    return 0


def rerun(report: dict, report_path: Path, notes: dict, root: Path, levels: str, a) -> int:
    """Run a report's survivors (or the --only keys) again on the current vectors; record changed outcomes."""
    rows = {key_of(r): r for r in report["mutants"]}
    keys = a.only or [k for k, r in rows.items() if r["outcome"] == "survived"]
    baseline({k.split("/")[0] for k in keys}, levels, a.timeout)
    for n, key in enumerate(keys, 1):
        old = rows[key]
        now = resolve(key, old["diff"], root)
        if now is None:
            print(f"[{n}/{len(keys)}] stale       {key}: the mutated code is gone from the module; not recorded")
            continue
        r = run_mutant(item_for(now, root), root, levels, a.timeout, a.verbose)
        if r["outcome"] != old["outcome"]:
            if a.rejudge:                  # the judging rule changed, not the vectors: no 'before'
                report.setdefault("rejudged", []).append({"key": key, "was": old["outcome"], "now": r["outcome"],
                                                          "why": r["why"]})
            else:
                old.setdefault("before", old["outcome"])
            old["outcome"] = r["outcome"]
        old["why"] = r["why"]
        print(f"[{n}/{len(keys)}] {r['outcome']:<11} {key}{'' if now == key else f' (now {now})'} "
              f"({r['seconds']} s)", flush=True)
    if not a.rejudge:
        report["after_rev"] = a.rev or "the working tree"
    write_report(report_path, report, notes)
    return 0


def check(report: dict, root: Path, levels: str, a) -> int:
    """Replay up to --sample recorded mutants (drawn with --seed, stale ones skipped); 1 if a kill was lost."""
    order = [r for r in report["mutants"] if r["outcome"] in ("killed", "survived")]
    random.Random(a.seed).shuffle(order)
    want, picked, stale = a.sample or 8, [], 0
    for old in order:
        if len(picked) == want:
            break
        now = resolve(key_of(old), old["diff"], root)
        if now is None:
            stale += 1
            print(f"stale        {key_of(old)}: the mutated code is gone from the module; skipped")
        else:
            picked.append((old, now))
    baseline({now.split("/")[0] for _, now in picked}, levels, a.timeout)
    lost = []
    for n, (old, now) in enumerate(picked, 1):
        r = run_mutant(item_for(now, root), root, levels, a.timeout, a.verbose)
        print(f"[{n}/{len(picked)}] {r['outcome']:<11} {key_of(old)}{'' if now == key_of(old) else f' (now {now})'} "
              f"(recorded: {old['outcome']}; {r['seconds']} s)", flush=True)
        if old["outcome"] == "killed" and r["outcome"] != "killed":
            lost.append(now)
            print(f"LOST KILL {now}: {r['outcome']} now\n{normalized_diff(old['diff'])}")
        elif old["outcome"] == "survived" and r["outcome"] == "killed":
            print(f"note: {now} survived in the report and is killed now: the report is out of date")
    print(f"{len(picked) - len(lost)} of {len(picked)} replayed mutants keep their recorded kill or survival "
          f"({stale} stale skipped)")
    return 1 if lost or not picked else 0


if __name__ == "__main__":
    sys.exit(main())
