"""The total order on candidates and top-k (HSER-5.1 .. HSER-5.4)."""
from __future__ import annotations

import numpy as np


def rank(z: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Candidate indices of each row of z (B, n) from first to last (HSER-5.1).

    Candidate i comes before j when z[i] > z[j], or z[i] == z[j] and keys[i] < keys[j]. The keys
    are distinct (HSER-4.5), so this is a strict total order and the ranking is unique; -0.0 and
    +0.0 compare equal and are separated by the key.
    """
    by_key = np.argsort(keys, kind="stable")                          # (n,) candidates in key order
    by_score = np.argsort(-z[:, by_key], axis=1, kind="stable")       # (B, n) stable: equal scores keep key order
    return by_key[by_score]


def top_k(z: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """The first min(k, n) candidates of rank(z, keys), best first (HSER-5.2, HSER-5.3)."""
    return rank(z, keys)[:, : min(k, z.shape[1])]
