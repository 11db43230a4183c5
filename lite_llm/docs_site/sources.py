"""What the documentation pages show, read from a repository checkout (never from the installed package).

Every reader takes the repository root, so a temporary copy of the tree gives its own pages (the drift
check and the tests rely on that). Everything is returned sorted, so the pages are deterministic.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lite_llm.spec.clauses import CLAUSE_ID, Clause, parse_clauses

# where clause citations are looked for: column -> (folder, file name patterns, sub-folders left out). The code
# columns together are the folders tests/spec/test_clauses.py counts as code (a MUST clause cited by none is a gap).
CODE_DIRS = {
    "reference": ("reference", ("*.py",), ()),
    "optimized": ("optimized", ("*.py",), ()),
    "spec": ("spec", ("*.py", "*.json"), ("chapters",)),
    "harnesses": ("conformance/examples", ("*.c", "*.h", "*.rs"), ()),
    "suite": ("conformance", ("*.py",), ("examples", "vectors")),
    "proofs": ("proofs", ("*.py",), ()),
    "cli": ("lite_llm", ("*.py",), ("docs_site",)),
    "benchmarks": ("benchmarks", ("*.py",), ()),
    "scripts": ("scripts", ("*.py",), ()),
}
TEST_DIR = "tests"
CERT_DIR = "proofs/certificates"
VECTORS_DIR = "conformance/vectors"
RESULTS_DIR = "benchmarks/results"
DATA_DIR = "docs/data/conformance"
SKIP_PARTS = {"__pycache__", "target", ".git", "node_modules"}


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- spec


def chapters(root: Path) -> dict[str, str]:
    """Chapter file name -> Markdown text, in chapter (file name) order."""
    folder = root / "spec" / "chapters"
    return {p.name: read_text(p) for p in sorted(folder.glob("*.md"))}


def clauses(root: Path) -> list[Clause]:
    """Every clause of every chapter, in chapter order; a repeated id keeps its first definition."""
    out, seen = [], set()
    for name, text in chapters(root).items():
        for c in parse_clauses(name, text):
            if c.id not in seen:
                seen.add(c.id)
                out.append(c)
    return out


def chapter_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


# ---------------------------------------------------------------------------------------------- citations


def _files(root: Path, folder: str, patterns: tuple[str, ...], leave_out: tuple[str, ...] = ()) -> list[Path]:
    base = root / folder
    if not base.is_dir():
        return []
    found = {p for pat in patterns for p in base.rglob(pat)
             if p.is_file() and not SKIP_PARTS.intersection(p.relative_to(root).parts)
             and not set(leave_out).intersection(p.relative_to(base).parts[:-1])}
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def citations(root: Path, folder: str, patterns: tuple[str, ...], known: set[str],
              leave_out: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Clause id -> repository-relative paths of the files in ``folder`` that mention it (sorted)."""
    out: dict[str, list[str]] = {}
    for path in _files(root, folder, patterns, leave_out):
        rel = path.relative_to(root).as_posix()
        for cid in sorted({m.group(0) for m in CLAUSE_ID.finditer(read_text(path))} & known):
            out.setdefault(cid, []).append(rel)
    return out


# ---------------------------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    id: str
    level: str
    operation: str
    match: str
    description: str
    clauses: tuple[str, ...]
    path: str           # case.json, repository-relative


def cases(root: Path) -> list[Case]:
    """Every conformance case (every case.json under conformance/vectors), sorted by id."""
    out = []
    base = root / VECTORS_DIR
    for path in sorted(base.rglob("case.json")) if base.is_dir() else []:
        d = read_json(path)
        if not isinstance(d, dict):
            continue
        rel = path.relative_to(root).as_posix()
        out.append(Case(str(d.get("id") or path.parent.relative_to(base).as_posix()), str(d.get("level", "")),
                        str(d.get("operation", "")), str(d.get("match", "")),
                        " ".join(str(d.get("description", "")).split()),
                        tuple(str(c) for c in d.get("clauses") or ()), rel))
    return sorted(out, key=lambda c: (c.id, c.path))


# ---------------------------------------------------------------------------------------------- exemptions


