"""The auxiliary load-balancing loss (AUX-1) on constructed routings with values derived by hand, and
its relation to the Switch-Transformer and Shazeer et al. losses (AUX-2)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from lite_llm.spec.configs import resolve_config
from lite_llm.reference.aux_loss import (AuxLoss, RouterBatch, aux_loss, cv, importance_cv2, layer_cvs,
                                         level_routers, switch_loss)
from lite_llm.reference.model import forward
from lite_llm.reference.router import RouteResult, route
from lite_llm.reference.router_weights import init_router_weights, quantize_router
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.config import TierConfig
from tests.helpers import gaussian, make_config

F32 = np.float32


def routed(cfg, T, tiers, seed=0):
    return route(gaussian(T, cfg.d_model, seed=seed), quantize_router(cfg, init_router_weights(cfg, 3)), tiers)


def record(tier_set, tier_probs, chosen_tiers, group_probs, chosen_groups, expert_probs, slots):
    """A routing record built by hand; ``slots[n]`` lists token n's active (tier, group, expert)."""
    N = len(slots)
    K = max(len(s) for s in slots)
    idx = np.full((3, N, K), -1, np.int32)
    for n, s in enumerate(slots):
        for k, tge in enumerate(s):
            idx[:, n, k] = tge
    return RouteResult(tier=idx[0], group=idx[1], expert=idx[2], gate=np.zeros((N, K), F32),
                       count=np.array([len(s) for s in slots], np.int32), tier_set=tuple(tier_set),
                       tier_probs=np.asarray(tier_probs, F32), chosen_tiers=np.asarray(chosen_tiers, np.int32),
                       group_probs=np.asarray(group_probs, F32), chosen_groups=np.asarray(chosen_groups, np.int32),
                       expert_probs=np.asarray(expert_probs, F32))


def population_cv(v):
    """std / mean with divisor n, from the definition (AUX-1.1)."""
    v = [float(x) for x in v]
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / len(v)) / m


# ---------------------------------------------------------------------------------------------
# CV and level 1 (AUX-1.1, AUX-1.2, AUX-1.5)

def test_cv_is_the_population_coefficient_of_variation():
    """AUX-1.1: divisor n, one value gives 0."""
    assert cv([1, 2, 3, 4]) == pytest.approx(math.sqrt(1.25) / 2.5, rel=1e-15)
    assert cv([0.7]) == 0.0
    assert cv([0.25] * 4) == 0.0


@pytest.fixture(scope="module")
def flat4():
    """Four tiers of one group of one expert: levels 2 and 3 have one candidate (AUX-1.5)."""
    cfg = make_config(tiers=((1, 1),) * 4, k=(1, 1, 1))
    return cfg, routed(cfg, 8, (0, 1, 2, 3))


def test_uniform_probabilities_give_zero(flat4):
    cfg, r = flat4
    u = replace(r, tier_probs=np.full((8, 4), 0.25, F32))
    assert layer_cvs(cfg, u) == (0.0, 0.0, 0.0)
    assert aux_loss(cfg, [u, u]).total == 0.0


def test_one_hot_probabilities_give_sqrt_n_minus_1(flat4):
    """AUX-1.6: every token puts probability 1 on tier 2: p = (0, 0, 1, 0) -> CV = sqrt(4 - 1)."""
    cfg, r = flat4
    p = np.zeros((8, 4), F32)
    p[:, 2] = 1
    cv1, cv2, cv3 = layer_cvs(cfg, replace(r, tier_probs=p))
    assert cv1 == pytest.approx(math.sqrt(3), rel=1e-15) and cv2 == cv3 == 0.0
    half = np.zeros((8, 4), F32)
    half[0::2, 0] = 1
    half[1::2, 1] = 1                                             # p = (1/2, 1/2, 0, 0): std 1/4, mean 1/4
    assert layer_cvs(cfg, replace(r, tier_probs=half))[0] == pytest.approx(1.0, rel=1e-15)


def test_level1_uses_the_tierset_only():
    """AUX-1.2: tiers outside the TierSet are not entries of p (nor zeros in it), and adding tiers to
    the model changes nothing."""
    cfg = make_config()
    r = routed(cfg, 30, (0, 2), seed=4)
    assert r.tier_probs.shape == (30, 2)
    cv1 = layer_cvs(cfg, r)[0]
    assert cv1 == pytest.approx(population_cv(r.tier_probs.astype(float).mean(axis=0)), rel=1e-12)
    with_zero = np.concatenate([r.tier_probs.astype(float).mean(axis=0), [0.0]])
    assert cv1 != pytest.approx(population_cv(with_zero))
    big = cfg.with_tier(TierConfig("added", 2, 2, 8))
    assert aux_loss(big, [routed(big, 30, (0, 2), seed=4)]) == aux_loss(cfg, [r])


