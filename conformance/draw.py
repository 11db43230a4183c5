"""Deterministic inputs for the vector generator: the same bits on every machine and NumPy version.

NumPy's random streams may change between releases, which would make ``lite-llm vectors check``
fail for no reason. Every value here comes from the SplitMix64 stream of INIT-1.2 (integer
arithmetic) followed by IEEE basic operations only, so it is reproducible anywhere.
"""
from __future__ import annotations

import numpy as np

from lite_llm.reference.init import uniform_tensor

F32 = np.float32
FLT_MAX = np.finfo(np.float32).max                 # 3.4028235e38
FLT_TINY = np.finfo(np.float32).tiny               # smallest normal, 2**-126
FLT_SUB = np.float32(2.0 ** -149)                  # smallest subnormal
GEN_SEED = 0x4C49544531                            # "LITE1": the generator's stream seed


def uniform(label: str, shape, bound: float = 1.0) -> np.ndarray:
    """Values in (-bound, bound), binary32, from the INIT stream named ``label``."""
    return uniform_tensor(GEN_SEED, label, tuple(shape), F32(bound))


def gauss(label: str, shape, scale: float = 1.0) -> np.ndarray:
    """Roughly Gaussian binary32 values: the sum of four uniforms (Irwin-Hall), times ``scale``."""
    n = int(np.prod(shape))
    u = uniform(label, (4, n))
    return (((u[0] + u[1]) + (u[2] + u[3])) * F32(1.7320508 * scale)).reshape(shape).astype(F32)


def heavy(label: str, shape, outlier_channels: int = 2, outlier_scale: float = 20.0) -> np.ndarray:
    """Heavy-tailed binary32 hidden states: a ratio of uniforms, plus a few outlier channels."""
    n = int(np.prod(shape))
    u = uniform(label, (2, n))
    x = (u[0] / (np.abs(u[1]) + F32(0.05))).reshape(shape).astype(F32)
    if len(shape) == 2 and shape[1] > outlier_channels:
        x[:, :outlier_channels] *= F32(outlier_scale)
    return x


def integers(label: str, n: int, bits: int = 64) -> np.ndarray:
    """``n`` pseudo-random words of ``bits`` bits, as uint64 (from the same stream)."""
    from lite_llm.reference.init import fnv1a64
    from lite_llm.reference.seeds import mix64_array

    base = np.uint64(GEN_SEED ^ fnv1a64(label))
    with np.errstate(over="ignore"):
        x = mix64_array(base + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return x >> np.uint64(64 - bits) if bits < 64 else x
