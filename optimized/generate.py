"""Greedy generation on torch (MODEL-5): by default the prompt in one pass and then one cached step
per new token (``decode.Decoder``, MODEL-5.4); ``cache=False`` runs the full forward for every token."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.errors import NonFiniteError, TokenError
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from .model import Model, check_tokens, forward, load_model


def greedy_token(logits: torch.Tensor) -> int:
    """The lowest id among the largest logits (MODEL-5.2); -0.0 == +0.0; a NaN is rejected (E_NONFINITE).

    Found with ``max`` and ``==`` only (exact on every device), not with argmax's tie order.
    """
    nan = torch.nonzero(torch.isnan(logits))
    if nan.numel():
        raise NonFiniteError(f"logit of token id {int(nan[0, 0])} is NaN; greedy choice is undefined",
                             clause="MODEL-5.2")
    return int(torch.nonzero(logits == logits.max())[0, 0])


def check_request(cfg: ModelConfig, prompt_tokens, max_new_tokens) -> torch.Tensor:
    """MODEL-5.3: one non-empty sequence, a non-negative count, and room for it in max_seq_len; the prompt (1, T)."""
    prompt, single = check_tokens(cfg, prompt_tokens)
    if not single:
        raise TokenError(f"the prompt must be one sequence (T,), got shape {tuple(prompt.shape)}", clause="MODEL-5.3")
    if prompt.shape[1] == 0:
        raise TokenError("the prompt is empty; greedy generation needs at least one token", clause="MODEL-5.3")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise TokenError(f"max_new_tokens={max_new_tokens!r} must be a non-negative integer", clause="MODEL-5.3")
    total = prompt.shape[1] + max_new_tokens
    if total > cfg.max_seq_len:
        raise TokenError(f"prompt of {prompt.shape[1]} tokens + {max_new_tokens} new tokens = {total} exceeds "
                         f"max_seq_len={cfg.max_seq_len}", clause="MODEL-5.3")
    return prompt


def generate(cfg: ModelConfig, weights: Mapping | Model, prompt_tokens, max_new_tokens: int, tiers, seed=None,
             device="cpu", backend: str = "auto", cache: bool = True, graphs: bool | None = None) -> list[int]:
    """The ``max_new_tokens`` tokens greedy decoding appends to ``prompt_tokens`` (MODEL-5.1, MODEL-5.3).

    ``cache``: keep keys and values (``decode.Decoder``; the logits stay within MODEL-4.3 of the
    uncached forward's, MODEL-5.4); ``graphs``: replay the MoE blocks from CUDA graphs (default on CUDA)."""
    seed = parse_seed(cfg.router.seed if seed is None else seed)
    tier_ids = resolve_tier_set(cfg, tiers)
    prompt = check_request(cfg, prompt_tokens, max_new_tokens)
    total = prompt.shape[1] + max_new_tokens
    m = weights if isinstance(weights, Model) else load_model(cfg, weights, tier_ids, device)
    if cache:
        from .decode import Decoder
        return Decoder(m, seed, total, graphs=graphs, backend=backend).generate(prompt[0], max_new_tokens)
    seq = prompt[0].tolist()
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = forward(cfg, m, torch.tensor(seq), tier_ids, seed=seed, backend=backend).logits   # (T, V)
        nxt = greedy_token(logits[-1])
        seq.append(nxt)
        new.append(nxt)
    return new
