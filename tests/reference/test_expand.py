"""The tier expansion operator (spec chapter 9, EXP): what it adds, what it freezes, what an interruption
leaves, and backward compatibility to the bit (routing and model logits under every old TierSet)."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lite_llm.cli import main
from lite_llm.reference.checkpoint import (MANIFEST, load_checkpoint, manifest_bytes, read_manifest, save_checkpoint,
                                           tier_entry, verify_checkpoint, write_file_atomic, write_shard)
from lite_llm.reference.expand import expand_checkpoint
from lite_llm.reference.router import route
from lite_llm.reference.router_weights import RouterWeights, quantize_router, router_tensor_names
from lite_llm.reference.weights import init_model_weights, init_tier_weights, tier_shapes
from lite_llm.spec.config import PLACEMENTS, TierConfig, config_to_dict
from lite_llm.spec.errors import CheckpointError, LiteLLMError
from lite_llm.spec.tierset import parse_tier_set
from tests.helpers import (Crash, assert_same_bits, assert_same_record, crash_at_call, gaussian, make_config,
                           save_small_checkpoint, small_checkpoint_config)

ROOT = Path(__file__).resolve().parents[2]
SEED = 21
NEW = TierConfig("tier_new", groups=3, experts_per_group=2, d_ff=4, placement="NVMe")


small_config = small_checkpoint_config


@pytest.fixture
def saved(tmp_path):
    return save_small_checkpoint(tmp_path / "ckpt", SEED)


def file_bytes(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


def committed_bytes(d) -> dict[str, bytes]:
    """The manifest and the files it names: the checkpoint, without orphans."""
    raw = json.loads((Path(d) / MANIFEST).read_text())
    names = [MANIFEST, raw["dense"]["file"], *(t["file"] for t in raw["tiers"])]
    return {n: (Path(d) / n).read_bytes() for n in names}


# ---------------------------------------------------------------------------------------------
# INIT-1 written out from the spec text in plain integers: an independent derivation of new values

M64 = (1 << 64) - 1


def spec_mix64(x):
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def spec_init_element(seed: int, name: str, i: int, fan_in: int) -> np.float32:
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    base = spec_mix64(seed ^ h)
    x = spec_mix64((base + (i + 1) * 0x9E3779B97F4A7C15) & M64)
    u = x >> 40
    f = np.float32((2 * u + 1 - (1 << 24)) * 2.0 ** -24)         # exact: 25 significant bits at most
    bound = np.float32(1.0) / np.sqrt(np.float32(fan_in))
    return np.float32(f * bound)


# ---------------------------------------------------------------------------------------------
# The operator (EXP-1)

def test_expand_appends_an_initialised_tier(saved):
    """EXP-1.1, EXP-1.2, EXP-1.7: the config gains the tier at id M; its tensors follow INIT from (seed, name)."""
    d, cfg, w = saved
    m = expand_checkpoint(d, NEW, 0xDEADBEEF)
    cfg2, w2 = load_checkpoint(d)
    assert cfg2 == m.cfg and cfg2.tiers == (*cfg.tiers, NEW)
    assert {k: v for k, v in config_to_dict(cfg2).items() if k != "tiers"} == \
           {k: v for k, v in config_to_dict(cfg).items() if k != "tiers"}
    entry = m.tiers[-1]
    assert (entry["id"], entry["name"], entry["placement"]) == (3, "tier_new", "NVMe")
    assert [t["placement"] for t in m.tiers[:3]] == [t.placement for t in cfg.tiers]
    new = init_tier_weights(cfg2, 0xDEADBEEF, 3)
    assert sorted(new) == sorted(tier_shapes(cfg2, 3)) and len(new) == 6 * cfg.n_layers
    for n, a in new.items():
        assert_same_bits(w2[n], a, n)
    for name, fan_in in (("layers.0.tiers.tier_new.router_tier", 8), ("layers.1.tiers.tier_new.router_expert", 8),
                         ("layers.1.tiers.tier_new.w_down", NEW.d_ff), ("layers.0.tiers.tier_new.w_gate", 8)):
        flat = np.asarray(w2[name]).reshape(-1)
        for i in (0, 1, flat.size - 1):
            want = spec_init_element(0xDEADBEEF, name, i, fan_in)
            assert flat[i].view(np.uint32) == want.view(np.uint32), (name, i, flat[i], want)


def test_existing_shards_stay_byte_identical(saved):
    """EXP-1.3: no existing file is written; the dense and old tier entries are carried unchanged."""
    d, cfg, _ = saved
    before = {n: hashlib.sha256(b).hexdigest() for n, b in file_bytes(d).items()}
    stat_before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in d.iterdir()}
    old = json.loads((d / MANIFEST).read_text())
    expand_checkpoint(d, NEW, 1)
    after = {n: hashlib.sha256(b).hexdigest() for n, b in file_bytes(d).items()}
    new_files = sorted(set(after) - set(before))
    assert len(new_files) == 1 and new_files[0].startswith("tier-tier_new.")
    for name, digest in before.items():
        if name != MANIFEST:
            assert after[name] == digest, f"{name} changed"
            assert (d / name).stat().st_ino == stat_before[name][0]          # not even replaced by a copy
            assert (d / name).stat().st_mtime_ns == stat_before[name][1]
    new = json.loads((d / MANIFEST).read_text())
    assert new["dense"] == old["dense"] and new["tiers"][:3] == old["tiers"]
    assert new["config"]["tiers"][:3] == old["config"]["tiers"]


def test_expand_of_init_is_init_of_the_expanded_config(saved, tmp_path):
    """EXP-1.2 (informative consequence): expand(init(cfg, s), t, s) == init(cfg + t, s), file for file."""
    d, cfg, _ = saved
    expand_checkpoint(d, NEW, SEED)
    big = cfg.with_tier(NEW)
    save_checkpoint(tmp_path / "direct", big, init_model_weights(big, SEED))
    assert file_bytes(d) == file_bytes(tmp_path / "direct")


@pytest.mark.parametrize("tier, seed, code", [
    (replace(NEW, name="tier_1"), 1, "E_CKPT_TIER_EXISTS"),
    (replace(NEW, groups=0), 1, "E_CONFIG"),
    (replace(NEW, name="Tier-X"), 1, "E_CONFIG"),
    (replace(NEW, placement="SSD"), 1, "E_CONFIG"),
    (NEW, -1, "E_SEED"),
    (NEW, 1 << 64, "E_SEED"),
])
def test_refusals_write_nothing(saved, tier, seed, code):
    """EXP-1.6, EXP-1.1: a reused name, an invalid tier or seed is refused before any file is written."""
    d, _, _ = saved
    before = file_bytes(d)
    with pytest.raises(LiteLLMError) as e:
        expand_checkpoint(d, tier, seed)
    assert e.value.code == code, str(e.value)
    if code == "E_CKPT_TIER_EXISTS":
        assert "tier_1" in str(e.value) and str(d / MANIFEST) in str(e.value)
    assert file_bytes(d) == before


def test_damaged_checkpoint_is_refused_before_writing(saved):
    """EXP-1.5: hashes by default, sizes and headers always; the checkpoint is left as it was."""
    d, cfg, _ = saved
    raw = json.loads((d / MANIFEST).read_text())
    victim = d / raw["tiers"][2]["file"]
    b = bytearray(victim.read_bytes())
    b[-1] ^= 1
    victim.write_bytes(bytes(b))
    before = file_bytes(d)
    with pytest.raises(CheckpointError) as e:
        expand_checkpoint(d, NEW, 1)
    assert e.value.code == "E_CKPT_HASH" and str(victim) in str(e.value)
    assert file_bytes(d) == before
    victim.write_bytes(bytes(b[:-8]))
    before = file_bytes(d)
    with pytest.raises(CheckpointError) as e:
        expand_checkpoint(d, NEW, 1, verify=False)
    assert e.value.code == "E_CKPT_TRUNCATED" and str(victim) in str(e.value)
    assert file_bytes(d) == before
    (d / MANIFEST).write_text("[]")
    with pytest.raises(CheckpointError) as e:
        expand_checkpoint(d, NEW, 1)
    assert e.value.code == "E_CKPT_SCHEMA"


def test_interrupted_expansion_leaves_the_old_checkpoint(saved, monkeypatch):
    """EXP-1.4, CKPT-4.3: fail at every fsync and rename in turn; the old checkpoint stays valid and
    loads bit-identically until the manifest's rename commits the new one."""
    d, cfg, w = saved
    old_manifest = (d / MANIFEST).read_bytes()
    old_files = committed_bytes(d)
    n, seen_old, seen_new = 0, 0, 0
    while True:
        n += 1
        try:
            with crash_at_call(monkeypatch, n):
                expand_checkpoint(d, NEW, 5)
            done = True
        except Crash:
            done = False
        if done:
            break
        assert not [p.name for p in d.iterdir() if p.name.endswith(".tmp")]
        if (d / MANIFEST).read_bytes() == old_manifest:
            seen_old += 1
            assert committed_bytes(d) == old_files
            rep = verify_checkpoint(d)
            assert rep.ok and all(o.startswith("tier-tier_new.") for o in rep.orphans), rep
            cfg2, w2 = load_checkpoint(d)
            assert cfg2 == cfg and list(w2) == list(w)
            for name in w:
                assert_same_bits(w2[name], w[name], name)
        else:                                       # crashed after the commit: the new checkpoint is complete
            seen_new += 1
            assert verify_checkpoint(d).ok and read_manifest(d).cfg.n_tiers == 4
            break
    assert seen_old >= 5, f"only {seen_old} crash points before the commit were exercised"
    assert verify_checkpoint(d).ok and read_manifest(d).cfg.tiers[-1] == NEW


