"""The checkpoint format (spec chapter 8, CKPT): layout, canonical bytes, manifest, atomic writes, loading
under a TierSet, refusals that name the file, verification, and the ``lite-llm checkpoint`` command."""
from __future__ import annotations

import builtins
import hashlib
import json
import math
import mmap
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lite_llm.cli import main
from lite_llm.reference import checkpoint as ck
from lite_llm.reference.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from lite_llm.reference.weights import dense_shapes, init_model_weights, tier_shapes
from lite_llm.spec.clauses import all_clauses, referenced_ids, registry
from lite_llm.spec.errors import CHECKPOINT_ERRORS, CheckpointError, ERROR_CODES
from tests.helpers import (Crash, assert_same_bits, bits, crash_at_call, save_small_checkpoint,
                           small_checkpoint_config)

ROOT = Path(__file__).resolve().parents[2]
SEED = 11


small_config = small_checkpoint_config


@pytest.fixture
def saved(tmp_path):
    """A saved three-tier checkpoint: (directory, cfg, weights)."""
    return save_small_checkpoint(tmp_path / "ckpt", SEED)


def manifest(d) -> dict:
    return json.loads((Path(d) / "manifest.json").read_text())


def write_manifest(d, raw) -> None:
    (Path(d) / "manifest.json").write_text(json.dumps(raw, indent=2))


def shard_path(d, tier=None) -> Path:
    raw = manifest(d)
    return Path(d) / (raw["dense"] if tier is None else raw["tiers"][tier])["file"]


def file_bytes(d) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


def code_of(excinfo) -> str:
    return excinfo.value.code


def canonical_shard(tensors: dict[str, np.ndarray]) -> bytes:
    """CKPT-2.2 rebuilt by hand (no safetensors, no json module): the bytes a writer must produce."""
    header, data, off = [], b"", 0
    for name in sorted(tensors, key=lambda n: n.encode()):
        raw = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        shape = ",".join(str(s) for s in tensors[name].shape)
        header.append(f'"{name}":{{"dtype":"F32","shape":[{shape}],"data_offsets":[{off},{off + len(raw)}]}}')
        data += raw
        off += len(raw)
    h = ("{" + ",".join(header) + "}").encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


# ---------------------------------------------------------------------------------------------
# Layout, shards and manifest (CKPT-1, CKPT-2, CKPT-3)

def test_layout_one_shard_per_tier_plus_dense(saved):
    """CKPT-1.1, CKPT-1.2, CKPT-1.4: manifest + dense shard + one shard per tier, content-named."""
    d, cfg, w = saved
    raw = manifest(d)
    names = sorted(p.name for p in d.iterdir())
    expected = sorted(["manifest.json", raw["dense"]["file"], *(t["file"] for t in raw["tiers"])])
    assert names == expected and len(names) == cfg.n_tiers + 2
    assert all(p.is_file() for p in d.iterdir())
    for label, entry in [("dense", raw["dense"])] + [(f"tier-{t.name}", raw["tiers"][i]) for i, t in enumerate(cfg.tiers)]:
        digest = hashlib.sha256((d / entry["file"]).read_bytes()).hexdigest()
        assert entry["file"] == f"{label}.{digest[:16]}.safetensors" and entry["sha256"] == digest
    # CKPT-1.2: the shard a tensor lands in follows from its name alone (tier prefix or dense)
    for i, t in enumerate(cfg.tiers):
        names_in = {e["name"] for e in raw["tiers"][i]["tensors"]}
        assert names_in == {n for n in w if re.match(rf"^layers\.\d+\.tiers\.{t.name}\.", n)}
    dense = {e["name"] for e in raw["dense"]["tensors"]}
    assert dense == {n for n in w if ".tiers." not in n} and len(dense) + sum(
        len(t["tensors"]) for t in raw["tiers"]) == len(w)


