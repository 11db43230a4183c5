"""Write the generated pages into ``docs/``, check committed pages for drift, refresh the recorded conformance
reports, and run MkDocs (``lite-llm docs build | serve``).
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lite_llm.docs_site import sources as src
from lite_llm.docs_site.markdown import MARKER
from lite_llm.docs_site.pages import pages

DOCS = "docs"


def generated_on_disk(docs: Path) -> set[str]:
    """Pages under ``docs/`` that carry the generated marker (so a page the generator no longer writes is found)."""
    out = set()
    for p in docs.rglob("*.md"):
        try:
            head = p.read_text(encoding="utf-8", errors="replace")[:2000]
        except OSError:
            continue
        if MARKER in head:
            out.add(p.relative_to(docs).as_posix())
    return out


def write_pages(root: Path, docs: Path | None = None) -> tuple[list[str], list[str]]:
    """Write every generated page (only those whose bytes change) and remove stale generated pages.

    Returns (written, removed), docs-relative paths."""
    docs = docs or root / DOCS
    want = pages(root)
    written, removed = [], []
    for rel, text in want.items():
        path = docs / rel
        data = text.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(rel)
    for rel in sorted(generated_on_disk(docs) - set(want)):
        (docs / rel).unlink()
        removed.append(rel)
    return written, removed


def check_pages(root: Path) -> list[str]:
    """Every difference between the committed generated pages and what the tree would generate, one line each.

    The pages are regenerated into a temporary directory and compared byte for byte."""
    docs = root / DOCS
    problems = []
    with tempfile.TemporaryDirectory(prefix="lite-llm-docs-check-") as tmp:
        fresh = Path(tmp)
        want = pages(root)
        for rel, text in want.items():
            (fresh / rel).parent.mkdir(parents=True, exist_ok=True)
            (fresh / rel).write_bytes(text.encode("utf-8"))
        for rel in want:
            have = docs / rel
            if not have.is_file():
                problems.append(f"{DOCS}/{rel}: missing (the generator writes it)")
            elif have.read_bytes() != (fresh / rel).read_bytes():
                problems.append(f"{DOCS}/{rel}: differs from what the code generates")
        for rel in sorted(generated_on_disk(docs) - set(want)):
            problems.append(f"{DOCS}/{rel}: stale (a generated page the generator no longer writes)")
    return problems


# ---------------------------------------------------------------------------------------------- MkDocs


def mkdocs(root: Path, *args: str) -> int:
    cmd = [sys.executable, "-m", "mkdocs", *args, "-f", str(root / "mkdocs.yml")]
    return subprocess.run(cmd, cwd=root, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}).returncode


def serve(root: Path, addr: str) -> None:
    """``mkdocs serve`` in this process (so Ctrl-C stops the server, and no child outlives the command)."""
    from mkdocs.commands.serve import serve as mkdocs_serve

    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    mkdocs_serve(config_file=str(root / "mkdocs.yml"), dev_addr=addr)


def build_site(root: Path, site_dir: Path) -> int:
    """``mkdocs build --strict``: any warning (a broken link or anchor, an unresolvable API object) fails."""
    return mkdocs(root, "build", "--strict", "--clean", "-d", str(site_dir))


# ---------------------------------------------------------------------------------------------- reports

_VOLATILE_CASE_KEYS = ("seconds", "rerun")


def _normalise(report: dict, replace: dict[str, str]) -> dict:
    """A conform JSON report without what changes run to run: per-case times, rerun lines, temporary paths."""
    text = json.dumps(report, sort_keys=False)
    for old, new in replace.items():
        text = text.replace(json.dumps(old)[1:-1], new)
    text = re.sub(r"/tmp/[A-Za-z0-9_.\-/]*lite-llm-harness-[A-Za-z0-9_]+", "<tmp>", text)
    rep = json.loads(text)
    for run in rep.get("runs") or []:
        for case in run.get("cases") or []:
            if isinstance(case, dict):
                for k in _VOLATILE_CASE_KEYS:
                    case.pop(k, None)
        run["cases"] = sorted(run.get("cases") or [], key=lambda c: str(c.get("id")) if isinstance(c, dict) else "")
    return rep


def _versions() -> dict:
    env = {"python": platform.python_version()}
    for mod in ("numpy", "torch"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an optional package
            pass
    return env


def _tool_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = (out.stdout or out.stderr).strip().splitlines()
    return line[0] if line else None


def _conform(root: Path, args: list[str], out_json: Path, log) -> dict | None:
    cmd = [sys.executable, "-m", "lite_llm.cli", "conform", *args, "--json", str(out_json)]
    log(f"docs: running {' '.join(['lite-llm', 'conform', *args])}")
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode not in (0, 1) or not out_json.is_file():
        log(f"docs: conform exited {proc.returncode}; the committed report is kept\n{proc.stderr.strip()[-2000:]}")
        return None
    return json.loads(out_json.read_text(encoding="utf-8"))


def _save(root: Path, name: str, data: dict) -> None:
    folder = root / src.DATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data, indent=1, sort_keys=False, ensure_ascii=False) + "\n",
                               encoding="utf-8")


def refresh_reports(root: Path, log=print) -> list[str]:
    """Run the suite and record the reports in docs/data/conformance/: the reference and the optimized
    implementation on the CPU (in one run), the C harness when a C compiler exists, the Rust harness when
    cargo exists. A part that cannot run keeps its committed report. Returns the names written."""
    written = []
    have_torch = _importable("torch")
    with tempfile.TemporaryDirectory(prefix="lite-llm-docs-conform-") as tmp:
        tmpd = Path(tmp)
        impls = ["--impl", "reference"] + (["--impl", "optimized", "--device", "cpu"] if have_torch else [])
        rep = _conform(root, impls, tmpd / "cpu.json", log)
        if rep:
            rep = _normalise(rep, {})
            for run in rep.get("runs") or []:
                impl = str(run.get("impl") or run.get("name"))
                device = "cpu"
                command = "lite-llm conform " + (f"--impl {impl}" if impl == "reference"
                                                 else "--impl optimized --device cpu")
                fname = "reference.json" if impl == "reference" else "optimized-cpu.json"
                _save(root, fname, {"format": "lite-llm-docs-conformance/1", "title": str(run.get("name") or impl),
                                    "device": device, "command": command, "environment": _versions(),
                                    "ok": run.get("ok"), "uncovered_clauses": rep.get("uncovered_clauses", []),
                                    "runs": [run]})
                written.append(fname)
        if not have_torch:
            log("docs: torch is not installed: the optimized CPU report is the committed one")
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        build_sh = root / "conformance" / "examples" / "c_router" / "build.sh"
        if cc and build_sh.is_file():
            exe = tmpd / "c_router"
            b = subprocess.run(["sh", str(build_sh), str(exe)], capture_output=True, text=True,
                               env={**os.environ, "CC": cc})
            if b.returncode == 0 and exe.is_file():
                rep = _conform(root, ["--impl", f"cmd:{exe}", "--levels", "routing"], tmpd / "c.json", log)
                if rep:
                    rep = _normalise(rep, {str(exe): "c_router"})
                    _save(root, "c-router.json", {
                        "format": "lite-llm-docs-conformance/1", "title": "C harness (conformance/examples/c_router)",
                        "device": "cpu", "command": "conformance/examples/c_router/build.sh /tmp/c_router\n"
                                                    "lite-llm conform --impl cmd:/tmp/c_router --levels routing",
                        "environment": {"cc": _tool_version([cc, "--version"])}, "ok": rep.get("ok"),
                        "runs": rep.get("runs") or []})
                    written.append("c-router.json")
            else:
                log(f"docs: the C harness did not build; the committed report is kept\n{b.stderr[-2000:]}")
        else:
            log("docs: no C compiler: the C harness's report is the committed one")
        cargo = shutil.which("cargo")
        manifest = root / "conformance" / "examples" / "rust_router" / "Cargo.toml"
        if cargo and manifest.is_file():
            target = tmpd / "rust-target"
            b = subprocess.run([cargo, "build", "--release", "--offline", "--locked", "--manifest-path",
                                str(manifest)], capture_output=True, text=True,
                               env={**os.environ, "CARGO_TARGET_DIR": str(target)})
            exe = target / "release" / "rust_router"
            if b.returncode == 0 and exe.is_file():
                rep = _conform(root, ["--impl", f"cmd:{exe}", "--levels", "routing"], tmpd / "rust.json", log)
                if rep:
                    rep = _normalise(rep, {str(exe): "rust_router"})
                    _save(root, "rust-router.json", {
                        "format": "lite-llm-docs-conformance/1",
                        "title": "Rust harness (conformance/examples/rust_router)", "device": "cpu",
                        "command": "CARGO_TARGET_DIR=/tmp/rust_router cargo build --release --offline --locked "
                                   "--manifest-path conformance/examples/rust_router/Cargo.toml\n"
                                   "lite-llm conform --impl cmd:/tmp/rust_router/release/rust_router --levels routing",
                        "environment": {"rustc": _tool_version(["rustc", "--version"])}, "ok": rep.get("ok"),
                        "runs": rep.get("runs") or []})
                    written.append("rust-router.json")
            else:
                log(f"docs: the Rust harness did not build; the committed report is kept\n{b.stderr[-2000:]}")
        else:
            log("docs: no cargo: the Rust harness's report is the committed one")
    return written


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_mkdocs() -> list[str]:
    """The documentation packages that are missing (empty when the site can be built)."""
    return [pkg for mod, pkg in (("mkdocs", "mkdocs"), ("material", "mkdocs-material"),
                                 ("mkdocstrings", "mkdocstrings"), ("mkdocstrings_handlers.python",
                                                                    "mkdocstrings-python"))
            if not _importable(mod)]
