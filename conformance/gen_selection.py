"""Selection-level cases: budget-constrained TierSets (SEL) and activation statistics and prefetch
order (PLACE), ``selection/...``.

``select_budget`` and ``greedy_budget`` take ``utility``, ``latency``, ``memory`` (M,) binary64 and
``tau``, ``mu`` (0-d binary64, +inf allowed) as tensors (so NaN, infinities and -0.0 can be given),
and optionally a configuration (then M must be its number of tiers); they return the value
``tiers``, the chosen tier ids ascending. ``activation_stats`` takes routing records
``route.{i}.{field}`` made under ``tierset`` and returns per tier of T_max ``chosen``, ``frequency``,
``mean_prob``, ``size_bytes``, ``priority`` and the values ``prefetch_order`` and (optional, PLACE-2.4
MAY) ``prefetch_order_mean_prob``.
"""
from __future__ import annotations

import numpy as np

from .draw import gauss, uniform
from .gen_loss import records
from .gen_routing import config
from .generate import CaseSpec

F64 = np.float64
INF = float("inf")


def budget_inputs(u, c, m, tau, mu) -> dict[str, np.ndarray]:
    return {"utility": np.array(u, F64), "latency": np.array(c, F64), "memory": np.array(m, F64),
            "tau": np.array(tau, F64), "mu": np.array(mu, F64)}