def test_shards_are_canonical_safetensors_bytes(saved):
    """CKPT-2.1, CKPT-2.2, CKPT-1.3: each shard equals the bytes rebuilt by hand from the clause."""
    d, cfg, w = saved
    assert shard_path(d).read_bytes() == canonical_shard({n: w[n] for n in dense_shapes(cfg)})
    for i in range(cfg.n_tiers):
        assert shard_path(d, i).read_bytes() == canonical_shard({n: w[n] for n in tier_shapes(cfg, i)})


def test_safetensors_library_reads_the_same_bits(saved):
    """CKPT-2.1: an independent reader (safetensors' own, framework np) sees the tensors we load."""
    from safetensors import safe_open

    d, cfg, _ = saved
    _, loaded = load_checkpoint(d)
    seen = 0
    for i in (None, *range(cfg.n_tiers)):
        with safe_open(str(shard_path(d, i)), framework="np") as f:
            for name in f.keys():
                assert_same_bits(f.get_tensor(name), loaded[name], name)
                seen += 1
    assert seen == len(loaded)


def test_manifest_content_and_budgets(saved):
    """CKPT-3.1, CKPT-3.3, CKPT-3.4: fields, id order, placements, and budgets counted independently."""
    d, cfg, _ = saved
    raw = manifest(d)
    assert raw["format"] == "lite-llm-checkpoint" and raw["schema_version"] == 1 and raw["spec_version"] == "0.1"
    assert raw["config"]["tiers"] == [{"name": t.name, "groups": t.groups, "experts_per_group": t.experts_per_group,
                                       "d_ff": t.d_ff, "placement": t.placement} for t in cfg.tiers]
    dm, L, V = cfg.d_model, cfg.n_layers, cfg.vocab_size
    assert raw["dense"]["parameters"] == 2 * V * dm + L * (2 * dm + 4 * dm * dm) + dm
    for i, (e, t) in enumerate(zip(raw["tiers"], cfg.tiers)):
        G, E, F = t.groups, t.experts_per_group, t.d_ff
        assert (e["id"], e["name"], e["placement"]) == (i, t.name, t.placement)
        assert e["budget"] == e["parameters"] == L * dm * (1 + G + G * E + 3 * G * E * F)
        assert e["bytes"] == (d / e["file"]).stat().st_size
        names = [x["name"] for x in e["tensors"]]
        assert names == sorted(names) and all(x["dtype"] == "F32" for x in e["tensors"])


def test_manifest_validates_against_the_published_schema(saved):
    """CKPT-3.1: the schema file, used as any other language would (with the config schema by $id)."""
    import jsonschema
    from referencing import Registry, Resource

    schemas = ROOT / "spec" / "schemas"
    config = json.loads((schemas / "config.schema.json").read_text())
    schema = json.loads((schemas / "manifest.schema.json").read_text())
    v = jsonschema.Draft202012Validator(schema, registry=Registry().with_resource(config["$id"], Resource.from_contents(config)))
    d, _, _ = saved
    good = manifest(d)
    assert list(v.iter_errors(good)) == []
    bad_cases = {
        "path in file name": lambda m: m["tiers"][0].__setitem__("file", "../x.0123456789abcdef.safetensors"),
        "unknown field": lambda m: m["dense"].__setitem__("mtime", 1),
        "tier unknown field": lambda m: m["tiers"][1].__setitem__("seed", 1),
        "uppercase hash": lambda m: m["tiers"][0].__setitem__("sha256", m["tiers"][0]["sha256"].upper()),
        "other dtype": lambda m: m["dense"]["tensors"][0].__setitem__("dtype", "F16"),
        "no tiers": lambda m: m.pop("tiers"),
    }
    for what, edit in bad_cases.items():
        m = json.loads(json.dumps(good))
        edit(m)
        assert list(v.iter_errors(m)), what


