"""Check the architecture: import-linter's contracts (pyproject.toml) and no import cycle between modules.

The package's folders sit side by side in the repository (``spec/``, ``reference/``, ...) and are
mapped to ``lite_llm.*`` by ``pyproject.toml``; import-linter (through grimp) walks one directory
tree per package, so this script first stages the package as it is installed (the same mapping, a
plain copy of the ``.py`` files into a temporary ``lite_llm/``), then runs ``lint-imports`` on it and
looks for cycles in the module graph (every import, including those inside functions). A violation
names the offending import, e.g. ``lite_llm.reference.x -> lite_llm.conformance.y (l. 12)``; the
module ``lite_llm.reference.x`` is the file ``reference/x.py``.

    python scripts/lint_imports.py          # exit 0 when every contract holds and there is no cycle
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10
    import tomli as tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage(dest: Path) -> Path:
    """Copy every package's .py files into ``dest/lite_llm/...`` following pyproject's package-dir."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = project["tool"]["setuptools"]["package-dir"]
    for package in project["tool"]["setuptools"]["packages"]:
        parent = next(p for p in sorted(mapping, key=len, reverse=True)
                      if package == p or package.startswith(p + "."))
        src = ROOT / mapping[parent] / Path(*package[len(parent):].lstrip(".").split(".") if package != parent else ())
        out = dest / Path(*package.split("."))
        out.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy2(f, out / f.name)
    return dest


def import_edges(package_root: Path) -> dict[str, list[str]]:
    """module -> the modules it imports, read by grimp in a fresh process from the staged copy."""
    code = ("import json, grimp; g = grimp.build_graph('lite_llm', cache_dir=None); "
            "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=package_root,
                         env={**os.environ, "PYTHONPATH": str(package_root)}).stdout
    return json.loads(out)


def cycles(package_root: Path) -> list[list[str]]:
    """Strongly connected components of more than one module in the import graph (Tarjan)."""
    graph = import_edges(package_root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:                 # iterative enough for a graph of a few hundred modules
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for m in sorted(graph):
        if m not in index:
            visit(m)
    return out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lite-llm-imports-") as tmp:
        root = stage(Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(root)}
        lint = shutil.which("lint-imports") or "lint-imports"
        proc = subprocess.run([lint, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=root, env=env)
        found = cycles(root)
        for comp in found:
            print(f"import cycle between {len(comp)} modules: {' <-> '.join(comp)}")
        if not found:
            print("no import cycle between modules")
        return 1 if proc.returncode or found else 0


if __name__ == "__main__":
    sys.exit(main())
