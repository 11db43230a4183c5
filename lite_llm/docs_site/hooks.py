"""The MkDocs hook named in ``mkdocs.yml`` (``hooks:``); MkDocs loads it by path, the package never imports it.

- ``on_config`` (before every plugin): stages the documented packages as they are installed
  (``lite_llm/spec``, ``lite_llm/reference``, ``lite_llm/optimized`` from ``spec/``, ``reference/``,
  ``optimized/``: a plain copy of the ``.py`` files into a temporary directory) and points mkdocstrings'
  Python handler at it, so griffe reads the sources statically (no import: the API pages build without
  torch); and builds the navigation from what is in ``docs/``, in a fixed order of sections.
- ``on_files``: adds every ``benchmarks/results/*.png`` as ``benchmarks/results/NAME.png`` of the site,
  read in place (the plots are not copied into ``docs/``).
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

PACKAGES = ("spec", "reference", "optimized")
SECTIONS = (                                         # (title, page or folder) in navigation order
    ("Home", "index.md"),
    ("Getting started", "getting-started.md"),
    ("Specification", "spec"),
    ("Traceability", "traceability.md"),
    ("Conformance", "conformance"),
    ("Proofs", "proofs"),
    ("Benchmarks", "benchmarks"),
    ("Implementers", "implementers.md"),
    ("API reference", "api"),
)
_STAGED: dict[str, str] = {}


def _root(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _stage(root: Path) -> str:
    key = str(root)
    if key not in _STAGED:
        tmp = Path(tempfile.mkdtemp(prefix="lite-llm-docs-api-"))
        atexit.register(shutil.rmtree, tmp, True)
        pkg = tmp / "lite_llm"
        pkg.mkdir()
        init = root / "lite_llm" / "__init__.py"
        (pkg / "__init__.py").write_bytes(init.read_bytes() if init.is_file() else b"")
        for name in PACKAGES:
            for f in sorted((root / name).rglob("*.py")):
                rel = f.relative_to(root / name)
                if "__pycache__" in rel.parts:
                    continue
                dest = pkg / name / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
        _STAGED[key] = str(tmp)
    return _STAGED[key]


def _folder_nav(docs: Path, folder: str) -> list:
    base = docs / folder
    pages = sorted(p.relative_to(docs).as_posix() for p in base.glob("*.md"))
    index = f"{folder}/index.md"
    rest = [p for p in pages if p != index]
    if folder == "conformance":
        rest.sort(key=lambda p: (p != "conformance/cases.md", p))
    if folder == "benchmarks":
        rest.sort(key=lambda p: (p != "benchmarks/runs.md", p))
    return ([index] if index in pages else []) + rest


def navigation(docs: Path) -> list:
    nav, used = [], set()
    for title, target in SECTIONS:
        if target.endswith(".md"):
            if (docs / target).is_file():
                nav.append({title: target})
                used.add(target)
        elif (docs / target).is_dir():
            entries = _folder_nav(docs, target)
            if entries:
                nav.append({title: entries})
                used.update(entries)
    for p in sorted(docs.rglob("*.md")):            # anything else someone adds, so nothing is orphaned
        rel = p.relative_to(docs).as_posix()
        if rel not in used and not any(part.startswith((".", "_")) for part in p.relative_to(docs).parts):
            nav.append(rel)
    return nav


@event_priority(100)
def on_config(config):
    root = _root(config)
    staged = _stage(root)
    plugin = config.plugins.get("mkdocstrings")
    if plugin is not None:
        handlers = plugin.config.setdefault("handlers", {})
        python = handlers.setdefault("python", {})
        python["paths"] = [staged]
    if not config.nav:
        config.nav = navigation(Path(config.docs_dir))
    return config


def on_files(files, config):
    root = _root(config)
    for png in sorted((root / "benchmarks" / "results").glob("*.png")):
        uri = f"benchmarks/results/{png.name}"
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(png)))
    return files
