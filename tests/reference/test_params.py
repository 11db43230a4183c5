"""Parameter accounting (PARAM-1 .. PARAM-4): the formulas against the tensor shapes the model is built
from, P_active against the weights a routed token actually reads, the paper's bound, the quadrillion
config and the ``lite-llm params`` command."""
from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lite_llm.cli import main
from lite_llm.spec.configs import resolve_config
from lite_llm.reference.params import (layer_active_for, p_total, param_report, tier_active_term, tier_budget,
                                       worst_case_tiers)
from lite_llm.reference.router import route
from lite_llm.reference.router_weights import init_router_weights, quantize_router
from lite_llm.spec.tensors import dense_shapes, tier_shapes
from lite_llm.spec.config import config_from_dict
from lite_llm.spec.errors import UnknownTierError
from tests.helpers import gaussian

ROOT = Path(__file__).resolve().parents[2]


def config(tiers, k=(1, 2, 2), d=16, layers=2, vocab=50):
    """tiers: (groups, experts_per_group, d_ff) triples."""
    return config_from_dict({
        "spec_version": "0.1", "d_model": d, "n_heads": 2, "n_layers": layers, "vocab_size": vocab,
        "tiers": [{"name": f"t{i}", "groups": g, "experts_per_group": e, "d_ff": f} for i, (g, e, f) in enumerate(tiers)],
        "router": {"k_tier": k[0], "k_group": k[1], "k_expert": k[2]},
    })


def size(shape) -> int:
    return math.prod(shape)


TIERS = st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 12)), min_size=1, max_size=4)


@given(TIERS, st.integers(1, 4), st.integers(1, 40), st.sampled_from([4, 8, 12]))
def test_totals_equal_the_tensor_sizes(tiers, layers, vocab, d):
    """PARAM-1.2, PARAM-2.1, PARAM-2.2, PARAM-2.3: dense_total, every B_t and P_total equal the sums of the
    shapes of INIT-2.1 .. INIT-2.3."""
    cfg = config(tiers, d=d, layers=layers, vocab=vocab)
    r = param_report(cfg)
    dense = sum(size(s) for s in dense_shapes(cfg).values())
    budgets = tuple(sum(size(s) for s in tier_shapes(cfg, t).values()) for t in range(cfg.n_tiers))
    assert r.dense_total == dense
    assert r.tier_budgets == budgets == tuple(tier_budget(cfg, t) for t in range(cfg.n_tiers))
    assert r.p_total == p_total(cfg) == dense + sum(budgets)


def read_by_token(cfg, r, w, token):
    """The router rows and expert parameters token ``token`` reads in one layer, counted from its routing
    record and the shapes of the weights it indexes (PARAM-3.5). Independent of the PARAM formulas."""
    rows1 = sum(w.tier[t][None, :].shape[0] for t in r.tier_set)                     # every TierSet row
    rows2 = rows3 = 0
    for a, t in enumerate(r.chosen_tiers[token]):
        if t < 0:
            continue
        rows2 += w.group[t].shape[0]                                                   # all of G_t
        for g in r.chosen_groups[token, a]:
            if g >= 0:
                rows3 += w.expert[t][g].shape[0]                                       # all of E_t
    shapes = {t: tier_shapes(cfg, t) for t in range(cfg.n_tiers)}
    experts = 0
    for t, g, e, _ in r.active(token):
        name = f"layers.0.tiers.{cfg.tiers[t].name}"
        experts += sum(size(shapes[t][f"{name}.{m}"][2:]) for m in ("w_gate", "w_up", "w_down"))
    chosen = tuple(int(t) for t in r.chosen_tiers[token] if t >= 0)
    return (rows1, rows2, rows3), int(r.count[token]), experts, chosen


