"""The ``lite-llm`` command: one entry point, one module per subcommand in ``lite_llm.commands``.

Each module in COMMANDS has ``add_parser(subparsers)``, which registers its arguments and sets
``func`` to the function that runs it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lite_llm.spec.errors import LiteLLMError

COMMANDS = ("route", "spec", "fidelity", "params", "checkpoint", "generate", "vectors", "conform", "prove", "bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lite-llm", description="Lite LLM specification and verification harness")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"lite_llm.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"lite_llm.commands.{name}":
                continue          # a subcommand still being written
            raise
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LiteLLMError as e:
        print(f"lite-llm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
