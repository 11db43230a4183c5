"""The expert-cache policy (PLACE-4): hand-checked steps, the trace format, unit ids from routing
records, and the two implementations (reference and optimized) holding the same resident set at
every step of random traces; the conformance generator's cases pass on both."""
from __future__ import annotations

import numpy as np
import pytest

from lite_llm.optimized.storage.policy import CachePolicy, simulate as fast_simulate
from lite_llm.reference.cache_policy import (check_trace, expert_unit, load_trace, router_unit, save_trace,
                                             simulate, step_units, trace_from_records, trace_from_steps, unit_count,
                                             unit_sizes)
from lite_llm.spec.errors import ShapeError
from tests.helpers import make_config


def resident_sets(run):
    return [set(np.flatnonzero(r).tolist()) for r in run.resident]


def test_admission_needs_a_higher_count_and_ties_evict_the_smaller_id():
    """PLACE-4.6, PLACE-4.7: equal counts keep the resident unit; eviction order (n, l, id)."""
    tr = trace_from_steps([[0, 1], [2], [2], [0], [3], [3], [3]], [1] * 4)
    run = simulate(tr, 2, half_life=100)
    assert resident_sets(run) == [{0, 1}, {0, 1}, {1, 2}, {0, 2}, {0, 2}, {0, 2}, {0, 3}]
    assert run.hit.tolist() == [False] * 8
    assert run.counts.tolist() == [2, 1, 2, 3]


def test_lru_among_equal_counts():
    """PLACE-4.6: with equal counts the least recently used unit is the first victim."""
    tr = trace_from_steps([[0], [1], [0], [1], [2], [2], [2]], [1] * 3)
    run = simulate(tr, 2, half_life=100)
    # counts 2, 2; unit 0 last used at step 2, unit 1 at step 3; unit 2 reaches 3 requests at step 6
    assert resident_sets(run)[-1] == {1, 2}


def test_current_step_is_protected():
    """PLACE-4.6: a unit the step requests is never evicted for another unit of the same step."""
    tr = trace_from_steps([[0, 1], [0, 1, 2, 3], [0, 1, 2, 3]], [1] * 4)
    run = simulate(tr, 2)
    assert resident_sets(run) == [{0, 1}] * 3
    assert run.admitted.tolist() == [True, True] + [False] * 8


def test_decay_halves_counts_every_half_life():
    """PLACE-4.5: floor(n / 2) at steps k > 0 with k mod H = 0, before the step's own counts."""
    tr = trace_from_steps([[0], [0], [0], [1], [1]], [1, 1])
    assert simulate(tr, 1, half_life=3).counts.tolist() == [1, 2]     # 3 -> 1 at step 3
    assert simulate(tr, 1, half_life=100).counts.tolist() == [3, 2]


def test_victims_are_the_shortest_prefix_that_makes_room():
    """PLACE-4.6 with sizes: two small victims for one large unit, only if both have smaller counts."""
    tr = trace_from_steps([[0, 1], [2], [2]], [1, 1, 2])
    run = simulate(tr, 2)
    assert resident_sets(run) == [{0, 1}, {0, 1}, {2}]
    assert simulate(trace_from_steps([[0, 1], [2]], [1, 1, 3]), 2).admitted.tolist() == [True, True, False]


@pytest.mark.parametrize("seed", range(12))
def test_reference_and_runtime_hold_the_same_units_at_every_step(seed):
    """PLACE-4.4 .. PLACE-4.8: the policy is defined to the tie-break, so two implementations agree."""
    rng = np.random.default_rng(seed)
    U = int(rng.integers(2, 30))
    steps = [rng.choice(U, size=rng.integers(0, min(U, 5) + 1), replace=False).tolist() for _ in range(60)]
    sizes = rng.integers(1, 6, size=U) if seed % 2 else np.full(U, 2)
    tr = trace_from_steps(steps, sizes)
    cap, H = int(rng.integers(0, int(sizes.sum()) + 1)), int(rng.integers(1, 15))
    a = simulate(tr, cap, H)
    b = fast_simulate(tr.offsets, tr.units, tr.sizes, cap, H)
    assert (a.hit == b["hit"]).all() and (a.admitted == b["admitted"]).all()
    assert (a.resident == b["resident"]).all() and (a.counts == b["counts"]).all()
    used = (a.resident * tr.sizes[None, :]).sum(axis=1)
    assert (used <= cap).all()                                   # PLACE-4.4


