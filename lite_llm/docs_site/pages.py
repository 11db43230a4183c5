"""The generated pages of the documentation site: ``pages(root)`` -> {docs-relative path: Markdown text}.

Deterministic: the same tree gives the same bytes (sorted everywhere, no timestamps, floats formatted
with a fixed number of digits). Rendering is generic where other engineers add material: a new chapter,
certificate, result file, plot or recorded report appears without a change here.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from lite_llm.docs_site import sources as src
from lite_llm.docs_site.markdown import (MARKER, CODE_SPAN_OR_LINK, blank_before_lists, cell, code_block, link,  # noqa: F401 - MARKER for site.py
                                         page, shift_headings, table)
from lite_llm.docs_site.reports import ReportPages
from lite_llm.spec.clauses import CLAUSE_ID, CLAUSE_START, Clause

STRONG = ("MUST", "MUST NOT")


class Site(ReportPages):
    """Everything the pages need, read once from the tree."""

    def __init__(self, root: Path):
        self.root = root
        self.chapters = src.chapters(root)
        self.clauses = src.clauses(root)
        self.by_id = {c.id: c for c in self.clauses}
        known = set(self.by_id)
        self.code = {col: src.citations(root, d, pats, known, out) for col, (d, pats, out) in src.CODE_DIRS.items()}
        # the site's own tests name ids as examples, not as what they check
        self.tests = src.citations(root, src.TEST_DIR, ("*.py",), known, ("docs",))
        self.cert_cites = src.citations(root, src.CERT_DIR, ("*.json",), known)
        self.cases = src.cases(root)
        self.cases_of: dict[str, list[src.Case]] = defaultdict(list)
        for case in self.cases:
            for cid in case.clauses:
                self.cases_of[cid].append(case)
        self.case_exemptions = src.read_json(root / "conformance" / "exemptions.json") or {}
        self.citation_exemptions = src.read_json(root / "spec" / "citation_exemptions.json")
        self.certs = src.certificates(root)
        self.results = src.results(root)
        self.reports = src.recorded_reports(root)
        self.api_dirs = src.module_dirs(root)
        self.api_pages = {dotted: f"api/{dotted}.md" for dotted, _ in self.api_dirs}

    # -- links

    def clause_url(self, cid: str, from_page: str) -> str:
        c = self.by_id[cid]
        return link(from_page, f"spec/{c.chapter}", cid)

    def linkify(self, text: str, from_page: str) -> str:
        """Turn every known clause id in prose into a link to its anchor (code spans and links untouched)."""
        def repl(m):
            cid = m.group(0)
            return f"[{cid}]({self.clause_url(cid, from_page)})" if cid in self.by_id else cid

        out, pos = [], 0
        for m in CODE_SPAN_OR_LINK.finditer(text):
            out.append(CLAUSE_ID.sub(repl, text[pos:m.start()]))
            out.append(m.group(0))
            pos = m.end()
        out.append(CLAUSE_ID.sub(repl, text[pos:]))
        return "".join(out)

    def source_link(self, rel: str, from_page: str) -> str:
        """A cited file: a link to its module in the API reference, or its path as code."""
        p = Path(rel)
        for dotted, folder in self.api_dirs:
            try:
                folder_rel = folder.relative_to(self.root).as_posix()
            except ValueError:
                continue
            if p.parent.as_posix() == folder_rel and p.suffix == ".py":
                anchor = dotted if p.stem == "__init__" else f"{dotted}.{p.stem}"
                if p.stem == "__init__" or p.stem in src.modules_of(folder):
                    return f"[`{p.name}`]({link(from_page, self.api_pages[dotted], anchor)} \"{rel}\")"
        return f"`{rel.removeprefix('conformance/examples/')}`"

    # -- the pages

    def all_pages(self) -> dict[str, str]:
        out: dict[str, str] = {}
        out["index.md"] = self.home()
        out["getting-started.md"] = self.getting_started()
        out["implementers.md"] = self.implementers()
        out["spec/index.md"] = self.spec_index()
        for name, text in self.chapters.items():
            out[f"spec/{name}"] = self.chapter(name, text)
        out["traceability.md"] = self.traceability()
        out["conformance/index.md"] = self.conformance()
        out["conformance/cases.md"] = self.cases_page()
        out["proofs/index.md"] = self.proofs_index()
        for cert in self.certs:
            out[f"proofs/{cert['_slug']}.md"] = self.certificate(cert)
        out.update(self.benchmarks())
        out["api/index.md"] = self.api_index()
        for dotted, folder in self.api_dirs:
            out[self.api_pages[dotted]] = self.api_page(dotted, folder)
        return dict(sorted(out.items()))

    # ---------------------------------------------------------------------------------------- home

    def home(self) -> str:
        n_must = sum(c.normative for c in self.clauses)
        n_claims = sum(len(c.get("claims") or ()) for c in self.certs)
        lines = [
            "# Lite LLM: specification and verification harness", "",
            "A tiered Mixture-of-Experts transformer (TPA: parameter tiers from 1B to 1Q) with a deterministic "
            "three-level router (HSER: tier -> group -> expert), specified to the bit, checked by a conformance "
            "suite any implementation can run, and backed by machine-checked proofs.", "",
            "Every page of this site is generated from the repository by `lite-llm docs build`: the spec "
            "chapters, the traceability matrix, the proof certificates, the recorded conformance reports and "
            "the benchmark results.", "",
            table(["part", "what", "count"], [
                ["[Specification](spec/index.md)", "the normative chapters; every clause has an anchor "
                 "(`spec/02-hser/#HSER-4.2`) and is found by searching its id", f"{len(self.chapters)} chapters, "
                 f"{len(self.clauses)} clauses ({n_must} MUST)"],
                ["[Traceability](traceability.md)", "clause -> code -> conformance cases -> tests -> proofs, with "
                 "every gap and its reason", f"{len(self.clauses)} rows"],
                ["[Conformance](conformance/index.md)", "the latest report per implementation and device; "
                 "[cases by clause](conformance/cases.md)", f"{len(self.cases)} cases, {len(self.reports)} "
                 "recorded reports"],
                ["[Proofs](proofs/index.md)", "the certificates of `lite-llm prove`, claim by claim",
                 f"{len(self.certs)} certificates, {n_claims} claims"],
                ["[Benchmarks](benchmarks/index.md)", "GPU benchmark tables, recorded runs and plots",
                 f"{len(self.results.runs)} recorded runs, {len(self.results.plots)} plots"],
                ["[Implementers](implementers.md)", "writing a harness in another language, the protocol, "
                 "the exit statuses", ""],
                ["[Getting started](getting-started.md)", "the two commands of the README", ""],
                ["[API reference](api/index.md)", "lite_llm.spec, lite_llm.reference, lite_llm.optimized, "
                 "from the docstrings", f"{len(self.api_dirs)} packages"],
            ]),
        ]
        return page("\n".join(lines))

    # ---------------------------------------------------------------------------------------- getting started

    def getting_started(self) -> str:
        main = src.readme_command(self.root, "main-command")
        test = src.readme_command(self.root, "test-command")
        lines = ["# Getting started", "",
                 "On a fresh machine with Python 3.10 or newer. Both commands are copied from the README "
                 "(between its `<!-- main-command -->` and `<!-- test-command -->` markers) when the site is "
                 "built, so they cannot drift from it.", ""]
        lines += ["## The main job: the conformance suite", "",
                  "The conformance suite against the reference and the optimized implementation, on the CPU and "
                  "on CUDA when a GPU is present, ending in a table of implementations by levels (exit status 0 "
                  "only when every case passes):", ""]
        lines += [code_block(main, "bash") if main else "*The README has no main command marker.*", ""]
        lines += ["## The tests", "",
                  "pytest, then the architecture's import contracts, then the frozen vectors regenerated and "
                  "compared byte for byte, then every proof re-run from scratch:", ""]
        lines += [code_block(test, "bash") if test else "*The README has no test command marker.*", ""]
        lines += ["## This site", "", code_block(
            "pip install -e '.[docs]'\n"
            "lite-llm docs build            # refresh the recorded reports, regenerate docs/, mkdocs build --strict\n"
            "lite-llm docs build --check    # fail (exit 1) naming every generated page that drifted\n"
            "lite-llm docs serve            # http://127.0.0.1:8000", "bash"), "",
            "The browser test (`tests/docs/test_site_browser.py`) needs Chromium and its driver: "
            "`apt-get install chromium chromium-driver`.", "",
            "Next: the [specification](spec/index.md), or [writing your own harness](implementers.md)."]
        return page("\n".join(lines))

    # ---------------------------------------------------------------------------------------- implementers

    def implementers(self) -> str:
        from lite_llm import exit_codes

        here = "implementers.md"
        readme_path = self.root / "conformance" / "README.md"
        readme = src.read_text(readme_path) if readme_path.is_file() else ""
        conf_chapter = next((n for n in self.chapters if "conformance" in n), None)
        lines = ["# A guide for implementers", "",
                 "How to check your own implementation, in any language, against the specification: the "
                 "protocol your harness speaks, the cases it must pass, and the exit statuses every `lite-llm` "
                 "command shares."]
        if conf_chapter:
            lines += ["", f"The normative text is [spec chapter {conf_chapter[:2]}](spec/{conf_chapter}) (`CONF-1` "
                          "to `CONF-6`); what follows is the suite's own guide, `conformance/README.md`."]
        lines += ["", "## Exit statuses", "",
                  "From `lite_llm/exit_codes.py` (`TABLE`); `lite-llm COMMAND --help` prints the same table.", "",
                  table(["status", "name", "meaning"],
                        [[str(code), f"`{name}`", cell(what)] for code, name, what in exit_codes.TABLE]), ""]
        if readme:
            body = self.rewrite_links(readme, readme_path.parent, here)
            body = re.sub(r"\A# .*\n", "", body)          # its title becomes a section of this page
            lines += ["## The conformance suite (conformance/README.md)", "", shift_headings(body, 1)]
        return page("\n".join(lines))

    def rewrite_links(self, text: str, base: Path, here: str, ids: bool = True) -> str:
        """Relative links of an included Markdown file: to its page on this site, or plain text."""
        targets = {
            (self.root / "conformance" / "README.md").resolve(): "implementers.md",
            (self.root / "benchmarks" / "README.md").resolve(): "benchmarks/index.md",
        }
        for name in self.chapters:
            targets[(self.root / "spec" / "chapters" / name).resolve()] = f"spec/{name}"
        for cert in self.certs:
            targets[(self.root / src.CERT_DIR / f"{cert['_slug']}.md").resolve()] = f"proofs/{cert['_slug']}.md"
        for name in self.results.pages:
            targets[(self.root / src.RESULTS_DIR / name).resolve()] = f"benchmarks/{Path(name).stem}.md"
        for name in self.results.plots:
            targets[(self.root / src.RESULTS_DIR / name).resolve()] = f"benchmarks/results/{name}"

        def repl(m):
            bang, label, url = m.group(1), m.group(2), m.group(3).strip()
            if re.match(r"^[a-z][a-z0-9+.-]*:|^#", url):
                return m.group(0)
            path, _, anchor = url.partition("#")
            dest = targets.get((base / path).resolve())
            if dest:
                return f"{bang}[{label}]({link(here, dest, anchor)})"
            shown = (base / path).resolve()
            try:
                shown_rel = shown.relative_to(self.root.resolve()).as_posix()
            except ValueError:
                shown_rel = path
            return label if label.strip("`") == shown_rel or label.strip("`") == path else f"{label} (`{shown_rel}`)"

        out, fence = [], None
        for line in text.splitlines():
            m = re.match(r"^\s*(`{3,}|~{3,})", line)
            if m:
                fence = None if fence and m.group(1).startswith(fence) else (fence or m.group(1))
            elif fence is None:
                line = re.sub(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)", repl, line)
                if ids and not line.startswith("#"):
                    line = self.linkify(line, here)
            out.append(line)
        return "\n".join(out)

    # ---------------------------------------------------------------------------------------- spec

    def spec_index(self) -> str:
        rows = []
        for name, text in self.chapters.items():
            cs = [c for c in self.clauses if c.chapter == name]
            strengths = Counter(c.strength for c in cs)
            rows.append([f"[{cell(src.chapter_title(text, name))}]({name})", str(len(cs)),
                         ", ".join(f"{n} {s}" for s, n in sorted(strengths.items()))])
        lines = ["# The specification", "",
                 "The normative chapters, as written in `spec/chapters/`. Every clause is a heading with a stable "
                 "anchor: `spec/02-hser/#HSER-4.2`; search for an id (`HSER-4.2`) to find it. Each clause links to "
                 "its row of the [traceability matrix](../traceability.md).", "",
                 table(["chapter", "clauses", "by strength"], rows)]
        return page("\n".join(lines))

    def chapter(self, name: str, text: str) -> str:
        here = f"spec/{name}"
        text = self.rewrite_links(text, self.root / "spec" / "chapters", here, ids=False)   # links of the chapter
        out: list[str] = []
        cur: str | None = None
        fence = None

        def close_clause():
            nonlocal cur
            if cur is None:
                return
            while out and not out[-1].strip():
                out.pop()
            c = self.by_id.get(cur)
            bits = [f"*{c.strength}*" if c else "", f"[traceability]({link(here, 'traceability.md', cur)})"]
            # no counts here: a chapter's page depends on the chapter alone, not on the vectors
            bits.append(f"[conformance cases]({link(here, 'conformance/cases.md', cur)})")
            out.extend(["", " · ".join(b for b in bits if b), "{: .clause-links }", ""])
            cur = None

        title_done = False
        for line in text.splitlines():
            m_fence = re.match(r"^\s*(`{3,}|~{3,})", line)
            if fence is not None:
                if m_fence and m_fence.group(1).startswith(fence):
                    fence = None
                out.append(line[2:] if cur and line.startswith("  ") else line)
                continue
            m = CLAUSE_START.match(line)
            if m and m.group(1) in self.by_id and self.by_id[m.group(1)].chapter == name:
                close_clause()
                cur = m.group(1)
                out.extend(["", f"#### {cur} {{#{cur} .clause}}", "", self.linkify(m.group(2), here)])
                continue
            if line.startswith("#"):
                close_clause()
                out.append(line)
                if line.startswith("# ") and not title_done:
                    title_done = True
                    out.extend(["", f"*Generated from `spec/chapters/{name}`.*"])
                continue
            if cur is not None and (line.startswith("  ") or not line.strip()) and not line.startswith("- "):
                body = line[2:] if line.startswith("  ") else line
                if m_fence:
                    fence = m_fence.group(1)
                    out.append(body)
                else:
                    out.append(self.linkify(body, here))
                continue
            close_clause()
            if m_fence:
                fence = m_fence.group(1)
                out.append(line)
            else:
                out.append(self.linkify(line, here))
        close_clause()
        return page("\n".join(blank_before_lists(out)))

    # ---------------------------------------------------------------------------------------- traceability

    def trace_row(self, c: Clause, here: str) -> list[str]:
        cid = c.id
        impl, other = [], []
        for col, label in (("reference", "reference"), ("optimized", "optimized"), ("spec", "spec"),
                           ("harnesses", "C / Rust")):
            files = self.code[col].get(cid, [])
            if files:
                impl.append(f"{label}: " + ", ".join(self.source_link(f, here) for f in files))
        for col in ("suite", "cli", "proofs", "benchmarks", "scripts"):
            other += self.code[col].get(cid, [])
        if other:
            impl.append("also: " + ", ".join(f"`{f}`" for f in other))
        cases = self.cases_of.get(cid, [])
        case_cell = (f"[{len(cases)} case{'s' if len(cases) != 1 else ''}]({link(here, 'conformance/cases.md', cid)})"
                     if cases else "")
        tests = self.tests.get(cid, [])
        test_cell = ", ".join(f"`{t.removeprefix('tests/')}`" for t in tests)
        certs = [cert for cert in self.certs if cert["_file"] in self.cert_cites.get(cid, [])]
        proof_cell = ", ".join(f"[{cert['_slug']}]({link(here, 'proofs/' + cert['_slug'] + '.md')})" for cert in certs)
        gaps = self.gaps(c, bool(impl), bool(cases), bool(tests))
        return [f"[{cid}]({link(here, 'spec/' + c.chapter, cid)}){{#{cid}}}", c.strength.lower(),
                "<br>".join(impl) or "—", case_cell or "—", test_cell or "—", proof_cell or "—",
                cell("; ".join(gaps)) if gaps else "—"]

    def gaps(self, c: Clause, has_code: bool, has_case: bool, has_test: bool) -> list[str]:
        if not c.normative:
            return []
        out = []
        cit = self.citation_exemptions
        for missing, what, side in ((not has_code, "no code cites it", "code"),
                                    (not has_test, "no test cites it", "test")):
            if missing:
                r = src.find_reason(cit, c.id, side) if cit else None
                out.append(f"{what}: " + (r if r else "no reason recorded"))
        if not has_case:
            r = src.find_reason(self.case_exemptions, c.id) if self.case_exemptions else None
            out.append("no conformance case: " + (r if r else "no reason recorded"))
        return out

    def traceability(self) -> str:
        here = "traceability.md"
        summary, sections = [], []
        totals = Counter()
        for name, text in self.chapters.items():
            cs = [c for c in self.clauses if c.chapter == name]
            if not cs:
                continue
            title = src.chapter_title(text, name)
            anchor = "chapter-" + Path(name).stem
            rows = [self.trace_row(c, here) for c in cs]
            n = Counter()
            for c, r in zip(cs, rows):
                n["clauses"] += 1
                n["must"] += c.normative
                n["code"] += r[2] != "—"
                n["cases"] += r[3] != "—"
                n["tests"] += r[4] != "—"
                n["proofs"] += r[5] != "—"
                n["gaps"] += r[6] != "—"
                n["unexplained"] += "no reason recorded" in r[6]
            totals.update(n)
            summary.append([f"[{cell(title)}](#{anchor})"] + [str(n[k]) for k in
                           ("clauses", "must", "code", "cases", "tests", "proofs", "gaps", "unexplained")])
            sections += [f"## {title} {{#{anchor}}}", "",
                         table(["clause", "strength", "implemented in", "conformance", "tests", "proofs", "gaps"],
                               rows), ""]
        summary.append(["**all**"] + [f"**{totals[k]}**" for k in
                        ("clauses", "must", "code", "cases", "tests", "proofs", "gaps", "unexplained")])
        lines = ["# Traceability matrix", "",
                 "Each clause of the specification, the code that cites it (a file under `reference/`, "
                 "`optimized/`, `spec/` or the C and Rust harnesses of `conformance/examples/` whose text names the "
                 "id, links going to the module's API reference; *also*: the suite, the CLI, the proofs, the "
                 "benchmarks and the scripts, the other folders `tests/spec/test_clauses.py` counts as code), the "
                 "conformance cases whose `case.json` lists it, the tests under `tests/` that name it, and the "
                 "proof certificates that name it.", "",
                 "A MUST clause without code, a test or a case is a gap; the reason shown is the one recorded in "
                 "`conformance/exemptions.json` (clauses without a case) or `spec/citation_exemptions.json` "
                 "(clauses without a code or test citation). *no reason recorded* marks a gap nobody has explained.",
                 "", table(["chapter", "clauses", "MUST", "with code", "with cases", "with tests", "with proofs",
                            "with gaps", "gaps without reason"], summary), ""]
        return page("\n".join(lines + sections), meta={"hide": ["navigation", "toc"], "search": {"exclude": "true"}})

    # ---------------------------------------------------------------------------------------- conformance

    def cases_page(self) -> str:
        here = "conformance/cases.md"
        levels = Counter(c.level for c in self.cases)
        lines = ["# Conformance cases by clause", "",
                 f"The {len(self.cases)} frozen vectors of `conformance/vectors/` "
                 f"({', '.join(f'{n} {lv}' for lv, n in sorted(levels.items()))}), listed under every clause their "
                 "`case.json` cites; a clause without a case shows the reason `conformance/exemptions.json` gives. "
                 "A case id is also its directory under `conformance/vectors/<version>/`. "
                 "`lite-llm conform --case ID` runs one.", ""]
        for c in self.clauses:
            cases = self.cases_of.get(c.id, [])
            head = (f"**[{c.id}]({link(here, 'spec/' + c.chapter, c.id)})** ({c.strength.lower()}): "
                    f"{len(cases) or 'no'} case{'s' if len(cases) != 1 else ''} · "
                    f"[traceability]({link(here, 'traceability.md', c.id)})")
            if not cases:
                reason = src.find_reason(self.case_exemptions, c.id) if self.case_exemptions else None
                why = (reason or "no reason recorded") if c.normative else f"not required of a {c.strength} clause"
                lines += [f"{head}: {cell(why)}", f"{{: #{c.id} }}", ""]
                continue
            lines += [head, f"{{: #{c.id} }}", "",
                      table(["case", "level", "operation", "match", "description"],
                            [[f"`{k.id}`", cell(k.level), f"`{k.operation}`" if k.operation else " ", cell(k.match),
                              cell(k.description)] for k in cases]), ""]
        unknown = sorted({cid for k in self.cases for cid in k.clauses} - set(self.by_id))
        if unknown:
            lines += ["## Cited ids that are not clauses", "", ", ".join(f"`{u}`" for u in unknown), ""]
        return page("\n".join(lines), meta={"hide": ["navigation", "toc"]})


def pages(root: Path) -> dict[str, str]:
    """Every generated page of the site, by path relative to ``docs/``."""
    return Site(Path(root)).all_pages()