def test_empty_batch_and_single_candidates_give_zero():
    """AUX-1.5: N = 0; a TierSet of one tier with G = E = 1."""
    cfg = make_config()
    empty = routed(cfg, 0, (0, 1, 2))
    assert layer_cvs(cfg, empty) == (0.0, 0.0, 0.0) and aux_loss(cfg, [empty, empty]).total == 0.0
    one = make_config(tiers=((1, 1), (4, 4)), k=(1, 2, 2))
    assert layer_cvs(one, routed(one, 10, (0,))) == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Levels 2 and 3 (AUX-1.3)

def test_levels_2_and_3_are_token_weighted_means_of_per_router_cvs():
    """AUX-1.3, by hand: tier 0 (3 groups of 2 experts) reached by 3 tokens, tier 1 (2 groups of 1
    expert) by 1 token; k = (1, 1, 1)."""
    cfg = make_config(tiers=((3, 2), (2, 1)), k=(1, 1, 1))
    # level 1: token 3 chose tier 1, the others tier 0
    tier_probs = [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]]
    chosen_tiers = [[0], [0], [0], [1]]
    # level 2: tier 0's tokens put (1, 0, 0), (1, 0, 0), (0.5, 0.5, 0) -> p = (5/6, 1/6, 0);
    # tier 1's token (0.5, 0.5) -> CV 0.  Padding column 2 of tier 1 must be ignored.
    group_probs = [[[1, 0, 0]], [[1, 0, 0]], [[0.5, 0.5, 0]], [[0.5, 0.5, 0.0]]]
    chosen_groups = [[[0]], [[0]], [[1]], [[1]]]
    # level 3: router (0, 0) saw tokens 0, 1 with (1, 0) and (0, 1) -> p = (1/2, 1/2), CV 0;
    # router (0, 1) saw token 2 with (0.75, 0.25) -> CV 1/2; router (1, 1) saw token 3, one expert -> 0
    expert_probs = [[[[1, 0]]], [[[0, 1]]], [[[0.75, 0.25]]], [[[1, 0]]]]
    slots = [[(0, 0, 0)], [(0, 0, 1)], [(0, 1, 0)], [(1, 1, 0)]]
    r = record((0, 1), tier_probs, chosen_tiers, group_probs, chosen_groups, expert_probs, slots)
    cv1, cv2, cv3 = layer_cvs(cfg, r)
    assert cv1 == pytest.approx(population_cv([2.6 / 4, 1.4 / 4]), rel=1e-7)
    assert cv2 == pytest.approx((3 * population_cv([5 / 6, 1 / 6, 0]) + 1 * 0.0) / 4, rel=1e-7)
    assert cv3 == pytest.approx((2 * 0.0 + 1 * 0.5 + 1 * 0.0) / 4, rel=1e-7)
    routers = level_routers(cfg, r)
    assert [len(x) for x in routers] == [1, 2, 3]
    assert routers[2][1].chosen.tolist() == [[True, False]]          # token 2 chose expert 0 of (0, 1)


def test_level_routers_match_the_record_of_a_real_routing():
    """AUX-1.3 on the router's own records (k = (2, 2, 2)): every (token, chosen tier) reaches one
    level-2 router and every (token, chosen group) one level-3 router; chosen masks hold k choices."""
    cfg = make_config(k=(2, 2, 2))
    r = routed(cfg, 40, (0, 1, 2), seed=7)
    lvl1, lvl2, lvl3 = level_routers(cfg, r)
    assert sum(b.probs.shape[0] for b in lvl2) == 40 * 2
    assert sum(b.probs.shape[0] for b in lvl3) == 40 * 2 * 2
    assert all(np.all(b.chosen.sum(axis=1) == 2) for b in lvl2 + lvl3)
    assert all(np.allclose(b.probs.sum(axis=1), 1, atol=1e-6) for b in lvl1 + lvl2 + lvl3)


# ---------------------------------------------------------------------------------------------
# The loss (AUX-1.4) and the forward pass