@pytest.mark.parametrize("tiers, k, tset", [
    (((2, 3, 8), (4, 2, 4), (1, 5, 6)), (1, 2, 2), (0, 1, 2)),
    (((2, 3, 8), (4, 2, 4), (1, 5, 6)), (2, 2, 3), (0, 1, 2)),
    (((2, 3, 8), (4, 2, 4), (1, 5, 6)), (2, 3, 1), (1, 2)),
    (((3, 3, 4),), (2, 2, 2), (0,)),
])
def test_active_count_equals_what_a_routed_token_reads(tiers, k, tset):
    """PARAM-3.2, PARAM-3.3, PARAM-3.5: for every routed token, the rows and experts read (from the routing
    record) equal layer_active_for of its level-1 choice, never exceed the report's worst case, and the
    worst case is the largest count over every possible level-1 choice."""
    cfg = config(tiers, k=k)
    w = init_router_weights(cfg, 5)
    r = route(gaussian(60, cfg.d_model, seed=1), quantize_router(cfg, w), tset)
    rep = param_report(cfg, tset)
    worst_layer = sum(rep.layer_routers) + rep.layer_experts
    seen = set()
    for i in range(60):
        rows, count, experts, chosen = read_by_token(cfg, r, w, i)
        la = layer_active_for(cfg, tset, chosen)
        assert la.router_rows == rows and la.active_experts == count and la.expert_params == experts
        assert la.router_params == tuple(cfg.d_model * x for x in rows)
        assert sum(la.router_params) + experts <= worst_layer
        seen.add(chosen)
    assert len(seen) > 1 or len(tset) <= k[0]
    n1 = min(k[0], len(tset))
    every = [layer_active_for(cfg, tset, S) for S in itertools.combinations(tset, n1)]
    assert max(sum(a.router_params) + a.expert_params for a in every) == worst_layer


def test_p_active_equals_a_routed_token_through_the_whole_model():
    """PARAM-3.1, PARAM-3.4: with identical tiers every level-1 choice is the worst case, so a token routed
    through every layer (each with its own router weights) reads exactly P_active: dense tensors from
    their shapes (one embedding row, the whole LM head) plus what each layer's record says it read."""
    cfg = config(((2, 3, 8), (2, 3, 8), (2, 3, 8)), k=(2, 2, 2), layers=3)
    h = gaussian(5, cfg.d_model, seed=2)
    shapes = dense_shapes(cfg)
    dense_read = shapes["embed"][1] + size(shapes["final_norm"]) + size(shapes["lm_head"])
    dense_read += sum(size(s) for n, s in shapes.items() if n.startswith("layers."))
    rep = param_report(cfg)
    for token in range(5):
        total = dense_read
        for layer in range(cfg.n_layers):
            w = init_router_weights(cfg, 7, layer)
            r = route(h, quantize_router(cfg, w), (0, 1, 2))
            rows, _, experts, _ = read_by_token(cfg, r, w, token)
            total += cfg.d_model * sum(rows) + experts
        assert total == rep.p_active
    assert rep.p_active == rep.dense + rep.routers + rep.experts
    assert rep.p_active_full_embed == rep.p_active + (cfg.vocab_size - 1) * cfg.d_model


def test_worst_case_choice_and_ties():
    """PARAM-3.3: the k_tier tiers with the largest a_t, ties to the smaller id."""
    same = config(((2, 2, 4),) * 4, k=(2, 2, 2))
    assert worst_case_tiers(same, (0, 1, 2, 3)) == (0, 1)
    assert worst_case_tiers(same, (3, 1, 2)) == (1, 2)
    mixed = config(((1, 1, 4), (2, 2, 4), (8, 8, 1)), k=(1, 2, 2))
    # a_t = d G + d min(2, G) E + min(2, G) min(2, E) 3 d F with d = 16
    a = [16 * 1 + 16 * 1 * 1 + 1 * 3 * 16 * 4, 16 * 2 + 16 * 2 * 2 + 4 * 3 * 16 * 4, 16 * 8 + 16 * 2 * 8 + 4 * 3 * 16]
    assert a == [224, 864, 576] == [tier_active_term(mixed, t) for t in range(3)]
    assert worst_case_tiers(mixed, (0, 1, 2)) == (1,) and worst_case_tiers(mixed, (0, 2)) == (2,)
    with pytest.raises(UnknownTierError):
        layer_active_for(mixed, (0, 2), (1,))


def test_paper_bound_and_when_it_is_exceeded():
    """PARAM-4.1, PARAM-4.2: L (C_dense + K max|e|), computed by hand; exceeded once router rows and the
    head are counted, and not exceeded when tiers are too small to fill K slots."""
    cfg = config(((4, 4, 8), (2, 2, 4)), k=(1, 2, 2), d=16, layers=2, vocab=50)
    rep = param_report(cfg)
    c_dense = 4 * 16 * 16 + 2 * 16
    assert rep.layer_dense == c_dense
    assert rep.paper_bound == 2 * (c_dense + 4 * 3 * 16 * 8)
    assert rep.paper_experts_only == 2 * 4 * 3 * 16 * 8
    assert rep.p_active > rep.paper_bound and rep.exceeds_paper_bound
    assert rep.p_active - rep.paper_bound == rep.routers + rep.io_active    # experts reach K max|e|
    small = config(((1, 1, 64),), k=(1, 2, 2), d=16, layers=2, vocab=2)       # one expert where K = 4
    r2 = param_report(small)
    assert r2.layer_active_experts == 1 and not r2.exceeds_paper_bound and r2.p_active < r2.paper_bound


