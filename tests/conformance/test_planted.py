"""Every planted bug is caught, by the cases designed for it, and the operation-level cases point at
the piece that is wrong (the cases of unaffected pieces still pass)."""
from __future__ import annotations

import pytest

from lite_llm.conformance.case import load_cases
from lite_llm.conformance.runner import run_suite

from .planted import BUGS, EXP_CONSTANTS, PATCHED_BUGS, PatchedAdapter, PlantedRouter

R = "routing/route/"
OP = "routing/op/"
E = "routing/errors/"

# bug -> (cases that must fail, cases that must still pass)
EXPECTED = {
    "index-ties": ({OP + "top-k-ties-k1", OP + "top-k-ties-k3", R + "ties-every-level", R + "seed-0x1",
                    R + "zero-hidden"},
                   {OP + "level-seed", OP + "tie-keys", OP + "canonical-exp-special", R + "basic"}),
    "signed-keys": ({OP + "top-k-ties-k3", OP + "top-k-ties-k9", R + "seed-0xffffffffffffffff", R + "ties-level1"},
                    {OP + "mix64", OP + "tie-keys", R + "basic"}),
    "xor-seeds": ({OP + "level-seed", R + "seed-0x1", R + "ties-every-level", R + "seed-from-config"},
                  {OP + "mix64", OP + "tie-keys", OP + "top-k-ties-k3", R + "basic"}),
    "mask-inf": ({R + "tierset-excluded-tier", R + "k-tier-exceeds-tierset", R + "tierset-shapes"},
                 {R + "basic", OP + "softmax-basic"}),
    "library-exp": ({OP + "canonical-exp-special", OP + "canonical-exp-sweep", OP + "softmax-basic", R + "basic"},
                    {OP + "quantize-limbs2", OP + "logits-h2-w2", OP + "top-k-ties-k3", OP + "tree-sum-n5"}),
    "fma-exp": ({OP + "canonical-exp-special", OP + "canonical-exp-sweep", R + "basic"},
                {OP + "softmax-n1", OP + "quantize-limbs1", OP + "tree-sum-n3"}),
    "float-logits": ({OP + "logits-h2-w2", OP + "logits-bounds", R + "basic", R + "near-tie-logits"},
                     {OP + "quantize-limbs2", OP + "canonical-exp-sweep", OP + "softmax-basic"}),
    "no-renormalise": ({OP + "renormalise-m1", OP + "renormalise-m3", R + "basic"},
                       {OP + "softmax-basic", OP + "top-k-random"}),
    "plus-zero-padding": ({OP + "tree-sum-signed-zeros", OP + "tree-sum-n3", OP + "tree-sum-n33"},
                          {OP + "tree-sum-n8", OP + "tree-sum-n1", OP + "softmax-basic", R + "basic"}),
    "half-away-rounding": ({OP + "quantize-half-even-limbs1", OP + "quantize-half-even-limbs2"},
                           {OP + "mix64", OP + "canonical-exp-sweep", R + "basic"}),
    "divide-quantize": ({OP + "quantize-reciprocal-order-limbs1", OP + "quantize-reciprocal-order-limbs2"},
                            {OP + "mix64", OP + "tree-sum-n5", OP + "top-k-random"}),
    "per-matrix-scale": ({R + "extreme-weights", R + "basic"}, {OP + "quantize-limbs2", OP + "logits-h2-w2"}),
    "shape-before-seed": ({E + "order-seed-first", E + "order-empty-before-shape", E + "order-duplicate-before-shape"},
                          {E + "shape-1d", E + "seed-negative", R + "basic"}),
    "rank-probabilities": ({R + "near-tie-logits"}, {OP + "top-k-ties-k3", R + "basic"}),
    # the cases before issue 11 passed these three: ties-tierset-subset's seed ranks ids 1, 2 as positions 0, 1
    "position-tie-keys": ({R + "ties-level1-tierset-offset"},
                          {R + "ties-tierset-subset", R + "ties-level1", R + "ties-every-level", R + "basic"}),
    "exp-constant-ulp": ({OP + "canonical-exp-constants"},
                         {OP + "canonical-exp-special", OP + "canonical-exp-sweep", OP + "softmax-basic", R + "basic"}),
    "weights-last": ({E + "order-weights-before-seed", E + "order-weights-before-tierset",
                      E + "order-weights-before-hidden", E + "order-missing-weights-before-dtype"},
                     {E + "weights-nan", E + "weights-missing", E + "order-config-first", E + "order-seed-first",
                      R + "basic"}),
    # three hidden limbs (TIER-1.5): Q is right (quantize passes), the limbs are not; the split-ties case misses
    # every logit, the random logits cases the few with a tie; the routes here happen to rank the same
    "split-tie-half-up": ({OP + "logits-h3-w2-split-ties", OP + "logits-h3-w2", OP + "logits-h3-w1"},
                          {OP + "quantize-limbs3", OP + "logits-bounds-h3-w2", OP + "logits-h2-w2", R + "limbs-h3-w2",
                           R + "limbs-h3-vs-h2", R + "basic"}),
}