CRASHER = """
import os, sys
from lite_llm.reference.expand import expand_checkpoint
from lite_llm.spec.config import TierConfig
n, k = int(sys.argv[2]), [0]
def hook(real):
    def f(*a):
        k[0] += 1
        if k[0] == n:
            os._exit(9)              # a real crash: no exception handler, no clean-up
        return real(*a)
    return f
os.replace, os.fsync = hook(os.replace), hook(os.fsync)
expand_checkpoint(sys.argv[1], TierConfig("tier_new", 3, 2, 4, "NVMe"), 5)
"""


def test_killed_expansion_leaves_the_old_checkpoint(saved, tmp_path):
    """EXP-1.4, CKPT-6.3: the process dies at each step (os._exit); temp files and the uncommitted shard
    are orphans, the old checkpoint verifies and loads, and a retry gives the same checkpoint as a clean run."""
    d, cfg, w = saved
    clean = tmp_path / "clean"
    shutil.copytree(d, clean)
    expand_checkpoint(clean, NEW, 5)
    old = committed_bytes(d)
    for n in range(1, 6):                          # calls 1-5 come before the manifest's rename
        work = tmp_path / f"crash{n}"
        shutil.copytree(d, work)
        rc = subprocess.run([sys.executable, "-c", CRASHER, str(work), str(n)], cwd=ROOT).returncode
        assert rc == 9, f"the crasher did not reach call {n}"
        assert committed_bytes(work) == old
        rep = verify_checkpoint(work)
        assert rep.ok, rep.problems
        assert rep.orphans and all(o.startswith((".tier-tier_new.", ".manifest.json.", "tier-tier_new."))
                                   for o in rep.orphans), rep.orphans
        cfg2, w2 = load_checkpoint(work)
        for name in w:
            assert_same_bits(w2[name], w[name], name)
        expand_checkpoint(work, NEW, 5)            # the retry
        assert committed_bytes(work) == committed_bytes(clean)


