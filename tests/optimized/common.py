"""Shared helpers of the optimized-implementation tests: devices, weights, bit comparison."""
from __future__ import annotations

import numpy as np
import torch

from lite_llm.reference.router_weights import init_router_weights, router_tensor_names
from tests.helpers import bits

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def flat_router_weights(cfg, seed: int = 3, layer: int = 0) -> dict[str, np.ndarray]:
    """The checkpoint-style dict name -> array of one layer's router weights (INIT-2.1)."""
    w = init_router_weights(cfg, seed, layer)
    return router_dict(cfg, w, layer)


def router_dict(cfg, w, layer: int = 0) -> dict[str, np.ndarray]:
    out = {}
    for t in range(cfg.n_tiers):
        n = router_tensor_names(cfg, layer, t)
        out[n["tier"]], out[n["group"]], out[n["expert"]] = w.tier[t], w.group[t], w.expert[t]
    return out


def as_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:
            a = a.to(torch.float32)
        a = a.numpy()
    return np.asarray(a)


def assert_bits(got, want, where: str = "") -> None:
    """Bit-exact equality; on failure report how many elements differ, the worst |difference| and the first."""
    got, want = as_numpy(got), as_numpy(want)
    assert got.shape == want.shape and got.dtype == want.dtype, \
        f"{where}: {got.shape}/{got.dtype} vs {want.shape}/{want.dtype}"
    diff = np.argwhere(bits(got) != bits(want))
    if diff.size:
        with np.errstate(invalid="ignore", over="ignore"):
            worst = np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64)))
        i = tuple(diff[0])
        raise AssertionError(f"{where}: {len(diff)} of {got.size} elements differ (worst |diff| {worst!r}); "
                             f"first at {i}: {got[i]!r} vs {want[i]!r}")
    print(f"{where}: {got.size} elements, bit-identical (worst difference 0)")


def assert_same_route(got, ref) -> None:
    """Every field of the routing record (HSER-9.3), bit for bit."""
    from lite_llm.optimized.router import RECORD_FIELDS

    g = got.to_numpy()
    for f in RECORD_FIELDS:
        assert_bits(g[f], getattr(ref, f), f)
    assert tuple(g["tier_set"].tolist()) == tuple(ref.tier_set)
