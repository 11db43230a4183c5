"""Greedy generation (MODEL-5): recompute the whole forward for every new token; no cache."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.errors import NonFiniteError, TokenError
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .model import check_model_weights, check_tokens, forward


def greedy_token(logits: np.ndarray) -> int:
    """The id of the largest logit; among equal largest logits the lowest id (MODEL-5.2).

    logits (V,). -0.0 and +0.0 are equal. A NaN is rejected (E_NONFINITE), naming its id.
    """
    nan = np.flatnonzero(np.isnan(logits))
    if nan.size:
        raise NonFiniteError(f"logit of token id {int(nan[0])} is NaN; greedy choice is undefined", clause="MODEL-5.2")
    return int(np.flatnonzero(logits == logits.max())[0])


def generate(cfg: ModelConfig, weights: Mapping, prompt_tokens, max_new_tokens: int, tiers, seed=None) -> list[int]:
    """The ``max_new_tokens`` tokens that greedy decoding appends to ``prompt_tokens`` (MODEL-5.1).

    Step i runs forward (binary32) on the prompt followed by the i tokens generated so far and appends
    greedy_token of the last position's logits. Every check runs before the first step (MODEL-5.3):
    the prompt is one non-empty sequence of valid ids, ``max_new_tokens`` a non-negative integer, and
    the whole result (prompt + new tokens) fits max_seq_len. Returns only the new tokens.
    """
    seed = parse_seed(cfg.router.seed if seed is None else seed)
    tier_ids = resolve_tier_set(cfg, tiers)
    prompt, single = check_tokens(cfg, prompt_tokens)
    if not single:
        raise TokenError(f"the prompt must be one sequence (T,), got shape {prompt.shape}", clause="MODEL-5.3")
    if prompt.shape[1] == 0:
        raise TokenError("the prompt is empty; greedy generation needs at least one token", clause="MODEL-5.3")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise TokenError(f"max_new_tokens={max_new_tokens!r} must be a non-negative integer", clause="MODEL-5.3")
    total = prompt.shape[1] + int(max_new_tokens)
    if total > cfg.max_seq_len:
        raise TokenError(f"prompt of {prompt.shape[1]} tokens + {max_new_tokens} new tokens = {total} exceeds "
                         f"max_seq_len={cfg.max_seq_len}", clause="MODEL-5.3")
    check_model_weights(cfg, weights, tier_ids)

    seq = [int(t) for t in prompt[0]]
    new: list[int] = []
    for _ in range(int(max_new_tokens)):
        logits = forward(cfg, weights, np.asarray(seq, np.int64), tier_ids, seed=seed).logits   # (T, V)
        nxt = greedy_token(logits[-1])
        seq.append(nxt)
        new.append(nxt)
    return new