def test_alpha_scales_and_breakdown_sums():
    cfg = make_config()
    rs = [routed(cfg, 20, (0, 1, 2), seed=s) for s in range(3)]
    a, b = aux_loss(cfg, rs), aux_loss(cfg, rs, alpha=1.0)
    assert a.alpha == 0.01 and isinstance(a, AuxLoss)
    assert a.total == pytest.approx(0.01 * b.total, rel=1e-15)
    assert b.total == pytest.approx(sum(sum(c) for c in b.cv), rel=1e-15)
    assert sum(a.per_layer) == pytest.approx(a.total, rel=1e-14) and float(a) == a.total
    assert a.cv == tuple(layer_cvs(cfg, r) for r in rs)


def test_forward_reports_the_loss_of_its_routes():
    """AUX-1.4 over the N = B * T tokens of a batch."""
    cfg = resolve_config("tiny")
    w = init_model_weights(cfg, 0)
    o = forward(cfg, w, np.arange(24).reshape(2, 12), (0, 1, 2), aux_alpha=0.5)
    assert o.aux_loss == aux_loss(cfg, o.routes, alpha=0.5)
    assert o.aux_loss.total > 0 and len(o.aux_loss.cv) == cfg.n_layers


# ---------------------------------------------------------------------------------------------
# Shazeer et al. and Switch Transformer (AUX-2)

def test_relations_to_shazeer_and_switch_on_real_routers():
    """AUX-2.1: CV(Importance)^2 with the full softmax equals CV(p)^2; AUX-2.2: n sum f P =
    (sum f)(sum P) + n^2 cov(f, P), and with f = P it is (sum P)^2 (1 + CV(P)^2)."""
    cfg = make_config(k=(2, 2, 1))
    r = routed(cfg, 64, (0, 1, 2), seed=2)
    for b in [x for lvl in level_routers(cfg, r) for x in lvl]:
        P = b.probs.mean(axis=0)
        n = P.size
        assert importance_cv2(b) == pytest.approx(cv(P) ** 2, rel=1e-12, abs=1e-15)
        f = b.chosen.sum(axis=0) / b.chosen.sum()
        cov = np.mean((f - f.mean()) * (P - P.mean()))
        assert switch_loss(b) == pytest.approx(f.sum() * P.sum() + n * n * cov, rel=1e-12)
        assert n * np.sum(P * P) == pytest.approx(P.sum() ** 2 * (1 + cv(P) ** 2), rel=1e-12)


def batch(probs, chosen):
    return RouterBatch(np.asarray(probs, float), np.asarray(chosen, bool))


def test_all_losses_rank_a_collapsed_router_above_a_balanced_one():
    """AUX-2.2: balanced routing has CV 0 and Switch loss 1; a collapsed one is worse for all."""
    balanced = batch([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]],
                     np.eye(4))
    collapsed = batch([[0.7, 0.1, 0.1, 0.1]] * 3 + [[0.4, 0.3, 0.2, 0.1]], [[1, 0, 0, 0]] * 4)
    assert cv(balanced.probs.mean(axis=0)) == pytest.approx(0, abs=1e-15)
    assert switch_loss(balanced) == pytest.approx(1.0, rel=1e-15)
    for loss in (lambda b: cv(b.probs.mean(axis=0)), switch_loss, importance_cv2,
                 lambda b: importance_cv2(b, sparse=True)):
        assert loss(collapsed) > loss(balanced) + 0.1


def test_switch_and_cv_can_disagree_between_two_imbalanced_routings():
    """AUX-2.2: A = every token leans slightly to candidate 0 and chooses it (CV 0.1, f one-hot);
    B = stronger lean on average but choices split evenly (CV 0.19, f uniform). CV prefers A,
    the Switch loss prefers B."""
    A = batch([[0.55, 0.45]] * 2, [[1, 0]] * 2)
    B = batch([[0.7, 0.3], [0.49, 0.51]], [[1, 0], [0, 1]])
    assert cv(A.probs.mean(axis=0)) == pytest.approx(0.1, rel=1e-12)
    assert cv(B.probs.mean(axis=0)) == pytest.approx(0.19, rel=1e-12)
    assert switch_loss(A) == pytest.approx(1.1, rel=1e-12) and switch_loss(B) == pytest.approx(1.0, rel=1e-12)
    assert importance_cv2(A) < importance_cv2(B)                 # the soft importance loss sides with CV
