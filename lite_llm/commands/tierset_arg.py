"""The ``--tierset`` argument of the commands: every mode of TIER-3, budget-constrained included.

``all``, ``exclusive:NAME``, ``cumulative:NAME`` and ``a,b,c`` are parsed by ``lite_llm.spec.tierset``;
``budget:FILE.json`` runs the reference's exact budget selection (SEL-2.4) on the file's
``utility``, ``latency`` and ``memory`` lists (one value per tier, in id order) and its limits ``tau``
and ``mu`` (``null`` for no limit).
"""
from __future__ import annotations

import json
from pathlib import Path

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import BudgetError
from lite_llm.spec.tierset import parse_tier_set

HELP = "all | exclusive:NAME | cumulative:NAME | budget:FILE.json | a,b,c (default all)"


def resolve_tier_set(cfg: ModelConfig, text: str) -> tuple[int, ...]:
    """The TierSet a command-line ``--tierset`` names, as sorted tier ids."""
    mode, sep, arg = text.strip().partition(":")
    if not (sep and mode == "budget"):
        return parse_tier_set(cfg, text)
    from lite_llm.reference.selection import select_for_config

    path = Path(arg)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise BudgetError(f"budget file {path} does not exist", clause="SEL-1.1") from None
    except json.JSONDecodeError as e:
        raise BudgetError(f"budget file {path} is not valid JSON: {e}", clause="SEL-1.1") from None
    missing = [k for k in ("utility", "latency", "memory", "tau", "mu") if k not in spec]
    if missing:
        raise BudgetError(f"budget file {path} lacks {', '.join(missing)}", clause="SEL-1.1")
    limit = lambda v: float("inf") if v is None else v          # noqa: E731  (JSON has no infinity)
    return select_for_config(cfg, spec["utility"], spec["latency"], spec["memory"], limit(spec["tau"]),
                             limit(spec["mu"]))