def select_cases() -> list[CaseSpec]:
    out = []
    U, C, Mm = [4, 2, 2, 0, 1], [2, 1, 1, 0, 0], [1, 1, 1, 0, 5]
    worked = [("1", C, 2, "{0}: {1, 2} ties on utility and latency but needs more memory; {0, 3} has more tiers"),
              ("2", [1.5] + C[1:], 2, "{0}: less latency than {1, 2}"),
              ("3", C, 3, "{0, 1}: ties {0, 2} on every sum and size; (0, 1) < (0, 2)"),
              ("4", C, 4, "{0, 1, 2}: utility 8"),
              ("5", C, 0.5, "{3}: the only feasible TierSet, although its utility is 0")]
    base = ["SEL-1.1", "SEL-2.1", "SEL-2.2", "SEL-2.3", "SEL-2.4", "TIER-3.4"]
    for name, c, tau, why in worked:
        out.append(CaseSpec(f"selection/budget-worked-{name}", f"SEL-2.6 worked example {name}: {why}.", base,
                            "select_budget", {}, budget_inputs(U, c, Mm, tau, 4)))
    out.append(CaseSpec("selection/budget-worked-6", "SEL-2.6 worked example 6: nothing fits.", ["SEL-2.5", "SEL-1.1"],
                        "select_budget", {}, budget_inputs(U, [2, 1, 1, 1, 0], Mm, 0.5, 4), error="E_BUDGET"))
    out.append(CaseSpec("selection/budget-fold-order", "Latencies 0.1, 0.2, 0.3 and tau = 0.6: the left fold "
                        "(0.1 + 0.2) + 0.3 = 0.6000000000000001 exceeds tau, so {0, 1, 2} is infeasible (another "
                        "summation order gives exactly 0.6).", ["SEL-2.1", "SEL-2.2", "SEL-2.4"], "select_budget", {},
                        budget_inputs([1, 1, 1], [0.1, 0.2, 0.3], [0, 0, 0], 0.6, INF)))
    out.append(CaseSpec("selection/budget-infinite-limits", "tau = mu = +inf: every TierSet fits; zero-utility tiers "
                        "are left out (fewer tiers), -0.0 costs count as zero.", ["SEL-1.2", "SEL-1.3", "SEL-2.3"],
                        "select_budget", {}, budget_inputs([1, 0, 2, 0], [-0.0, 3, 1e300, 0], [5, 0, 1e300, -0.0],
                                                           INF, INF)))
    out.append(CaseSpec("selection/budget-overflow", "Two latencies of 1e308 sum to +inf, which fits only an infinite "
                        "limit.", ["SEL-2.1", "SEL-2.2"], "select_budget", {},
                        budget_inputs([1, 1], [1e308, 1e308], [0, 0], 1.7e308, INF)))
    out.append(CaseSpec("selection/budget-ties-to-lexicographic", "Four identical tiers, room for two: the "
                        "lexicographically smallest pair {0, 1}.", ["SEL-2.3"], "select_budget", {},
                        budget_inputs([1] * 4, [1] * 4, [1] * 4, 2, 2)))
    u = (np.abs(uniform("sel.u20", (20,))) * 10).astype(F64)
    c = (np.abs(uniform("sel.c20", (20,))) * 3).astype(F64)
    m = (np.abs(uniform("sel.m20", (20,))) * 3).astype(F64)
    out.append(CaseSpec("selection/budget-20-tiers", "Twenty tiers (the largest M every implementation must accept), "
                        "random utilities and costs.", ["SEL-1.4", "SEL-2.4"], "select_budget", {},
                        budget_inputs(u, c, m, 6.0, 5.0)))
    cfg = config(tiers=((2, 2), (2, 2), (2, 2)))
    out.append(CaseSpec("selection/budget-for-config", "Selection for a model of three tiers.", ["SEL-1.1", "TIER-3.4"],
                        "select_budget", {}, budget_inputs([1, 2, 3], [1, 1, 1], [1, 1, 1], 2, 2), config=cfg))
    errors = [("length-mismatch", ([1, 2], [1], [1, 2], 1, 1), "latency has another length", ["SEL-1.1"]),
              ("empty", ([], [], [], 1, 1), "no tiers", ["SEL-1.1"]),
              ("utility-nan", ([1, float("nan")], [1, 1], [1, 1], 1, 1), "utility[1] is NaN", ["SEL-1.2"]),
              ("latency-inf", ([1, 1], [INF, 1], [1, 1], 1, 1), "latency[0] is +inf", ["SEL-1.2"]),
              ("memory-negative", ([1, 1], [1, 1], [1, -1e-300], 1, 1), "memory[1] is negative", ["SEL-1.2"]),
              ("tau-nan", ([1], [1], [1], float("nan"), 1), "tau is NaN", ["SEL-1.3"]),
              ("mu-negative", ([1], [1], [1], 1, -1), "mu is negative", ["SEL-1.3"]),
              ("nothing-fits", ([1, 1], [2, 3], [0, 0], 1, 1), "no single tier fits", ["SEL-2.5"]),
              ("order-length-first", ([1, float("nan")], [1], [1, 1], -1, 1), "lengths and NaN: lengths", ["SEL-1.5"]),
              ("order-utility-before-latency", ([-1, 1], [float("nan"), 1], [1, 1], 1, 1), "utility reported",
               ["SEL-1.5"]),
              ("order-latency-before-tau", ([1, 1], [1, -2], [1, 1], float("nan"), 1), "latency reported",
               ["SEL-1.5"]),
              ("order-tau-before-mu", ([1], [1], [1], -1, float("nan")), "tau reported", ["SEL-1.5"]),
              ("order-mu-before-nothing-fits", ([1], [5], [1], 1, -1), "mu reported", ["SEL-1.5"])]
    for op in ("select_budget", "greedy_budget"):
        short = "budget" if op == "select_budget" else "greedy"
        for name, args, why, cl in errors:
            out.append(CaseSpec(f"selection/{short}-errors/{name}", f"{op}: {why}, rejected with E_BUDGET.",
                                cl + (["SEL-3.1"] if short == "greedy" else []), op, {}, budget_inputs(*args),
                                error="E_BUDGET"))
    out.append(CaseSpec("selection/budget-errors/config-length", "Four values for a three-tier model.", ["SEL-1.1"],
                        "select_budget", {}, budget_inputs([1] * 4, [1] * 4, [1] * 4, 9, 9), config=cfg,
                        error="E_BUDGET"))
    return out


