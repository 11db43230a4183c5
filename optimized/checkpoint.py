"""Loading a checkpoint by TierSet into torch tensors (spec chapter CKPT, reading side).

A checkpoint is a directory: ``manifest.json`` (CKPT-3) naming one dense shard and one shard per
tier, each a safetensors file (CKPT-2). ``load_checkpoint`` reads the manifest, resolves the
TierSet against its configuration (CKPT-5.1), then opens the dense shard and the TierSet's shards
only (CKPT-5.2), each checked in the order of CKPT-5.4 (exists, size, SHA-256 unless
``verify=False``, header, tensor list), and returns the configuration and the tensors of those
shards (CKPT-5.3), read through ``safetensors``' memory map. Written from the spec text; the
writer is the reference's (``lite-llm checkpoint``).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from lite_llm.spec import jsonio
from lite_llm.spec.config import ModelConfig, config_from_dict, config_schema
from lite_llm.spec.errors import (CheckpointError, CheckpointHashError, CheckpointHeaderError, CheckpointMismatchError,
                                  CheckpointMissingError, CheckpointSchemaError, CheckpointTruncatedError, ConfigError)
from lite_llm.spec.tensors import dense_shapes, tier_shapes
from lite_llm.spec.tierset import all_tiers, parse_tier_set
from lite_llm.spec.tierset import tier_set as resolve_tier_set

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1                    # CKPT-3.2: the manifest version this reader implements
MAX_HEADER = 100_000_000              # CKPT-2.3: the safetensors header limit
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}   # the dtypes safetensors defines


def byte_order(names) -> list[str]:
    return sorted(names, key=lambda n: n.encode("utf-8"))


@lru_cache(maxsize=None)
def _manifest_schema() -> dict:
    schema = json.loads(resources.files("lite_llm.spec").joinpath("schemas/manifest.schema.json").read_text())
    schema["properties"]["config"] = config_schema()          # the $ref by $id, resolved locally
    return schema


def read_manifest(directory: Path) -> tuple[dict, ModelConfig]:
    """The manifest of ``directory`` and its configuration, checked (CKPT-3.1, CKPT-3.2, CKPT-3.5)."""
    if not directory.is_dir():
        raise CheckpointMissingError("no checkpoint directory here" if not directory.exists()
                                     else "not a directory", path=directory)
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise CheckpointMissingError("the manifest does not exist", path=mpath)
    try:
        data = mpath.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read: {e}", path=mpath) from None
    return manifest_from_bytes(data, mpath)


def manifest_from_bytes(data: bytes, mpath) -> tuple[dict, ModelConfig]:
    """A manifest's bytes, from a file or a byte range of any storage, checked (CKPT-3.1, CKPT-3.2, CKPT-3.5);
    errors name ``mpath``."""
    try:
        raw = jsonio.loads(data.decode("utf-8"))                         # bounded depth and numbers
    except ValueError as e:
        raise CheckpointSchemaError(f"not UTF-8 JSON: {e}", path=mpath) from None
    if not isinstance(raw, dict):
        raise CheckpointSchemaError(f"a JSON {type(raw).__name__}, not an object", path=mpath)
    version = raw.get("schema_version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:                    # CKPT-3.2, before anything else
        raise CheckpointSchemaError(f"schema_version {version!r} is not one this reader implements "
                                    f"({SCHEMA_VERSION})", path=mpath)
    import jsonschema

    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_manifest_schema()).iter_errors(raw))
    if err is not None:
        raise CheckpointSchemaError(f"field {'/'.join(map(str, err.absolute_path)) or '(top level)'}: {err.message}",
                                    path=mpath)
    try:
        cfg = config_from_dict(raw["config"])
    except ConfigError as e:
        raise CheckpointSchemaError(f"invalid config: {e}", path=mpath) from None
    check_manifest_agrees(raw, cfg, Path(str(mpath)))
    return raw, cfg


def check_manifest_agrees(raw: dict, cfg: ModelConfig, mpath: Path) -> None:
    """CKPT-3.4, CKPT-3.5: the tier list, tensor lists, counts and files agree with the configuration."""
    def mismatch(msg):
        return CheckpointMismatchError(msg, path=mpath)

    if len(raw["tiers"]) != cfg.n_tiers:
        raise mismatch(f"{len(raw['tiers'])} tier entries for a config of {cfg.n_tiers} tiers")
    entries = [("dense", raw["dense"], dense_shapes(cfg))]
    for i, (e, t) in enumerate(zip(raw["tiers"], cfg.tiers)):
        if (e["id"], e["name"], e["placement"]) != (i, t.name, t.placement):
            raise mismatch(f"tier entry {i} is ({e['id']}, {e['name']!r}, {e['placement']!r}); "
                           f"the config says ({i}, {t.name!r}, {t.placement!r})")
        entries.append((f"tier {t.name}", e, tier_shapes(cfg, i)))
    for label, e, shapes in entries:
        listed = [(t["name"], t["dtype"], tuple(t["shape"])) for t in e["tensors"]]
        want = [(n, "F32", shapes[n]) for n in byte_order(shapes)]
        if listed != want:
            bad = next((a, b) for a, b in zip(listed + [None] * len(want), want + [None] * len(listed)) if a != b)
            raise mismatch(f"{label}: tensor list differs from the config's at {bad[0]} (expected {bad[1]})")
        n = sum(math.prod(s) for s in shapes.values())
        if e["parameters"] != n:
            raise mismatch(f"{label}: parameters {e['parameters']}, its tensors hold {n}")
        if "budget" in e and e["budget"] != n:
            raise mismatch(f"{label}: budget {e['budget']} is not its parameter count {n}")
    files = [e["file"] for _, e, _ in entries]
    if len(set(files)) != len(files):
        raise mismatch(f"two entries name the same file: {sorted(f for f in set(files) if files.count(f) > 1)}")


def header_length(head: bytes, size: int, path) -> int:
    """The header length of a shard from its first 8 bytes, within the limit and the file (CKPT-2.3)."""
    if len(head) < 8:
        raise CheckpointTruncatedError("shorter than the 8-byte header length", path=path)
    n = struct.unpack("<Q", head)[0]
    if n > MAX_HEADER:
        raise CheckpointHeaderError(f"header length {n} exceeds {MAX_HEADER} bytes", path=path)
    if 8 + n > size:
        raise CheckpointTruncatedError(f"the header ({n} bytes) runs past the end of the file", path=path)
    return n


def check_header(path: Path, size: int) -> dict[str, tuple[tuple[int, ...], int, int, str]]:
    """Parse and check a shard file's safetensors header (CKPT-2.1, CKPT-2.3); see :func:`header_from_bytes`."""
    with open(path, "rb") as f:
        n = header_length(f.read(8), size, path)
        return header_from_bytes(f.read(n), size, path)


