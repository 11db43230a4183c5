"""``lite-llm docs``: the documentation site (MkDocs, Material theme), generated from the repository.

``lite-llm docs build`` records fresh conformance reports (``docs/data/conformance/``; ``--no-run`` keeps
the committed ones), regenerates every generated page of ``docs/`` and builds the site with
``mkdocs build --strict`` into ``site/``. ``lite-llm docs build --check`` changes nothing: it regenerates
the pages in a temporary directory, compares them byte for byte with the committed ones, and builds the
site strictly into a temporary directory. ``lite-llm docs serve`` regenerates the pages and serves the
site on 127.0.0.1.

Exit status (the constants of :mod:`lite_llm.exit_codes`):

==== ============ ===============================================================================
0    OK           the pages are current and the strict build passed
1    FAILED       ``--check``: a committed generated page differs, is missing or is stale (each
                  is named); or ``mkdocs build --strict`` failed (a broken link or anchor)
2    REJECTED     the documentation packages are not installed (``pip install 'lite-llm[docs]'``)
==== ============ ===============================================================================
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from lite_llm import exit_codes

PROG = "lite-llm docs"


def repo_root() -> Path:
    """The checkout the site is built from: the nearest folder at or above the working directory that holds
    ``mkdocs.yml`` and ``spec/chapters/``, else the checkout this package is installed from (editable)."""
    for d in (Path.cwd(), *Path.cwd().parents):
        if (d / "mkdocs.yml").is_file() and (d / "spec" / "chapters").is_dir():
            return d
    return Path(__file__).resolve().parents[2]


def add_parser(sub) -> None:
    p = sub.add_parser("docs", help="build, check or serve the documentation site",
                       description="The documentation site, generated from the spec, the proofs, the conformance "
                                   "results and the benchmarks (MkDocs with the Material theme).")
    dsub = p.add_subparsers(dest="docs_command", required=True, metavar="ACTION")
    b = dsub.add_parser("build", help="regenerate docs/ and build the site with mkdocs build --strict",
                        description="Record fresh conformance reports, regenerate every generated page of docs/ and "
                                    "build the site into site/ with mkdocs build --strict.")
    b.add_argument("--check", action="store_true",
                   help="change nothing: fail (exit 1) naming every committed generated page that differs from "
                        "what the code generates, then build the site strictly into a temporary directory")
    b.add_argument("--no-run", action="store_true",
                   help="do not run the conformance suite: render the committed reports of docs/data/conformance/")
    b.add_argument("--no-site", action="store_true", help="only the pages: skip mkdocs build")
    b.add_argument("--site-dir", metavar="DIR", help="where the site goes (default: site/)")
    b.set_defaults(func=run_build)
    s = dsub.add_parser("serve", help="regenerate the pages and serve the site locally",
                        description="Regenerate the pages (without running the suite) and run mkdocs serve.")
    s.add_argument("--addr", default="127.0.0.1:8000", metavar="HOST:PORT",
                   help="address to serve on (default 127.0.0.1:8000)")
    s.set_defaults(func=run_serve)


def _require() -> int | None:
    from lite_llm.docs_site.site import require_mkdocs

    missing = require_mkdocs()
    if missing:
        print(f"{PROG}: error: this needs {', '.join(missing)}, which is not installed: "
              f"pip install 'lite-llm[docs]'", file=sys.stderr)
        return exit_codes.REJECTED
    return None


def check_site_dir(d: Path) -> None:
    """--site-dir: a directory, or a new one whose parent exists and is writable."""
    from lite_llm.commands.inputs import UsageError

    if d.exists() and not d.is_dir():
        raise UsageError(f"--site-dir {d} is a file, not a directory")
    parent = d if d.exists() else d.parent
    if not parent.is_dir():
        raise UsageError(f"--site-dir {d}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--site-dir {d}: directory {parent} is not writable")


def run_build(args) -> int:
    from lite_llm.docs_site import site

    root = repo_root()
    if args.site_dir:                                                  # checked before any page is written
        check_site_dir(Path(args.site_dir))
    if args.check:
        problems = site.check_pages(root)
        for line in problems:
            print(f"{PROG}: drift: {line}", file=sys.stderr)
        if problems:
            print(f"{PROG}: {len(problems)} generated page(s) differ from the code; run `lite-llm docs build` "
                  f"and commit docs/", file=sys.stderr)
            return exit_codes.FAILED
        print(f"{PROG}: every generated page is current")
        if args.no_site:
            return exit_codes.OK
        status = _require()
        if status is not None:
            return status
        with tempfile.TemporaryDirectory(prefix="lite-llm-site-") as tmp:
            rc = site.build_site(root, Path(tmp) / "site")
        if rc != 0:
            print(f"{PROG}: mkdocs build --strict failed (exit {rc})", file=sys.stderr)
            return exit_codes.FAILED
        print(f"{PROG}: mkdocs build --strict passed")
        return exit_codes.OK
    if not args.no_run:
        written = site.refresh_reports(root, log=lambda m: print(m, file=sys.stderr))
        print(f"{PROG}: recorded reports: {', '.join(written) or 'none (the committed ones are kept)'}")
    written, removed = site.write_pages(root)
    print(f"{PROG}: {len(written)} page(s) written, {len(removed)} stale page(s) removed")
    for rel in written:
        print(f"  wrote docs/{rel}")
    for rel in removed:
        print(f"  removed docs/{rel}")
    if args.no_site:
        return exit_codes.OK
    status = _require()
    if status is not None:
        return status
    site_dir = Path(args.site_dir) if args.site_dir else root / "site"
    rc = site.build_site(root, site_dir)
    if rc != 0:
        print(f"{PROG}: mkdocs build --strict failed (exit {rc})", file=sys.stderr)
        return exit_codes.FAILED
    print(f"{PROG}: site built in {site_dir}")
    return exit_codes.OK


def run_serve(args) -> int:
    from lite_llm.docs_site import site

    status = _require()
    if status is not None:
        return status
    root = repo_root()
    site.write_pages(root)
    site.serve(root, args.addr)          # in this process: Ctrl-C stops it (INTERRUPTED, 130)
    return exit_codes.OK
