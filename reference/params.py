"""Parameter accounting from a configuration alone (spec chapter PARAM, clauses PARAM-1 .. PARAM-4).

Every count is an exact Python integer (PARAM-1.1): a quadrillion-parameter model is counted to the
last parameter. The tensors counted are exactly those of INIT-2.1 .. INIT-2.3 (PARAM-1.2); the tests
check each formula against the sizes of ``weights.dense_shapes`` / ``weights.tier_shapes``.

Notation: d = d_model, V = vocab_size, L = n_layers; tier t has G_t groups of E_t experts of inner
width F_t; k = (k_tier, k_group, k_expert), K = k_tier * k_group * k_expert.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import UnknownTierError
from lite_llm.spec.tierset import all_tiers, tier_set


# --- totals (PARAM-2) ---------------------------------------------------------------------------

def layer_dense(cfg: ModelConfig) -> int:
    """C_dense: one layer's dense parameters, attention 4 d^2 + attn_norm and ffn_norm 2 d (PARAM-2.1)."""
    d = cfg.d_model
    return 4 * d * d + 2 * d


def io_dense(cfg: ModelConfig) -> int:
    """Dense parameters outside the layers: embed (V, d) + final_norm (d,) + lm_head (V, d) (PARAM-2.1)."""
    d, V = cfg.d_model, cfg.vocab_size
    return 2 * V * d + d


def dense_total(cfg: ModelConfig) -> int:
    """Every dense parameter: L * C_dense + embedding, final norm and LM head (PARAM-2.1)."""
    return cfg.n_layers * layer_dense(cfg) + io_dense(cfg)


def expert_size(cfg: ModelConfig, tier: int) -> int:
    """|e| of an expert of tier t: SwiGLU w_gate, w_up (F_t, d) and w_down (d, F_t) = 3 d F_t (PARAM-2.2)."""
    return 3 * cfg.d_model * cfg.tiers[tier].d_ff


def tier_layer_params(cfg: ModelConfig, tier: int) -> int:
    """Tier t's parameters in one layer: router rows d (1 + G_t + G_t E_t) + experts G_t E_t |e| (PARAM-2.2)."""
    t, d = cfg.tiers[tier], cfg.d_model
    G, E = t.groups, t.experts_per_group
    return d * (1 + G + G * E) + G * E * expert_size(cfg, tier)


def tier_budget(cfg: ModelConfig, tier: int) -> int:
    """B_t: every parameter of tier t over all layers, the content of its shard (PARAM-2.2)."""
    return cfg.n_layers * tier_layer_params(cfg, tier)


def p_total(cfg: ModelConfig) -> int:
    """P_total = dense_total + sum over T_max of B_t (PARAM-2.3)."""
    return dense_total(cfg) + sum(tier_budget(cfg, t) for t in range(cfg.n_tiers))


# --- active parameters per token (PARAM-3) ------------------------------------------------------
# PARAM-3.1: a token reads, per layer, C_dense, the router rows of PARAM-3.2 and its active experts;
# outside the layers its embedding row, the final norm and the whole LM head.

@dataclass(frozen=True)
class LayerActive:
    """What one token reads in one layer's MoE block for one choice of level-1 tiers (PARAM-3.2)."""

    router_rows: tuple[int, int, int]   # rows of d read at levels 1, 2, 3
    router_params: tuple[int, int, int] # d * router_rows
    active_experts: int                 # experts run: sum over chosen t of min(k_g, G_t) min(k_e, E_t)
    expert_params: int                  # their parameters, |e_t| = 3 d F_t each


def layer_active_for(cfg: ModelConfig, tiers, chosen) -> LayerActive:
    """Router rows and experts one token reads in one layer when level 1 picks ``chosen`` out of
    TierSet ``tiers`` (PARAM-3.2). ``chosen`` must be a subset of the TierSet."""
    tiers = tier_set(cfg, tiers)
    chosen = tuple(cfg.tier_id(t) for t in chosen)
    if not set(chosen) <= set(tiers):
        raise UnknownTierError(f"chosen tiers {chosen} are not a subset of the TierSet {tiers}")
    d, rc = cfg.d_model, cfg.router
    rows2 = rows3 = experts = params = 0
    for t in chosen:
        tc = cfg.tiers[t]
        groups = min(rc.k_group, tc.groups)                  # HSER-5.3: all there are, if fewer
        rows2 += tc.groups                                   # every group logit of a chosen tier
        rows3 += groups * tc.experts_per_group               # every expert logit of a chosen group
        n = groups * min(rc.k_expert, tc.experts_per_group)
        experts += n
        params += n * expert_size(cfg, t)
    rows = (len(tiers), rows2, rows3)                        # level 1 reads every TierSet row (HSER-7.1)
    return LayerActive(rows, tuple(d * r for r in rows), experts, params)