def test_new_tier_needs_its_own_shard(saved, tmp_path):
    """EXP-2.3: T' with the new tier is a TierSet of C' only, and loading under it needs the new shard."""
    d, cfg, _ = saved
    old = tmp_path / "old"
    shutil.copytree(d, old)
    m = expand_checkpoint(d, NEW, 5)
    (d / m.tiers[-1]["file"]).unlink()
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d, ["tier_0", "tier_new"])
    assert e.value.code == "E_CKPT_MISSING" and m.tiers[-1]["file"] in str(e.value)
    load_checkpoint(d, ["tier_0", "tier_1", "tier_2"])
    assert not verify_checkpoint(d).ok and verify_checkpoint(d, "cumulative:tier_2").ok
    with pytest.raises(LiteLLMError) as e:
        load_checkpoint(old, ["tier_0", "tier_new"])
    assert e.value.code == "E_UNKNOWN_TIER"


def test_modes_after_expansion(saved):
    """EXP-2.4: exclusive and cumulative modes of old tiers keep their TierSet; Max mode gains the tier."""
    d, cfg, _ = saved
    expand_checkpoint(d, NEW, 5)
    cfg2 = read_manifest(d).cfg
    for text in ("exclusive:tier_1", "cumulative:tier_1", "cumulative:tier_2", "tier_2,tier_0"):
        assert parse_tier_set(cfg2, text) == parse_tier_set(cfg, text)
    assert parse_tier_set(cfg, "all") == (0, 1, 2) and parse_tier_set(cfg2, "all") == (0, 1, 2, 3)