# patched bug -> (cases that must fail, cases that must still pass), across the other levels
PATCHED_EXPECTED = {
    "combine-left-fold": ({"layer/combine-exact-k5"}, {"layer/moe-basic", "layer/moe-padding-slots"}),
    "eps-outside-sqrt": ({"model/forward-norm-eps"}, {"model/forward-basic", "model/forward-batch"}),
    "greedy-ties-descending": ({"selection/greedy-equal-ratios"},
                               {"selection/greedy-instance-a", "selection/greedy-instance-b"}),
    "ckpt-dtype-by-size": ({"checkpoint/load-errors/header-dtype-same-size"},
                           {"checkpoint/load-errors/header-f16", "checkpoint/load-all"}),
    "ckpt-extra-tensor": ({"checkpoint/load-errors/shard-extra-tensor"},
                          {"checkpoint/load-errors/shard-holds-other-tensors", "checkpoint/load-all"}),
    "ckpt-trailing-bytes": ({"checkpoint/load-errors/bytes-after-last-tensor"},
                            {"checkpoint/load-errors/longer-shard", "checkpoint/load-errors/header-gap",
                             "checkpoint/load-all"}),
}


@pytest.fixture(scope="module")
def routing_cases():
    return {c.id: c for c in load_cases(levels=["routing"])}


@pytest.fixture(scope="module")
def all_cases():
    return {c.id: c for c in load_cases()}


def test_every_bug_has_expectations():
    assert set(EXPECTED) == set(BUGS) and len(BUGS) >= 5
    assert set(PATCHED_EXPECTED) == set(PATCHED_BUGS)


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_planted_bug_is_caught_where_expected(bug, routing_cases):
    must_fail, must_pass = EXPECTED[bug]
    run = run_suite(PlantedRouter(bug), [routing_cases[i] for i in sorted(must_fail | must_pass)], impl=f"planted:{bug}")
    failed = {o.case_id for o in run.outcomes if o.status in ("fail", "error")}
    for o in run.outcomes:
        if o.case_id in must_fail:
            print(f"{bug}: {o.case_id}: {o.detail[:160]}")
    assert failed == must_fail, f"{bug} ({BUGS[bug]}): failed {sorted(failed)}, expected {sorted(must_fail)}"
    assert not run.ok


@pytest.mark.parametrize("bug", sorted(PATCHED_BUGS))
def test_patched_bug_is_caught_where_expected(bug, all_cases):
    """Issue 11's suite gaps outside the routing level: each bug passed every case before its new case."""
    must_fail, must_pass = PATCHED_EXPECTED[bug]
    run = run_suite(PatchedAdapter(bug), [all_cases[i] for i in sorted(must_fail | must_pass)], impl=f"patched:{bug}")
    failed = {o.case_id for o in run.outcomes if o.status in ("fail", "error")}
    for o in run.outcomes:
        print(f"{bug}: {o.case_id}: {o.status} {o.detail[:160]}")
    assert failed == must_fail, f"{bug} ({PATCHED_BUGS[bug]}): failed {sorted(failed)}, expected {sorted(must_fail)}"
    assert {o.status for o in run.outcomes if o.case_id in must_pass} == {"pass"}


@pytest.mark.parametrize("constant", [(c, up) for c in EXP_CONSTANTS if c != "C7" for up in (True, False)],
                         ids=lambda c: f"{c[0]}{'+' if c[1] else '-'}")
def test_every_exp_constant_is_pinned_to_its_last_bit(constant, routing_cases):
    """HSER-6.3: each constant moved one ulp (up or down) fails routing/op/canonical-exp-constants.
    C7 is exempt: no binary32 input in [-87, 0] tells C7 +- 1 ulp apart (exhaustive search)."""
    run = run_suite(PlantedRouter("exp-constant-ulp", constant), [routing_cases[OP + "canonical-exp-constants"]])
    assert run.outcomes[0].status == "fail", run.outcomes[0].detail


def test_a_failure_names_the_clause_the_first_difference_and_a_rerun_command(routing_cases):
    run = run_suite(PlantedRouter("plus-zero-padding"), [routing_cases[OP + "tree-sum-signed-zeros"]],
                    impl="tests.conformance.planted:PlantedRouter")
    (o,) = run.outcomes
    assert o.status == "fail"
    assert o.detail.startswith("[HSER-6.5, OVW-2.1]")
    assert "first at index [0]: got 0.0 (0x00000000), expected -0.0 (0x80000000)" in o.detail
    assert o.rerun == ("lite-llm conform --impl tests.conformance.planted:PlantedRouter "
                       "--case routing/op/tree-sum-signed-zeros")
