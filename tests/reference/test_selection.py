"""Budget-constrained TierSet selection (SEL-1 .. SEL-3): the exact optimum against an independent
brute force, the worked examples, the greedy rule and its failure cases, and the input errors."""
from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lite_llm.reference.selection import (MAX_EXACT_TIERS, budget, feasible, greedy_budget, greedy_order,
                                          select_budget, select_for_config, totals)
from lite_llm.spec.errors import BudgetError
from tests.helpers import gaussian, make_config


def brute_force(U, c, m, tau, mu):
    """Independent reading of SEL-2.1 .. SEL-2.4: every non-empty subset via itertools, sums as a
    plain Python loop in ascending id order, the best by the five keys compared one after the other."""
    best = None
    for size in range(1, len(U) + 1):
        for S in itertools.combinations(range(len(U)), size):      # ascending ids, lexicographic order
            su, sc, sm = float(U[S[0]]), float(c[S[0]]), float(m[S[0]])
            for t in S[1:]:
                su, sc, sm = su + U[t], sc + c[t], sm + m[t]
            if sc > tau or sm > mu:
                continue
            if best is None:
                best = (S, su, sc, sm)
                continue
            _, bu, bc, bm = best
            if su > bu or (su == bu and (sc < bc or (sc == bc and sm < bm))):
                best = (S, su, sc, sm)      # equal sums: the earlier (smaller, then lexicographic) S stays
    return None if best is None else best[0]


