"""Level seeds, tie keys and the total order (HSER-4, HSER-5)."""
from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from lite_llm.reference.ranking import rank, top_k
from lite_llm.reference.seeds import level_seed, level_word, mix64, mix64_array, tie_keys

seeds = st.integers(0, 2 ** 64 - 1)


def test_mix64_is_splitmix64():
    """HSER-4.3: SplitMix64's published outputs for state 0 (Vigna, splitmix64.c): the generator adds
    0x9E3779B97F4A7C15 to its state and returns mix64 of it."""
    golden = 0x9E3779B97F4A7C15
    expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert [mix64(golden * (i + 1) % 2 ** 64) for i in range(3)] == expected
    xs = np.array([golden * (i + 1) % 2 ** 64 for i in range(3)], np.uint64)
    assert [int(v) for v in mix64_array(xs)] == expected


def test_level_word_fields_are_disjoint():
    """HSER-4.2."""
    assert level_word(1) == 1 << 62
    assert level_word(2, 0xFFFF) == (2 << 62) | (0xFFFF << 32)
    assert level_word(3, 0xFFFF, 0xFFFFFFFF) == (3 << 62) | (0xFFFF << 32) | 0xFFFFFFFF
    assert level_word(3, 1, 0) != level_word(3, 0, 1 << 32 >> 32)


def paper_seed(s, t=None, g=None):
    """The paper's level seeds (section 5.2): s, s ^ id(t), s ^ id(t) ^ g."""
    return s if t is None else (s ^ t if g is None else s ^ t ^ g)


@given(seeds)
def test_paper_seeds_collide_and_ours_do_not(s):
    """HSER-4.4: the paper's XOR combination gives (t=1, g=2) and (t=2, g=1) one seed; ours gives
    distinct seeds for every (level, tier, group) in a 16 x 64 grid."""
    assert paper_seed(s, 1, 2) == paper_seed(s, 2, 1)
    assert paper_seed(s, 3) == paper_seed(s, 0, 3)            # level 2 of tier 3 = level 3 of tier 0, group 3
    ours = [level_seed(s, 1)] + [level_seed(s, 2, t) for t in range(16)] + \
           [level_seed(s, 3, t, g) for t in range(16) for g in range(64)]
    assert len(set(ours)) == len(ours)


@given(seeds, st.integers(1, 3000))
def test_tie_keys_are_distinct(s, n):
    """HSER-4.5: key(j) = mix64(s_l ^ j) are distinct for distinct j."""
    keys = tie_keys(s, n)
    assert keys.dtype == np.uint64 and len(np.unique(keys)) == n
    assert int(keys[n - 1]) == mix64(s ^ (n - 1))


def test_rank_breaks_ties_by_key_and_treats_signed_zeros_as_equal():
    """HSER-5.1: higher logit first; equal logits (including -0.0 vs +0.0) by ascending key."""
    z = np.array([[0.0, -0.0, 1.0, 0.0, -1.0]])
    keys = np.array([30, 10, 99, 20, 0], np.uint64)
    assert rank(z, keys).tolist() == [[2, 1, 3, 0, 4]]


@given(st.lists(st.sampled_from([-1.0, 0.0, -0.0, 2.5]), min_size=1, max_size=30), seeds, st.integers(1, 40))
def test_top_k_matches_a_sort_by_the_total_order(vals, s, k):
    """HSER-5.1, HSER-5.2, HSER-5.3: top-k equals the first min(k, n) of Python's sort by (-z, key)."""
    z = np.array([vals])
    keys = tie_keys(s, len(vals))
    expect = sorted(range(len(vals)), key=lambda j: (-vals[j], int(keys[j])))[: min(k, len(vals))]
    assert top_k(z, keys, k)[0].tolist() == expect


def test_ties_resolve_differently_for_different_seeds():
    """HSER-4.5, HSER-5.1: all-equal scores give the key order, which the seed changes."""
    z = np.zeros((1, 16))
    orders = {tuple(top_k(z, tie_keys(level_seed(s, 1), 16), 3)[0]) for s in range(8)}
    assert len(orders) > 1


def test_selection_ranks_logits_not_rounded_probabilities():
    """HSER-5.4: two logits 1e-12 apart round to the same binary32 probability; ranking the
    probabilities would make them tie (and the key decide), ranking logits keeps the larger first."""
    from lite_llm.reference.softmax import softmax

    z = np.array([[0.0, 1e-12, -5.0]])
    p = softmax(z)
    assert p[0, 0] == p[0, 1]
    for s in range(20):
        keys = tie_keys(s, 3)
        assert top_k(z, keys, 1)[0, 0] == 1
