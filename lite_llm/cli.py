"""The ``lite-llm`` command: one entry point, one module per subcommand in ``lite_llm.commands``."""
from __future__ import annotations

import argparse
import sys

from lite_llm.commands import fidelity, route, spec
from lite_llm.spec.errors import LiteLLMError

COMMANDS = (route, spec, fidelity)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lite-llm", description="Lite LLM specification and verification harness")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        cmd.add_parser(sub)
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
