"""The Lite LLM forward pass in plain NumPy (spec chapter MODEL, paper section 3).

    h   = embed[tokens]                                          (T, d)
    for each layer l:
        a = rms_norm(h, attn_norm_l);  h = h + attention_l(a)    causal, rotary (MODEL-2.3, 2.4)
        b = rms_norm(h, ffn_norm_l);   h = h + moe_l(b)           HSER routing + SwiGLU experts (MODEL-3)
    logits = rms_norm(h, final_norm) @ lm_head.T                  (T, V)

binary32 by default; ``dtype=np.float64`` runs every backbone operation in binary64 for checking
(the router still reads binary32, HSER-1.2). Each sequence of a batch is computed on its own, and
each token's experts on their own, so no output depends on another sequence (MODEL-2.6).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.errors import DTypeError, RouterWeightsError, TokenError
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .attention import self_attention
from .aux_loss import DEFAULT_ALPHA, AuxLoss, aux_loss
from .moe import (MODEL_DTYPES, check_layer_weights, check_tensor, layer_tier_shapes, moe_forward, routing_margins,
                  working_weights)
from .norm import rms_norm
from .router import RouteResult
from lite_llm.spec.tensors import dense_shapes


@dataclass(frozen=True)
class ModelOutput:
    """What a forward pass returns. N = B * T tokens, flattened row-major (sequence, then position)."""

    logits: np.ndarray                    # (T, V) for tokens (T,), (B, T, V) for tokens (B, T); working dtype
    routes: tuple[RouteResult, ...]       # per layer: the routing record of the N tokens (HSER-9.3)
    router_inputs: tuple[np.ndarray, ...]  # per layer: (N, d) the normed hidden states that were routed (MODEL-3.1)
    moe_outputs: tuple[np.ndarray, ...]   # per layer: (N, d) the MoE block's output (MODEL-3.3)
    aux_loss: AuxLoss                     # load-balancing loss of these routes (AUX chapter)


# ---------------------------------------------------------------------------------------------
# Input validation (MODEL-1.1 .. MODEL-1.3)

def check_tokens(cfg: ModelConfig, tokens) -> tuple[np.ndarray, bool]:
    """Token ids as an int64 array (B, T) (B = 1 for a single sequence) and whether the input was (T,)
    (MODEL-1.1).

    Accepted: integer arrays or nested lists of shape (T,) or (B, T), 0 <= T <= max_seq_len, every id
    in [0, vocab_size). Booleans and floating types are rejected even when integral. Errors name the
    first offending position (row-major) and its value.
    """
    if isinstance(tokens, np.ndarray):
        arr = tokens
    else:
        try:
            arr = np.asarray(tokens)
        except ValueError as e:                          # ragged nested lists
            raise TokenError(f"token ids must form a (T,) or (B, T) array: {e}") from None
        if arr.size == 0 and arr.dtype == np.float64:   # [] and [[]] parse as float64
            arr = arr.astype(np.int64)
    if arr.ndim not in (1, 2):
        raise TokenError(f"token ids must have shape (T,) or (B, T), got shape {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TokenError(f"token ids must be integers, got dtype {arr.dtype}")
    T = arr.shape[-1]
    if T > cfg.max_seq_len:
        raise TokenError(f"sequence length {T} exceeds max_seq_len={cfg.max_seq_len}")
    bad = (arr < 0) | (arr >= cfg.vocab_size)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise TokenError(f"token id {int(arr[where])} at position {where if arr.ndim == 2 else where[0]} is outside "
                         f"[0, vocab_size={cfg.vocab_size}) ({int(bad.sum())} bad id(s) in all)")
    single = arr.ndim == 1
    arr = arr.astype(np.int64)
    return (arr[None, :] if single else arr), single


def check_model_weights(cfg: ModelConfig, weights: Mapping, tier_ids) -> None:
    """Every tensor the forward reads: dense tensors (INIT-2.2) and the TierSet's tier tensors
    (INIT-2.1, INIT-2.3), in canonical order; each present, binary32, of its shape, finite (MODEL-1.3).
    Tensors of tiers outside the TierSet, and names the model does not read, are ignored.
    """
    if not isinstance(weights, Mapping):
        raise RouterWeightsError(f"weights must be a mapping name -> array, got {type(weights).__name__}",
                                 clause="MODEL-1.3")
    for name, shape in dense_shapes(cfg).items():
        check_tensor(weights, name, shape)
    for layer in range(cfg.n_layers):
        check_layer_weights(cfg, weights, layer, tier_ids)


def model_tensor_names(cfg: ModelConfig, tier_ids) -> list[str]:
    """Names of the tensors a forward under TierSet ``tier_ids`` reads (MODEL-1.3)."""
    names = list(dense_shapes(cfg))
    for layer in range(cfg.n_layers):
        names += list(layer_tier_shapes(cfg, layer, tier_ids))
    return names


# ---------------------------------------------------------------------------------------------
# Forward (MODEL-2, MODEL-3)

def forward(cfg: ModelConfig, weights: Mapping, tokens, tiers, *, seed=None, dtype=np.float32,
            aux_alpha: float = DEFAULT_ALPHA) -> ModelOutput:
    """Logits and per-layer routing of ``tokens`` (T,) or (B, T) under TierSet ``tiers`` (MODEL-2.1).

    ``weights`` is the flat dict name -> binary32 array of INIT-2 (e.g. ``init_model_weights(cfg, s)``);
    only the dense tensors and those of the TierSet's tiers are read. ``seed`` is the routing seed of
    every layer (default: the config's, MODEL-3.1). ``dtype`` is the working precision, float32 or
    float64 (MODEL-1.4); ``aux_alpha`` the weight of the auxiliary loss (AUX-1.4). Checks run before
    any arithmetic, in the order of MODEL-1.2.
    """
    if np.dtype(dtype).type not in MODEL_DTYPES:
        raise DTypeError(f"working precision {np.dtype(dtype)} is not float32 or float64", clause="MODEL-1.4")
    dt = np.dtype(dtype)
    seed = parse_seed(cfg.router.seed if seed is None else seed)                  # HSER-4.1
    tier_ids = resolve_tier_set(cfg, tiers)                                       # TIER-2.2 .. 2.4
    tok, single = check_tokens(cfg, tokens)                                       # (B, T) MODEL-1.1
    check_model_weights(cfg, weights, tier_ids)                                   # MODEL-1.3
    w = working_weights(weights, model_tensor_names(cfg, tier_ids), dt)         # router tensors stay binary32

    B, T = tok.shape
    d = cfg.d_model
    h = w["embed"][tok]                                                           # (B, T, d)
    routes, router_inputs, moe_outputs = [], [], []
    for layer in range(cfg.n_layers):
        a = rms_norm(h, w[f"layers.{layer}.attn_norm"], cfg.norm_eps)             # (B, T, d)
        for b in range(B):                                # each sequence on its own (MODEL-2.6)
            h[b] = h[b] + self_attention(cfg, w, layer, a[b])
        x = rms_norm(h, w[f"layers.{layer}.ffn_norm"], cfg.norm_eps).reshape(B * T, d)   # (N, d) router input
        out, r = moe_forward(cfg, w, layer, x, tier_ids, seed)                    # (N, d), record of N tokens
        h = h + out.reshape(B, T, d)
        routes.append(r)
        router_inputs.append(x)
        moe_outputs.append(out)
    hn = rms_norm(h, w["final_norm"], cfg.norm_eps)                               # (B, T, d)
    logits = np.empty((B, T, cfg.vocab_size), dt)                                 # (B, T, V)
    for b in range(B):
        logits[b] = hn[b] @ w["lm_head"].T
    return ModelOutput(
        logits=logits[0] if single else logits,
        routes=tuple(routes),
        router_inputs=tuple(router_inputs),
        moe_outputs=tuple(moe_outputs),
        aux_loss=aux_loss(cfg, routes, alpha=aux_alpha),
    )


def forward_routing_margins(cfg: ModelConfig, weights: Mapping, output: ModelOutput) -> np.ndarray:
    """Normalised routing margins (MODEL-4.5) of every layer and token of a forward: (L, N) binary64.

    A model conformance vector needs every entry >= the bound of MODEL-4.5.
    """
    return np.stack([routing_margins(cfg, weights, layer, output.router_inputs[layer], output.routes[layer])
                     for layer in range(cfg.n_layers)])
