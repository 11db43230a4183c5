"""Causal multi-head self-attention with rotary positions, one sequence (MODEL-2.3 .. MODEL-2.5)."""
from __future__ import annotations

import numpy as np

from lite_llm.spec.config import ModelConfig

from .rope import apply_rope, rope_tables


def causal_softmax_row(s: np.ndarray) -> np.ndarray:
    """Softmax of attention scores s (H, n) over the last axis: exp(s - max) / sum (MODEL-2.3)."""
    e = np.exp(s - np.max(s, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def self_attention(cfg: ModelConfig, w: dict[str, np.ndarray], layer: int, a: np.ndarray) -> np.ndarray:
    """Attention block of ``layer`` on the normed hidden states a (T, d) of ONE sequence (MODEL-2.3).

    q = a Wq^T, k = a Wk^T, v = a Wv^T (weights stored (out, in)); head h is features
    [h*d_head, (h+1)*d_head); q and k are rotated (MODEL-2.4); position i attends to positions
    0 .. i only, with scores q_i . k_j / sqrt(d_head); out = concat(heads) Wo^T. Positions count from 0
    at the start of the sequence. The loop over query positions reads no later position at all, so
    causality (MODEL-2.5) holds by construction, bit for bit.
    """
    T, d = a.shape
    H = cfg.n_heads
    dh = d // H
    p = f"layers.{layer}.attn"

    def heads(m: np.ndarray) -> np.ndarray:                              # (T, d) -> (H, T, dh)
        return m.reshape(T, H, dh).transpose(1, 0, 2)

    cos, sin = rope_tables(T, dh, cfg.rope_theta, a.dtype)                # (T, dh/2) each
    q = apply_rope(heads(a @ w[f"{p}.wq"].T), cos, sin)                   # (H, T, dh)
    k = apply_rope(heads(a @ w[f"{p}.wk"].T), cos, sin)                   # (H, T, dh)
    v = heads(a @ w[f"{p}.wv"].T)                                         # (H, T, dh)
    scale = a.dtype.type(1.0 / np.sqrt(dh))

    o = np.empty((H, T, dh), a.dtype)
    for i in range(T):
        s = np.matmul(k[:, : i + 1], q[:, i, :, None])[..., 0] * scale     # (H, i+1) scores of keys 0..i
        pr = causal_softmax_row(s)                                        # (H, i+1)
        o[:, i] = np.matmul(pr[:, None, :], v[:, : i + 1])[:, 0]          # (H, dh)
    return o.transpose(1, 0, 2).reshape(T, d) @ w[f"{p}.wo"].T           # (T, d)
