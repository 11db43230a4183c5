"""Checkpoint-level cases (``checkpoint/...``): saving, loading, verifying and expanding checkpoints
(chapters CKPT and EXP).

Every operation takes the checkpoint as the directory input ``checkpoint``:

- ``load_checkpoint`` (params ``tierset``: null or ids, ``verify``: bool) returns every tensor it
  loaded, by name (and no other tensor: ``only``), and the value ``config`` (the whole T_max);
- ``verify_checkpoint`` (``tierset``) returns the values ``ok``, ``problems`` (sorted
  ``[file name, code]`` pairs) and ``orphans`` (sorted file names);
- ``save_checkpoint`` (configuration, the weights as tensor inputs) and ``expand_checkpoint``
  (``tier``: a tier object of TIER-1.3, ``seed``) write into the (writable) directory, which the
  runner reads back as ``checkpoint.files``, ``checkpoint.sha256`` and ``checkpoint.json`` (CONF-3.4).

Damaged checkpoints are made from a valid one by the edits each case describes.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from lite_llm.spec.config import config_from_dict

from .gen_layer import model_config
from .generate import CaseSpec, GeneratorError

WEIGHT_SEED = 5
CKPT_TIERS = ((1, 2, 4), (2, 1, 3), (1, 1, 2))
SCRATCH = Path(tempfile.mkdtemp(prefix="lite-llm-ckpt-gen-"))
atexit.register(shutil.rmtree, SCRATCH, True)


def ckpt_config() -> dict:
    cfg = model_config(tiers=CKPT_TIERS, d=8, layers=1, vocab=8, k=(1, 1, 1))
    for t, (name, placement) in zip(cfg["tiers"], (("tier_a", "HBM"), ("tier_b", "DRAM"), ("tier_c", "NVMe"))):
        t["name"], t["placement"] = name, placement
    return cfg


def ckpt_weights(cfg: dict) -> dict[str, np.ndarray]:
    from lite_llm.reference.weights import init_model_weights

    return init_model_weights(config_from_dict(cfg), WEIGHT_SEED)


_counter = [0]


def fresh(label: str) -> Path:
    """A new valid checkpoint directory, saved by the reference."""
    from lite_llm.reference.checkpoint import save_checkpoint

    _counter[0] += 1
    d = SCRATCH / f"{_counter[0]:03d}-{label}"
    cfg = ckpt_config()
    save_checkpoint(d, config_from_dict(cfg), ckpt_weights(cfg))
    return d


def manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def write_manifest(d: Path, m: dict) -> None:
    (d / "manifest.json").write_text(json.dumps(m, sort_keys=True, indent=2) + "\n")


def shard(d: Path, label: str) -> Path:
    """The file of the dense shard ("dense") or of a tier by name."""
    m = manifest(d)
    entry = m["dense"] if label == "dense" else next(t for t in m["tiers"] if t["name"] == label)
    return d / entry["file"]


def replace_shard(d: Path, label: str, data: bytes) -> None:
    """Put ``data`` in place of a shard and make the manifest agree (file name, hash, size)."""
    m = manifest(d)
    entry = m["dense"] if label == "dense" else next(t for t in m["tiers"] if t["name"] == label)
    (d / entry["file"]).unlink()
    digest = hashlib.sha256(data).hexdigest()
    stem = "dense" if label == "dense" else f"tier-{label}"
    entry.update(file=f"{stem}.{digest[:16]}.safetensors", sha256=digest, bytes=len(data))
    (d / entry["file"]).write_bytes(data)
    write_manifest(d, m)


def with_header(data: bytes, header: dict) -> bytes:
    """A shard with the same data buffer and another JSON header (padded to 8 bytes)."""
    n = struct.unpack("<Q", data[:8])[0]
    body = data[8 + n:]
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def header_of(data: bytes) -> dict:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n])


def flip_byte(p: Path, offset_from_end: int = 3) -> None:
    b = bytearray(p.read_bytes())
    b[-offset_from_end] ^= 0x40
    p.write_bytes(bytes(b))


def load_case(name, desc, clauses, d, tierset=None, verify=True, error=None, check=None) -> CaseSpec:
    return CaseSpec(f"checkpoint/{name}", desc, clauses, "load_checkpoint", {"tierset": tierset, "verify": verify},
                    {"checkpoint": d}, error=error, only=error is None, check=check)


def load_cases() -> list[CaseSpec]:
    out = []
    base = ["CKPT-1.1", "CKPT-1.2", "CKPT-1.3", "CKPT-2.1", "CKPT-3.1", "CKPT-3.3", "CKPT-3.4", "CKPT-5.1", "CKPT-5.3",
            "CKPT-5.4", "PLACE-1.1"]
    out.append(load_case("load-all", "Load every tier: the whole configuration and every tensor of INIT-2, bit for bit.",
                         base, fresh("load-all")))
    out.append(load_case("load-tierset", "Load under TierSet {0, 2}: the dense tensors and those of tiers 0 and 2; the "
                         "tensors of tier 1 are absent, never filled in.", base + ["CKPT-5.2"], fresh("load-ts"),
                         tierset=[0, 2]))
    d = fresh("load-damaged-outside")
    flip_byte(shard(d, "tier_b"))
    shard(d, "tier_c").unlink()
    out.append(load_case("load-damaged-shards-outside-tierset", "Tier 1's shard is corrupt and tier 2's is missing; "
                         "loading under {0} opens neither and succeeds.", ["CKPT-5.2", "CKPT-5.3"], d, tierset=[0]))
    d = fresh("load-foreign")
    data = shard(d, "tier_a").read_bytes()
    h = header_of(data)
    reordered = {"__metadata__": {"writer": "another safetensors writer"}, **dict(reversed(list(h.items())))}
    replace_shard(d, "tier_a", with_header(data, reordered))
    out.append(load_case("load-foreign-header-order", "Tier 0's shard has its header entries in reverse order and a "
                         "__metadata__ entry (as another safetensors writer may write it): readers accept it.",
                         ["CKPT-2.3", "CKPT-1.4"], d))
    from lite_llm.reference.expand import expand_checkpoint
    from lite_llm.spec.config import TierConfig

    d = fresh("load-expanded")
    expand_checkpoint(d, TierConfig("tier_d", 2, 2, 2, "Object"), 99)
    orig = fresh("load-orig")
    out.append(load_case("load-expanded-old-tierset", "A checkpoint expanded with a fourth tier, loaded under the old "
                         "TierSet {0, 1, 2}: the same tensors, bit for bit, as before the expansion.",
                         ["EXP-2.1", "EXP-1.3", "CKPT-5.3"], d, tierset=[0, 1, 2], check=same_tensors_as(orig)))
    return out


def same_tensors_as(orig: Path):
    def check(got):
        from lite_llm.reference.checkpoint import load_checkpoint

        _, w = load_checkpoint(orig)
        tensors = {k: v for k, v in got.items() if isinstance(v, np.ndarray)}
        if set(tensors) != set(w) or any(np.asarray(w[k]).tobytes() != tensors[k].tobytes() for k in w):
            raise GeneratorError("the expanded checkpoint does not load the original tensors")
    return check


def load_error_cases() -> list[CaseSpec]:
    out = []

    def err(name, desc, clauses, d, code, tierset=None, verify=True):
        out.append(load_case(f"load-errors/{name}", desc, clauses + ["CKPT-7.1"], d, tierset, verify, error=code))

    err("missing-directory", "The checkpoint directory does not exist.", ["CKPT-5.4"], SCRATCH / "does-not-exist",
        "E_CKPT_MISSING")
    d = fresh("no-manifest")
    (d / "manifest.json").unlink()
    err("missing-manifest", "The directory holds shards but no manifest.", ["CKPT-5.4", "CKPT-4.2"], d,
        "E_CKPT_MISSING")
    d = fresh("missing-shard")
    shard(d, "tier_b").unlink()
    err("missing-shard", "Tier 1's shard is missing.", ["CKPT-5.4"], d, "E_CKPT_MISSING")
    d = fresh("truncated")
    p = shard(d, "dense")
    p.write_bytes(p.read_bytes()[:-5])
    err("truncated-shard", "The dense shard is 5 bytes shorter than its entry says.", ["CKPT-5.4"], d,
        "E_CKPT_TRUNCATED")
    d = fresh("truncated-noverify")
    p = shard(d, "tier_a")
    p.write_bytes(p.read_bytes()[:-4])
    err("truncated-shard-without-hashing", "verify = false skips hashing, never the size check: a truncated shard is "
        "still refused.", ["CKPT-5.5"], d, "E_CKPT_TRUNCATED", verify=False)
    d = fresh("longer")
    p = shard(d, "tier_c")
    p.write_bytes(p.read_bytes() + b"\0\0\0\0")
    err("longer-shard", "Tier 2's shard has 4 bytes more than its entry says.", ["CKPT-5.4"], d, "E_CKPT_MISMATCH")
    d = fresh("hash")
    flip_byte(shard(d, "tier_a"))
    err("hash-mismatch", "One data byte of tier 0's shard changed: same size, other SHA-256.", ["CKPT-5.4", "CKPT-5.5"],
        d, "E_CKPT_HASH")
    for name, edit, why in (
            ("header-f16", lambda h: {k: ({**v, "dtype": "F16"} if k != "__metadata__" else v) for k, v in h.items()},
             "declares dtype F16"),
            ("header-gap", lambda h: {k: ({**v, "data_offsets": [v["data_offsets"][0] + 4, v["data_offsets"][1] + 4]}
                                          if i == len(h) - 1 else v) for i, (k, v) in enumerate(h.items())},
             "leaves a gap before its last tensor"),
            ("header-not-object", lambda h: [1, 2, 3], "is a JSON list")):
        d = fresh(name)
        data = shard(d, "dense").read_bytes()
        replace_shard(d, "dense", with_header(data, edit(header_of(data))))
        err(name, f"The dense shard's header {why}; the manifest records the shard's true hash and size.",
            ["CKPT-2.3", "CKPT-5.4"], d, "E_CKPT_HEADER")
    d = fresh("header-i32")
    data = shard(d, "dense").read_bytes()
    h = header_of(data)
    first = sorted(k for k in h if k != "__metadata__")[0]
    h[first] = {**h[first], "dtype": "I32"}
    replace_shard(d, "dense", with_header(data, h))
    err("header-dtype-same-size", f"The dense shard's header declares {first} as I32: a well-formed safetensors "
        "header (I32 has F32's element size, so the offsets fit) that disagrees with the manifest's F32; the manifest "
        "records the shard's true hash and size.", ["CKPT-5.4", "CKPT-2.3", "CKPT-1.3"], d, "E_CKPT_MISMATCH")
    d = fresh("extra-tensor")
    data = shard(d, "tier_a").read_bytes()
    h = header_of(data)
    end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
    h["zz.extra"] = {"dtype": "F32", "shape": [2], "data_offsets": [end, end + 8]}
    replace_shard(d, "tier_a", with_header(data, h) + struct.pack("<2f", 1.0, 2.0))
    err("shard-extra-tensor", "Tier 0's shard holds one tensor more than its manifest entry lists (a well-formed "
        "header and data; hash and size recorded).", ["CKPT-5.4", "CKPT-1.2"], d, "E_CKPT_MISMATCH")
    d = fresh("trailing-bytes")
    data = shard(d, "tier_c").read_bytes()
    replace_shard(d, "tier_c", data + b"\0" * 8)
    err("bytes-after-last-tensor", "Eight zero bytes follow the last tensor of tier 2's shard; the manifest records "
        "the shard's true hash and size, so only the header check (CKPT-2.3) can refuse it.", ["CKPT-2.3", "CKPT-5.4"],
        d, "E_CKPT_HEADER")
    d = fresh("header-huge")
    data = shard(d, "tier_c").read_bytes()
    replace_shard(d, "tier_c", struct.pack("<Q", 100_000_001) + data[8:])
    err("header-length-limit", "A header length of 100,000,001 bytes, above the safetensors limit.", ["CKPT-2.3"], d,
        "E_CKPT_HEADER")
    d = fresh("schema-json")
    (d / "manifest.json").write_text('{"format": "lite-llm-checkpoint", ')
    err("manifest-not-json", "The manifest is cut off mid-object.", ["CKPT-3.1"], d, "E_CKPT_SCHEMA")
    for name, edit, why, cl in (
            ("schema-version-2", lambda m: m.update(schema_version=2), "schema_version 2", ["CKPT-3.2"]),
            ("manifest-missing-field", lambda m: m.pop("dense"), "no dense entry", ["CKPT-3.1"]),
            ("manifest-invalid-config", lambda m: m["config"]["router"].update(k_tier=0), "a config with k_tier = 0",
             ["CKPT-3.1", "TIER-1.1"])):
        d = fresh(name)
        m = manifest(d)
        edit(m)
        write_manifest(d, m)
        err(name, f"The manifest has {why}.", cl, d, "E_CKPT_SCHEMA")
    for name, edit, why, cl in (
            ("placement-disagrees", lambda m: m["tiers"][1].update(placement="HBM"),
             "tier 1's placement differs from its config", ["CKPT-3.5", "CKPT-3.4", "PLACE-1.1"]),
            ("tensor-list-disagrees", lambda m: m["tiers"][0]["tensors"][0].update(shape=[9]),
             "a tensor shape in tier 0's entry differs from the config's", ["CKPT-3.5", "CKPT-3.3"]),
            ("budget-disagrees", lambda m: m["tiers"][2].update(budget=m["tiers"][2]["budget"] + 1),
             "tier 2's budget is not its parameter count", ["CKPT-3.5", "CKPT-3.4"])):
        d = fresh(name)
        m = manifest(d)
        edit(m)
        write_manifest(d, m)
        err(name, f"The manifest disagrees with itself: {why}.", cl, d, "E_CKPT_MISMATCH")
    d = fresh("shard-tensors")
    m = manifest(d)
    data_a, data_b = shard(d, "tier_a").read_bytes(), shard(d, "tier_b").read_bytes()
    replace_shard(d, "tier_a", data_b)
    err("shard-holds-other-tensors", "Tier 0's entry points to a file holding tier 1's tensors (hash and size "
        "updated).", ["CKPT-5.4", "CKPT-1.2"], d, "E_CKPT_MISMATCH")
    err("unknown-tier", "Loading under TierSet {0, 5} of a three-tier checkpoint, before any shard is opened.",
        ["CKPT-5.1", "TIER-2.2"], fresh("unknown-tier"), "E_UNKNOWN_TIER", tierset=[0, 5])
    return out


def verify_cases() -> list[CaseSpec]:
    out = []

    def case(name, desc, clauses, d, tierset=None):
        out.append(CaseSpec(f"checkpoint/{name}", desc, ["CKPT-6.2"] + clauses, "verify_checkpoint",
                            {"tierset": tierset}, {"checkpoint": d}))

    case("verify-valid", "A valid checkpoint: no problem, no orphan.", ["CKPT-5.5"], fresh("verify-valid"))
    d = fresh("verify-several")
    flip_byte(shard(d, "dense"))
    p = shard(d, "tier_c")
    p.write_bytes(p.read_bytes()[:-8])
    case("verify-reports-every-problem", "The dense shard's hash and tier 2's size are wrong: both are reported, each "
         "with its file and code.", ["CKPT-5.4", "CKPT-7.1"], d)
    d = fresh("verify-orphans")
    (d / ".tier-x.0123456789abcdef.safetensors.1a2b.tmp").write_bytes(b"partial")
    (d / "tier-tier_d.00000000deadbeef.safetensors").write_bytes(b"\0" * 16)
    case("verify-orphans-are-notes", "A temporary file and an uncommitted shard are reported as orphans and do not "
         "make the checkpoint invalid.", ["CKPT-6.3", "CKPT-4.1"], d)
    d = fresh("verify-tierset")
    flip_byte(shard(d, "tier_b"))
    case("verify-tierset", "Tier 1's shard is corrupt; the checkpoint is valid for TierSet {0, 2}.", ["CKPT-5.2"], d,
         tierset=[0, 2])
    d = fresh("verify-bad-manifest")
    m = manifest(d)
    m["schema_version"] = 7
    write_manifest(d, m)
    flip_byte(shard(d, "dense"))
    case("verify-bad-manifest", "A manifest that fails CKPT-3 is the one problem reported.", ["CKPT-3.2"], d)
    return out


def save_cases() -> list[CaseSpec]:
    cfg = ckpt_config()
    w = ckpt_weights(cfg)
    out = [CaseSpec("checkpoint/save", "Save a new checkpoint into a directory that does not exist yet: content-named "
                    "canonical shards (their SHA-256 compared) and the manifest (parsed).",
                    ["CKPT-1.1", "CKPT-1.2", "CKPT-1.3", "CKPT-1.4", "CKPT-2.1", "CKPT-2.2", "CKPT-3.1", "CKPT-3.3",
                     "CKPT-3.4", "CKPT-3.6", "CKPT-4.2", "PLACE-1.1"], "save_checkpoint", {},
                    {"checkpoint": SCRATCH / "save-target-does-not-exist", **w}, config=cfg, writable=("checkpoint",))]

    def err(name, desc, clauses, code, weights, target):
        out.append(CaseSpec(f"checkpoint/save-errors/{name}", desc, clauses + ["CKPT-7.1"], "save_checkpoint", {},
                            {"checkpoint": target, **weights}, config=cfg, writable=("checkpoint",), error=code))

    err("exists", "The directory already holds a checkpoint.", ["CKPT-4.4"], "E_CKPT_EXISTS", w, fresh("save-exists"))
    new = SCRATCH / "save-never-created"
    for name, edit, why in (("missing-tensor", lambda d: d.pop("layers.0.ffn_norm"), "a tensor is missing"),
                            ("extra-tensor", lambda d: d.__setitem__("layers.1.attn_norm", np.ones(8, np.float32)),
                             "a tensor the config does not define"),
                            ("wrong-shape", lambda d: d.__setitem__("embed", d["embed"][:7].copy()), "a wrong shape"),
                            ("float64", lambda d: d.__setitem__("lm_head", d["lm_head"].astype(np.float64)),
                             "a binary64 tensor")):
        ww = dict(w)
        edit(ww)
        err(name, f"Weights with {why} are refused before any file is written.", ["CKPT-4.5"], "E_CKPT_MISMATCH", ww,
            new)
    return out


def expand_cases() -> list[CaseSpec]:
    from lite_llm.reference.checkpoint import save_checkpoint

    out = []
    tier = {"name": "tier_d", "groups": 2, "experts_per_group": 2, "d_ff": 2, "placement": "Object"}
    base = ["EXP-1.1", "EXP-1.2", "EXP-1.3", "EXP-1.4", "EXP-1.7", "TIER-1.6", "CKPT-4.3"]

    def case(name, desc, clauses, d, tier, seed, error=None, check=None):
        out.append(CaseSpec(f"checkpoint/{name}", desc, clauses, "expand_checkpoint", {"tier": tier, "seed": seed},
                            {"checkpoint": d}, writable=("checkpoint",), error=error, check=check))

    d = fresh("expand")
    case("expand", "Append tier_d (2 groups of 2 experts, placement Object) under seed 2**63 + 7: the existing shards "
         "stay byte-identical, the new shard and the new manifest are written.", base, d, tier, hex((1 << 63) + 7),
         check=unchanged_shards(d))
    grown = ckpt_config()
    grown["tiers"].append(tier)
    init_grown = SCRATCH / "init-grown"
    save_checkpoint(init_grown, config_from_dict(grown), ckpt_weights(grown))
    case("expand-same-seed-equals-init", f"Expanding with the checkpoint's own INIT seed {WEIGHT_SEED} gives the "
         "checkpoint that INIT gives for the grown configuration, file for file.", base, fresh("expand-init"), tier,
         WEIGHT_SEED, check=same_files_as(init_grown))
    plain = {k: v for k, v in tier.items() if k != "placement"}
    case("expand-default-placement", "A new tier that declares no placement gets HBM.", ["EXP-1.7", "TIER-1.3"],
         fresh("expand-hbm"), plain, 1)
    for name, d, t, seed, code, why, cl in (
            ("name-exists", fresh("exp-name"), {**tier, "name": "tier_b"}, 1, "E_CKPT_TIER_EXISTS",
             "the new tier reuses the name tier_b", ["EXP-1.6"]),
            ("invalid-tier", fresh("exp-invalid"), {**tier, "groups": 0}, 1, "E_CONFIG", "the new tier has 0 groups",
             ["EXP-1.6", "TIER-1.1"]),
            ("bad-seed", fresh("exp-seed"), tier, -1, "E_SEED", "the seed is -1", ["EXP-1.1"]),
            ("damaged-shard", _damaged("exp-damaged"), tier, 1, "E_CKPT_HASH", "tier 0's shard is corrupt",
             ["EXP-1.5"]),
            ("truncated-shard", _truncated("exp-truncated"), tier, 1, "E_CKPT_TRUNCATED", "the dense shard is "
             "truncated", ["EXP-1.5"])):
        case(f"expand-errors/{name}", f"Expansion is refused ({why}) before any file is written.", cl + ["CKPT-7.1"], d,
             t, seed, error=code)
    return out


def _damaged(label: str) -> Path:
    d = fresh(label)
    flip_byte(shard(d, "tier_a"))
    return d


def _truncated(label: str) -> Path:
    d = fresh(label)
    p = shard(d, "dense")
    p.write_bytes(p.read_bytes()[:-1])
    return d


def unchanged_shards(before: Path):
    old = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in before.iterdir() if p.suffix == ".safetensors"}

    def check(got):
        sha = got["checkpoint.sha256"]
        if any(sha.get(name) != digest for name, digest in old.items()):
            raise GeneratorError("checkpoint/expand: an existing shard changed")
    return check


def same_files_as(target: Path):
    def check(got):
        want = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in target.iterdir()}
        have = {**got["checkpoint.sha256"], **{n: hashlib.sha256((target / n).read_bytes()).hexdigest()
                                               for n in got["checkpoint.json"] if (target / n).exists()
                                               and json.loads((target / n).read_text()) == got["checkpoint.json"][n]}}
        if have != want:
            raise GeneratorError("checkpoint/expand-same-seed-equals-init: not the INIT checkpoint of the grown config")
    return check


def cases() -> list[CaseSpec]:
    return load_cases() + load_error_cases() + verify_cases() + save_cases() + expand_cases()