def test_replacing_the_new_tier_keeps_old_tiersets_exact(saved):
    """EXP-1.8 (scope): a 'trained' new tier committed under its content name changes nothing under old T."""
    d, cfg, w = saved
    m = expand_checkpoint(d, NEW, 5)
    trained = {n: (np.asarray(a) * np.float32(0.5)) for n, a in init_tier_weights(m.cfg, 5, 3).items()}
    shard = write_shard(d, "tier-tier_new", trained)
    raw = {**m.raw, "tiers": [*m.tiers[:3], tier_entry(m.cfg, 3, shard)]}
    write_file_atomic(d / MANIFEST, manifest_bytes(raw))
    rep = verify_checkpoint(d)
    assert rep.ok and rep.orphans == (m.tiers[-1]["file"],)
    _, w2 = load_checkpoint(d, "cumulative:tier_2")
    for n, a in w2.items():
        assert_same_bits(a, w[n], n)
    _, w3 = load_checkpoint(d, ["tier_new"])
    for n, a in trained.items():
        assert_same_bits(w3[n], a, n)


# ---------------------------------------------------------------------------------------------
# Backward compatibility (EXP-2.1, EXP-2.2)

def router_weights(cfg, weights, layer) -> RouterWeights:
    """RouterWeights of one layer from a loaded weight dict; tiers absent from it (outside the TierSet it
    was loaded with) get arbitrary finite stand-ins, which routing under that TierSet never reads."""
    tier, group, expert = [], [], []
    for t, tc in enumerate(cfg.tiers):
        n = router_tensor_names(cfg, layer, t)
        d = cfg.d_model
        tier.append(weights.get(n["tier"], np.full((d,), 7.0, np.float32)))
        group.append(weights.get(n["group"], np.full((tc.groups, d), -3.0, np.float32)))
        expert.append(weights.get(n["expert"], np.full((tc.groups, tc.experts_per_group, d), 5.0, np.float32)))
    return RouterWeights(tuple(tier), tuple(group), tuple(expert))


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 3))
    tiers = [(draw(st.integers(1, 3)), draw(st.integers(1, 3))) for _ in range(n)]
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    limbs = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    cfg = make_config(tiers=tiers, k=k, d=draw(st.sampled_from([4, 8, 12])), limbs=limbs,
                      seed=draw(st.integers(0, 2 ** 64 - 1)), n_layers=draw(st.integers(1, 2)), vocab_size=8)
    T = tuple(sorted(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))))
    new = TierConfig(draw(st.sampled_from(["tier_x", "z", "tier_0x"])), draw(st.integers(1, 4)),
                     draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.sampled_from(PLACEMENTS)))
    return cfg, T, new, draw(st.integers(0, 2 ** 64 - 1)), draw(st.integers(0, 2 ** 64 - 1)), draw(st.integers(0, 99))


