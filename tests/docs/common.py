"""Helpers of the documentation tests: a copy of the tree, planted additions, the ``lite-llm`` command.

The planted additions are what later engineers add: a spec chapter, a proof certificate in a slightly
different format, a benchmark plot, a benchmark report and a recorded run. The site must render them
without a change to the generator and still build with ``mkdocs build --strict``.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "site", "build", "dist", "*.egg-info", "target",
                                ".pytest_cache", ".hypothesis", ".benchmarks", "out", ".whl")


def need_docs_packages():
    for mod in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(mod, reason="pip install 'lite-llm[docs]' to build the documentation site")


def copy_tree(dest: Path) -> Path:
    """The repository's files (no virtual environment, no git, no build output) under ``dest``."""
    shutil.copytree(ROOT, dest, ignore=IGNORE, symlinks=True)
    return dest


def lite_llm(*args: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """``lite-llm ARGS`` in ``cwd`` (the docs command builds the checkout that holds ``cwd``)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "lite_llm.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def png(width: int = 48, height: int = 24) -> bytes:
    """A small valid PNG (an RGB gradient), written without any imaging library."""
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 5 % 256, y * 10 % 256, 128))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PLANTED_CHAPTER = """# 99. PLNT: a chapter added later

Planted by the documentation tests.

## 99.1 Planted rules (PLNT-1)

- **PLNT-1.1** An implementation MUST accept the planted input; see HSER-4.2.
  A second line of the clause.
- **PLNT-1.2** An implementation MAY ignore it.
"""


def plant(root: Path) -> None:
    (root / "spec" / "chapters" / "99-planted.md").write_text(PLANTED_CHAPTER)
    (root / "proofs" / "certificates" / "planted_claim.json").write_text(json.dumps({
        "format": 3, "status": "pass", "name": "planted_claim", "title": "A planted certificate",
        "statement": "The planted clause PLNT-1.1 holds.", "clauses": ["PLNT-1.1", "HSER-4.2"],
        "new_field": {"solver": "z3", "seconds_budget": 5},
        "claims": [{"name": "planted", "statement": "It holds.", "expected": "proved", "result": "proved",
                    "as_expected": True, "a_field_from_a_newer_format": [1, 2]}]}, indent=1))
    results = root / "benchmarks" / "results"
    (results / "planted-plot.png").write_bytes(png())
    (results / "planted-report.md").write_text(
        "# Planted report\n\n![the planted plot](planted-plot.png)\n\n| size | us |\n| --- | --- |\n| 1 | 2.5 |\n\n"
        "See the [benchmarks README](../README.md) and [a file](planted-run.json).\n")
    (results / "planted-run.json").write_text(json.dumps({
        "env": {"gpu": "planted"}, "benchmarks": [{"scenario": "P1", "device": "cpu", "meta": {"T": 4},
                                                   "rows": [{"method": "ours", "us": 1.25, "exact": "yes"}]}]}))
