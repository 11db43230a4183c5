"""Small builders shared by the tests."""
from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from lite_llm.spec.config import config_from_dict, seed_to_json
from lite_llm.spec.operations import RECORD_FIELDS  # the one list of HSER-9.3


def make_config(tiers=((4, 4), (8, 4), (8, 8)), k=(1, 2, 2), d=32, limbs=(2, 2), seed=0, **extra):
    """A config with tiers given as (groups, experts_per_group) pairs."""
    return config_from_dict({
        "spec_version": "0.1", "d_model": d, "n_heads": 2, **extra,
        "tiers": [{"name": f"tier_{i}", "groups": g, "experts_per_group": e, "d_ff": 8} for i, (g, e) in enumerate(tiers)],
        "router": {"k_tier": k[0], "k_group": k[1], "k_expert": k[2], "hidden_limbs": limbs[0],
                   "weight_limbs": limbs[1], "seed": seed_to_json(seed)},
    })


def gaussian(T, d, seed=0):
    return np.random.default_rng(seed).standard_normal((T, d)).astype(np.float32)


def bits(a: np.ndarray) -> np.ndarray:
    """The bit patterns of an array, for bit-exact comparison."""
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])




def assert_same_bits(a, b, where=""):
    """Bit-exact equality of two arrays, printing the first difference."""
    assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.shape}/{a.dtype} vs {b.shape}/{b.dtype}"
    ba, bb = bits(a), bits(b)
    diff = np.argwhere(ba != bb)
    assert diff.size == 0, (f"{where}: {len(diff)} elements differ; first at {tuple(diff[0])}: "
                            f"{a[tuple(diff[0])]!r} (0x{int(ba[tuple(diff[0])]):x}) vs {b[tuple(diff[0])]!r} "
                            f"(0x{int(bb[tuple(diff[0])]):x})")


def assert_same_record(r1, r2):
    for f in RECORD_FIELDS:
        assert_same_bits(getattr(r1, f), getattr(r2, f), f)
    assert r1.tier_set == r2.tier_set


class Crash(Exception):
    """A simulated failure in the middle of a write."""


@contextmanager
def crash_at_call(monkeypatch, n: int):
    """Make the n-th call of os.replace or os.fsync (counted together) raise Crash; restore both after."""
    real_replace, real_fsync = os.replace, os.fsync
    calls = {"k": 0}

    def counted(real):
        def f(*a):
            calls["k"] += 1
            if calls["k"] == n:
                raise Crash(f"crash at call {n}")
            return real(*a)
        return f

    monkeypatch.setattr(os, "replace", counted(real_replace))
    monkeypatch.setattr(os, "fsync", counted(real_fsync))
    try:
        yield
    finally:
        monkeypatch.setattr(os, "replace", real_replace)
        monkeypatch.setattr(os, "fsync", real_fsync)


def small_checkpoint_config(**extra):
    """Three small tiers, two layers: the model the checkpoint and expansion tests save."""
    return make_config(tiers=((2, 2), (3, 2), (2, 3)), d=8, n_layers=2, vocab_size=16, **extra)


def save_small_checkpoint(path, seed):
    """Save a freshly initialised small_checkpoint_config model at ``path``: (path, cfg, weights)."""
    from lite_llm.reference.checkpoint import save_checkpoint
    from lite_llm.reference.weights import init_model_weights

    cfg = small_checkpoint_config()
    w = init_model_weights(cfg, seed)
    save_checkpoint(path, cfg, w)
    return path, cfg, w
