"""Budget-constrained TierSet selection (spec chapter SEL, clauses SEL-1 .. SEL-3; paper sections 4.2, 10).

Given per-tier utility U_t, latency cost c_t and memory cost m_t, and limits tau and mu, choose the
TierSet that maximises sum U subject to sum c <= tau and sum m <= mu. ``select_budget`` returns the
exact optimum (SEL-2.4), the answer of the budget-constrained mode; ``greedy_budget`` is the
approximation of SEL-3, offered under its own name and never substituted for the optimum.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import BudgetError

MAX_EXACT_TIERS = 20     # SEL-1.4: 2**20 - 1 subsets, about a million, is milliseconds vectorised
FIELDS = ("utility", "latency", "memory")


@dataclass(frozen=True)
class Budget:
    """Validated inputs of budget-constrained selection (SEL-1.1 .. SEL-1.3), indexed by tier id."""

    utility: tuple[float, ...]   # U_t >= 0, finite: what tier t is worth to the request
    latency: tuple[float, ...]   # c_t >= 0, finite: the latency tier t adds
    memory: tuple[float, ...]    # m_t >= 0, finite: the memory tier t needs
    tau: float                   # latency limit, >= 0; +inf means no limit
    mu: float                    # memory limit, >= 0; +inf means no limit

    @property
    def n_tiers(self) -> int:
        return len(self.utility)


def _as_binary64(value, what: str) -> float:
    """A real number as binary64, or E_BUDGET naming it (SEL-1.2)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BudgetError(f"{what} = {value!r} is not a real number", clause="SEL-1.2")
    try:
        return float(value)
    except OverflowError:
        raise BudgetError(f"{what} = {value!r} is too large for binary64", clause="SEL-1.2") from None


def budget(utility: Sequence, latency: Sequence, memory: Sequence, tau, mu) -> Budget:
    """Check the inputs in the order of SEL-1.5 and return them as binary64 values.

    The first fault is reported: lengths, the number of tiers, then utility, latency and memory
    (each in tier-id order), then tau, then mu.
    """
    cols = {}
    for name, col in zip(FIELDS, (utility, latency, memory)):
        try:
            cols[name] = list(col)
        except TypeError:
            raise BudgetError(f"{name} must be a sequence with one value per tier, got {col!r}",
                              clause="SEL-1.1") from None
    n = len(cols["utility"])
    for name in FIELDS[1:]:
        if len(cols[name]) != n:
            raise BudgetError(f"{name} has {len(cols[name])} values, utility has {n}: one per tier is needed",
                              clause="SEL-1.1")
    if n < 1:
        raise BudgetError("no tiers: utility, latency and memory are empty", clause="SEL-1.1")
    out = {}
    for name in FIELDS:
        vals = []
        for t, v in enumerate(cols[name]):
            x = _as_binary64(v, f"{name}[{t}]")
            if not math.isfinite(x):
                raise BudgetError(f"{name}[{t}] = {x!r} is not finite (tier {t})", clause="SEL-1.2")
            if x < 0:
                raise BudgetError(f"{name}[{t}] = {x!r} is negative (tier {t})", clause="SEL-1.2")
            vals.append(x)
        out[name] = tuple(vals)
    limits = {}
    for name, v in (("tau", tau), ("mu", mu)):
        x = _as_binary64(v, name)
        if math.isnan(x) or x < 0:
            raise BudgetError(f"limit {name} = {x!r} must be >= 0 (+inf for no limit)", clause="SEL-1.3")
        limits[name] = x
    return Budget(out["utility"], out["latency"], out["memory"], limits["tau"], limits["mu"])


def fold_sum(values: Sequence[float], tiers: Sequence[int]) -> float:
    """sum_x(S): the binary64 left fold of values[t] over the TierSet's ids in ascending order (SEL-2.1)."""
    acc = None
    for t in sorted(tiers):
        acc = values[t] if acc is None else acc + values[t]
    return 0.0 if acc is None else acc


def totals(b: Budget, tiers: Sequence[int]) -> tuple[float, float, float]:
    """(sum U, sum c, sum m) of a TierSet (SEL-2.1)."""
    return fold_sum(b.utility, tiers), fold_sum(b.latency, tiers), fold_sum(b.memory, tiers)


def feasible(b: Budget, tiers: Sequence[int]) -> bool:
    """A non-empty TierSet with sum c <= tau and sum m <= mu (SEL-2.2)."""
    _, c, m = totals(b, tiers)
    return len(tiers) > 0 and c <= b.tau and m <= b.mu


def preference_key(b: Budget, tiers: Sequence[int]) -> tuple:
    """The SEL-2.3 total order as a sort key, smaller is better: larger sum U, then smaller sum c,
    then smaller sum m, then fewer tiers, then the lexicographically smaller ascending id tuple."""
    u, c, m = totals(b, tiers)
    ids = tuple(sorted(tiers))
    return (-u, c, m, len(ids), ids)


def _no_fit(b: Budget) -> BudgetError:
    cheapest_c = min(range(b.n_tiers), key=lambda t: (b.latency[t], t))
    cheapest_m = min(range(b.n_tiers), key=lambda t: (b.memory[t], t))
    return BudgetError(
        f"no tier fits the limits tau={b.tau!r}, mu={b.mu!r}: the smallest latency is {b.latency[cheapest_c]!r} "
        f"(tier {cheapest_c}), the smallest memory {b.memory[cheapest_m]!r} (tier {cheapest_m})", clause="SEL-2.5")


