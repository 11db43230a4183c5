"""Top-k under the spec's strict total order (HSER-5.1 .. HSER-5.4), without relying on the tie
order of torch.topk or torch.sort.

Candidate i ranks before j when z_i > z_j, or z_i == z_j and key_i < key_j (keys compared as
unsigned words). The keys of a level are distinct (HSER-4.5), so each step below picks exactly one
candidate: the largest logit, and among the candidates that hold it the smallest key. Only ``max``,
``min`` and ``==`` touch the logits, which are exact on every device; -0.0 == +0.0.
"""
from __future__ import annotations

import torch

INT64_MAX = (1 << 63) - 1


def top_k(z: torch.Tensor, keys: torch.Tensor, k: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Column indices (B, k) int64 of the first min(k, n_b) candidates of each row, best first; -1 after.

    z (B, n) binary64 logits; keys (B, n) or (n,) int64 tie keys in ``seeds.ordered`` form (signed
    order = unsigned order of the words); valid (B, n) or None marks each row's candidates
    (HSER-5.2, HSER-5.3: a row with fewer than k candidates chooses all of them).
    """
    B, n = z.shape
    if valid is None:
        valid = torch.ones_like(z, dtype=torch.bool)
    keys = keys.expand(B, n)
    out = torch.full((B, k), -1, dtype=torch.int64, device=z.device)
    open_ = valid.clone()                                                   # candidates not yet chosen
    neg_inf = torch.full_like(z, float("-inf"))
    big = torch.full_like(keys, INT64_MAX)
    for i in range(min(k, n)):
        live = open_.any(dim=1)                                             # (B,) rows with a candidate left
        zm = torch.where(open_, z, neg_inf)
        best = zm.amax(dim=1, keepdim=True)                                 # (B, 1) largest logit left
        tied = open_ & (zm == best)                                         # (B, n) the candidates holding it
        kmin = torch.where(tied, keys, big).amin(dim=1, keepdim=True)        # smallest key among them
        pick = (tied & (keys == kmin)).to(torch.int32).argmax(dim=1)        # the one column: keys are distinct
        out[:, i] = torch.where(live, pick, torch.full_like(pick, -1))
        open_ &= torch.arange(n, device=z.device)[None, :] != pick[:, None]
    return out
