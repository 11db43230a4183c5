"""Which spec clauses the vectors check (CONF-5.5).

Every MUST / MUST NOT clause needs at least one case, or an entry in ``exemptions.json`` that says
why vectors cannot check it (a rule about the spec text itself, about file-system behaviour during
a crash, ...) and what checks it instead. ``uncovered`` lists the clauses with neither.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from lite_llm.spec.clauses import all_clauses

HERE = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def exemptions() -> dict[str, str]:
    """clause id -> why no vector checks it, and what does instead."""
    return json.loads((HERE / "exemptions.json").read_text(encoding="utf-8"))


def clause_cases(cases) -> dict[str, list[str]]:
    """clause id -> ids of the cases that cite it."""
    out: dict[str, list[str]] = {}
    for c in cases:
        for cl in c.clauses:
            out.setdefault(cl, []).append(c.id)
    return out


def must_clauses() -> list[str]:
    return [c.id for c in all_clauses() if c.normative]


def uncovered(cases) -> list[str]:
    """MUST clauses that no case cites and exemptions.json does not exempt (CONF-1.8, CONF-5.5)."""
    cited = clause_cases(cases)
    ex = exemptions()
    return [c for c in must_clauses() if c not in cited and c not in ex]
