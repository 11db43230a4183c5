"""Optimized initialisation (INIT-1.1 .. INIT-2.3) against the reference, bit for bit, on every device."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lite_llm.optimized import init as opt
from lite_llm.reference import init as ref
from lite_llm.reference.weights import init_model_weights as ref_weights
from lite_llm.spec.configs import resolve_config
from lite_llm.spec.errors import SeedError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def worst_bits(a: np.ndarray, b: np.ndarray) -> int:
    """How many elements differ in their bits (0 = bit-identical)."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    return int(np.count_nonzero(a.view(np.uint32) != b.view(np.uint32)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [0, 12345, 2**63 + 1, 2**64 - 1])
def test_uniform_tensor_matches_reference(device, seed):
    """INIT-1.2, INIT-1.3: the whole stream, every bit."""
    name, shape = "layers.3.tiers.tier_10b.w_up", (7, 33)
    for bound in (1.0, float(ref.fan_in_bound(64)), float(ref.fan_in_bound(11008))):
        got = opt.uniform_tensor(seed, name, shape, bound, device).cpu().numpy()
        want = ref.uniform_tensor(seed, name, shape, np.float32(bound))
        n = worst_bits(got, want)
        print(f"{device} seed {seed} bound {bound}: {n} differing elements")
        assert n == 0


@pytest.mark.parametrize("device", DEVICES)
def test_uniform_range_is_a_slice_of_the_stream(device):
    """INIT-1.2: element i depends on (seed, name, i) alone, so any range is the tensor's slice."""
    full = opt.uniform_tensor(9, "embed", (1000,), 1.0, device)
    for start, count in ((0, 1), (1, 5), (417, 300), (999, 1)):
        part = opt.uniform_range(9, "embed", start, count, 1.0, device)
        assert torch.equal(part.view(torch.int32), full[start:start + count].view(torch.int32))


def test_fnv1a64_and_fan_in_bound_match_reference():
    """INIT-1.1, INIT-1.4."""
    for name in ("", "a", "foobar", "layers.0.tiers.tier_1b.router_group", "é"):
        assert opt.fnv1a64(name) == ref.fnv1a64(name)
    for n in (1, 3, 64, 1000, 11008, 2**20 + 1):
        assert np.float32(opt.fan_in_bound(n)).view(np.uint32) == ref.fan_in_bound(n).view(np.uint32)


@pytest.mark.parametrize("device", DEVICES)
def test_init_model_weights_match_reference(device):
    """INIT-2.1 .. INIT-2.3: every tensor of the tiny model, names, shapes and bits."""
    cfg = resolve_config("tiny")
    got = opt.init_model_weights(cfg, 5, device)
    want = ref_weights(cfg, 5)
    assert list(got) == list(want)
    bad = {k: worst_bits(got[k].cpu().numpy(), want[k]) for k in want}
    print("worst tensor:", max(bad.items(), key=lambda kv: kv[1]))
    assert not any(bad.values())


def test_seed_out_of_range_is_rejected():
    """INIT-1.2: E_SEED."""
    with pytest.raises(SeedError):
        opt.uniform_tensor(2**64, "embed", (2,), 1.0)