def tier_active_term(cfg: ModelConfig, tier: int) -> int:
    """a_t: what choosing tier t adds to a layer's active count, beyond level 1 (PARAM-3.3)."""
    la = layer_active_for(cfg, (tier,), (tier,))
    return la.router_params[1] + la.router_params[2] + la.expert_params


def worst_case_tiers(cfg: ModelConfig, tiers) -> tuple[int, ...]:
    """S*: the min(k_tier, |T|) tiers of the TierSet with the largest a_t, ties to the smaller id,
    ascending (PARAM-3.3). A layer's count is a sum of per-tier terms, so S* maximises it."""
    tiers = tier_set(cfg, tiers)
    k = min(cfg.router.k_tier, len(tiers))
    ranked = sorted(tiers, key=lambda t: (-tier_active_term(cfg, t), t))
    return tuple(sorted(ranked[:k]))


@dataclass(frozen=True)
class ParamReport:
    """Parameter accounting of one config and TierSet (PARAM-2 .. PARAM-4). All counts are exact ints.

    "layer_*" fields are per layer and per token (every layer has the same tiers, so the worst case is
    the same in every layer); "dense", "routers", "experts" and "p_active" are per token, whole model.
    """

    tiers: tuple[int, ...]                  # the TierSet counted, ascending ids
    worst_case_tiers: tuple[int, ...]       # S*: level-1 choice that maximises a layer's count (PARAM-3.3)
    p_total: int                            # dense_total + sum(tier_budgets) (PARAM-2.3)
    dense_total: int                        # every dense tensor: L C_dense + 2 V d + d (PARAM-2.1)
    tier_budgets: tuple[int, ...]           # B_t of every tier of T_max in id order (PARAM-2.2)
    layer_dense: int                        # C_dense = 4 d^2 + 2 d (attention + two norms)
    layer_router_rows: tuple[int, int, int] # rows of d read at levels 1, 2, 3 (PARAM-3.2)
    layer_routers: tuple[int, int, int]     # router parameters read at levels 1, 2, 3: d * rows
    layer_active_experts: int               # experts run per layer (<= K, HSER-9.1)
    layer_experts: int                      # their parameters, 3 d F_t each
    layer_active: int                       # layer_dense + sum(layer_routers) + layer_experts
    io_active: int                          # embedding row d + final norm d + LM head V d (PARAM-3.4)
    dense: int                              # L * layer_dense + io_active
    routers: int                            # L * sum(layer_routers)
    experts: int                            # L * layer_experts
    p_active: int                           # dense + routers + experts (PARAM-3.4)
    p_active_full_embed: int                # p_active + (V - 1) d: whole embedding table counted
    paper_bound: int                        # L (C_dense + K max|e|), max over T_max (PARAM-4.1)
    paper_experts_only: int                 # L K max|e|: the corollary's "4.1B" (PARAM-4.3)
    exceeds_paper_bound: bool               # p_active > paper_bound

    def to_dict(self) -> dict:
        return asdict(self)


def param_report(cfg: ModelConfig, tiers=None) -> ParamReport:
    """P_total, P_active per token (worst case over the level-1 choice) and the paper's bound for the
    TierSet ``tiers`` (names or ids; default: every tier) (PARAM-2.1 .. PARAM-4.1)."""
    tiers = all_tiers(cfg) if tiers is None else tier_set(cfg, tiers)
    L, d, V, rc = cfg.n_layers, cfg.d_model, cfg.vocab_size, cfg.router
    worst = worst_case_tiers(cfg, tiers)
    la = layer_active_for(cfg, tiers, worst)
    c_dense = layer_dense(cfg)
    layer_routers = la.router_params
    layer_active = c_dense + sum(layer_routers) + la.expert_params
    io_active = d + d + V * d                               # embedding row, final norm, LM head
    dense = L * c_dense + io_active
    routers = L * sum(layer_routers)
    experts = L * la.expert_params
    p_active = dense + routers + experts
    K = rc.k_tier * rc.k_group * rc.k_expert
    max_e = max(expert_size(cfg, t) for t in range(cfg.n_tiers))
    paper_bound = L * (c_dense + K * max_e)
    return ParamReport(
        tiers=tiers, worst_case_tiers=worst, p_total=p_total(cfg), dense_total=dense_total(cfg),
        tier_budgets=tuple(tier_budget(cfg, t) for t in range(cfg.n_tiers)),
        layer_dense=c_dense, layer_router_rows=la.router_rows, layer_routers=layer_routers,
        layer_active_experts=la.active_experts, layer_experts=la.expert_params, layer_active=layer_active,
        io_active=io_active, dense=dense, routers=routers, experts=experts, p_active=p_active,
        p_active_full_embed=p_active + (V - 1) * d, paper_bound=paper_bound,
        paper_experts_only=L * K * max_e, exceeds_paper_bound=p_active > paper_bound,
    )