def test_manifest_bytes_are_deterministic(saved, tmp_path):
    """CKPT-3.6: sorted keys, 2-space indent, final newline, nothing that depends on path or time."""
    d, cfg, w = saved
    text = (d / "manifest.json").read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=True) + "\n"
    other = tmp_path / "elsewhere" / "deeper"
    save_checkpoint(other, cfg, {n: a.copy() for n, a in w.items()})
    assert file_bytes(other) == file_bytes(d)
    assert str(d) not in text and "time" not in text


def test_same_weights_same_bytes_in_another_process(saved, tmp_path):
    """CKPT-2.2, CKPT-3.6: a fresh interpreter (another hash seed) writes byte-identical files."""
    d, _, _ = saved
    code = ("import sys; from tests.reference.test_checkpoint import small_config, SEED; "
            "from lite_llm.reference.weights import init_model_weights; "
            "from lite_llm.reference.checkpoint import save_checkpoint; "
            "cfg = small_config(); save_checkpoint(sys.argv[1], cfg, init_model_weights(cfg, SEED))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p2")], check=True, cwd=ROOT, env=env)
    assert file_bytes(tmp_path / "p2") == file_bytes(d)


# ---------------------------------------------------------------------------------------------
# Loading (CKPT-5)

def test_round_trip_is_bit_exact(saved):
    """CKPT-5.3: loading every tier gives back every tensor, bit for bit, and the whole config."""
    d, cfg, w = saved
    cfg2, w2 = load_checkpoint(d)
    assert cfg2 == cfg and list(w2) == list(w)
    for n in w:
        assert_same_bits(w2[n], w[n], n)


def test_loaded_tensors_are_read_only_memory_maps(saved):
    """CKPT-5.6: arrays are views of an mmap of the shard, not copies."""
    d, _, _ = saved
    _, w = load_checkpoint(d, verify=False)
    for name, a in w.items():
        base = a
        while base is not None and not isinstance(base, mmap.mmap):
            base = base.base
        assert isinstance(base, mmap.mmap), f"{name} is not backed by an mmap"
        assert not a.flags.writeable and a.dtype == np.float32


@pytest.mark.parametrize("tierset, ids", [(["tier_1"], (1,)), ("cumulative:tier_1", (0, 1)), ([2, 0], (0, 2))])
def test_load_under_a_tierset_returns_only_its_tiers(saved, tierset, ids):
    """CKPT-5.1, CKPT-5.3: the whole config, the dense tensors and the TierSet's tensors, nothing else."""
    d, cfg, w = saved
    cfg2, w2 = load_checkpoint(d, tierset)
    assert cfg2 == cfg
    want = list(dense_shapes(cfg))
    for i in ids:
        want += list(tier_shapes(cfg, i))
    assert list(w2) == want
    for n in want:
        assert_same_bits(w2[n], w[n], n)


def test_load_opens_only_the_tiersets_shards(saved, monkeypatch):
    """CKPT-5.2: every file opened while loading is recorded; only the dense and T's shards appear."""
    d, cfg, _ = saved
    opened = []
    real_open = builtins.open

    def spy(file, *a, **k):
        opened.append(Path(os.fsdecode(file)).name if isinstance(file, (str, bytes, os.PathLike)) else file)
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", spy)
    load_checkpoint(d, ["tier_2"])
    shards = {n for n in opened if isinstance(n, str) and n.endswith(".safetensors")}
    assert shards == {shard_path(d).name, shard_path(d, 2).name}


@pytest.mark.parametrize("damage", ["delete", "flip", "truncate"])
def test_damage_outside_the_tierset_does_not_matter(saved, damage):
    """CKPT-5.2, CKPT-6.1: a shard outside T may be gone or broken; inside T it is refused, naming it."""
    d, cfg, w = saved
    victim = shard_path(d, 1)
    if damage == "delete":
        victim.unlink()
    elif damage == "flip":
        b = bytearray(victim.read_bytes())
        b[-3] ^= 0x10
        victim.write_bytes(bytes(b))
    else:
        victim.write_bytes(victim.read_bytes()[:100])
    _, w2 = load_checkpoint(d, ["tier_0", "tier_2"])               # hashing on: still only T's shards
    for n in tier_shapes(cfg, 2):
        assert_same_bits(w2[n], w[n], n)
    assert verify_checkpoint(d, "tier_0,tier_2").ok
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d, ["tier_1"])
    assert str(victim) in str(e.value) and e.value.path == str(victim)
    assert code_of(e) == {"delete": "E_CKPT_MISSING", "flip": "E_CKPT_HASH", "truncate": "E_CKPT_TRUNCATED"}[damage]
    rep = verify_checkpoint(d)
    assert not rep.ok and [p.file for p in rep.problems] == [str(victim)]