GRID = st.sampled_from([0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
REALS = st.floats(0, 10, allow_nan=False, allow_infinity=False)


@given(st.integers(1, 7).flatmap(lambda M: st.tuples(*(st.lists(st.one_of(GRID, REALS), min_size=M, max_size=M)
                                                        for _ in range(3)))),
       st.one_of(GRID, REALS, st.just(math.inf)), st.one_of(GRID, REALS, st.just(math.inf)))
def test_exact_selection_equals_brute_force(cols, tau, mu):
    """SEL-2.1, SEL-2.2, SEL-2.3, SEL-2.4, SEL-2.5: the reference's vectorised enumeration gives the
    brute force's TierSet, grid values making ties on every key common."""
    U, c, m = cols
    expect = brute_force(U, c, m, tau, mu)
    if expect is None:
        with pytest.raises(BudgetError) as e:
            select_budget(U, c, m, tau, mu)
        assert e.value.code == "E_BUDGET" and e.value.clause == "SEL-2.5"
        return
    got = select_budget(U, c, m, tau, mu)
    assert got == expect, (got, expect)
    b = budget(U, c, m, tau, mu)
    _, sc, sm = totals(b, got)
    assert sc <= tau and sm <= mu


@pytest.mark.parametrize("change, expect", [
    ({"tau": 2}, (0,)),                       # memory decides against {1, 2}; size against {0, 3}
    ({"tau": 2, "c0": 1.5}, (0,)),            # latency decides
    ({"tau": 3}, (0, 1)),                     # ids decide against {0, 2}
    ({"tau": 4}, (0, 1, 2)),                  # utility
    ({"tau": 0.5}, (3,)),                     # the only feasible TierSet has U = 0
])
def test_worked_examples(change, expect):
    """SEL-2.6's table, case by case."""
    U, c, m = [4, 2, 2, 0, 1], [2, 1, 1, 0, 0], [1, 1, 1, 0, 5]
    if "c0" in change:
        c[0] = change["c0"]
    assert select_budget(U, c, m, change["tau"], 4) == expect
    assert brute_force(U, c, m, change["tau"], 4) == expect


def test_lexicographic_order_is_on_id_tuples_not_masks():
    """SEL-2.3's last key: {0, 3} and {1, 2} tie on every sum and on size; (0, 3) < (1, 2) as id tuples,
    though as bit masks 0b1001 > 0b0110."""
    U, c, m = [1, 1.5, 0.5, 1], [1, 2, 0, 1], [0, 0, 1, 1]
    assert brute_force(U, c, m, 2, 1) == (0, 3)
    assert select_budget(U, c, m, 2, 1) == (0, 3)
    b = budget(U, c, m, 2, 1)
    assert totals(b, (0, 3)) == totals(b, (1, 2)) == (2.0, 2.0, 1.0)


def test_nothing_fits_is_an_error_naming_the_limits():
    """SEL-2.5 (SEL-2.6 case 6)."""
    with pytest.raises(BudgetError) as e:
        select_budget([4, 2, 2, 0, 1], [2, 1, 1, 1, 0], [1, 1, 1, 0, 5], 0.5, 4)
    assert e.value.code == "E_BUDGET" and "tau=0.5" in str(e.value) and "mu=4.0" in str(e.value)
    with pytest.raises(BudgetError):
        greedy_budget([1], [2], [0], 1, 1)


def test_sums_follow_the_ascending_id_fold():
    """SEL-2.1: ((1 + 2**-53) + 2**-53) rounds to 1 twice, so {0, 1, 2} fits tau = 1; summed in
    another order (2**-53 + 2**-53) + 1 > 1 it would not."""
    tiny = 2.0 ** -53
    assert (1.0 + tiny) + tiny == 1.0 and (tiny + tiny) + 1.0 > 1.0
    assert feasible(budget([1, 1, 1], [1.0, tiny, tiny], [0, 0, 0], 1.0, math.inf), (0, 1, 2))
    assert select_budget([1, 1, 1], [1.0, tiny, tiny], [0, 0, 0], 1.0, math.inf) == (0, 1, 2)
    # with the big cost last in id order the fold is (tiny + tiny) + 1 > 1: the full set does not fit,
    # and of the pairs (all utility 2) {0, 1} has the smallest latency, 2**-52
    assert not feasible(budget([1, 1, 1], [tiny, tiny, 1.0], [0, 0, 0], 1.0, math.inf), (0, 1, 2))
    assert select_budget([1, 1, 1], [tiny, tiny, 1.0], [0, 0, 0], 1.0, math.inf) == (0, 1)


def test_infinite_limits_mean_no_limit():
    """SEL-1.3: +inf is accepted; with both limits infinite every tier with U > 0 is taken."""
    assert select_budget([1, 0, 2], [5, 0, 1e300], [1e300, 1e300, 1e300], math.inf, math.inf) == (0, 2)


def test_selected_tierset_routes_like_any_other():
    """TIER-3.4: the budget mode's result is a TierSet of the model, accepted by the router."""
    from lite_llm.reference.router import route
    from lite_llm.reference.router_weights import init_router_weights, quantize_router

    cfg = make_config()
    tiers = select_for_config(cfg, [1, 5, 4], [1, 2, 2], [1, 3, 3], 3, 4)
    assert tiers == (0, 1)
    r = route(gaussian(4, cfg.d_model), quantize_router(cfg, init_router_weights(cfg, 0)), tiers)
    assert r.tier_set == (0, 1) and set(r.chosen_tiers.ravel()) <= {0, 1}
    with pytest.raises(BudgetError) as e:
        select_for_config(cfg, [1, 2], [1, 1], [1, 1], 1, 1)
    assert "2 utilities" in str(e.value) and "3 tiers" in str(e.value)


# --- the greedy rule (SEL-3) ---------------------------------------------------------------------

def plain_greedy(U, c, m, tau, mu):
    """Greedy by U / (c + m) with no best-single repair: what SEL-3.6 warns against."""
    chosen = []
    for t in sorted(range(len(U)), key=lambda t: (-U[t] / (c[t] + m[t]), t)):
        S = sorted(chosen + [t])
        if sum(c[i] for i in S) <= tau and sum(m[i] for i in S) <= mu:
            chosen.append(t)
    return tuple(sorted(chosen))


def utility_of(U, S):
    return sum(U[t] for t in S)


def test_plain_greedy_is_arbitrarily_far_from_the_optimum():
    """SEL-3.6 instance A: plain greedy gets 1, the optimum 1000; SEL-3.5's best single repairs it."""
    U, c, m = [1, 1000], [1 / 1024, 1], [1 / 1024, 1]
    assert plain_greedy(U, c, m, 1, 1) == (0,)
    assert select_budget(U, c, m, 1, 1) == (1,)
    assert greedy_budget(U, c, m, 1, 1) == (1,)
    ratio = utility_of(U, (1,)) / utility_of(U, (0,))
    print(f"instance A: optimum / plain greedy = {ratio}")
    assert ratio == 1000


def test_greedy_with_best_single_is_still_far_from_the_optimum():
    """SEL-3.6 instance B: SEL-3 takes {0, 1} (utility 67/64), the optimum {0, 2, 3} has utility 3; the
    budget-constrained mode returns the optimum, never the greedy set (SEL-3.1)."""
    U, c, m = [1, 3 / 64, 1, 1], [1 / 4, 1 / 64, 3 / 4, 0], [1 / 4, 1 / 64, 0, 3 / 4]
    b = budget(U, c, m, 1, 1)
    assert greedy_order(b) == [0, 1, 2, 3]
    g, opt = greedy_budget(U, c, m, 1, 1), select_budget(U, c, m, 1, 1)
    assert g == (0, 1) and opt == (0, 2, 3)
    assert totals(b, opt) == (3.0, 1.0, 1.0)
    ratio = totals(b, opt)[0] / totals(b, g)[0]
    print(f"instance B: optimum / greedy = {ratio:.4f}")
    assert ratio > 2.86


@given(st.integers(1, 7).flatmap(lambda M: st.tuples(*(st.lists(st.one_of(GRID, REALS), min_size=M, max_size=M)
                                                        for _ in range(3)))),
       st.one_of(GRID, REALS), st.one_of(GRID, REALS))
def test_greedy_is_feasible_and_never_better_than_exact(cols, tau, mu):
    """SEL-3.4, SEL-3.5: greedy returns a feasible TierSet no better than the optimum, and at least as
    good as every single tier."""
    U, c, m = cols
    if brute_force(U, c, m, tau, mu) is None:
        with pytest.raises(BudgetError):
            greedy_budget(U, c, m, tau, mu)
        return
    b = budget(U, c, m, tau, mu)
    g = greedy_budget(U, c, m, tau, mu)
    gu, gc, gm = totals(b, g)
    assert list(g) == sorted(set(g)) and gc <= tau and gm <= mu
    assert gu <= totals(b, select_budget(U, c, m, tau, mu))[0]
    assert all(gu >= U[t] for t in range(len(U)) if c[t] <= tau and m[t] <= mu)


def test_greedy_zero_costs_and_zero_limits():
    """SEL-3.2, SEL-3.3: a tier with no cost has rho = +inf and is taken first; a zero limit admits only
    tiers with zero cost in it; tiers with U = 0 are never added by the greedy loop."""
    b = budget([1, 2, 0, 3], [0, 1, 0, 1], [0, 0, 0, 1], 0.0, 1.0)
    assert greedy_order(b) == [0]                    # tiers 1, 3 do not fit tau = 0; tier 2 has U = 0
    assert greedy_budget([1, 2, 0, 3], [0, 1, 0, 1], [0, 0, 0, 1], 0.0, 1.0) == (0,)
    assert select_budget([1, 2, 0, 3], [0, 1, 0, 1], [0, 0, 0, 1], 0.0, 1.0) == (0,)
    # all utilities zero: the loop adds nothing and the best single tier (the cheapest) is returned
    assert greedy_budget([0, 0, 0], [2, 1, 1], [1, 1, 0], 5, 5) == (2,)
    assert select_budget([0, 0, 0], [2, 1, 1], [1, 1, 0], 5, 5) == (2,)
    # ties in rho go to the smaller id
    assert greedy_order(budget([2, 1, 2], [2, 1, 2], [0, 0, 0], 3, 1)) == [0, 1, 2]


def test_more_than_twenty_tiers():
    """SEL-1.4: the exact selection rejects M > 20 with E_BUDGET; greedy accepts any M."""
    M = MAX_EXACT_TIERS + 1
    U, c, m = [1.0] * M, [1.0] * M, [0.0] * M
    with pytest.raises(BudgetError) as e:
        select_budget(U, c, m, 3, 1)
    assert e.value.clause == "SEL-1.4" and "21 tiers" in str(e.value)
    assert greedy_budget(U, c, m, 3, 1) == (0, 1, 2)
    assert select_budget(U[:20], c[:20], m[:20], 3, 1) == (0, 1, 2)


# --- input errors (SEL-1) ------------------------------------------------------------------------

@pytest.mark.parametrize("args, clause, words", [
    (([1, 2], [1], [1, 1], 1, 1), "SEL-1.1", "latency has 1 values, utility has 2"),
    (([], [], [], 1, 1), "SEL-1.1", "no tiers"),
    ((5, [1], [1], 1, 1), "SEL-1.1", "utility must be a sequence"),
    (([1, float("nan")], [1, 1], [1, 1], 1, 1), "SEL-1.2", "utility[1] = nan is not finite (tier 1)"),
    (([1, 1], [1, -1.0], [1, 1], 1, 1), "SEL-1.2", "latency[1] = -1.0 is negative (tier 1)"),
    (([1, 1], [1, 1], [math.inf, 1], 1, 1), "SEL-1.2", "memory[0] = inf is not finite (tier 0)"),
    (([1, True], [1, 1], [1, 1], 1, 1), "SEL-1.2", "utility[1] = True is not a real number"),
    (([1, "2"], [1, 1], [1, 1], 1, 1), "SEL-1.2", "utility[1] = '2' is not a real number"),
    (([10 ** 400], [1], [1], 1, 1), "SEL-1.2", "too large for binary64"),
    (([1], [1], [1], float("nan"), 1), "SEL-1.3", "limit tau = nan"),
    (([1], [1], [1], 1, -2), "SEL-1.3", "limit mu = -2.0"),
])
def test_bad_inputs_name_the_field_and_tier(args, clause, words):
    """SEL-1.1 .. SEL-1.3: E_BUDGET, the clause, and a message naming the field and tier."""
    for f in (select_budget, greedy_budget):
        with pytest.raises(BudgetError) as e:
            f(*args)
        assert e.value.code == "E_BUDGET" and e.value.clause == clause and words in str(e.value), str(e.value)


def test_first_fault_is_reported():
    """SEL-1.5: lengths before values, utility before latency before memory, tiers in id order, values
    before limits, limits before the tier count, and all of them before "nothing fits"."""
    def fault(*args):
        with pytest.raises(BudgetError) as e:
            select_budget(*args)
        return str(e.value)

    nan = float("nan")
    assert "has 1 values" in fault([nan, nan], [nan], [1, 1], nan, nan)
    assert "utility[1]" in fault([1, nan], [-1, 1], [1, 1], 1, 1)
    assert "latency[0]" in fault([1, 1], [-1, 1], [nan, 1], nan, 1)
    assert "memory[0]" in fault([1, 1], [1, 1], [-1, -2], nan, 1)
    assert "limit tau" in fault([1], [1], [1], nan, nan)
    assert "limit mu" in fault([1], [1], [1], 1, nan)
    assert "21 tiers" in fault([1] * 21, [9] * 21, [9] * 21, 1, 1)    # nothing fits either
    assert "no tier fits" in fault([1], [9], [1], 1, 1)


def test_negative_zero_counts_as_zero():
    """SEL-1.2: -0.0 is a valid zero cost or utility."""
    assert select_budget([-0.0, 1.0], [-0.0, 1.0], [0.0, -0.0], 0.0, 0.0) == (0,)
