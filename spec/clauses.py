"""The machine-readable clause registry, read from the spec chapters (OVW-1.1, OVW-1.2).

A clause is a Markdown list item that starts with its bold identifier, e.g.
``- **HSER-4.2** The level word ...``. Its text runs to the next list item, heading or blank line
that is not followed by an indented continuation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

CLAUSE_ID = re.compile(r"\b([A-Z]{2,6})-(\d+)\.(\d+)\b")
CLAUSE_START = re.compile(r"^- \*\*([A-Z]{2,6}-\d+\.\d+)\*\*\s*(.*)$")
STRENGTHS = ("MUST NOT", "MUST", "SHOULD NOT", "SHOULD", "MAY")


@dataclass(frozen=True)
class Clause:
    id: str          # e.g. "HSER-4.2"
    chapter: str     # file name of the chapter, e.g. "02-hser.md"
    section: str     # the heading the clause sits under
    text: str        # the clause's text, joined into one line
    strength: str    # first RFC 2119 keyword in the text, or "INFORMATIVE" if none

    @property
    def normative(self) -> bool:
        return self.strength in ("MUST", "MUST NOT")


def chapter_texts() -> dict[str, str]:
    """Chapter file name -> Markdown text, in chapter order."""
    root = resources.files(__package__).joinpath("chapters")
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(root.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".md")}


def parse_clauses(chapter: str, text: str) -> list[Clause]:
    """Every clause of one chapter, in order of appearance (duplicates kept, for checking)."""
    out: list[Clause] = []
    section, cur, buf = "", None, []

    def flush():
        if cur is not None:
            body = " ".join(s.strip() for s in buf).strip()
            strength = next((s for s in STRENGTHS if re.search(rf"\b{s}\b", body)), "INFORMATIVE")
            out.append(Clause(cur, chapter, section, body, strength))

    for line in text.splitlines():
        m = CLAUSE_START.match(line)
        if m:
            flush()
            cur, buf = m.group(1), [m.group(2)]
        elif line.startswith("#"):
            flush()
            cur, buf = None, []
            section = line.lstrip("#").strip()
        elif cur is not None and (line.startswith("  ") or line.strip() == "") and not line.startswith("- "):
            if line.strip():
                buf.append(line)
        else:
            flush()
            cur, buf = None, []
    flush()
    return out


@lru_cache(maxsize=None)
def all_clauses() -> tuple[Clause, ...]:
    """Every clause of every chapter (may contain duplicates; see ``duplicate_ids``)."""
    return tuple(c for name, text in chapter_texts().items() for c in parse_clauses(name, text))


def duplicate_ids() -> list[str]:
    ids = [c.id for c in all_clauses()]
    return sorted({i for i in ids if ids.count(i) > 1})


@lru_cache(maxsize=None)
def registry() -> dict[str, Clause]:
    """Clause id -> clause. Raises if an id is defined twice (OVW-1.2)."""
    dup = duplicate_ids()
    if dup:
        raise ValueError(f"clause ids defined more than once: {', '.join(dup)}")
    return {c.id: c for c in all_clauses()}


def referenced_ids(text: str) -> set[str]:
    """Clause-like identifiers mentioned in a text (for the dangling-reference check)."""
    return {m.group(0) for m in CLAUSE_ID.finditer(text)}


def clause(cid: str) -> Clause:
    """The clause with this id; KeyError naming the id if there is none."""
    try:
        return registry()[cid]
    except KeyError:
        raise KeyError(f"no clause {cid} in spec v0.1") from None
