"""``lite-llm docs build``: the committed generated pages are current, the strict build passes, drift is named.

``lite-llm docs build --check`` regenerates every page in a temporary directory, compares the bytes with
``docs/``, then runs ``mkdocs build --strict`` (no broken link or anchor) into a temporary directory.
"""
from __future__ import annotations

from pathlib import Path

from lite_llm.docs_site import pages as docs_pages
from lite_llm.docs_site import sources

from tests.docs.common import ROOT, copy_tree, lite_llm, need_docs_packages


def test_check_passes_on_the_committed_pages_and_the_strict_build_passes():
    need_docs_packages()
    proc = lite_llm("docs", "build", "--check", cwd=ROOT)
    print(proc.stdout[-3000:], proc.stderr[-5000:])
    assert proc.returncode == 0, "run `lite-llm docs build` and commit docs/"
    assert "every generated page is current" in proc.stdout
    assert "mkdocs build --strict passed" in proc.stdout


def fresh_copy(tmp_path):
    """A copy of the tree whose generated pages are current (whatever the state of the committed ones)."""
    root = copy_tree(tmp_path / "repo")
    proc = lite_llm("docs", "build", "--no-run", "--no-site", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def test_a_planted_drift_is_named(tmp_path):
    root = fresh_copy(tmp_path)
    docs = root / "docs"
    chapter = docs / "spec" / "02-hser.md"
    chapter.write_text(chapter.read_text() + "\nan edit by hand\n")
    (docs / "proofs" / "index.md").unlink()
    (docs / "spec" / "98-removed.md").write_text(docs_pages.MARKER + "\n\n# a chapter that no longer exists\n")
    (docs / "notes.md").write_text("# hand-written notes are not generated pages\n")
    proc = lite_llm("docs", "build", "--check", "--no-site", cwd=root)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 1
    assert "docs/spec/02-hser.md: differs" in proc.stderr
    assert "docs/proofs/index.md: missing" in proc.stderr
    assert "docs/spec/98-removed.md: stale" in proc.stderr
    assert "notes.md" not in proc.stderr
    assert "3 generated page(s) differ" in proc.stderr
    # and `lite-llm docs build` repairs it
    fixed = lite_llm("docs", "build", "--no-run", "--no-site", cwd=root)
    assert fixed.returncode == 0, fixed.stderr
    assert lite_llm("docs", "build", "--check", "--no-site", cwd=root).returncode == 0


def test_a_broken_anchor_fails_the_strict_build(tmp_path):
    need_docs_packages()
    root = fresh_copy(tmp_path)
    missing = "HSER-" + "99.9"                   # built at run time so this file names no undefined clause
    (root / "docs" / "notes.md").write_text(f"# Notes\n\n[a clause that does not exist](spec/02-hser.md#{missing})\n")
    proc = lite_llm("docs", "build", "--check", cwd=root)
    print(proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.returncode == 1
    assert "every generated page is current" in proc.stdout
    assert missing in proc.stderr and "mkdocs build --strict failed" in proc.stderr


def test_later_additions_render_without_a_change_to_the_generator(planted_site):
    root, site, proc = planted_site
    print(proc.stdout[-3000:], proc.stderr[-5000:])
    assert proc.returncode == 0
    docs = root / "docs"
    chapter = (docs / "spec" / "99-planted.md").read_text()
    assert "#### PLNT-1.1 {#PLNT-1.1 .clause}" in chapter and "[HSER-4.2](02-hser.md#HSER-4.2)" in chapter
    trace = (docs / "traceability.md").read_text()
    assert "[PLNT-1.1](spec/99-planted.md#PLNT-1.1){#PLNT-1.1}" in trace
    row = next(line for line in trace.splitlines() if "{#PLNT-1.1}" in line)
    assert "[planted_claim](proofs/planted_claim.md)" in row and "no reason recorded" in row
    cert = (docs / "proofs" / "planted_claim.md").read_text()
    assert "a_field_from_a_newer_format" in cert and "new_field" in cert
    bench = (docs / "benchmarks" / "index.md").read_text()
    assert "](results/planted-plot.png)" in bench and "[planted-report](planted-report.md)" in bench
    report = (docs / "benchmarks" / "planted-report.md").read_text()
    assert "](results/planted-plot.png)" in report and "](index.md)" in report
    assert "planted-run.json" in (docs / "benchmarks" / "runs.md").read_text()
    assert (site / "benchmarks" / "results" / "planted-plot.png").stat().st_size > 50
    assert (site / "spec" / "99-planted" / "index.html").is_file()


def test_pages_are_deterministic_and_quote_the_readme_commands():
    first, second = docs_pages.pages(ROOT), docs_pages.pages(ROOT)
    assert first == second
    started = first["getting-started.md"]
    for marker in ("main-command", "test-command"):
        command = sources.readme_command(ROOT, marker)
        assert command and f"```bash\n{command}\n```" in started
    for rel in first:
        assert not Path(rel).is_absolute() and ".." not in Path(rel).parts


def test_exemption_reasons_are_found_whatever_the_file_shape():
    flat = {"CONF-1.1": "  the suite's own rule:\n regenerated and compared  "}
    sided = {"MODEL-4.1": {"code": "a rule about the text", "test": "checked by the vectors"}}
    nested = {"code": {"MODEL-4.1": "no code"}, "tests": {"MODEL-4.2": "no test"}}
    records = [{"id": "REC-1.1", "reason": "a record"}]
    assert sources.find_reason(flat, "CONF-1.1") == "the suite's own rule: regenerated and compared"
    assert sources.find_reason(sided, "MODEL-4.1", "test") == "checked by the vectors"
    assert sources.find_reason(sided, "MODEL-4.1", "code") == "a rule about the text"
    assert sources.find_reason({"MODEL-4.1": {"code": "x"}}, "MODEL-4.1", "test") is None
    assert sources.find_reason(nested, "MODEL-4.2") == "no test"
    assert sources.find_reason(records, "REC-1.1") == "a record"
    assert sources.find_reason(flat, "HSER-1.1") is None


def test_without_the_docs_packages_the_command_says_what_to_install(monkeypatch, capsys):
    from lite_llm import exit_codes
    from lite_llm.cli import main
    from lite_llm.docs_site import site

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(site, "check_pages", lambda root: [])
    monkeypatch.setattr(site, "require_mkdocs", lambda: ["mkdocs-material"])
    assert main(["docs", "build", "--check"]) == exit_codes.REJECTED
    err = capsys.readouterr().err
    assert "mkdocs-material" in err and "pip install 'lite-llm[docs]'" in err