def greedy_cases() -> list[CaseSpec]:
    g = ["SEL-3.1", "SEL-3.2", "SEL-3.3", "SEL-3.4", "SEL-3.5"]
    out = [CaseSpec("selection/greedy-instance-a", "SEL-3.6 instance A: greedy takes tier 0 and cannot add tier 1; "
                    "the best single tier {1} repairs it.", g, "greedy_budget", {},
                    budget_inputs([1, 1000], [1 / 1024, 1], [1 / 1024, 1], 1, 1)),
           CaseSpec("selection/greedy-instance-b", "SEL-3.6 instance B: greedy returns {0, 1} (utility 1 + 3/64) where "
                    "the optimum {0, 2, 3} has utility 3.", g, "greedy_budget", {},
                    budget_inputs([1, 3 / 64, 1, 1], [1 / 4, 1 / 64, 3 / 4, 0], [1 / 4, 1 / 64, 0, 3 / 4], 1, 1)),
           CaseSpec("selection/budget-instance-b", "SEL-3.6 instance B for the exact mode: {0, 2, 3}.", ["SEL-2.4",
                                                                                                        "SEL-3.1"],
                    "select_budget", {}, budget_inputs([1, 3 / 64, 1, 1], [1 / 4, 1 / 64, 3 / 4, 0],
                                                       [1 / 4, 1 / 64, 0, 3 / 4], 1, 1)),
           CaseSpec("selection/greedy-zero-costs", "Zero-cost tiers have ratio +inf and come first (ties by id); a tier "
                    "with U = 0 is never a candidate; an infinite limit makes its term 0.", g, "greedy_budget", {},
                    budget_inputs([2, 0, 1, 3, 1], [0, 0, 1, 2, 0], [0, 1, 0, 2, 0], INF, 3))]
    out.append(CaseSpec("selection/greedy-equal-ratios", "Three tiers with the same ratio rho = 2 (U = 0.8, 1.2, 1.0; "
                        "c = 0.4, 0.6, 0.5; tau = 1): ties go by ascending id, so greedy adds tier 0, then tier 1 "
                        "(sum c = 1), and skips tier 2: {0, 1} (utility 2.0). Ties by descending id give {0, 2} "
                        "(1.8), by cost {0, 2} as well.", g, "greedy_budget", {},
                        budget_inputs([0.8, 1.2, 1.0], [0.4, 0.6, 0.5], [0, 0, 0], 1, INF),
                        check=lambda o: _expect(o["tiers"], [0, 1])))
    for i in range(3):
        u = (np.abs(uniform(f"sel.g.u{i}", (9,))) * 10).astype(F64)
        c = (np.abs(uniform(f"sel.g.c{i}", (9,))) * 3).astype(F64)
        m = (np.abs(uniform(f"sel.g.m{i}", (9,))) * 3).astype(F64)
        out.append(CaseSpec(f"selection/greedy-random-{i}", "Greedy selection of 9 random tiers.", g, "greedy_budget",
                            {}, budget_inputs(u, c, m, 5.0, 4.0)))
    return out


def _expect(got, want) -> None:
    if list(np.asarray(got).tolist()) != want:
        raise AssertionError(f"expected {want}, got {got}")


def placement_cases() -> list[CaseSpec]:
    out = []
    cfg = config(tiers=((2, 4), (4, 2), (3, 3)), k=(1, 2, 1))
    cfg["tiers"][1]["placement"] = "NVMe"
    cfg["tiers"][2]["placement"] = "Object"
    hs = [gauss("place.h0", (20, 16)), gauss("place.h1", (12, 16))]
    base = ["PLACE-2.1", "PLACE-2.2", "PLACE-2.3", "PLACE-2.4", "PLACE-3.1", "PLACE-3.2", "PLACE-3.3", "PLACE-1.1"]

    def case(name, desc, clauses, cfg, rec, tierset, error=None):
        out.append(CaseSpec(f"selection/{name}", desc, base + clauses, "activation_stats", {"tierset": tierset}, rec,
                            config=cfg, optional=("prefetch_order_mean_prob",), error=error))

    case("activation-two-records", "Activation statistics over two routing records (32 token-layer pairs): counts, "
         "frequencies as one division, probability sums as a binary64 left fold, sizes 4 B_t, priorities and the "
         "prefetch order.", ["PARAM-2.2"], cfg, records(cfg, hs, [0, 1, 2]), [0, 1, 2])
    case("activation-tierset-subset", "TierSet {0, 2}: tier 1 has frequency 0 and is not in the prefetch order.",
         ["TIER-2.6"], cfg, records(cfg, hs, [0, 2]), [0, 2])
    k3 = config(tiers=((2, 2), (2, 2), (2, 2)), k=(3, 1, 1))
    case("activation-every-tier-chosen", "k_tier >= |T|: every tier of the TierSet has frequency 1; equal budgets and "
         "frequencies tie and the prefetch order falls back to ascending ids.", ["PLACE-2.5"], k3,
         records(k3, hs[:1], [0, 1, 2]), [0, 1, 2])
    case("activation-no-tokens", "No tokens: every frequency and mean probability is 0.", [], cfg,
         records(cfg, [np.zeros((0, 16), np.float32)], [0, 1, 2]), [0, 1, 2])
    bad = records(cfg, hs[:1], [0, 2])
    case("activation-errors/wrong-tierset", "Records routed under {0, 2} given as made under {0, 1, 2}: rejected "
         "with E_SHAPE.", [], cfg, bad, [0, 1, 2], error="E_SHAPE")
    return out


def cases() -> list[CaseSpec]:
    return select_cases() + greedy_cases() + placement_cases()
