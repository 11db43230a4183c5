"""Deterministic initialisation in torch (INIT-1.1 .. INIT-2.3), on any device, bit-exact with the spec.

Every element is a function of (weights seed, tensor name, element index) alone, so any slice of a
tensor can be produced without the rest: ``uniform_range`` makes elements ``[start, start + n)`` of
a tensor's row-major stream, which is how a *generated* tier materialises one expert's weights on
demand. Words live in int64 tensors with the bits of the uint64 words (``optimized.seeds``); the
only float operations are the exact conversion of ``f_i`` and one binary32 multiplication.
"""
from __future__ import annotations

import math

import torch

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.tensors import TIER_TENSOR, dense_shapes, tier_shapes

from .seeds import MASK64, as_signed, mix64, mix64_int, shift_right_logical

GOLDEN = 0x9E3779B97F4A7C15          # INIT-1.2: the SplitMix64 increment
FNV_OFFSET = 0xCBF29CE484222325      # INIT-1.1
FNV_PRIME = 0x100000001B3


def fnv1a64(name: str) -> int:
    """64-bit FNV-1a of the UTF-8 bytes of ``name`` (INIT-1.1), a Python int word."""
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def stream_base(seed, name: str) -> int:
    """B = mix64(s ^ fnv1a64(name)) (INIT-1.2); E_SEED for a seed outside [0, 2**64)."""
    return mix64_int(parse_seed(seed) ^ fnv1a64(name))


def uniform_range(seed, name: str, start: int, count: int, bound: float, device="cpu") -> torch.Tensor:
    """Elements ``start .. start + count - 1`` (row-major) of tensor ``name``'s uniform stream (INIT-1.2, INIT-1.3).

    x_i = mix64(B + (i + 1) * GOLDEN mod 2**64); u_i = x_i >> 40; f_i = (2 u_i + 1 - 2**24) * 2**-24
    (exact in binary32); value_i = f_i * bound, one binary32 multiplication. Returns (count,) float32.
    """
    base = stream_base(seed, name)
    i1 = torch.arange(start + 1, start + count + 1, dtype=torch.int64, device=device)   # (count,) i + 1
    x = mix64(i1 * as_signed(GOLDEN) + as_signed(base))          # wrapping int64 = the words mod 2**64
    u = shift_right_logical(x, 40)                                 # (count,) in [0, 2**24)
    f = (2 * u + 1 - (1 << 24)).to(torch.float32) * (2.0 ** -24)   # exact: |2u + 1 - 2**24| < 2**24
    return f * torch.tensor(bound, dtype=torch.float32, device=device)


def uniform_tensor(seed, name: str, shape: tuple[int, ...], bound: float, device="cpu") -> torch.Tensor:
    """The whole uniform tensor ``name`` of ``shape`` (INIT-1.2, INIT-1.3), float32 on ``device``."""
    n = math.prod(shape)
    return uniform_range(seed, name, 0, n, bound, device).reshape(shape)


def fan_in_bound(fan_in: int) -> float:
    """1 / sqrt(binary32(n)) in binary32 steps, each correctly rounded (INIT-1.4), as a Python float.

    Computed on the CPU in binary32 (IEEE sqrt and division are correctly rounded there), then
    used as an exact binary32 value on any device.
    """
    n = torch.tensor(float(fan_in), dtype=torch.float32)
    return float(torch.tensor(1.0, dtype=torch.float32) / torch.sqrt(n))


def init_bound(cfg: ModelConfig, name: str) -> float | None:
    """The uniform bound of a tensor (INIT-1.4, INIT-2.2, INIT-2.3); None for norm weights (all ones)."""
    if name.endswith("_norm"):
        return None
    if name == "embed":
        return 1.0
    m = TIER_TENSOR.match(name)
    if m and m.group(3) == "w_down":
        return fan_in_bound(cfg.tiers[cfg.tier_id(m.group(2))].d_ff)
    return fan_in_bound(cfg.d_model)


def init_tensor(cfg: ModelConfig, seed, name: str, shape: tuple[int, ...], device="cpu") -> torch.Tensor:
    """One named tensor of a freshly initialised model (INIT-2.1 .. INIT-2.3)."""
    bound = init_bound(cfg, name)
    if bound is None:
        return torch.ones(shape, dtype=torch.float32, device=device)
    return uniform_tensor(seed, name, shape, bound, device)


def init_model_weights(cfg: ModelConfig, seed, device="cpu") -> dict[str, torch.Tensor]:
    """Every tensor of the model from (config, weights seed), dense then tier by tier (INIT-2)."""
    names = {**dense_shapes(cfg)}
    for t in range(cfg.n_tiers):
        names.update(tier_shapes(cfg, t))
    return {n: init_tensor(cfg, seed, n, s, device) for n, s in names.items()}