def header_from_bytes(text: bytes, size: int, path) -> dict[str, tuple[tuple[int, ...], int, int, str]]:
    """The header ``text`` of a shard of ``size`` bytes, checked (CKPT-2.1, CKPT-2.3): name -> (shape, begin,
    end, dtype), offsets within the data. Any dtype safetensors defines is well formed here; that it is F32,
    as the manifest says, is check 5 of CKPT-5.4 (:func:`check_shard_tensors`)."""
    n = len(text)
    try:
        header = jsonio.loads(text.decode("utf-8"))                     # bounded depth and numbers
    except ValueError as e:
        raise CheckpointHeaderError(f"header is not UTF-8 JSON: {e}", path=path) from None
    if not isinstance(header, dict):
        raise CheckpointHeaderError("header is not a JSON object", path=path)
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise CheckpointHeaderError("__metadata__ is not a map of strings to strings", path=path)
    out = {}
    for name, e in header.items():
        ok = (isinstance(e, dict) and set(e) == {"dtype", "shape", "data_offsets"} and isinstance(e["shape"], list)
              and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in e["shape"])
              and isinstance(e["data_offsets"], list) and len(e["data_offsets"]) == 2
              and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in e["data_offsets"]))
        if not ok:
            raise CheckpointHeaderError(f"entry {name!r} is not {{dtype, shape, data_offsets}}", path=path)
        if e["dtype"] not in ITEMSIZE:
            raise CheckpointHeaderError(f"tensor {name!r} has dtype {e['dtype']!r}, which safetensors does not define",
                                        path=path)
        b, end = e["data_offsets"]
        if end - b != ITEMSIZE[e["dtype"]] * math.prod(e["shape"]):
            raise CheckpointHeaderError(f"tensor {name!r}: {end - b} bytes for {e['dtype']} {e['shape']}", path=path)
        out[name] = (tuple(e["shape"]), b, end, e["dtype"])
    data = size - 8 - n
    pos = 0
    for name, (_, b, end, _) in sorted(out.items(), key=lambda kv: (kv[1][1], kv[1][2])):
        if b != pos:
            raise CheckpointHeaderError(f"tensor {name!r} starts at {b}, expected {pos} (gap or overlap)", path=path)
        pos = end
    if pos > data:
        raise CheckpointTruncatedError(f"tensor data ends at {pos}, the file holds {data} bytes of data", path=path)
    if pos < data:
        raise CheckpointHeaderError(f"{data - pos} bytes after the last tensor", path=path)
    return out