def test_quadrillion_config():
    """PARAM-4.3: the bundled corollary model: P_total within 1% of 1e15 (summed over its tensor shapes),
    experts per token 128 x 4 x |e| with |e| = 3 d d_ff ~ 8M, and P_active above the paper's bound."""
    cfg = resolve_config("quadrillion")
    assert (cfg.router.k_tier, cfg.router.k_group, cfg.router.k_expert, cfg.n_layers) == (1, 2, 2, 128)
    assert {t.d_ff for t in cfg.tiers} == {1302} and 3 * cfg.d_model * 1302 == 7_999_488
    by_shapes = sum(size(s) for s in dense_shapes(cfg).values())
    by_shapes += sum(size(s) for t in range(cfg.n_tiers) for s in tier_shapes(cfg, t).values())
    rep = param_report(cfg)
    assert rep.p_total == by_shapes
    print(f"quadrillion: P_total = {rep.p_total:,}, P_active = {rep.p_active:,}, bound {rep.paper_bound:,}")
    assert abs(rep.p_total / 1e15 - 1) < 0.01
    assert rep.experts == 128 * 4 * 7_999_488 and round(rep.experts / 1e9, 1) == 4.1
    top = cfg.tiers[-1]
    per_layer_rows = cfg.n_tiers + top.groups + 2 * top.experts_per_group
    assert rep.routers == 128 * 2048 * per_layer_rows
    assert rep.p_active == 128 * (4 * 2048 ** 2 + 2 * 2048) + 2 * 2048 + 131072 * 2048 + rep.routers + rep.experts
    assert rep.exceeds_paper_bound and rep.worst_case_tiers == (6,)


def test_chapter_numbers_match_the_report():
    """PARAM-4.3 quotes the quadrillion report; keep the chapter and the code in agreement."""
    text = (ROOT / "spec" / "chapters" / "07-params.md").read_text()
    rep = param_report(resolve_config("quadrillion"))
    for value in (rep.p_total, rep.p_active, rep.paper_bound, rep.experts, rep.dense, rep.routers, rep.io_active,
                  *rep.tier_budgets):
        assert f"{value:,}" in text, f"{value:,} not in 07-params.md"
    for budget_text in re.findall(r"\| `tier_\w+` \| [\d x]+ \| ([\d,]+) \|", text):
        assert int(budget_text.replace(",", "")) in rep.tier_budgets


def test_params_command(capsys):
    """``lite-llm params``: the table, --json and --tierset, and a clear error."""
    assert main(["params", "quadrillion"]) == 0
    out = capsys.readouterr().out
    assert "1,000,528,570,746,880" in out and "P_active exceeds the paper's bound" in out and "tier_1q" in out
    assert main(["params", "tiny", "--json", "--tierset", "exclusive:tier_10b"]) == 0
    d = json.loads(capsys.readouterr().out)
    rep = param_report(resolve_config("tiny"), (1,))
    assert d["p_active"] == rep.p_active and d["tiers"] == [1] and d["layer_router_rows"] == [1, 8, 8]
    assert main(["params", "tiny", "--tierset", "exclusive:tier_9t"]) == 2
    assert "tier_9t" in capsys.readouterr().err


def test_counts_are_exact_beyond_int64():
    """PARAM-1.1: a legal config with more than 2**63 parameters is counted exactly (Python ints; the sum
    of the shapes' products is the independent count)."""
    cfg = config(((2 ** 20, 2 ** 20, 4096),), d=4096, layers=64)
    n = param_report(cfg).p_total
    by_shapes = sum(size(s) for s in dense_shapes(cfg).values()) + sum(size(s) for s in tier_shapes(cfg, 0).values())
    assert n == by_shapes and n > 2 ** 63
    assert float(n) == float(n + 1)          # binary64 could not tell n from n + 1
