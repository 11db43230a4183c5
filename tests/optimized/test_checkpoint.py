"""The optimized checkpoint reader against checkpoints the reference writes: the same tensors for
every TierSet, only the TierSet's shards opened, and every damage rejected with the reference's
code (CKPT-2.3, CKPT-3, CKPT-5)."""
from __future__ import annotations

import json
import shutil
import struct
from functools import lru_cache

import numpy as np
import pytest

from lite_llm.optimized.checkpoint import load_checkpoint
from lite_llm.reference.checkpoint import load_checkpoint as ref_load
from lite_llm.reference.checkpoint import save_checkpoint
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.errors import LiteLLMError
from tests.helpers import make_config
from tests.optimized.common import assert_bits


@lru_cache(maxsize=None)
def model():
    cfg = make_config(tiers=((2, 3), (3, 2), (1, 4)), d=16, n_layers=2, vocab_size=32, max_seq_len=16)
    return cfg, init_model_weights(cfg, 4)


@pytest.fixture()
def ckpt(tmp_path):
    cfg, w = model()
    save_checkpoint(tmp_path / "ck", cfg, w)
    return tmp_path / "ck"


def manifest(path):
    return json.loads((path / "manifest.json").read_text())


def shard(path, tier=None):
    m = manifest(path)
    return path / (m["dense"]["file"] if tier is None else m["tiers"][tier]["file"])


@pytest.mark.parametrize("tiers", [None, (0,), ("tier_2", 1), "cumulative:tier_1", "exclusive:tier_2"])
@pytest.mark.parametrize("verify", [True, False])
def test_loads_what_the_reference_loads(ckpt, tiers, verify):
    """CKPT-5.1 .. CKPT-5.3: the same config and the same tensors, bit for bit; other tiers absent."""
    cfg, w = load_checkpoint(ckpt, tiers, verify=verify)
    rcfg, rw = ref_load(ckpt, tiers, verify=verify)
    assert cfg == rcfg and set(w) == set(rw)
    for name in rw:
        assert_bits(w[name].numpy(), np.asarray(rw[name]), name)


def test_damaged_shard_outside_the_tierset_is_not_opened(ckpt):
    """CKPT-5.2: a missing or corrupt shard of a tier outside T does not matter under T."""
    shard(ckpt, 2).unlink()
    shard(ckpt, 1).write_bytes(b"garbage")
    cfg, w = load_checkpoint(ckpt, (0,))
    assert not any(".tiers.tier_1." in n or ".tiers.tier_2." in n for n in w)


def flip_byte(p, at):
    b = bytearray(p.read_bytes())
    b[at] ^= 0xFF
    p.write_bytes(bytes(b))


def rewrite_header(p, edit):
    data = p.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    text = json.dumps(edit(header)).encode()
    text += b" " * (-len(text) % 8)
    p.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])


def fix_manifest_entry(path, tier=None):
    """After a deliberate shard edit, make the manifest's size and hash match, so the header check is reached."""
    import hashlib
    m = manifest(path)
    e = m["dense"] if tier is None else m["tiers"][tier]
    p = path / e["file"]
    e["bytes"], e["sha256"] = p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(m))


def edit_manifest(path, edit):
    m = manifest(path)
    edit(m)
    (path / "manifest.json").write_text(json.dumps(m))


DAMAGE = {
    "no directory": lambda p: shutil.rmtree(p),
    "no manifest": lambda p: (p / "manifest.json").unlink(),
    "manifest not json": lambda p: (p / "manifest.json").write_text("{oops"),
    "manifest a list": lambda p: (p / "manifest.json").write_text("[]"),
    "unknown schema version": lambda p: edit_manifest(p, lambda m: m.update(schema_version=2, format=7)),
    "schema violation": lambda p: edit_manifest(p, lambda m: m.pop("dense")),
    "invalid config": lambda p: edit_manifest(p, lambda m: m["config"].update(d_model=15)),
    "tier renamed": lambda p: edit_manifest(p, lambda m: m["tiers"][1].update(name="tier_x")),
    "wrong parameters": lambda p: edit_manifest(p, lambda m: m["dense"].update(parameters=1)),
    "same file twice": lambda p: edit_manifest(p, lambda m: m["tiers"][1].update(file=m["tiers"][0]["file"])),
    "dense shard missing": lambda p: shard(p).unlink(),
    "tier shard missing": lambda p: shard(p, 1).unlink(),
    "shard truncated": lambda p: shard(p, 0).write_bytes(shard(p, 0).read_bytes()[:-4]),
    "shard longer": lambda p: shard(p, 0).write_bytes(shard(p, 0).read_bytes() + b"\0"),
    "flipped data byte": lambda p: flip_byte(shard(p, 2), -3),
    "header says F64": lambda p: (rewrite_header(shard(p, 0), lambda h: {k: ({**v, "dtype": "F64"} if k != "__metadata__" else v)
                                                                        for k, v in h.items()}), fix_manifest_entry(p, 0)),
    "header gap": lambda p: (rewrite_header(shard(p, 0), lambda h: {k: {**v, "data_offsets": [v["data_offsets"][0] + 4,
                                                                                              v["data_offsets"][1] + 4]}
                                                                    for k, v in h.items()}), fix_manifest_entry(p, 0)),
    "header not json": lambda p: (flip_byte(shard(p), 9), fix_manifest_entry(p)),
    "header huge": lambda p: (shard(p).write_bytes(struct.pack("<Q", 10 ** 9) + shard(p).read_bytes()[8:]),
                              fix_manifest_entry(p)),
    "tensor renamed in shard": lambda p: (rewrite_header(shard(p), lambda h: {("X" + k if k == "embed" else k): v
                                                                             for k, v in h.items()}), fix_manifest_entry(p)),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damage_is_rejected_with_the_reference_code(ckpt, name):
    """CKPT-5.4, CKPT-7.1: the first failing check, the same code as the reference, the file named."""
    DAMAGE[name](ckpt)

    def code(fn):
        try:
            fn()
        except LiteLLMError as e:
            return e.code, str(e)
        return "no error", ""

    want, _ = code(lambda: ref_load(ckpt))
    got, msg = code(lambda: load_checkpoint(ckpt))
    print(name, got, msg)
    assert want != "no error" and got == want, (name, got, want)
    assert str(ckpt.name) in msg or "ck" in msg


def test_unknown_tier_before_any_shard(ckpt):
    """CKPT-5.1: the TierSet is resolved before a shard is opened."""
    shard(ckpt).unlink()
    with pytest.raises(LiteLLMError) as e:
        load_checkpoint(ckpt, ("nope",))
    assert e.value.code == "E_UNKNOWN_TIER"
