"""The report pages of the site: conformance reports, proof certificates, benchmark results and the API
reference. ``ReportPages`` is the part of ``pages.Site`` that renders recorded results; it reads the
tree through the attributes ``Site.__init__`` sets."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lite_llm.docs_site import sources as src
from lite_llm.docs_site.markdown import cell, code_block, conformance_of, fmt, link, page, render_value, slug, table

STATUSES = ("pass", "fail", "error", "skip", "xfail", "xpass")


class ReportPages:
    """Conformance, proofs, benchmarks and API pages (mixed into ``pages.Site``)."""

    def run_body(self, run: dict) -> list[str]:
        """One implementation's run of a conformance report, whatever fields it has."""
        lines: list[str] = []
        facts = []
        for key in ("impl", "name", "device", "ok", "ran"):
            if key in run:
                facts.append([f"`{key}`", cell(fmt(run[key]))])
        if isinstance(run.get("counts"), dict):
            facts.append(["`counts`", cell(", ".join(f"{v} {k}" for k, v in run["counts"].items() if v))])
        if facts:
            lines += [table(["field", "value"], facts), ""]
        levels = run.get("levels")
        if isinstance(levels, dict) and levels:
            cols = [s for s in STATUSES if any(isinstance(v, dict) and v.get(s) for v in levels.values())] or ["pass"]
            lines += [table(["level"] + cols, [[f"`{lv}`"] + [fmt(v.get(s, 0)) if isinstance(v, dict) else cell(v)
                                                           for s in cols] for lv, v in levels.items()]), ""]
        for key in ("unread_files", "stray_files"):
            if run.get(key):
                lines += [f"**{key.replace('_', ' ')}:** " + ", ".join(f"`{x}`" for x in run[key]), ""]
        cases = run.get("cases")
        if isinstance(cases, list):
            bad = [c for c in cases if isinstance(c, dict) and c.get("status") not in ("pass", None)]
            by_status = Counter(c.get("status") for c in bad)
            if bad:
                lines += [f"Cases not passing ({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))}):", ""]
                shown = sorted(bad, key=lambda c: (c.get("status") != "fail", c.get("status"), c.get("id")))
                lines += [table(["case", "status", "clauses", "detail"],
                                [[f"`{c.get('id')}`", cell(c.get("status")), cell(", ".join(c.get("clauses") or [])),
                                  cell(str(c.get("detail") or "")[:300])] for c in shown]), ""]
        return lines

    def conformance(self) -> str:
        here = "conformance/index.md"
        lines = ["# Conformance reports", "",
                 "The latest recorded run of the suite for each implementation and device. `lite-llm docs build` "
                 "runs the reference and the optimized implementation on the CPU, and the C and Rust harnesses "
                 "of `conformance/examples/` when `cc` and `cargo` are present, and records the reports in "
                 "`docs/data/conformance/` (per-case times removed); the CUDA run is the one recorded by "
                 "`scripts/gpu_check.sh` in `benchmarks/results/`. The cases themselves: "
                 f"[cases by clause](cases.md) ({len(self.cases)} cases).", ""]
        current = {c.id for c in self.cases}
        entries = []          # (order, name, device, recorded in, anchor, run, report, heading)
        for fname, rep in self.reports.items():
            stem = Path(fname).stem
            runs = [r for r in rep.get("runs") or [rep] if isinstance(r, dict)]
            for run in runs:
                name = str(run.get("name") or run.get("impl") or stem)
                anchor = slug(f"report-{stem}" if len(runs) == 1 else f"report-{stem}-{name}")
                order = 0 if name == "reference" else 1 if name.startswith("optimized") else 3
                entries.append((order, name, str(rep.get("device", "")), f"docs/data/conformance/{fname}", anchor,
                                run, rep, len(runs) == 1))
        gpu = self.gpu_runs()
        if gpu:
            latest_name, latest = gpu[-1]
            gpu_name = (latest.get("env") or {}).get("gpu", "cuda")
            for run in latest["conformance"].get("runs") or []:
                if isinstance(run, dict):
                    name = str(run.get("name") or run.get("impl"))
                    entries.append((2, name, str(gpu_name), f"benchmarks/results/{latest_name}", slug("gpu-" + name),
                                    run, None, False))
        entries.sort(key=lambda e: (e[0], e[1], e[3]))
        levels: list[str] = []
        for e in entries:
            levels += [lv for lv in (e[5].get("levels") or {}) if lv not in levels]
        rows = []
        for order, name, device, where, anchor, run, rep, single in entries:
            lv = run.get("levels") or {}
            cells = []
            for level in levels:
                v = lv.get(level)
                cells.append(cell(", ".join(f"{n} {s}" for s, n in v.items() if n)) if isinstance(v, dict) and
                             any(v.values()) else "—")
            rows.append([f"[{cell(name)}](#{anchor})", cell(device)] + cells +
                        ["**PASS**" if run.get("ok") else "**FAIL**" if "ok" in run else "?", f"`{where}`"])
        lines += [table(["implementation", "device"] + [f"`{lv}`" for lv in levels] + ["result", "recorded in"], rows)
                  if rows else "*No recorded report yet: run `lite-llm docs build`.*", ""]
        for fname, rep in self.reports.items():
            stem = Path(fname).stem
            runs = [r for r in rep.get("runs") or [rep] if isinstance(r, dict)]
            title = str(rep.get("title") or stem)
            lines += [f"## {cell(title)} {{#{slug('report-' + stem)}}}", ""]
            if rep.get("command"):
                lines += [code_block(str(rep["command"]), "console"), ""]
            env = rep.get("environment")
            if isinstance(env, dict) and env:
                lines += [table(["environment", ""], [[f"`{k}`", cell(fmt(v))] for k, v in sorted(env.items())]), ""]
            for run in runs:
                name = str(run.get("name") or run.get("impl") or stem)
                if len(runs) > 1:
                    lines += [f"### {cell(name)} {{#{slug('report-' + stem + '-' + name)}}}", ""]
                lines += self.run_body(run)
                ran = {c.get("id") for c in run.get("cases") or [] if isinstance(c, dict)}
                missing = current - ran
                stale = {k.id for k in self.cases if k.id in missing and k.level in (run.get("levels") or {})}
                if ran and stale:
                    lines += [f"!!! warning \"Recorded before {len(stale)} current case(s) of its levels existed\"", "",
                              "    Run `lite-llm docs build` to record a fresh report.", ""]
            unc = rep.get("uncovered_clauses")
            if unc:
                lines += ["MUST clauses without a case when this report was recorded: " + ", ".join(
                    f"[{u}]({link(here, 'traceability.md', u)})" if u in self.by_id else f"`{u}`" for u in unc), ""]
        if gpu:
            latest_name, latest = gpu[-1]
            env = latest.get("env") or {}
            lines += [f"## GPU run: {latest_name} {{#gpu-run}}", "",
                      f"From `benchmarks/results/{latest_name}`, the most recent recorded GPU run "
                      "(`scripts/gpu_check.sh`); its benchmarks are on [recorded runs]"
                      f"({link(here, 'benchmarks/runs.md', slug('run-' + latest_name))}).", ""]
            if isinstance(env, dict) and env:
                lines += [table(["environment", ""], [[f"`{k}`", cell(fmt(v))] for k, v in env.items()]), ""]
            conf = latest["conformance"]
            extra = [[f"`{k}`", cell(fmt(v))] for k, v in conf.items() if k != "runs"]
            if extra:
                lines += [table(["report field", "value"], extra), ""]
            for run in conf.get("runs") or []:
                if isinstance(run, dict):
                    name = str(run.get("name") or run.get("impl"))
                    lines += [f"### {cell(name)} {{#{slug('gpu-' + name)}}}", ""] + self.run_body(run)
                    ran = run.get("ran")
                    if not isinstance(ran, int) and isinstance(run.get("counts"), dict):
                        ran = sum(v for v in run["counts"].values() if isinstance(v, int))
                    if isinstance(ran, int) and ran < len(self.cases):
                        lines += [f"!!! note \"Recorded with {ran} of today's {len(self.cases)} cases\"", "",
                                  "    The GPU run predates the newer cases; `scripts/gpu_check.sh` on a GPU machine "
                                  "records a fresh one in `benchmarks/results/`.", ""]
            others = [[f"`{n}`", cell((d.get("env") or {}).get("gpu", "")), cell((d.get("env") or {}).get("date", "")),
                       "PASS" if d["conformance"].get("ok") else "FAIL"] for n, d in gpu[:-1]]
            if others:
                lines += ["### Earlier GPU runs", "", table(["file", "gpu", "date", "result"], others), ""]
        return page("\n".join(lines), meta={"hide": ["navigation"]})

    def gpu_runs(self) -> list[tuple[str, dict]]:
        runs = [(n, {**d, "conformance": conformance_of(d)}) for n, d in self.results.runs.items()
                if isinstance(conformance_of(d), dict)]
        return sorted(runs, key=lambda nd: (str((nd[1].get("env") or {}).get("date", "")), nd[0]))

    # ---------------------------------------------------------------------------------------- proofs

    def proofs_index(self) -> str:
        here = "proofs/index.md"
        rows = []
        for cert in self.certs:
            claims = [c for c in cert.get("claims") or [] if isinstance(c, dict)]
            ok = sum(1 for c in claims if c.get("as_expected", c.get("result") == c.get("expected")))
            rows.append([f"[{cert['_slug']}]({cert['_slug']}.md)", cell(cert.get("title", "")),
                         cell(str(cert.get("status", ""))), f"{ok}/{len(claims)}",
                         cell(", ".join(self.clause_links(cert.get("clauses") or [], here)))])
        lines = ["# Proof certificates", "",
                 "The certificates written by `lite-llm prove` (`proofs/certificates/*.json`), one page each: the "
                 "statement, the clauses it covers, and every claim with the result its method gave and the result "
                 "the spec expects (`counterexample` for a claim of the white paper that the spec refutes).", "",
                 table(["certificate", "statement", "status", "claims as expected", "clauses"], rows)]
        return page("\n".join(lines))

    def clause_links(self, ids, here: str) -> list[str]:
        return [f"[{i}]({self.clause_url(i, here)})" if i in self.by_id else f"`{i}`" for i in ids]

    def certificate(self, cert: dict) -> str:
        here = f"proofs/{cert['_slug']}.md"
        claims = [c for c in cert.get("claims") or [] if isinstance(c, dict)]
        lines = [f"# {cert['_slug']}: {cert.get('title', '')}".rstrip(": "), "",
                 f"*Generated from `{cert['_file']}`.*", ""]
        status = str(cert.get("status", "unknown"))
        ok = sum(1 for c in claims if c.get("as_expected", c.get("result") == c.get("expected")))
        kind = "success" if status == "pass" else "failure"
        lines += [f"!!! {kind} \"Status: {status.upper()} ({ok} of {len(claims)} claims as expected)\"", ""]
        if cert.get("statement"):
            lines += [self.linkify(str(cert["statement"]), here), ""]
        facts = []
        for key, value in cert.items():
            if key.startswith("_") or key in ("claims", "statement", "title", "method", "notes", "name"):
                continue
            if key == "clauses" and isinstance(value, list):
                facts.append(["clauses", ", ".join(self.clause_links(value, here))])
            elif isinstance(value, dict):
                facts.append([cell(key), cell(", ".join(f"{k} {fmt(v)}" for k, v in value.items()))])
            else:
                facts.append([cell(key), self.linkify(cell(fmt(value)), here)])
        if facts:
            lines += [table(["field", "value"], facts), ""]
        if cert.get("method"):
            lines += ["## How it is proved", "", self.linkify(str(cert["method"]).strip(), here), ""]
        if cert.get("notes"):
            notes = cert["notes"] if isinstance(cert["notes"], list) else [cert["notes"]]
            lines += ["## Notes", ""] + [f"- {self.linkify(' '.join(str(n).split()), here)}" for n in notes] + [""]
        if claims:
            lines += ["## Claims", "", table(["claim", "asserted by", "expected", "result", "as expected"], [
                [f"[`{c.get('name', i)}`](#claim-{slug(str(c.get('name', i)))})", cell(c.get("source", "")),
                 cell(c.get("expected", "")), cell(c.get("result", "")),
                 "yes" if c.get("as_expected", c.get("result") == c.get("expected")) else "**no**"]
                for i, c in enumerate(claims)]), ""]
            for i, c in enumerate(claims):
                name = str(c.get("name", i))
                lines += [f"### `{name}` {{#claim-{slug(name)}}}", ""]
                if c.get("statement"):
                    lines += [self.linkify(str(c["statement"]), here), ""]
                rows = []
                for key, value in c.items():
                    if key in ("name", "statement", "solver_form", "model", "details"):
                        continue
                    rows.append([cell(key), cell(fmt(value))])
                if rows:
                    lines += [table(["field", "value"], rows), ""]
                for key in ("model", "details"):
                    if c.get(key) not in (None, {}, [], ""):
                        lines += [f"{key.capitalize()}:", "",
                                  code_block(json.dumps(c[key], indent=1, sort_keys=True, ensure_ascii=False)[:4000],
                                             "json"), ""]
                if c.get("solver_form"):
                    form = str(c["solver_form"])
                    lines += ["Solver form:", "", code_block(form[:6000] + ("\n..." if len(form) > 6000 else ""),
                                                             "text"), ""]
        return page("\n".join(lines), meta={"title": cert["_slug"]})

    # ---------------------------------------------------------------------------------------- benchmarks

    def benchmarks(self) -> dict[str, str]:
        here = "benchmarks/index.md"
        r = self.results
        out: dict[str, str] = {}
        lines = []
        if r.readme:
            body = self.rewrite_links(r.readme, self.root / "benchmarks", here)
            if not body.lstrip().startswith("# "):
                lines += ["# Benchmarks", ""]
            lines += [body, ""]
        else:
            lines += ["# Benchmarks", ""]
        lines += ["## Recorded results", "",
                  "Every file of `benchmarks/results/`, as the benchmark commands and `scripts/gpu_check.sh` wrote "
                  "them.", ""]
        if r.plots:
            lines += ["### Plots", ""]
            for name in r.plots:
                lines += [f"![{Path(name).stem}](results/{name})", "",
                          f"*`benchmarks/results/{name}`*", ""]
        if r.pages:
            lines += ["### Reports", ""]
            for name, text in r.pages.items():
                stem = Path(name).stem
                out[f"benchmarks/{stem}.md"] = self.result_page(name, text)
                lines.append(f"- [{stem}]({stem}.md)")
            lines.append("")
        bench_runs = {n: d for n, d in r.runs.items()}
        if bench_runs:
            lines += ["### Recorded runs", "", "Rendered on [recorded runs](runs.md):", ""]
            lines += [f"- [`{n}`](runs.md#{slug('run-' + n)})" for n in bench_runs] + [""]
            out["benchmarks/runs.md"] = self.runs_page(bench_runs)
        if r.other:
            lines += ["### Other files", "", "Text outputs (profiles, logs) kept beside the results: " +
                      ", ".join(f"`{n}`" for n in r.other), ""]
        out[here] = page("\n".join(lines))
        return out

    def result_page(self, name: str, text: str) -> str:
        here = f"benchmarks/{Path(name).stem}.md"
        body = self.rewrite_links(text, self.root / src.RESULTS_DIR, here)
        head = [] if body.lstrip().startswith("# ") else [f"# {Path(name).stem}", ""]
        return page("\n".join(head + [body, "", f"*From `benchmarks/results/{name}`.*"]))

    def runs_page(self, runs: dict[str, dict]) -> str:
        lines = ["# Recorded benchmark runs", "",
                 "Every JSON file of `benchmarks/results/`: the environment, the steps, and each benchmark's table "
                 "(times in microseconds unless a column says otherwise). Other fields are shown as recorded.", ""]
        for name, d in runs.items():
            lines += [f"## {name} {{#{slug('run-' + name)}}}", ""]
            lines += render_value(d, level=3, skip=("conformance",))
            if isinstance(d.get("conformance"), dict):
                lines += ["### conformance", "", "On the [conformance page](../conformance/index.md#gpu-run) "
                          "(the latest run) and summarised here: " + cell(", ".join(
                              f"{r.get('name')}: {'PASS' if r.get('ok') else 'FAIL'}"
                              for r in d["conformance"].get("runs") or [])), ""]
        return page("\n".join(lines))

    # ---------------------------------------------------------------------------------------- API

    def api_index(self) -> str:
        rows = [[f"[`{dotted}`]({dotted}.md)", ", ".join(f"`{m}`" for m in src.modules_of(folder)) or " "]
                for dotted, folder in self.api_dirs]
        lines = ["# API reference", "",
                 "From the docstrings, read statically (griffe: nothing is imported, so the pages build without "
                 "torch or a GPU).", "", table(["package", "modules"], rows)]
        return page("\n".join(lines))

    def api_page(self, dotted: str, folder: Path) -> str:
        lines = [f"# `{dotted}`", "", f"*The package folder `{folder.relative_to(self.root).as_posix()}/`.*", "",
                 f"::: {dotted}", "    options:", "      members: false", "      show_root_heading: false", ""]
        for mod in src.modules_of(folder):
            lines += [f"::: {dotted}.{mod}", ""]
        subs = [d for d, _ in self.api_dirs if d.startswith(dotted + ".") and "." not in d[len(dotted) + 1:]]
        if subs:
            lines += ["## Subpackages", ""] + [f"- [`{s}`]({s}.md)" for s in subs] + [""]
        return page("\n".join(lines))