def test_verify_false_skips_only_the_hash(saved):
    """CKPT-5.5: with verify=False a flipped data byte is not detected; sizes and headers still are."""
    d, cfg, w = saved
    victim = shard_path(d, 0)
    b = bytearray(victim.read_bytes())
    b[-1] ^= 0x01                                                  # last byte of the last tensor's data
    victim.write_bytes(bytes(b))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d, ["tier_0"])
    assert code_of(e) == "E_CKPT_HASH" and victim.name in str(e.value)
    _, w2 = load_checkpoint(d, ["tier_0"], verify=False)
    last = sorted(tier_shapes(cfg, 0), key=str.encode)[-1]
    diff = int(np.count_nonzero(bits(np.asarray(w2[last])) != bits(w[last])))
    assert diff == 1, f"expected exactly the flipped element to differ, {diff} differ"
    victim.write_bytes(bytes(b[:-4]))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d, ["tier_0"], verify=False)
    assert code_of(e) == "E_CKPT_TRUNCATED"


def test_unknown_empty_duplicate_tierset(saved):
    """CKPT-5.1: the TierSet is resolved by TIER-2 before any shard is opened."""
    d, _, _ = saved
    for shard in d.glob("*.safetensors"):
        shard.unlink()                                             # no shard is needed to reject these
    for tiers, code in ((["tier_7"], "E_UNKNOWN_TIER"), ([], "E_EMPTY_TIERSET"), (["tier_0", 0], "E_DUPLICATE_TIER"),
                        ("exclusive:nope", "E_UNKNOWN_TIER")):
        with pytest.raises(Exception) as e:
            load_checkpoint(d, tiers)
        assert getattr(e.value, "code", None) == code, (tiers, e.value)
    with pytest.raises(Exception) as e:
        verify_checkpoint(d, ["tier_7"])
    assert e.value.code == "E_UNKNOWN_TIER" and "tier_7" in str(e.value)


# ---------------------------------------------------------------------------------------------
# Refusals (CKPT-3.1 .. CKPT-3.5, CKPT-5.4, CKPT-7.1)

def expect(d, code, *fragments, tiers=None, verify=True):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d, tiers, verify=verify)
    msg = str(e.value)
    assert e.value.code == code, msg
    for f in fragments:
        assert str(f) in msg, (f, msg)
    return e.value


def test_missing_directory_and_manifest(tmp_path, saved):
    """CKPT-5.4: E_CKPT_MISSING names the directory or the manifest; a half-saved directory is no checkpoint."""
    expect(tmp_path / "nope", "E_CKPT_MISSING", tmp_path / "nope", "does not exist")
    d, _, _ = saved
    (d / "manifest.json").unlink()
    expect(d, "E_CKPT_MISSING", d / "manifest.json")
    rep = verify_checkpoint(d)
    assert not rep.ok and rep.problems[0].code == "E_CKPT_MISSING" and rep.problems[0].file == str(d / "manifest.json")