@given(scenarios(), st.one_of(st.none(), st.integers(0, 2 ** 64 - 1)))
def test_routing_under_old_tiersets_is_bit_identical_after_expansion(scenario, route_seed):
    """EXP-2.1, EXP-2.2: for random configs, TierSets T and new tiers, loading and routing under T give
    the same bits before and after expansion, every layer (ties included: one token is all zeros)."""
    cfg, T, new, init_seed, new_seed, h_seed = scenario
    h = gaussian(7, cfg.d_model, h_seed)
    h[0] = 0.0                                       # every logit ties: the tie keys decide
    h[1] = h[2]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "c"
        save_checkpoint(d, cfg, init_model_weights(cfg, init_seed))
        cfg_a, full_a = load_checkpoint(d)
        _, under_t_a = load_checkpoint(d, T)
        before = [route(h, quantize_router(cfg_a, router_weights(cfg_a, full_a, l)), T, route_seed)
                  for l in range(cfg.n_layers)]
        expand_checkpoint(d, new, new_seed)
        assert verify_checkpoint(d, T).ok and verify_checkpoint(d).ok
        cfg_b, full_b = load_checkpoint(d)
        _, under_t_b = load_checkpoint(d, T)
        assert cfg_b.tiers[:-1] == cfg_a.tiers and cfg_b.tiers[-1] == new
        assert list(under_t_b) == list(under_t_a)
        for name in under_t_a:
            assert_same_bits(under_t_b[name], under_t_a[name], name)
        for l in range(cfg.n_layers):
            for weights in (full_b, under_t_b):       # all of C', and C' loaded under T only
                after = route(h, quantize_router(cfg_b, router_weights(cfg_b, weights, l)), T, route_seed)
                assert_same_record(after, before[l])


@pytest.mark.parametrize("tierset", ["exclusive:tier_0", "cumulative:tier_1", "tier_2,tier_0", "all"])
def test_model_logits_under_old_tiersets_are_bit_identical_after_expansion(saved, tierset):
    """EXP-2.2: the full model's logits and routes under T, before and after expansion, bit for bit,
    with C' loaded in full and loaded under T only."""
    from lite_llm.reference.model import forward

    d, cfg, _ = saved
    T = parse_tier_set(cfg, tierset)                 # resolved on the old T_max: 'all' means the old tiers
    tokens = np.random.default_rng(3).integers(0, cfg.vocab_size, size=(2, 9))
    cfg_a, full_a = load_checkpoint(d)
    before = forward(cfg_a, full_a, tokens, T)
    expand_checkpoint(d, NEW, 99)
    cfg_b, full_b = load_checkpoint(d)
    _, under_t = load_checkpoint(d, T)
    for weights in (full_b, under_t):
        after = forward(cfg_b, weights, tokens, T)
        assert_same_bits(after.logits, before.logits, f"logits under {tierset}")
        for l in range(cfg.n_layers):
            assert_same_record(after.routes[l], before.routes[l])


# ---------------------------------------------------------------------------------------------
# The command line

def test_cli_expand(saved, capsys):
    """``lite-llm checkpoint expand``: placement parsed (EXP-1.7, default HBM), errors exit 2."""
    d, cfg, _ = saved
    assert main(["checkpoint", "expand", str(d), "--tier", "tier_big:2:3:4:Object", "--seed", "0x10"]) == 0
    assert "added tier tier_big (id 3, Object" in capsys.readouterr().out
    assert main(["checkpoint", "expand", str(d), "--tier", "tier_dflt:1:1:2", "--seed", "1", "--no-verify"]) == 0
    m = read_manifest(d)
    assert [(t["name"], t["placement"]) for t in m.tiers[3:]] == [("tier_big", "Object"), ("tier_dflt", "HBM")]
    assert m.cfg.tiers[3] == TierConfig("tier_big", 2, 3, 4, "Object")
    _, w = load_checkpoint(d, ["tier_big"])
    for n, a in init_tier_weights(m.cfg, 0x10, 3).items():
        assert_same_bits(w[n], a, n)
    capsys.readouterr()
    for bad, code in ((["--tier", "tier_big:1:1:1"], "E_CKPT_TIER_EXISTS"), (["--tier", "t:1:x:1"], "E_CONFIG"),
                      (["--tier", "t:1:1"], "E_CONFIG"), (["--tier", "t:1:1:1:Tape"], "E_CONFIG")):
        assert main(["checkpoint", "expand", str(d), *bad, "--seed", "1"]) == 2
        assert code in capsys.readouterr().err
