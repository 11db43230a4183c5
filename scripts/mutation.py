"""The conformance suite's mutation score: mutants of reference/ and optimized/ run against the vectors alone.

Cosmic Ray (the well-kept mutation tool) enumerates every mutant its operators make in the chosen
modules; a deterministic sample of them (or all) is applied, one at a time, to a *staged copy* of
the package (the working tree is never touched), and the conformance levels that cover the module
are run on it with ``lite-llm conform``. A mutant is *killed* when the suite fails (exit status 1),
*survived* when every case still passes, *incompetent* when the package no longer imports or the
run crashes or times out (counted apart, not as kills).

    python scripts/mutation.py --group routing --sample 300 --seed 0 --out benchmarks/results/mutation
    python scripts/mutation.py --check benchmarks/results/mutation-routing.json --sample 8   # CI: replay 8

``--out PREFIX`` writes PREFIX-<group>.json (every mutant: module, operator, occurrence, line,
outcome, diff) and PREFIX-<group>.md (the score per module and each survivor's diff, with room for
the argument that it is equivalent or the vector that now kills it). ``--check FILE`` replays a
fixed sample of a committed report and fails if any mutant's outcome changed: the suite must go on
killing what it killed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
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


def stage_package(dest: Path) -> Path:
    """The package as installed (code and data) under dest/lite_llm, importable with PYTHONPATH=dest."""
    stage(dest)
    pairs = {"spec": ["chapters", "schemas", "configs"], "conformance": ["vectors", "case.schema.json",
                                                                        "protocol.schema.json", "exemptions.json"]}
    for folder, items in pairs.items():
        for item in items:
            src = ROOT / folder / item
            dst = dest / "lite_llm" / folder / item
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            elif src.exists():
                shutil.copy2(src, dst)
    return dest


def enumerate_mutants(paths: list[Path], db_path: Path) -> list:
    from cosmic_ray.commands import init
    from cosmic_ray.work_db import WorkDB, use_db

    with use_db(str(db_path), WorkDB.Mode.create) as db:
        init(paths, db, {})
        items = [w for w in db.work_items if not any(m.operator_name in OPERATORS_SKIPPED for m in w.mutations)]
    return items


def test_command(impl: str, levels: str) -> str:
    return f"{sys.executable} -m lite_llm.cli conform --impl {impl} --levels {levels}"


def run_mutant(item, stage_root: Path, levels: str, timeout: float) -> dict:
    from cosmic_ray.mutating import mutate_and_test

    spec = item.mutations[0]
    rel = spec.module_path.relative_to(stage_root / "lite_llm")
    impl = rel.parts[0]                                          # reference | optimized
    t0 = time.perf_counter()
    result = mutate_and_test(item.mutations, test_command(impl, levels), timeout)
    outcome = result.test_outcome.value if result.test_outcome else result.worker_outcome.value
    if outcome == "killed" and result.output and ("Traceback" in result.output or "internal error" in result.output):
        outcome = "incompetent"                                  # the package broke, the suite did not judge it
    return {"id": item.job_id, "module": str(rel), "operator": spec.operator_name, "occurrence": spec.occurrence,
            "line": spec.start_pos[0], "outcome": outcome, "seconds": round(time.perf_counter() - t0, 2),
            "diff": result.diff or ""}


def markdown(group: str, rows: list[dict], total: int, sample: int | None, seed: int) -> str:
    by_mod: dict[str, dict[str, int]] = {}
    for r in rows:
        by_mod.setdefault(r["module"], {}).setdefault(r["outcome"], 0)
        by_mod[r["module"]][r["outcome"]] += 1
    lines = [f"# Mutation score: {group} modules", "",
             f"{len(rows)} mutants run ({'all' if sample is None else f'a sample of {sample}, seed {seed}'}) "
             f"of {total} that Cosmic Ray makes; the test command is `lite-llm conform` on the levels that cover "
             f"each module (`scripts/mutation.py`).", "",
             "| module | killed | survived | incompetent | score |", "| --- | --- | --- | --- | --- |"]
    for mod in sorted(by_mod):
        c = by_mod[mod]
        k, s = c.get("killed", 0), c.get("survived", 0)
        lines.append(f"| {mod} | {k} | {s} | {sum(c.values()) - k - s} | {100 * k / max(k + s, 1):.1f}% |")
    k = sum(r["outcome"] == "killed" for r in rows)
    s = sum(r["outcome"] == "survived" for r in rows)
    lines += [f"| **all** | {k} | {s} | {len(rows) - k - s} | **{100 * k / max(k + s, 1):.1f}%** |", "",
              "## Survivors", ""]
    for r in rows:
        if r["outcome"] == "survived":
            lines += [f"### {r['module']} line {r['line']}: {r['operator']} #{r['occurrence']}", "",
                      "```diff", r["diff"].strip(), "```", ""]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", choices=sorted(GROUPS), default="routing")
    p.add_argument("--sample", type=int, default=None, help="run this many mutants, drawn with --seed (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant's suite run")
    p.add_argument("--out", metavar="PREFIX", help="write PREFIX-<group>.json and .md")
    p.add_argument("--check", metavar="REPORT.json", help="replay a sample of a committed report's mutants")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lite-llm-mutation-") as tmp:
        root = stage_package(Path(tmp) / "stage")
        os.environ["PYTHONPATH"] = str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")
        os.chdir(root)                 # `python -m` puts the cwd first on sys.path: never the repository's lite_llm/
        if a.check:
            report = json.loads((ROOT / a.check if not Path(a.check).is_absolute() else Path(a.check)).read_text())
            group = report["group"]
        else:
            group = a.group
        modules, levels = GROUPS[group]
        paths = [root / "lite_llm" / f"{m}.py" for m in modules if (root / "lite_llm" / f"{m}.py").exists()]
        items = enumerate_mutants(paths, Path(tmp) / "session.sqlite")
        key = lambda w: (str(w.mutations[0].module_path), w.mutations[0].operator_name, w.mutations[0].occurrence)  # noqa: E731
        items.sort(key=key)
        if a.check:
            recorded = {(r["module"], r["operator"], r["occurrence"]): r["outcome"] for r in report["mutants"]}
            pool = [w for w in items if (str(w.mutations[0].module_path.relative_to(root / "lite_llm")),
                                         w.mutations[0].operator_name, w.mutations[0].occurrence) in recorded]
            chosen = random.Random(a.seed).sample(pool, min(a.sample or 8, len(pool)))
        else:
            chosen = items if a.sample is None else random.Random(a.seed).sample(items, min(a.sample, len(items)))
        rows = []
        for n, item in enumerate(chosen, 1):
            r = run_mutant(item, root, levels, a.timeout)
            rows.append(r)
            print(f"[{n}/{len(chosen)}] {r['outcome']:<11} {r['module']}:{r['line']} {r['operator']} "
                  f"#{r['occurrence']} ({r['seconds']} s)", flush=True)
        if a.check:
            changed = [(r, recorded[(r["module"], r["operator"], r["occurrence"])]) for r in rows
                       if r["outcome"] != recorded[(r["module"], r["operator"], r["occurrence"])]]
            for r, was in changed:
                print(f"CHANGED {r['module']}:{r['line']} {r['operator']} #{r['occurrence']}: {was} -> {r['outcome']}")
            print(f"{len(rows) - len(changed)} of {len(rows)} mutants have their recorded outcome")
            return 1 if changed else 0
        k = sum(r["outcome"] == "killed" for r in rows)
        s = sum(r["outcome"] == "survived" for r in rows)
        print(f"{group}: {k} killed, {s} survived, {len(rows) - k - s} incompetent of {len(rows)} "
              f"(of {len(items)}): score {100 * k / max(k + s, 1):.1f}%")
        if a.out:
            out = Path(a.out) if Path(a.out).is_absolute() else ROOT / a.out
            out.parent.mkdir(parents=True, exist_ok=True)
            Path(f"{out}-{group}.json").write_text(json.dumps(
                {"group": group, "levels": levels, "total_mutants": len(items), "sample": a.sample, "seed": a.seed,
                 "killed": k, "survived": s, "mutants": rows}, indent=1) + "\n")
            Path(f"{out}-{group}.md").write_text(markdown(group, rows, len(items), a.sample, a.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
