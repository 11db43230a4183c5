"""The clause registry: ids are unique, every referenced id exists, the routing chapter is covered."""
from __future__ import annotations

import json
import re
from pathlib import Path

from lite_llm.spec.clauses import all_clauses, duplicate_ids, parse_clauses, referenced_ids, registry
from lite_llm.spec.errors import ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]
PLANTED_PREFIX = "PLNT-"     # the chapter tests/docs plants into a copy of the tree to show later chapters render
SOURCE_DIRS = ("spec", "reference", "optimized", "conformance", "proofs", "benchmarks", "lite_llm", "tests", "docs")


def source_files(dirs=SOURCE_DIRS, exts=(".py", ".md", ".json")):
    for d in dirs:
        for p in (ROOT / d).rglob("*"):
            if p.suffix in exts and p.is_file() and "vectors" not in p.parts:
                yield p


def test_no_duplicate_clause_ids():
    """OVW-1.2: a clause id names one clause."""
    assert duplicate_ids() == []
    assert len(registry()) == len(all_clauses())


def test_duplicate_id_is_detected():
    text = "# x\n- **HSER-1.1** A MUST b.\n- **HSER-1.1** C MUST d.\n"
    ids = [c.id for c in parse_clauses("x.md", text)]
    assert ids == ["HSER-1.1", "HSER-1.1"]


def test_no_dangling_clause_references():
    known = set(registry())
    dangling = {}
    for p in source_files():
        for cid in referenced_ids(p.read_text(encoding="utf-8")):
            if cid not in known and not cid.startswith(PLANTED_PREFIX):
                dangling.setdefault(cid, []).append(str(p.relative_to(ROOT)))
    assert not dangling, f"clause ids referenced but not defined: {dangling}"


def test_dangling_reference_is_detected():
    missing = "HSER-" + "99.9"      # built at run time so this file does not itself dangle
    assert missing in referenced_ids(f"see {missing}") and missing not in registry()


CODE_DIRS = ("spec", "reference", "optimized", "conformance", "proofs", "lite_llm", "benchmarks", "scripts")
EXEMPTIONS = ROOT / "spec" / "citation_exemptions.json"


def citations(dirs) -> dict[str, set[str]]:
    """clause id -> the files (relative) whose text cites it."""
    out: dict[str, set[str]] = {}
    for p in source_files(dirs, (".py",)):
        for cid in referenced_ids(p.read_text(encoding="utf-8")):
            out.setdefault(cid, set()).add(str(p.relative_to(ROOT)))
    return out


def test_every_must_clause_is_implemented_and_tested():
    """Every MUST clause of every chapter is cited by the code that implements it and by a test, or the
    missing side is listed in spec/citation_exemptions.json with the reason (a rule about the text, ...)."""
    exempt = json.loads(EXEMPTIONS.read_text())
    code, tests = citations(CODE_DIRS), citations(("tests",))
    missing = []
    for c in all_clauses():
        if c.strength not in ("MUST", "MUST NOT"):
            continue
        for side, cited in (("code", code), ("test", tests)):
            if c.id not in cited and side not in exempt.get(c.id, {}):
                missing.append(f"{c.id} ({side})")
    assert not missing, f"MUST clauses cited by no {'/'.join(['code', 'test'])}: {missing}"


def test_citation_exemptions_are_current():
    """An exemption names a MUST clause that really lacks that side, with a reason."""
    exempt = json.loads(EXEMPTIONS.read_text())
    known = registry()
    code, tests = citations(CODE_DIRS), citations(("tests",))
    for cid, sides in exempt.items():
        assert cid in known, f"{cid}: not a clause"
        for side, reason in sides.items():
            assert side in ("code", "test") and len(reason) > 20, f"{cid}: {side}: give the reason"
            assert cid not in (code if side == "code" else tests), f"{cid}: is cited by {side}; drop the exemption"


def test_every_normative_clause_says_must_or_should():
    for c in all_clauses():
        if c.strength == "INFORMATIVE":
            assert "informative" in c.text.lower(), f"{c.id} has no RFC 2119 keyword and is not marked informative"


def test_error_code_table_matches_the_code():
    """HSER-10.1's table lists exactly the routing error codes the spec module defines."""
    text = registry()["HSER-10.1"].text
    codes = set(re.findall(r"`(E_[A-Z_]+)`", text))
    routing = {"E_CONFIG", "E_SHAPE", "E_DTYPE", "E_NONFINITE", "E_WEIGHTS", "E_SEED", "E_UNKNOWN_TIER",
               "E_EMPTY_TIERSET", "E_DUPLICATE_TIER"}
    assert codes == routing
    assert routing <= set(ERROR_CODES)
    for code in routing:
        assert ERROR_CODES[code].clause in registry(), f"{code} cites a missing clause"
