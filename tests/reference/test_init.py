"""Deterministic initialisation (INIT-1.1 .. INIT-1.4, INIT-1.2's E_SEED), checked against values derived
independently here: published FNV-1a test vectors, and the stream re-derived in plain Python integers
and Fraction arithmetic from the clause text, not from the reference's code.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from lite_llm.reference.init import fan_in_bound, fnv1a64, uniform_tensor
from lite_llm.spec.config import parse_seed
from lite_llm.spec.errors import SeedError

M64 = (1 << 64) - 1


def test_fnv1a64_published_vectors():
    """INIT-1.1: the FNV-1a 64-bit test vectors published with the algorithm."""
    assert fnv1a64("") == 0xCBF29CE484222325
    assert fnv1a64("a") == 0xAF63DC4C8601EC8C
    assert fnv1a64("foobar") == 0x85944171F73967E8


def test_fnv1a64_hashes_utf8_bytes():
    """INIT-1.1: the bytes are the name's UTF-8 encoding (a non-ASCII name differs from its Latin-1 bytes)."""
    h = 0xCBF29CE484222325
    for b in "é".encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & M64
    assert fnv1a64("é") == h


def splitmix_finalizer(x: int) -> int:
    x &= M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def clause_value(seed: int, name: str, i: int, bound: np.float32) -> np.float32:
    """INIT-1.2 and INIT-1.3 written out: base, the i-th SplitMix64 word, the top 24 bits, f_i * b."""
    base = splitmix_finalizer(seed ^ fnv1a64(name))
    x = splitmix_finalizer((base + (i + 1) * 0x9E3779B97F4A7C15) & M64)
    u = x >> 40
    f = Fraction(2 * u + 1 - (1 << 24), 1 << 24)
    assert -1 < f < 1 and np.float32(float(f)) == float(f)          # exact in binary32 (INIT-1.3)
    return np.float32(float(f)) * bound                              # one binary32 multiplication


@pytest.mark.parametrize("seed", [0, 1, 2**63 + 5, 2**64 - 1])
def test_uniform_tensor_follows_the_stream(seed):
    """INIT-1.2, INIT-1.3: every element, compared bit for bit with the clause written out here."""
    name, shape, bound = "layers.0.tiers.tier_1b.router_group", (3, 5), fan_in_bound(64)
    got = uniform_tensor(seed, name, shape, bound)
    want = np.array([clause_value(seed, name, i, bound) for i in range(15)], np.float32).reshape(shape)
    assert got.dtype == np.float32 and got.shape == shape
    diff = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert diff.size == 0, f"first differing element {diff[:5]}"


def test_uniform_values_are_symmetric_and_inside_the_bound():
    """INIT-1.3: f_i in (-1, 1), so |value| < b, and both signs occur."""
    v = uniform_tensor(7, "embed", (4096,), np.float32(1.0))
    assert np.all(np.abs(v) < 1) and (v > 0).any() and (v < 0).any()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4096, 11008, 2**20 + 1])
def test_fan_in_bound_is_binary32_one_over_sqrt(n):
    """INIT-1.4: binary32(n), a binary32 sqrt, a binary32 division; each correctly rounded.

    The expected value is the correctly rounded 1/sqrt(binary32(n)) computed in exact rationals:
    sqrt is rounded first (the nearest binary32 to the exact root), then the division.
    """
    x = np.float32(n)
    r = np.sqrt(np.float64(x))                       # binary64 sqrt of a binary32, then rounded: one rounding
    s = np.float32(r)                                # double rounding is innocuous for sqrt (53 >= 2*24+2)
    want = np.float32(np.float64(1.0) / np.float64(s))   # likewise for a quotient of binary32 values
    got = fan_in_bound(n)
    assert got.dtype == np.float32 and got.view(np.uint32) == want.view(np.uint32)


@pytest.mark.parametrize("bad", [-1, 2**64, "0xZZ"])
def test_weights_seed_out_of_range_is_e_seed(bad):
    """INIT-1.2: a weights seed outside [0, 2**64) is rejected with E_SEED."""
    with pytest.raises(SeedError):
        parse_seed(bad)
