"""The lite-llm command line as a user runs it."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from lite_llm.cli import main


def test_route_random_prints_active_experts(capsys):
    assert main(["route", "--random", "3", "--tierset", "cumulative:tier_10b"]) == 0
    out = capsys.readouterr().out
    assert "TierSet {tier_1b, tier_10b}" in out and out.count("  token ") == 3


def test_route_from_npy_and_save(tmp_path, capsys):
    h = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    np.save(tmp_path / "h.npy", h)
    assert main(["route", "--hidden", str(tmp_path / "h.npy"), "--out", str(tmp_path / "r.npz"), "--seed", "0x10"]) == 0
    r = np.load(tmp_path / "r.npz")
    assert r["gate"].shape == (5, 4) and r["count"].tolist() == [4] * 5


def test_route_errors_are_clear(tmp_path, capsys):
    h = np.zeros((2, 64), np.float32)
    h[1, 3] = np.nan
    np.save(tmp_path / "h.npy", h)
    assert main(["route", "--hidden", str(tmp_path / "h.npy")]) == 2
    assert "E_NONFINITE" in capsys.readouterr().err
    assert main(["route", "--tierset", "exclusive:tier_9t"]) == 2
    assert "tier_9t" in capsys.readouterr().err
    assert main(["route", "--config", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_spec_clauses_lists_ids(capsys):
    assert main(["spec", "clauses", "HSER-6"]) == 0
    out = capsys.readouterr().out
    assert "HSER-6.2" in out and "HSER-5.1" not in out
    assert main(["spec", "clauses", "--json", "TIER-2.3"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["id"] == "TIER-2.3" and row["strength"] == "MUST"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "lite_llm.cli", "spec", "clauses", "OVW-1.1"],
                         capture_output=True, text=True, check=True).stdout
    assert "RFC 2119" in out


def test_budget_tierset_from_a_file(tmp_path, capsys):
    """TIER-3.4, SEL-2.4: --tierset budget:FILE routes with the exact budget-constrained TierSet."""
    from lite_llm.spec.configs import resolve_config
    from lite_llm.reference.selection import select_budget

    spec = {"utility": [1.0, 3.0, 2.0], "latency": [1.0, 2.0, 2.0], "memory": [1.0, 1.0, 1.0], "tau": 3.0, "mu": None}
    (tmp_path / "b.json").write_text(json.dumps(spec))
    chosen = select_budget(spec["utility"], spec["latency"], spec["memory"], 3.0, float("inf"))
    names = [resolve_config("tiny").tiers[t].name for t in chosen]
    assert main(["route", "--random", "2", "--tierset", f"budget:{tmp_path / 'b.json'}"]) == 0
    assert f"TierSet {{{', '.join(names)}}}" in capsys.readouterr().out
    (tmp_path / "tight.json").write_text(json.dumps({**spec, "tau": 0.5}))
    assert main(["route", "--tierset", f"budget:{tmp_path / 'tight.json'}"]) == 2
    assert "E_BUDGET" in capsys.readouterr().err