@pytest.mark.parametrize("case, edit, fragment", [
    ("not json", None, "not UTF-8 JSON"),
    ("version", lambda m: m.__setitem__("schema_version", 2), "schema_version 2 is not implemented"),
    ("no version", lambda m: m.pop("schema_version"), "schema_version None"),
    ("no dense", lambda m: m.pop("dense"), "dense"),
    ("bad sha", lambda m: m["tiers"][0].__setitem__("sha256", "xyz"), "tiers/0/sha256"),
    ("bad config", lambda m: m["config"].__setitem__("d_model", 6), "config is invalid"),
    ("format", lambda m: m.__setitem__("format", "pytorch"), "format"),
])
def test_schema_invalid_manifest(saved, case, edit, fragment):
    """CKPT-3.1, CKPT-3.2: E_CKPT_SCHEMA naming the manifest and the field."""
    d, _, _ = saved
    if edit is None:
        (d / "manifest.json").write_text("{ not json")
    else:
        raw = manifest(d)
        edit(raw)
        write_manifest(d, raw)
    expect(d, "E_CKPT_SCHEMA", d / "manifest.json", fragment)


@pytest.mark.parametrize("case, edit, fragment", [
    ("placement", lambda m: m["tiers"][1].__setitem__("placement", "Object"), "tiers/1/placement"),
    ("name", lambda m: m["tiers"][2].__setitem__("name", "tier_9"), "tiers/2/name"),
    ("tier count", lambda m: m["tiers"].pop(), "lists 2 tiers"),
    ("budget", lambda m: m["tiers"][0].__setitem__("budget", 5), "budget 5"),
    ("parameters", lambda m: m["dense"].__setitem__("parameters", 5), "dense/parameters"),
    ("tensor missing", lambda m: m["tiers"][0]["tensors"].pop(0), "lacks layers.0.tiers.tier_0.router_expert"),
    ("extra tensor", lambda m: m["dense"]["tensors"].append({"name": "zzz", "dtype": "F32", "shape": [1]}), "zzz"),
    ("config/shape", lambda m: m["config"]["tiers"][0].__setitem__("groups", 3), "config implies"),
    ("shape", lambda m: m["tiers"][2]["tensors"][0].__setitem__("shape", [2, 3, 9]), "[2, 3, 9]"),
    ("same file", lambda m: m["tiers"][1].__setitem__("file", m["tiers"][0]["file"]), "several entries"),
])
def test_manifest_disagreeing_with_its_config(saved, case, edit, fragment):
    """CKPT-3.4, CKPT-3.5: E_CKPT_MISMATCH naming the manifest and what disagrees."""
    d, _, _ = saved
    raw = manifest(d)
    edit(raw)
    write_manifest(d, raw)
    expect(d, "E_CKPT_MISMATCH", d / "manifest.json", fragment)


def replace_shard(d, tier, data: bytes):
    """Put ``data`` in tier ``tier``'s shard file and re-record its size and hash, so checks 1-3 pass."""
    raw = manifest(d)
    entry = raw["tiers"][tier]
    (d / entry["file"]).write_bytes(data)
    entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    write_manifest(d, raw)
    return d / entry["file"]


@pytest.mark.parametrize("case", ["missing", "extra", "shape", "dtype"])
def test_shard_disagreeing_with_the_manifest(saved, case):
    """CKPT-5.4 check 5: the shard's header must hold exactly the manifest's tensors."""
    from safetensors.numpy import save

    d, cfg, w = saved
    tensors = {n: np.asarray(w[n]) for n in tier_shapes(cfg, 1)}
    name = "layers.1.tiers.tier_1.w_up"
    if case == "missing":
        del tensors[name]
    elif case == "extra":
        tensors["layers.1.tiers.tier_1.bias"] = np.zeros(3, np.float32)
    elif case == "shape":
        tensors[name] = tensors[name].reshape(-1)
    else:
        tensors[name] = tensors[name].astype(np.float16)
    victim = replace_shard(d, 1, save(tensors))
    fragment = "layers.1.tiers.tier_1.bias" if case == "extra" else name
    expect(d, "E_CKPT_MISMATCH", victim, fragment, "tier_1")
    expect(d, "E_CKPT_MISMATCH", victim, fragment, verify=False)
    load_checkpoint(d, ["tier_0", "tier_2"])                        # the other tiers are untouched


