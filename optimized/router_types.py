"""The router's result types and limits, shared by the torch path (``router``) and the Triton kernels
(``lite_llm.optimized.triton``).

They live in a module of their own so that imports run one way: ``router`` -> ``triton`` (lazily,
only where Triton is installed) -> ``router_types``; the Triton package never imports ``router``.
Not inside the Triton package: ``router`` returns these types on machines without Triton too.
``router`` re-exports every name here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lite_llm.spec.operations import RECORD_FIELDS  # the record's fields (HSER-9.3), one list

MAX_CANDIDATES = 256        # widest level (candidates of one matrix) the Triton kernels take


@dataclass(frozen=True)
class RouteResult:
    """The routing record of HSER-9.3 for T tokens, as torch tensors; K = k_tier * k_group * k_expert.

    Padding: -1 in index arrays, +0.0 in probability and gate arrays.
    """

    tier: torch.Tensor            # (T, K) int32: tier id of each active slot, in output order (HSER-9.2)
    group: torch.Tensor           # (T, K) int32: group index within the tier
    expert: torch.Tensor          # (T, K) int32: expert index within the group
    gate: torch.Tensor            # (T, K) float32: (r1 * r2) * r3 (HSER-8.2)
    count: torch.Tensor           # (T,) int32: number of active slots (HSER-9.1)
    tier_set: tuple[int, ...]     # level-1 candidates: the TierSet's tier ids, ascending
    tier_probs: torch.Tensor      # (T, |TierSet|) float32: level-1 softmax, columns in tier_set order
    chosen_tiers: torch.Tensor    # (T, k_tier) int32: level-1 top-k, tier ids, best first
    group_probs: torch.Tensor     # (T, k_tier, G_max) float32: level-2 softmax of each chosen tier
    chosen_groups: torch.Tensor   # (T, k_tier, k_group) int32: level-2 top-k, best first
    expert_probs: torch.Tensor    # (T, k_tier, k_group, E_max) float32: level-3 softmax of each chosen group

    def to_numpy(self) -> dict[str, np.ndarray]:
        """The record as numpy arrays named as in HSER-9.3, plus ``tier_set`` (int32)."""
        out = {f: getattr(self, f).cpu().numpy() for f in RECORD_FIELDS}
        out["tier_set"] = np.asarray(self.tier_set, np.int32)
        return out

    def active(self, token: int) -> list[tuple[int, int, int, float]]:
        """The active (tier, group, expert, gate) of one token, in output order."""
        n = int(self.count[token])
        return [(int(self.tier[token, i]), int(self.group[token, i]), int(self.expert[token, i]),
                 float(self.gate[token, i])) for i in range(n)]


@dataclass(frozen=True)
class LevelOutputs:
    """What the three levels choose, before gates (both backends produce this)."""

    tier_probs: torch.Tensor      # (T, n1) float32
    tier_pos: torch.Tensor        # (T, k1) int64: column in tier_probs of each chosen tier, -1 padding
    chosen_tiers: torch.Tensor    # (T, k1) int32 tier ids, -1 padding
    group_probs: torch.Tensor     # (T, k1, G_max) float32
    chosen_groups: torch.Tensor   # (T, k1, k2) int32, -1 padding
    expert_probs: torch.Tensor    # (T, k1, k2, E_max) float32
    chosen_experts: torch.Tensor  # (T, k1, k2, k3) int32, -1 padding
