"""The tier-aware MoE feed-forward block of one layer (MODEL-3): route, run experts, combine.

Routing (HSER) is exact given its binary32 input; the combine is exact given the experts' outputs
(MODEL-3.3); the experts themselves are float operations held to a tolerance (MODEL-4.2).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.errors import DTypeError, RouterWeightsError
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .experts import swiglu
from .logits import exact_dot, logits
from .quantize import dequant_scale, quantize_rows
from .router import RouteResult, route
from .router_weights import RouterWeights, quantize_router
from .validate import hidden_as_float32
from lite_llm.spec.tensors import tier_shapes

MODEL_DTYPES = (np.float32, np.float64)


# ---------------------------------------------------------------------------------------------
# Weights of one layer's MoE block (MODEL-1.3)

def check_tensor(weights: Mapping, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The tensor ``name``: present, a binary32 ndarray of exactly ``shape``, finite (MODEL-1.3).

    Raises E_WEIGHTS naming the tensor (and the first non-finite index).
    """
    if name not in weights:
        raise RouterWeightsError(f"tensor {name!r} is missing from the weights", clause="MODEL-1.3")
    a = weights[name]
    if not isinstance(a, np.ndarray):
        raise RouterWeightsError(f"tensor {name!r} is a {type(a).__name__}, expected a numpy array", clause="MODEL-1.3")
    if a.dtype != np.float32:
        raise RouterWeightsError(f"tensor {name!r} has dtype {a.dtype}, expected float32", clause="MODEL-1.3")
    if a.shape != tuple(shape):
        raise RouterWeightsError(f"tensor {name!r} has shape {a.shape}, expected {tuple(shape)}", clause="MODEL-1.3")
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise RouterWeightsError(f"tensor {name!r} holds {float(a[where])!r} at index {where} "
                                 f"({int(bad.sum())} non-finite value(s) in all)", clause="MODEL-1.3")
    return a


def layer_tier_shapes(cfg: ModelConfig, layer: int, tier_ids) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tier tensors of ``layer`` for the tiers ``tier_ids`` (INIT-2.1, INIT-2.3)."""
    if not 0 <= layer < cfg.n_layers:
        raise RouterWeightsError(f"layer {layer} is not a layer of this model (n_layers={cfg.n_layers}): "
                                 f"tensors layers.{layer}.* do not exist", clause="MODEL-1.3")
    prefix = f"layers.{layer}."
    return {n: s for t in tier_ids for n, s in tier_shapes(cfg, t).items() if n.startswith(prefix)}


def check_layer_weights(cfg: ModelConfig, weights: Mapping, layer: int, tier_ids) -> None:
    """Every tier tensor of ``layer`` that the TierSet's tiers need (MODEL-1.3); no other tier is read."""
    if not isinstance(weights, Mapping):
        raise RouterWeightsError(f"weights must be a mapping name -> array, got {type(weights).__name__}",
                                 clause="MODEL-1.3")
    for name, shape in layer_tier_shapes(cfg, layer, tier_ids).items():
        check_tensor(weights, name, shape)


def layer_router_weights(cfg: ModelConfig, weights: Mapping, layer: int, tier_ids) -> RouterWeights:
    """The RouterWeights of ``layer`` for every tier of T_max (INIT-2.1).

    Tiers in ``tier_ids`` (the TierSet) take their tensors ``layers.{l}.tiers.{NAME}.router_*``;
    every other tier gets zero placeholders of the right shape. Routing never reads them (TIER-2.6,
    HSER-7.1), so the weights of tiers outside the TierSet are neither required nor read (MODEL-1.3).
    """
    d, tier, group, expert = cfg.d_model, [], [], []
    for t, tc in enumerate(cfg.tiers):
        p = f"layers.{layer}.tiers.{tc.name}"
        if t in tier_ids:
            tier.append(weights[f"{p}.router_tier"])
            group.append(weights[f"{p}.router_group"])
            expert.append(weights[f"{p}.router_expert"])
        else:
            tier.append(np.zeros((d,), np.float32))
            group.append(np.zeros((tc.groups, d), np.float32))
            expert.append(np.zeros((tc.groups, tc.experts_per_group, d), np.float32))
    return RouterWeights(tuple(tier), tuple(group), tuple(expert))