@pytest.mark.parametrize("case, fragment, code", [
    ("garbage", "not UTF-8 JSON", "E_CKPT_HEADER"),
    ("huge length", "exceeds the limit", "E_CKPT_HEADER"),
    ("overlap", "an overlap", "E_CKPT_HEADER"),
    ("gap", "a gap", "E_CKPT_HEADER"),
    ("span", "span", "E_CKPT_HEADER"),
    ("trailing", "bytes follow the last tensor", "E_CKPT_HEADER"),
    ("short data", "the file holds", "E_CKPT_TRUNCATED"),
    ("short header", "the header claims", "E_CKPT_TRUNCATED"),
])
def test_malformed_shard_header(saved, case, fragment, code):
    """CKPT-2.3: a header that is not well-formed safetensors is refused, naming the file."""
    d, cfg, w = saved
    good = shard_path(d, 0).read_bytes()
    n = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + n])
    data = good[8 + n:]

    def build(h, payload=data):
        text = json.dumps(h, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        return struct.pack("<Q", len(text)) + text + payload

    names = sorted(header, key=str.encode)
    first, second = header[names[0]], header[names[1]]
    if case == "garbage":
        blob = struct.pack("<Q", 8) + b"\xff{{{{{{{" + data
    elif case == "huge length":
        blob = struct.pack("<Q", 10 ** 9) + good[8:]
    elif case == "overlap":
        second["data_offsets"] = [first["data_offsets"][0], first["data_offsets"][0] + second["data_offsets"][1] -
                                  second["data_offsets"][0]]
        blob = build(header)
    elif case == "gap":
        header[names[0]]["data_offsets"] = [4, first["data_offsets"][1]]
        header[names[0]]["shape"] = [math.prod(first["shape"]) - 1]
        blob = build(header)
    elif case == "span":
        first["shape"] = [1]
        blob = build(header)
    elif case == "trailing":
        blob = good + b"\0\0\0\0"
    elif case == "short data":
        blob = build(header, data[:-4])
    else:
        blob = struct.pack("<Q", 4096) + good[8:100]
    victim = replace_shard(d, 0, blob)
    expect(d, code, victim, fragment)
    expect(d, code, victim, fragment, verify=False)


def test_header_may_carry_metadata_and_any_order(saved):
    """CKPT-2.3: a reader accepts a __metadata__ entry and entries in any order (other writers)."""
    d, cfg, w = saved
    good = shard_path(d, 2).read_bytes()
    n = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + n])
    reordered = {"__metadata__": {"writer": "someone else"}, **dict(reversed(list(header.items())))}
    text = json.dumps(reordered).encode() + b"  "
    replace_shard(d, 2, struct.pack("<Q", len(text)) + text + good[8 + n:])
    _, w2 = load_checkpoint(d, ["tier_2"])
    for name in tier_shapes(cfg, 2):
        assert_same_bits(w2[name], w[name], name)


def test_size_larger_than_recorded_is_a_mismatch(saved):
    """CKPT-5.4 check 2: a longer file is E_CKPT_MISMATCH, a shorter one E_CKPT_TRUNCATED."""
    d, _, _ = saved
    victim = shard_path(d)
    victim.write_bytes(victim.read_bytes() + b"x")
    expect(d, "E_CKPT_MISMATCH", victim, "the manifest records", tiers=["tier_0"])


# ---------------------------------------------------------------------------------------------
# Writing (CKPT-4)

def test_save_refuses_an_existing_checkpoint(saved):
    """CKPT-4.4: E_CKPT_EXISTS, and the old checkpoint is untouched."""
    d, cfg, w = saved
    before = file_bytes(d)
    with pytest.raises(CheckpointError) as e:
        save_checkpoint(d, cfg, w)
    assert e.value.code == "E_CKPT_EXISTS" and str(d) in str(e.value)
    assert file_bytes(d) == before


