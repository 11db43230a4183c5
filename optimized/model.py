"""The Lite LLM forward pass on torch tensors (spec chapter MODEL), CPU or CUDA, binary32.

    h   = embed[tokens]                                          (B, T, d)
    for each layer l:
        a = rms_norm(h, attn_norm_l);  h = h + attention_l(a)    causal, rotary (MODEL-2.3, 2.4)
        b = rms_norm(h, ffn_norm_l);   h = h + moe_l(b)           exact HSER routing, SwiGLU experts,
                                                                  exact combine (MODEL-3)
    logits = rms_norm(h, final_norm) @ lm_head.T                  (B, T, V)

The floating-point parts are held to MODEL-4.3; matrix products run in IEEE binary32 (TF32 is
switched off for the duration of a call, MODEL-4.3 excludes it). Routing and the combine are exact.
``load_model`` checks and moves the weights once (``Model``); ``forward`` runs it.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.errors import RouterWeightsError, TokenError
from lite_llm.spec.tensors import dense_shapes
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .aux_loss import DEFAULT_ALPHA, AuxLoss, aux_loss, check_alpha
from .experts import weight_tensor
from .moe import MoELayer, load_moe_layer, moe_forward
from .router import RouteResult


@dataclass(frozen=True)
class ModelOutput:
    """What a forward pass returns; N = B * T tokens flattened (sequence, then position)."""

    logits: torch.Tensor                    # (T, V) for tokens (T,), (B, T, V) for tokens (B, T)
    routes: tuple[RouteResult, ...]         # per layer: the routing record of the N tokens (HSER-9.3)
    router_inputs: tuple[torch.Tensor, ...]  # per layer: (N, d) the routed normed hidden states (MODEL-3.1)
    moe_outputs: tuple[torch.Tensor, ...]   # per layer: (N, d) the MoE block's output (MODEL-3.3)
    aux_loss: AuxLoss                       # load-balancing loss of these routes (AUX chapter)


@dataclass(frozen=True)
class Model:
    """Checked weights on a device for one TierSet (MODEL-1.3): dense tensors and per-layer MoE blocks."""

    cfg: ModelConfig
    tier_ids: tuple[int, ...]
    dense: dict[str, torch.Tensor]          # INIT-2.2 names -> tensors
    moe: tuple[MoELayer, ...]               # one per layer
    device: torch.device


def load_model(cfg: ModelConfig, weights: Mapping, tiers, device="cpu") -> Model:
    """Check (MODEL-1.3, in the order of MODEL-1.2) and load the tensors a forward under ``tiers`` reads."""
    tier_ids = resolve_tier_set(cfg, tiers)
    if not isinstance(weights, Mapping):
        raise RouterWeightsError(f"weights must be a mapping name -> array, got {type(weights).__name__}",
                                 clause="MODEL-1.3")
    device = torch.device(device)
    dense = {n: weight_tensor(weights, n, s, device, torch.float32) for n, s in dense_shapes(cfg).items()}
    moe = tuple(load_moe_layer(cfg, weights, l, tier_ids, device) for l in range(cfg.n_layers))
    return Model(cfg, tier_ids, dense, moe, device)


def check_tokens(cfg: ModelConfig, tokens) -> tuple[torch.Tensor, bool]:
    """Token ids as int64 (B, T) and whether the input was one sequence (T,) (MODEL-1.1)."""
    if isinstance(tokens, torch.Tensor):
        if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
            raise TokenError(f"token ids must be integers, got dtype {tokens.dtype}", clause="MODEL-1.1")
        arr = tokens.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(tokens)
        except ValueError as e:
            raise TokenError(f"token ids must form a (T,) or (B, T) array: {e}", clause="MODEL-1.1") from None
        if arr.size == 0 and arr.dtype == np.float64 and not isinstance(tokens, np.ndarray):
            arr = arr.astype(np.int64)                       # [] and [[]] parse as float64
    if arr.ndim not in (1, 2):
        raise TokenError(f"token ids must have shape (T,) or (B, T), got shape {arr.shape}", clause="MODEL-1.1")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TokenError(f"token ids must be integers, got dtype {arr.dtype}", clause="MODEL-1.1")
    if arr.shape[-1] > cfg.max_seq_len:
        raise TokenError(f"sequence length {arr.shape[-1]} exceeds max_seq_len={cfg.max_seq_len}", clause="MODEL-1.1")
    bad = (arr < 0) | (arr >= cfg.vocab_size)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise TokenError(f"token id {int(arr[where])} at position {where if arr.ndim == 2 else where[0]} is outside "
                         f"[0, vocab_size={cfg.vocab_size})", clause="MODEL-1.1")
    single = arr.ndim == 1
    t = torch.from_numpy(arr.astype(np.int64))
    return (t[None, :] if single else t), single


@contextlib.contextmanager
def ieee_float32():
    """binary32 matrix products without TF32 (MODEL-4.3) for the duration of a call
    (``torch.set_float32_matmul_precision("highest")``, restored afterwards)."""
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x**2) + eps) * w over the last axis (MODEL-2.2)."""
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def rope_tables(n: int, d_head: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (n, d_head/2) of p * theta**(-2m/d_head), angles in binary64 rounded once (MODEL-2.4)."""
    m = torch.arange(d_head // 2, dtype=torch.float64, device=device)
    ang = torch.arange(n, dtype=torch.float64, device=device)[:, None] * (theta ** (-2.0 * m / d_head))[None, :]
    return torch.cos(ang).to(torch.float32), torch.sin(ang).to(torch.float32)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half pairs (m, m + d_head/2) of x (..., T, d_head) (MODEL-2.4)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def attention(m: Model, layer: int, a: torch.Tensor) -> torch.Tensor:
    """Causal multi-head attention with rotary positions on a (B, T, d) (MODEL-2.3)."""
    cfg, w = m.cfg, m.dense
    B, T, d = a.shape
    H = cfg.n_heads
    dh = d // H
    p = f"layers.{layer}.attn"

    def heads(z):                                                            # (B, T, d) -> (B, H, T, dh)
        return z.view(B, T, H, dh).transpose(1, 2)

    cos, sin = rope_tables(T, dh, cfg.rope_theta, a.device)
    q = apply_rope(heads(a @ w[f"{p}.wq"].T), cos, sin)
    k = apply_rope(heads(a @ w[f"{p}.wk"].T), cos, sin)
    v = heads(a @ w[f"{p}.wv"].T)
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))                    # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()
    s = s.masked_fill(~causal, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v                                         # (B, H, T, dh)
    return o.transpose(1, 2).reshape(B, T, d) @ w[f"{p}.wo"].T


def run(m: Model, tok: torch.Tensor, seed: int, backend: str = "auto",
        aux_alpha: float = DEFAULT_ALPHA) -> ModelOutput:
    """The forward pass of checked token ids tok (B, T) on a loaded model; ``aux_alpha`` weighs the
    auxiliary loss of its routes (AUX-1.4).

    Every dense operation runs sequence by sequence, so its shapes (and with them the kernels a
    library picks and their summation orders) do not depend on the batch: a sequence's outputs are
    the same bits alone or in any batch (MODEL-2.6). The MoE block runs on all B * T tokens at once;
    it is batch-invariant by construction (exact routing and combine, fixed-tile experts).
    """
    cfg, w = m.cfg, m.dense
    B, T = tok.shape
    d = cfg.d_model
    tok = tok.to(m.device)
    with ieee_float32():
        hs = [w["embed"][tok[b]] for b in range(B)]                         # (T, d) each, exact row copies
        routes, xs, outs = [], [], []
        for layer in range(cfg.n_layers):
            hs = [h + attention(m, layer, rms_norm(h, w[f"layers.{layer}.attn_norm"], cfg.norm_eps)[None])[0]
                  for h in hs]
            x = torch.cat([rms_norm(h, w[f"layers.{layer}.ffn_norm"], cfg.norm_eps) for h in hs]) if B else \
                torch.empty((0, d), device=m.device)                                                  # (N, d)
            out, r = moe_forward(m.moe[layer], x.contiguous(), seed, backend)
            hs = [h + o for h, o in zip(hs, out.split(T))] if T else hs
            routes.append(r)
            xs.append(x)
            outs.append(out)
        logits = torch.stack([rms_norm(h, w["final_norm"], cfg.norm_eps) @ w["lm_head"].T for h in hs]) \
            if B else torch.empty((0, T, cfg.vocab_size), device=m.device)                             # (B, T, V)
    return ModelOutput(logits, tuple(routes), tuple(xs), tuple(outs), aux_loss(cfg, routes, alpha=aux_alpha))


def forward(cfg: ModelConfig, weights: Mapping | Model, tokens, tiers, *, seed=None, device="cpu",
            backend: str = "auto", aux_alpha: float = DEFAULT_ALPHA) -> ModelOutput:
    """Logits and per-layer routing of ``tokens`` (T,) or (B, T) under TierSet ``tiers`` (MODEL-2.1).

    ``weights``: the flat dict name -> binary32 array of INIT-2 (only the dense tensors and the
    TierSet's tier tensors are read), or a ``Model`` from ``load_model``. ``aux_alpha`` is the weight
    of the auxiliary loss ``ModelOutput.aux_loss`` (AUX-1.4). Checks run before any arithmetic in
    the order of MODEL-1.2: seed, TierSet, tokens, weights.
    """
    seed = parse_seed(cfg.router.seed if seed is None else seed)                 # HSER-4.1
    tier_ids = resolve_tier_set(cfg, tiers)                                      # TIER-2.2 .. 2.4
    tok, single = check_tokens(cfg, tokens)                                      # MODEL-1.1
    if isinstance(weights, Model):
        if weights.tier_ids != tier_ids:
            raise ValueError(f"the model was loaded for TierSet {weights.tier_ids}, not {tier_ids}")
        m = weights
    else:
        m = load_model(cfg, weights, tier_ids, device)                           # MODEL-1.3
    check_alpha(aux_alpha)                                                       # AUX-1.4, before any arithmetic
    out = run(m, tok, seed, backend, aux_alpha)
    if single:
        out = ModelOutput(out.logits[0], out.routes, out.router_inputs, out.moe_outputs, out.aux_loss)
    return out
