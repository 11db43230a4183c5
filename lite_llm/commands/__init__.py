"""Subcommands of ``lite-llm``; each module has ``add_parser(subparsers)``."""