def test_trace_file_round_trip_and_rejections(tmp_path):
    """PLACE-4.3: the .npz format, and E_SHAPE naming the problem."""
    tr = trace_from_steps([[3, 1], [], [2]], [4, 4, 4, 4], layers=[0, 1, 0], meta={"source": "test"})
    save_trace(tmp_path / "t.npz", tr)
    back = load_trace(tmp_path / "t.npz")
    assert back.units.tolist() == [1, 3, 2] and back.offsets.tolist() == [0, 2, 2, 3]
    assert back.layers.tolist() == [0, 1, 0] and back.meta["source"] == "test"
    for args, word in [(([0, 2, 1], [0, 1], [1, 1]), "decrease"), (([0, 2], [1, 0], [1, 1]), "ascending"),
                       (([0, 1], [5], [1, 1]), "outside"), (([0, 1], [0], [0, 1]), "size"),
                       (([1, 1], [0], [1]), "start"), (([0, 1], [0.5], [1]), "integers")]:
        with pytest.raises(ShapeError, match=word):
            check_trace(*args)
    np.savez(tmp_path / "bad.npz", offsets=np.zeros(1, np.int64))
    with pytest.raises(ShapeError, match="lacks"):
        load_trace(tmp_path / "bad.npz")
    with pytest.raises(ShapeError):
        simulate(tr, -1)
    with pytest.raises(ShapeError):
        simulate(tr, 1, half_life=0)


def test_unit_ids_and_sizes_follow_the_spec():
    """PLACE-4.1: l U_L + o_t + g E_t + e; routers after every expert; 4 * 3 d d_ff bytes."""
    cfg = make_config(tiers=((2, 3), (3, 2)), d=16, n_layers=2)
    U_L = 2 * 3 + 3 * 2
    assert expert_unit(cfg, 1, 1, 2, 1) == U_L + 6 + 2 * 2 + 1
    assert router_unit(cfg, 1, 0) == 2 * U_L + 2 and unit_count(cfg) == 2 * U_L + 4
    sizes = unit_sizes(cfg)
    assert sizes[0] == 4 * 3 * 16 * 8 and sizes[router_unit(cfg, 0, 1)] == 4 * 16 * (1 + 3 + 6)


def test_steps_from_routing_records():
    """PLACE-4.2: the active slots' experts, ascending and distinct; decode traces read the last row."""
    from lite_llm.reference.model import forward
    from lite_llm.reference.weights import init_model_weights

    cfg = make_config(tiers=((2, 2), (2, 2)), d=16, n_layers=2, vocab_size=32, max_seq_len=16)
    w = init_model_weights(cfg, 1)
    o = forward(cfg, w, [1, 2, 3, 4], (0, 1))
    r = o.routes[1]
    want = sorted({expert_unit(cfg, 1, t, g, e) for n in range(4) for (t, g, e, _) in r.active(n)})
    assert step_units(cfg, r, 1, (0, 1)) == want
    tr = trace_from_records(cfg, [o.routes], (0, 1), decode=True)
    assert tr.step(1).tolist() == sorted({expert_unit(cfg, 1, t, g, e) for (t, g, e, _) in r.active(3)})
    assert tr.layers.tolist() == [0, 1]
    with_routers = step_units(cfg, r, 1, (0, 1), routers=True)
    assert with_routers[-2:] == [router_unit(cfg, 1, 0), router_unit(cfg, 1, 1)]


def test_prefetch_candidates_rank_by_the_policy_statistics():
    """PLACE-4.9: count descending, last use descending, id ascending; resident units excluded."""
    p = CachePolicy([1] * 6, 1)
    for s in ([0], [1], [1], [2], [3], [2]):
        p.step(s)
    assert 1 in p.resident and p.prefetch_candidates(range(6), 3) == [2, 3, 0]


def test_generator_cases_pass_on_both_implementations(tmp_path):
    """The cache_trace vectors (CONF-3.2) generated into a temporary root pass on both adapters."""
    from lite_llm.conformance import gen_cache
    from lite_llm.conformance.case import load_cases
    from lite_llm.conformance.generate import write_case
    from lite_llm.conformance.runner import run_suite
    from lite_llm.optimized.adapter import OptimizedAdapter
    from lite_llm.reference.adapter import ReferenceAdapter

    specs = gen_cache.cases()
    for s in specs:
        write_case(tmp_path, s)
    cases = load_cases(tmp_path)
    assert len(cases) == len(specs) >= 15
    for adapter in (ReferenceAdapter(), OptimizedAdapter()):
        assert run_suite(adapter, cases, root=tmp_path).counts()["pass"] == len(cases)