def find_reason(obj, cid: str, side: str | None = None) -> str | None:
    """The reason recorded for ``cid`` anywhere in an exemptions file (a flat or nested mapping, or a list
    of records with an id field), whatever its exact shape. With ``side`` (``code``, ``test``), a mapping of
    sides under the id gives that side's reason only (``{"HSER-1.1": {"code": "...", "test": "..."}}``)."""
    if isinstance(obj, dict):
        if cid in obj:
            v = obj[cid]
            if isinstance(v, dict) and side is not None:
                keys = [k for k in v if str(k).rstrip("s") == side.rstrip("s")]
                return " ".join(str(v[keys[0]]).split()) if keys else None
            if isinstance(v, dict):
                return "; ".join(str(x) for x in v.values() if isinstance(x, (str, int, float))) or json.dumps(v)
            return " ".join(str(v).split()) if not isinstance(v, list) else "; ".join(map(str, v))
        for v in obj.values():
            r = find_reason(v, cid, side)
            if r:
                return r
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and cid in (item.get("id"), item.get("clause")):
                return str(item.get("reason") or item.get("why") or json.dumps(item, sort_keys=True))
            r = find_reason(item, cid, side)
            if r:
                return r
    return None


def exemption_categories(obj, cid: str) -> list[str]:
    """Top-level keys of a nested exemptions mapping under which ``cid`` appears (e.g. ``code``, ``tests``)."""
    if not isinstance(obj, dict) or cid in obj:
        return []
    return sorted(k for k, v in obj.items() if find_reason(v, cid))


# ---------------------------------------------------------------------------------------------- certificates


def certificates(root: Path) -> list[dict]:
    """Every proof certificate (a JSON object with claims) in proofs/certificates, sorted by name."""
    out = []
    for path in sorted((root / CERT_DIR).glob("*.json")):
        d = read_json(path)
        if isinstance(d, dict) and ("claims" in d or "statement" in d):
            d = dict(d)
            d.setdefault("name", path.stem)
            d["_file"] = path.relative_to(root).as_posix()
            d["_slug"] = path.stem
            md = path.with_suffix(".md")
            d["_md"] = read_text(md) if md.is_file() else None
            out.append(d)
    return sorted(out, key=lambda d: d["_slug"])


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Results:
    readme: str | None = None
    plots: list[str] = field(default_factory=list)          # file names in benchmarks/results
    pages: dict[str, str] = field(default_factory=dict)     # results/*.md name -> text
    runs: dict[str, dict] = field(default_factory=dict)     # results/*.json name -> object
    other: list[str] = field(default_factory=list)          # every other file name


def results(root: Path) -> Results:
    r = Results()
    readme = root / "benchmarks" / "README.md"
    r.readme = read_text(readme) if readme.is_file() else None
    folder = root / RESULTS_DIR
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not p.is_file():
            continue
        if p.suffix == ".png":
            r.plots.append(p.name)
        elif p.suffix == ".md":
            r.pages[p.name] = read_text(p)
        elif p.suffix == ".json" and p.with_suffix(".md").is_file():
            r.other.append(p.name)                    # its report is the .md beside it (a page of its own)
        elif p.suffix == ".json" and isinstance(d := read_json(p), dict):
            r.runs[p.name] = d
        else:
            r.other.append(p.name)
    return r


def recorded_reports(root: Path) -> dict[str, dict]:
    """Recorded conformance reports (docs/data/conformance/*.json), by file name."""
    folder = root / DATA_DIR
    return {p.name: d for p in sorted(folder.glob("*.json")) if isinstance(d := read_json(p), dict)}


# ---------------------------------------------------------------------------------------------- README


def readme_command(root: Path, marker: str) -> str | None:
    """The first ```bash block after ``<!-- marker -->`` in README.md (the same rule as .ci/run)."""
    path = root / "README.md"
    if not path.is_file():
        return None
    lines, found, inside, out = read_text(path).splitlines(), False, False, []
    for line in lines:
        if not found:
            found = line.strip() == f"<!-- {marker} -->"
        elif not inside:
            inside = line.startswith("```bash")
        elif line.startswith("```"):
            return "\n".join(out)
        else:
            out.append(line)
    return None


def python_packages(root: Path) -> dict[str, Path]:
    """``lite_llm.<name>`` -> folder, for the folders the API reference documents."""
    return {f"lite_llm.{n}": root / n for n in ("spec", "reference", "optimized") if (root / n).is_dir()}


def module_dirs(root: Path) -> list[tuple[str, Path]]:
    """(dotted package, folder) for every package folder (with ``__init__.py``) of the documented packages."""
    out = []
    for dotted, folder in python_packages(root).items():
        for init in sorted(folder.rglob("__init__.py")):
            d = init.parent
            if SKIP_PARTS.intersection(d.relative_to(root).parts):
                continue
            rel = d.relative_to(folder).parts
            out.append((".".join((dotted,) + rel), d))
    return sorted(out)


def modules_of(folder: Path) -> list[str]:
    """Module names of the ``.py`` files directly in a package folder (``__init__`` excluded), sorted."""
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__" and re.fullmatch(r"\w+", p.stem))
