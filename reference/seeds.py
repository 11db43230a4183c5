"""Level seeds and tie keys (HSER-4.1 .. HSER-4.5)."""
from __future__ import annotations

import numpy as np

from lite_llm.spec.errors import SeedError

MASK64 = (1 << 64) - 1
MIX_M1 = 0xBF58476D1CE4E5B9
MIX_M2 = 0x94D049BB133111EB


def mix64(x: int) -> int:
    """The SplitMix64 finalizer, a bijection of 64-bit words (HSER-4.3)."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * MIX_M1) & MASK64
    x = ((x ^ (x >> 27)) * MIX_M2) & MASK64
    return x ^ (x >> 31)


def mix64_array(x: np.ndarray) -> np.ndarray:
    """mix64 elementwise on a uint64 array (wrapping multiplication)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(MIX_M1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(MIX_M2)
    return x ^ (x >> np.uint64(31))


def level_word(level: int, tier: int = 0, group: int = 0) -> int:
    """Pack (level, tier, group) into disjoint bit fields of one word (HSER-4.2).

    bits 63..62: level (1, 2 or 3); 61..48: zero; 47..32: tier id; 31..0: group index.
    Level 1 uses tier = group = 0; level 2 uses group = 0. Any other level, a tier >= 2**16 or a
    group >= 2**32 (or a negative one) is rejected with SeedError, E_SEED (HSER-4.2).
    """
    if level not in (1, 2, 3) or not 0 <= tier < 1 << 16 or not 0 <= group < 1 << 32:
        raise SeedError(f"level word needs level in 1..3, tier < 2**16 and group < 2**32; got level {level}, "
                        f"tier {tier}, group {group}", clause="HSER-4.2")
    return (level << 62) | (tier << 32) | group


def level_seed(seed: int, level: int, tier: int = 0, group: int = 0) -> int:
    """s_level = mix64(s XOR word(level, tier, group)) (HSER-4.4): distinct words give distinct seeds."""
    return mix64(seed ^ level_word(level, tier, group))


def tie_keys(lseed: int, n: int) -> np.ndarray:
    """key[j] = mix64(s_level XOR j) for candidates j = 0 .. n-1, as uint64 (HSER-4.5)."""
    return mix64_array(np.uint64(lseed) ^ np.arange(n, dtype=np.uint64))