def working_weights(weights: Mapping, names, dtype) -> dict[str, np.ndarray]:
    """The tensors ``names`` in the working precision (MODEL-1.4); router tensors stay binary32 (HSER-1.4)."""
    return {n: weights[n] if ".router_" in n else weights[n].astype(dtype, copy=False) for n in names}


# ---------------------------------------------------------------------------------------------
# The combine (MODEL-3.3): exact given gates and expert outputs

def tree_sum_axis1(c: np.ndarray) -> np.ndarray:
    """Canonical pairwise tree sum (HSER-6.5) over axis 1 of c (N, K, d), in c's dtype.

    Pad axis 1 to the next power of two with -0.0 (the exact additive identity), then replace the
    sequence by the sums of adjacent pairs (c0+c1, c2+c3, ...) until one value is left.
    """
    N, K, d = c.shape
    P = 1 << max(K - 1, 0).bit_length()
    c = np.concatenate([c, np.full((N, P - K, d), -0.0, c.dtype)], axis=1)
    while c.shape[1] > 1:
        c = c[:, 0::2] + c[:, 1::2]
    return c[:, 0]


def moe_combine(gate: np.ndarray, count: np.ndarray, expert_out: np.ndarray) -> np.ndarray:
    """out[n] = tree_sum over the K slots of c[n, k] (MODEL-3.3), exact.

    gate (N, K) binary32 and count (N,) from the routing record (HSER-9.3), slots in output order
    (HSER-9.2); expert_out (N, K, d) in the working precision (binary32 or binary64): the output of
    the slot's expert on token n. c[n, k] = working(gate[n, k]) * expert_out[n, k] (the conversion
    of a binary32 gate is exact; one rounded multiplication) for k < count[n], and -0.0 for padding
    slots (whose expert_out is never read). The tree sum runs elementwise over the d features.
    """
    dt = expert_out.dtype
    N, K, d = expert_out.shape
    active = np.arange(K)[None, :] < np.asarray(count)[:, None]                 # (N, K)
    c = gate.astype(dt)[:, :, None] * expert_out                                 # (N, K, d), one rounding
    c = np.where(active[:, :, None], c, dt.type(-0.0))                           # padding -> -0.0
    return tree_sum_axis1(c)                                                     # (N, d)


# ---------------------------------------------------------------------------------------------
# The MoE block

def moe_forward(cfg: ModelConfig, w: Mapping, layer: int, x: np.ndarray, tier_ids: tuple[int, ...],
                seed: int) -> tuple[np.ndarray, RouteResult]:
    """MoE block of ``layer`` on router inputs x (N, d) (MODEL-3.1 .. MODEL-3.3), weights already checked.

    ``w`` holds the expert weights in x's dtype (binary32, or binary64 for checking) and the router
    tensors in binary32; the router always reads binary32 (HSER-1.2: a binary64 x is rounded to nearest).
    """
    r = route(x, quantize_router(cfg, layer_router_weights(cfg, w, layer, tier_ids)), tier_ids, seed)
    N, K = r.gate.shape
    y = np.zeros((N, K, cfg.d_model), x.dtype)                                   # (N, K, d) expert outputs
    for n in range(N):                                 # one token at a time: batch-invariant (MODEL-3.5)
        for k in range(int(r.count[n])):
            t, g, e = int(r.tier[n, k]), int(r.group[n, k]), int(r.expert[n, k])
            p = f"layers.{layer}.tiers.{cfg.tiers[t].name}"
            y[n, k] = swiglu(x[n], w[f"{p}.w_gate"][g, e], w[f"{p}.w_up"][g, e], w[f"{p}.w_down"][g, e])
    return moe_combine(r.gate, r.count, y), r


