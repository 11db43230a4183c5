"""The ``lite-llm`` command: one entry point, one module per subcommand in ``lite_llm.commands``.

Each module in COMMANDS has ``add_parser(subparsers)``, which registers its arguments and sets
``func`` to the function that runs it. ``func`` returns an exit status from
:mod:`lite_llm.exit_codes` (None means OK). Errors are mapped here, once, for every command:
a spec error (``LiteLLMError``) or an unreadable file is REJECTED (2) with one line naming the
code and clause; anything else is INTERNAL (3) with one line, the traceback only under ``--debug``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from lite_llm import exit_codes
from lite_llm.spec.errors import LiteLLMError

EXTRAS = {"torch": "torch", "triton": "triton", "hypothesis": "dev", "pytest": "dev", "z3": "proofs",
          "sympy": "proofs", "mkdocs": "docs", "material": "docs", "mkdocstrings": "docs",
          "selenium": "docs", "matplotlib": "plots", "s3fs": "storage", "aiohttp": "storage",
          "cosmic_ray": "mutation"}   # module -> extra

COMMANDS = ("route", "spec", "fidelity", "params", "checkpoint", "generate", "vectors", "conform", "prove", "bench",
            "train", "routes", "docs")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lite-llm")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a source tree on sys.path)
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse, with the exit-status table under every command's ``--help``."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", exit_codes.epilog())
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lite-llm", description="Lite LLM specification and verification harness")
    p.add_argument("--version", action="version", version=f"lite-llm {_version()}")
    p.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"lite_llm.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"lite_llm.commands.{name}":
                continue          # a subcommand still being written
            raise
        mod.add_parser(sub)
    return p


def error_line(exc: BaseException) -> str:
    """One line for an error: a spec error's own message already starts with its code and clause."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"lite-llm {args.command}"
    try:
        status = args.func(args)
        return exit_codes.OK if status is None else int(status)
    except LiteLLMError as e:
        print(f"{prog}: error: {error_line(e)}", file=sys.stderr)
        return exit_codes.REJECTED
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"{prog}: error: {e.strerror or e}{where}", file=sys.stderr)
        return exit_codes.REJECTED
    except BrokenPipeError:
        return exit_codes.OK
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return exit_codes.INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a verdict's status
        top = (getattr(e, "name", None) or "").split(".")[0] if isinstance(e, ModuleNotFoundError) else ""
        if top in EXTRAS:
            print(f"{prog}: error: this needs the {top!r} package, which is not installed: "
                  f"pip install 'lite-llm[{EXTRAS[top]}]'", file=sys.stderr)
            return exit_codes.REJECTED
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: internal error: {type(e).__name__}: {error_line(e)} "
              f"(a bug in lite-llm; rerun with --debug for the traceback)", file=sys.stderr)
        return exit_codes.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