def select_exact(b: Budget) -> tuple[int, ...]:
    """The best feasible TierSet under SEL-2.3, by enumerating every non-empty subset (SEL-2.4)."""
    M = b.n_tiers
    if M > MAX_EXACT_TIERS:
        raise BudgetError(f"{M} tiers: the exact selection enumerates subsets and accepts at most "
                          f"{MAX_EXACT_TIERS}", clause="SEL-1.4")
    masks = np.arange(1, 1 << M, dtype=np.int64)                         # (2^M - 1,) every non-empty subset
    member = [(masks >> t) & 1 == 1 for t in range(M)]                   # M x (2^M - 1,) bool
    sums = {}
    for name in FIELDS:
        acc = np.zeros(masks.shape, np.float64)                          # ascending-id left fold (SEL-2.1);
        for t in range(M):                                               # adding +0.0 for an absent tier is
            acc = acc + np.where(member[t], getattr(b, name)[t], 0.0)    # exact (a zero's sign never decides)
        sums[name] = acc
    ok = (sums["latency"] <= b.tau) & (sums["memory"] <= b.mu)           # SEL-2.2
    if not ok.any():
        raise _no_fit(b)
    # SEL-2.3, one key after the other: larger utility, smaller latency, smaller memory, fewer tiers ...
    size = sum(m.astype(np.int64) for m in member)                      # (2^M - 1,) tiers in the subset
    cand = np.flatnonzero(ok)
    for key, best in ((sums["utility"], np.max), (sums["latency"], np.min), (sums["memory"], np.min),
                      (size, np.min)):
        cand = cand[key[cand] == best(key[cand])]
    # ... then the lexicographically smaller id tuple. Among subsets of one size, the one holding the
    # lowest id where two differ is smaller; reversing the bits makes that id the highest bit, so the
    # lexicographically smallest subset has the largest bit-reversed mask.
    reversed_mask = sum(m.astype(np.int64) << (M - 1 - t) for t, m in enumerate(member))
    best = cand[np.argmax(reversed_mask[cand])]
    return tuple(t for t in range(M) if member[t][best])


def select_budget(utility: Sequence, latency: Sequence, memory: Sequence, tau, mu) -> tuple[int, ...]:
    """Budget-constrained mode (TIER-3.4): the exact optimum of SEL-2.4 as a sorted tuple of tier ids.

    E_BUDGET for invalid inputs (SEL-1), more than 20 tiers (SEL-1.4) or when nothing fits (SEL-2.5).
    """
    return select_exact(budget(utility, latency, memory, tau, mu))


def select_for_config(cfg: ModelConfig, utility, latency, memory, tau, mu) -> tuple[int, ...]:
    """``select_budget`` for a model: one value per tier of T_max, in id order (SEL-1.1)."""
    b = budget(utility, latency, memory, tau, mu)
    if b.n_tiers != cfg.n_tiers:
        raise BudgetError(f"{b.n_tiers} utilities/costs given, the config has {cfg.n_tiers} tiers",
                          clause="SEL-1.1")
    return select_exact(b)


# --- the greedy approximation (SEL-3) -----------------------------------------------------------

def normalised_cost(b: Budget, t: int) -> float:
    """w_t = c_t / tau + m_t / mu in binary64, a zero cost contributing exactly 0 (SEL-3.2).

    Only tiers that fit alone reach this, so tau > 0 whenever c_t > 0 (and likewise mu); an
    infinite limit gives c_t / inf = 0.
    """
    a = 0.0 if b.latency[t] == 0 else b.latency[t] / b.tau
    m = 0.0 if b.memory[t] == 0 else b.memory[t] / b.mu
    return a + m


def greedy_ratio(b: Budget, t: int) -> float:
    """rho_t = U_t / w_t, or +inf when w_t = 0 (SEL-3.3)."""
    w = normalised_cost(b, t)
    return math.inf if w == 0 else b.utility[t] / w


def greedy_order(b: Budget) -> list[int]:
    """The tiers that fit alone with U_t > 0, by rho_t descending, ties by ascending id (SEL-3.3)."""
    fits = [t for t in range(b.n_tiers) if feasible(b, (t,)) and b.utility[t] > 0]
    return sorted(fits, key=lambda t: (-greedy_ratio(b, t), t))


def select_greedy(b: Budget) -> tuple[int, ...]:
    """SEL-3.1 .. SEL-3.5: add tiers in greedy order while the TierSet stays feasible, then return the
    better (SEL-2.3) of that set and the best single tier."""
    singles = [(t,) for t in range(b.n_tiers) if feasible(b, (t,))]
    if not singles:
        raise _no_fit(b)
    chosen: list[int] = []
    for t in greedy_order(b):                                           # SEL-3.4
        if feasible(b, chosen + [t]):
            chosen.append(t)
    best_single = min(singles, key=lambda s: preference_key(b, s))       # SEL-3.5
    cands = [best_single] + ([tuple(sorted(chosen))] if chosen else [])
    return min(cands, key=lambda s: preference_key(b, s))


def greedy_budget(utility: Sequence, latency: Sequence, memory: Sequence, tau, mu) -> tuple[int, ...]:
    """The greedy approximation of SEL-3 (any number of tiers); NOT the budget-constrained mode's answer."""
    return select_greedy(budget(utility, latency, memory, tau, mu))