@pytest.mark.parametrize("case, fragment", [
    ("missing", "lack tensor embed"),
    ("extra", "hold tensor layers.0.extra"),
    ("shape", "layers.1.ffn_norm has shape [9]"),
    ("dtype", "float64, not binary32"),
    ("list", "list, not binary32"),
])
def test_save_refuses_weights_that_do_not_match_the_config(tmp_path, case, fragment):
    """CKPT-4.5: checked before any file is written, naming the tensor."""
    cfg = small_config()
    w = dict(init_model_weights(cfg, SEED))
    if case == "missing":
        del w["embed"]
    elif case == "extra":
        w["layers.0.extra"] = np.zeros(2, np.float32)
    elif case == "shape":
        w["layers.1.ffn_norm"] = np.ones(9, np.float32)
    elif case == "dtype":
        w["final_norm"] = w["final_norm"].astype(np.float64)
    else:
        w["final_norm"] = w["final_norm"].tolist()
    with pytest.raises(CheckpointError) as e:
        save_checkpoint(tmp_path / "c", cfg, w)
    assert e.value.code == "E_CKPT_MISMATCH" and fragment in str(e.value)
    assert not (tmp_path / "c").exists()


def test_interrupted_save_leaves_no_checkpoint_and_no_temp_files(tmp_path, monkeypatch):
    """CKPT-4.1, CKPT-4.2: fail at every rename and fsync in turn; never a manifest without its shards."""
    cfg = small_config()
    w = init_model_weights(cfg, SEED)
    step, n = 0, 0
    while True:
        n += 1
        d = tmp_path / f"try{n}"
        try:
            with crash_at_call(monkeypatch, n):
                save_checkpoint(d, cfg, w)
        except Crash:
            step += 1
            assert not [p for p in d.iterdir() if p.name.endswith(".tmp")], "a temporary file was left behind"
            if (d / "manifest.json").exists():          # crashed after the commit (directory fsync): complete
                assert verify_checkpoint(d).ok
            else:
                expect(d, "E_CKPT_MISSING", "manifest")
            continue
        break
    assert step >= 2 * (cfg.n_tiers + 2), f"only {step} crash points exercised"
    assert verify_checkpoint(d).ok


def test_write_is_atomic_rename_of_a_synced_temp_file(tmp_path, monkeypatch):
    """CKPT-4.1: the data is fsynced under a '.NAME.*.tmp' name in the same directory, then renamed."""
    events = []
    real_replace, real_fsync = os.replace, os.fsync

    def fsync(fd):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "f.bin"
    ck.write_file_atomic(target, b"hello")
    src = events[1][1]
    assert Path(src).parent == tmp_path and re.fullmatch(r"\.f\.bin\.[0-9a-f]{16}\.tmp", Path(src).name), events
    if os.path.isdir("/proc/self/fd"):     # Linux: we can see which file each fsync flushed
        assert events == [("fsync", src), ("replace", src, str(target)), ("fsync", str(tmp_path))], events
    assert target.read_bytes() == b"hello" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


# ---------------------------------------------------------------------------------------------
# Verification (CKPT-6) and errors (CKPT-7)

