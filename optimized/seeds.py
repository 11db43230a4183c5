"""Level seeds and tie keys (HSER-4.1 .. HSER-4.5), with 64-bit words held in int64 tensors.

torch has no unsigned 64-bit multiply on every version, so a word lives in an int64 tensor with the
same bits: multiplication wraps modulo 2**64 in two's complement exactly as on unsigned words, XOR
is bitwise, and a logical right shift is an arithmetic shift with the copied sign bits masked off.
To compare words as unsigned integers, flip their top bit and compare as signed (``ordered``).
"""
from __future__ import annotations

import torch

from lite_llm.spec.errors import SeedError

MASK64 = (1 << 64) - 1
MIX_M1 = 0xBF58476D1CE4E5B9
MIX_M2 = 0x94D049BB133111EB
TOP_BIT = 1 << 63


def as_signed(word: int) -> int:
    """The int64 value with the same bits as the 64-bit word."""
    word &= MASK64
    return word - (1 << 64) if word & TOP_BIT else word


def mix64_int(x: int) -> int:
    """The SplitMix64 finalizer on one word, a Python int in [0, 2**64) (HSER-4.3)."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * MIX_M1) & MASK64
    x = ((x ^ (x >> 27)) * MIX_M2) & MASK64
    return x ^ (x >> 31)


def shift_right_logical(x: torch.Tensor, k: int) -> torch.Tensor:
    """x >> k on the words held in int64 x: the arithmetic shift with the sign copies masked off."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """mix64 elementwise on words held in an int64 tensor (HSER-4.3); wrapping multiplications."""
    x = (x ^ shift_right_logical(x, 30)) * as_signed(MIX_M1)
    x = (x ^ shift_right_logical(x, 27)) * as_signed(MIX_M2)
    return x ^ shift_right_logical(x, 31)


def level_word(level: int, tier: int = 0, group: int = 0) -> int:
    """word(l, t, g) = (l << 62) | (t << 32) | g (HSER-4.2): disjoint bit fields."""
    if level not in (1, 2, 3) or not 0 <= tier < 1 << 16 or not 0 <= group < 1 << 32:
        raise SeedError(f"level word needs level in 1..3, tier < 2**16 and group < 2**32; got level {level}, "
                        f"tier {tier}, group {group}", clause="HSER-4.2")
    return (level << 62) | (tier << 32) | group


def level_seed(seed: int, level: int, tier: int = 0, group: int = 0) -> int:
    """s_l = mix64(s ^ word(l, t, g)) (HSER-4.4), a Python int word."""
    return mix64_int(seed ^ level_word(level, tier, group))


def group_level_seeds(seed: int, tier: int, groups: int, device=None, first: int = 0) -> torch.Tensor:
    """s_{3,t,g} for g = first .. groups-1 as int64 words (HSER-4.4), computed on ``device``."""
    g = torch.arange(first, groups, dtype=torch.int64, device=device)
    return mix64(g ^ as_signed(seed ^ level_word(3, tier, 0)))      # the group field is the low 32 bits


def tie_keys(level_seeds: torch.Tensor, n: int) -> torch.Tensor:
    """key[..., j] = mix64(s_l ^ j) for j = 0 .. n-1 (HSER-4.5): int64 words (..., n) for seeds (...)."""
    j = torch.arange(n, dtype=torch.int64, device=level_seeds.device)
    return mix64(level_seeds[..., None] ^ j)


def ordered(words: torch.Tensor) -> torch.Tensor:
    """int64 values whose signed order is the unsigned order of the words (the top bit flipped)."""
    return words ^ as_signed(TOP_BIT)