def moe_layer(cfg: ModelConfig, weights: Mapping, layer: int, x, tiers, seed=None) -> tuple[np.ndarray, RouteResult]:
    """The MoE feed-forward of ``layer`` on router inputs x (N, d): (output (N, d), routing record).

    x is the RMS-normed hidden state (MODEL-3.1), binary32 or binary64 (the working precision of the
    experts and the combine, MODEL-1.4). ``tiers`` is the TierSet (names or ids), ``seed`` the routing
    seed (default: the config's). Checks run before any arithmetic: seed, TierSet (HSER-4.1, TIER-2),
    x (HSER-1), then the layer's tensors of the TierSet's tiers (MODEL-1.3).
    """
    seed = parse_seed(cfg.router.seed if seed is None else seed)
    tier_ids = resolve_tier_set(cfg, tiers)
    x = np.asarray(x)
    hidden_as_float32(x, cfg.d_model)                                            # HSER-1.1 .. 1.3 on x
    if x.dtype.type not in MODEL_DTYPES:
        raise DTypeError(f"MoE input has dtype {x.dtype}; the working precision is float32 or float64",
                         clause="MODEL-1.4")
    check_layer_weights(cfg, weights, layer, tier_ids)
    w = working_weights(weights, layer_tier_shapes(cfg, layer, tier_ids), x.dtype)
    return moe_forward(cfg, w, layer, x, tier_ids, seed)


# ---------------------------------------------------------------------------------------------
# Routing margins (MODEL-4.5): how far each token is from a different routing decision

def routing_margins(cfg: ModelConfig, weights: Mapping, layer: int, x, record: RouteResult) -> np.ndarray:
    """The normalised routing margin of each token (MODEL-4.5), binary64 (N,); +inf if nothing could flip.

    For a decision that ranked candidates and chose c_1 .. c_k (best first), the margin is the
    minimum, over each chosen c_r and each candidate q ranked after it (every candidate other than
    c_1 .. c_r), of (z_{c_r} - z_q) / (a * (|w_{c_r}|_1 + |w_q|_1)), where z are the exact logits
    (HSER-3.3), a = max_i |x_i| of the token's binary32 router input and |w_j|_1 the 1-norm of the
    dequantized router row scale_j * Q_j (HSER-2.5). A token's margin is the minimum over every
    decision it makes at the three levels; a tie gives 0.
    """
    x32 = hidden_as_float32(np.asarray(x), cfg.d_model)                          # (N, d) binary32
    check_layer_weights(cfg, weights, layer, record.tier_set)
    qr = quantize_router(cfg, layer_router_weights(cfg, weights, layer, record.tier_set))
    limbs = cfg.router.hidden_limbs
    qx, ax = quantize_rows(x32, limbs)                                           # (N, d), (N,)
    sx = dequant_scale(ax, limbs)                                                # (N,)

    def decision(n: int, rows_q: np.ndarray, rows_scale: np.ndarray, chosen_pos: list[int]) -> float:
        z = logits(exact_dot(qx[n:n + 1], rows_q), sx[n:n + 1], rows_scale)[0]  # (c,) binary64
        norm1 = rows_scale * np.abs(rows_q).sum(axis=1).astype(np.float64)      # (c,) |w_j|_1
        best, later = np.inf, np.ones(z.shape[0], bool)
        for p in chosen_pos:
            later[p] = False
            if not later.any():
                break
            gap = z[p] - z[later]
            den = np.float64(ax[n]) * (norm1[p] + norm1[later])
            m = np.where(gap > 0, gap / np.where(den > 0, den, 1.0), 0.0)
            best = min(best, float(m.min()))
        return best

    cands = list(record.tier_set)
    l1q = np.concatenate([qr.tier[t].q for t in cands])
    l1s = np.concatenate([qr.tier[t].scale for t in cands])
    out = np.full(x32.shape[0], np.inf)
    for n in range(x32.shape[0]):
        chosen_t = [int(t) for t in record.chosen_tiers[n] if t >= 0]
        m = decision(n, l1q, l1s, [cands.index(t) for t in chosen_t])
        for a, t in enumerate(chosen_t):
            chosen_g = [int(g) for g in record.chosen_groups[n, a] if g >= 0]
            m = min(m, decision(n, qr.group[t].q, qr.group[t].scale, chosen_g))
            for g in chosen_g:
                chosen_e = [int(record.expert[n, k]) for k in range(int(record.count[n]))
                            if record.tier[n, k] == t and record.group[n, k] == g]
                m = min(m, decision(n, qr.expert[t][g].q, qr.expert[t][g].scale, chosen_e))
        out[n] = m
    return out