def test_verify_reports_every_problem_and_notes_orphans(saved):
    """CKPT-6.2, CKPT-6.3: two damaged shards give two problems, each naming its file; orphans are notes."""
    d, cfg, _ = saved
    rep = verify_checkpoint(d)
    assert rep.ok and rep.orphans == () and len(rep.shards) == cfg.n_tiers + 1
    (d / ".tier-x.safetensors.0123.tmp").write_bytes(b"partial")
    (d / "tier-tier_9.0123456789abcdef.safetensors").write_bytes(b"orphan")
    rep = verify_checkpoint(d)
    assert rep.ok and rep.orphans == (".tier-x.safetensors.0123.tmp", "tier-tier_9.0123456789abcdef.safetensors")
    shard_path(d, 0).unlink()
    b = bytearray(shard_path(d, 2).read_bytes())
    b[len(b) // 2] ^= 1
    shard_path(d, 2).write_bytes(bytes(b))
    rep = verify_checkpoint(d)
    assert [(p.file, p.code) for p in rep.problems] == [(str(shard_path(d, 0)), "E_CKPT_MISSING"),
                                                        (str(shard_path(d, 2)), "E_CKPT_HASH")]
    assert not rep.ok and [s.problem is None for s in rep.shards] == [True, False, True, False]
    assert verify_checkpoint(d, ["tier_1"]).ok


def test_error_code_table_matches_the_checkpoint_errors():
    """CKPT-7.1: the table lists exactly the checkpoint codes spec/errors.py defines; each cites a real clause."""
    text = registry()["CKPT-7.1"].text
    table = set(re.findall(r"`(E_[A-Z_]+)`", text)) - {"E_UNKNOWN_TIER", "E_CONFIG"}
    assert table == {cls.code for cls in CHECKPOINT_ERRORS}
    for cls in CHECKPOINT_ERRORS:
        assert ERROR_CODES[cls.code] is cls and cls.clause in registry() and issubclass(cls, CheckpointError)


def test_every_checkpoint_and_expansion_clause_is_implemented_and_tested():
    """Every clause of chapters 8 and 9 is cited by a test; every normative one by the reference too."""
    mine = [c for c in all_clauses() if c.chapter in ("08-checkpoint.md", "09-expansion.md")]
    assert len(mine) >= 40
    tests = set().union(*(referenced_ids(p.read_text()) for p in (ROOT / "tests").rglob("*.py")))
    code = set().union(*(referenced_ids(p.read_text()) for p in [*(ROOT / "reference").glob("*.py"),
                                                                   *(ROOT / "spec").glob("*.py"),
                                                                   ROOT / "lite_llm" / "commands" / "checkpoint.py"]))
    assert [c.id for c in mine if c.id not in tests] == []
    assert [c.id for c in mine if c.normative and c.id not in code] == []


# ---------------------------------------------------------------------------------------------
# The command line

def test_cli_init_inspect_verify(tmp_path, capsys):
    """``lite-llm checkpoint init | inspect | verify`` (CKPT-3.4 budgets in the table, CKPT-6.2 exit codes)."""
    d = tmp_path / "c"
    assert main(["checkpoint", "init", "--config", "tiny", "--seed", "0x7", str(d)]) == 0
    assert "saved checkpoint" in capsys.readouterr().out
    assert main(["checkpoint", "inspect", str(d)]) == 0
    out = capsys.readouterr().out
    raw = manifest(d)
    for e in raw["tiers"]:
        line = next(l for l in out.splitlines() if f" {e['name']} " in l)
        assert e["placement"] in line and f"{e['budget']:,}" in line and e["sha256"][:16] in line and e["file"] in line
    assert main(["checkpoint", "inspect", "--json", str(d)]) == 0
    assert json.loads(capsys.readouterr().out) == raw
    assert main(["checkpoint", "verify", str(d)]) == 0
    assert "is valid for every tier" in capsys.readouterr().out
    victim = d / raw["tiers"][1]["file"]
    victim.write_bytes(victim.read_bytes()[:-1])
    assert main(["checkpoint", "verify", str(d)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {victim}: E_CKPT_TRUNCATED" in out and "NOT valid" in out
    assert main(["checkpoint", "verify", str(d), "--tierset", "exclusive:tier_1b"]) == 0
    capsys.readouterr()
    assert main(["checkpoint", "verify", str(d), "--tierset", "tier_9t"]) == 2
    assert "E_UNKNOWN_TIER" in capsys.readouterr().err
    assert main(["checkpoint", "init", "--config", "tiny", "--seed", "1", str(d)]) == 2
    assert "E_CKPT_EXISTS" in capsys.readouterr().err
    assert main(["checkpoint", "inspect", str(tmp_path / "none")]) == 2
    assert "E_CKPT_MISSING" in capsys.readouterr().err
