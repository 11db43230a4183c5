"""Deterministic parameter initialisation from (seed, tensor name) (INIT-1.1 .. INIT-1.4).

Every element is a function of the model seed, the tensor's name and the element's index, so a
tensor's values do not depend on which other tensors exist: adding a tier leaves every existing
parameter as it was, and any language can reproduce the values from the spec text.
"""
from __future__ import annotations

import numpy as np

from .seeds import MASK64, mix64, mix64_array

GOLDEN = 0x9E3779B97F4A7C15
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a64(name: str) -> int:
    """FNV-1a, 64 bit, of the UTF-8 bytes of name (INIT-1.1)."""
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def uniform_tensor(seed: int, name: str, shape: tuple[int, ...], bound: np.float32) -> np.ndarray:
    """Values in (-bound, bound), binary32, for tensor ``name`` (INIT-1.2, INIT-1.3).

    base = mix64(seed XOR fnv1a64(name)); element i (row-major) takes
    x_i = mix64(base + (i + 1) * GOLDEN mod 2**64), u_i = x_i >> 40 (24 bits),
    f_i = (2 u_i + 1 - 2**24) * 2**-24 (exact, in (-1, 1)), value_i = f_i * bound (one rounding).
    """
    from lite_llm.spec.config import parse_seed

    base = mix64(parse_seed(seed) ^ fnv1a64(name))
    n = int(np.prod(shape, dtype=np.int64))
    idx = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = mix64_array(np.uint64(base) + idx * np.uint64(GOLDEN))
    u = (x >> np.uint64(40)).astype(np.int64)
    f = ((2 * u + 1 - (1 << 24)).astype(np.float32) * np.float32(2.0 ** -24))
    return (f * np.float32(bound)).reshape(shape)


def fan_in_bound(fan_in: int) -> np.float32:
    """1 / sqrt(binary32(fan_in)), each step a correctly rounded binary32 operation (INIT-1.4)."""
    return np.float32(1.0) / np.sqrt(np.float32(fan_in))
