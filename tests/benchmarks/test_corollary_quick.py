"""``lite-llm bench corollary --quick``: the quadrillion model swept over its seven cumulative TierSets on
one real token, every weight generated (INIT-3.1 .. INIT-3.3), routing real at every layer; the
parameters the runtime counts per token equal PARAM-3's value for the tiers it chose at every point
(INIT-3.4). No timing is asserted (CPU, shared machine)."""
from __future__ import annotations

import json

import pytest

from lite_llm.benchmarks import bench_corollary
from lite_llm.reference.params import param_report
from lite_llm.spec.configs import resolve_config


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("corollary")
    rc = bench_corollary.run("cpu", quick=True, json_path=str(out / "r.json"), out_dir=str(out), plot=False)
    return rc, json.loads((out / "r.json").read_text()), out


def test_counted_equals_formula_at_every_point(sweep):
    """INIT-3.4 / PARAM-3.1 .. PARAM-3.4: counted by the runtime == formula, token by token, every TierSet."""
    rc, r, _ = sweep
    cfg = resolve_config("quadrillion")
    assert rc == 0 and r["all_counts_equal_formula"]
    assert [p["tierset"][-1] for p in r["points"]] == [t.name for t in cfg.tiers]
    for p in r["points"]:
        for tok in p["tokens"]:
            assert tok["counted"] == tok["formula"], (p["tierset"][-1], tok)
            assert sum(tok["chosen_tiers"].values()) == cfg.n_layers          # one level-1 choice per layer
        assert p["counted_active_mean"] == p["formula_active_mean"]


def test_the_sweep_reaches_a_quadrillion_at_billion_scale_cost(sweep):
    """P_total grows ~2.7e5x over the sweep; the parameters a token touches stay within 2x (PARAM-3)."""
    _, r, _ = sweep
    pts = r["points"]
    assert pts[-1]["p_total"] == param_report(resolve_config("quadrillion")).p_total
    assert 1.0e15 < pts[-1]["p_total"] < 1.001e15 and pts[0]["p_total"] < 4e9
    assert pts[-1]["counted_active_mean"] < 2 * pts[0]["counted_active_mean"]
    assert all(p["paper_experts_only"] == 128 * 4 * 3 * 2048 * 1302 for p in pts)     # the paper's 4.1e9
    assert r["mode"].startswith("quick") and "counted, not computed" in r["mode"]


def test_router_rows_are_read_not_assumed(sweep):
    """HSER-7.1 .. 7.3 on generated rows: a token reads |T| + G_t + min(k_g, G_t) E_t rows per layer."""
    _, r, _ = sweep
    cfg = resolve_config("quadrillion")
    for p in r["points"]:
        for tok in p["tokens"]:
            rows = sum(len(p["tier_ids"]) + cfg.tiers[cfg.tier_id(name)].groups
                       + min(2, cfg.tiers[cfg.tier_id(name)].groups) * cfg.tiers[cfg.tier_id(name)].experts_per_group
                       for name, n in tok["chosen_tiers"].items() for _ in range(n))
            assert tok["counted"]["router"] == rows * cfg.d_model


def test_plot_from_json(sweep):
    pytest.importorskip("matplotlib")
    _, _, out = sweep
    assert bench_corollary.plot_from(str(out / "r.json")) == 0
    assert (out / "r.png").stat().st_size > 10_000


def test_full_mode_runs_and_counts_on_a_small_model(tmp_path):
    """The GPU path (dense generated once, experts generated and computed, timed per part) on the CPU
    with the tiny config: counts equal PARAM-3 with real hidden states (INIT-3.4)."""
    rc = bench_corollary.run("cpu", quick=False, json_path=str(tmp_path / "f.json"), tokens=4, reps=1,
                             plot=False, config="tiny")
    r = json.loads((tmp_path / "f.json").read_text())
    assert rc == 0 and r["all_counts_equal_formula"] and r["mode"].startswith("full")
    assert all(p["seconds_per_token"]["experts"] > 0 and p["seconds_per_token"]["dense"] > 0 for p in r["points"])


def test_scaling_quick_runs(tmp_path):
    """lite-llm bench scaling --quick: flat, HSER (exact route) and product keys at 1e3 .. 1e5 experts, with
    the bytes-over-bandwidth model and the speedups written; no timing is asserted."""
    from lite_llm.benchmarks import bench_scaling

    assert bench_scaling.run("cpu", quick=True, json_path=str(tmp_path / "s.json"), reps=1, max_seconds=5) == 0
    r = json.loads((tmp_path / "s.json").read_text())
    assert {x["router"] for x in r["rows"]} == {"flat", "HSER (exact)", "product keys"}
    assert len(r["rows"]) == 3 * 3 * 2 and all(x["model_us"] > 0 for x in r["rows"])
    assert len(r["targets"]["hser_speedup_over_flat"]) == 6 and "partial" not in r