def check_shard_tensors(header: dict, entry: dict, path) -> None:
    """CKPT-5.4 check 5: the shard holds exactly the manifest's tensors, with its dtypes and shapes."""
    listed = {t["name"]: tuple(t["shape"]) for t in entry["tensors"]}
    dtypes = {t["name"]: t["dtype"] for t in entry["tensors"]}
    for name in byte_order(set(listed) | set(header)):
        if name not in header:
            raise CheckpointMismatchError(f"tensor {name} is listed in the manifest but not in the shard", path=path)
        if name not in listed:
            raise CheckpointMismatchError(f"tensor {name} is in the shard but not in the manifest", path=path)
        if header[name][3] != dtypes[name]:
            raise CheckpointMismatchError(f"tensor {name} has dtype {header[name][3]}, the manifest says "
                                          f"{dtypes[name]}", path=path)
        if header[name][0] != listed[name]:
            raise CheckpointMismatchError(f"tensor {name} has shape {list(header[name][0])}, the manifest says "
                                          f"{list(listed[name])}", path=path)


def open_shard(directory: Path, entry: dict, verify: bool) -> Path:
    """The checks of CKPT-5.4 on one shard, in order; returns its path."""
    path = directory / entry["file"]
    if not path.is_file():
        raise CheckpointMissingError("the shard does not exist", path=path)
    size = path.stat().st_size
    if size < entry["bytes"]:
        raise CheckpointTruncatedError(f"{size} bytes, the manifest records {entry['bytes']}", path=path)
    if size > entry["bytes"]:
        raise CheckpointMismatchError(f"{size} bytes, the manifest records {entry['bytes']}", path=path)
    if verify:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        if h.hexdigest() != entry["sha256"]:
            raise CheckpointHashError(f"SHA-256 {h.hexdigest()} differs from the manifest's {entry['sha256']}",
                                      path=path)
    check_shard_tensors(check_header(path, size), entry, path)
    return path


def load_checkpoint(path: str | os.PathLike, tiers=None, *, verify: bool = True,
                    device="cpu") -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(configuration, tensors of the dense shard and of the TierSet's shards) (CKPT-5.1 .. CKPT-5.5).

    ``tiers``: the TierSet (names or ids, or the string form ``all``, ``exclusive:NAME``,
    ``cumulative:NAME``, ``a,b``; default every tier). Tensors of tiers outside it are
    absent. ``verify=False`` skips the SHA-256 (CKPT-5.5); every other check runs. Nothing is
    returned unless every shard opened passes.
    """
    directory = Path(path)
    raw, cfg = read_manifest(directory)
    if tiers is None:                                                                # CKPT-5.1
        tier_ids = all_tiers(cfg)
    elif isinstance(tiers, str):
        tier_ids = parse_tier_set(cfg, tiers)                                        # all, exclusive:NAME, a,b
    else:
        tier_ids = resolve_tier_set(cfg, tiers)
    paths = [open_shard(directory, raw["dense"], verify)] + \
            [open_shard(directory, raw["tiers"][t], verify) for t in tier_ids]      # CKPT-5.2, CKPT-5.4
    from safetensors.torch import safe_open

    out: dict[str, torch.Tensor] = {}
    for p in paths:
        try:
            with safe_open(str(p), framework="pt", device=str(device)) as f:
                for name in f.keys():
                    out[name] = f.get_tensor(name)
        except OSError as e:
            raise CheckpointError(f"cannot read: {e}", path=p) from None
    return cfg, out
