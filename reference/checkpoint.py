"""Tier-indexed checkpoints: a JSON manifest, one safetensors shard per tier and a dense shard (CKPT chapter).

A checkpoint is a directory (CKPT-1.1)::

    manifest.json                          the commit point (CKPT-3, CKPT-4.2)
    dense.{h}.safetensors                  embedding, attention, norms, LM head (CKPT-1.2)
    tier-{NAME}.{h}.safetensors            tier NAME's router heads and experts, every layer
    .lite-llm.lock                         only while a writer works, or left by a killed one (CKPT-4.6)

``{h}`` is the first 16 hex digits of the file's SHA-256 (CKPT-1.4), so a changed shard is always
a new file and no committed file is ever rewritten. Loading under a TierSet opens the manifest, the
dense shard and the TierSet's shards only, and maps them into memory (CKPT-5.2, CKPT-5.6).

Writers (``save_checkpoint`` here, ``expand_checkpoint`` in ``expand``) hold an exclusive ``flock``
on the lock file from reading the manifest to committing the new one (CKPT-4.6), and check the
manifest's generation, the SHA-256 of its bytes, just before and just after the commit (CKPT-4.7),
so no writer that reports success can be lost to a concurrent one. Readers never lock.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from lite_llm.spec import jsonio
from lite_llm.spec.config import SPEC_VERSION, ModelConfig, config_from_dict, config_schema, config_to_dict
from lite_llm.spec.errors import (
    CheckpointConflictError,
    CheckpointError,
    CheckpointExistsError,
    CheckpointHashError,
    CheckpointHeaderError,
    CheckpointMismatchError,
    CheckpointMissingError,
    CheckpointSchemaError,
    CheckpointTruncatedError,
    ConfigError,
)
from lite_llm.spec.tierset import parse_tier_set, tier_set

from .weights import dense_shapes, tier_shapes

MANIFEST = "manifest.json"
LOCK = ".lite-llm.lock"           # CKPT-4.6: the writers' lock file; never part of the checkpoint (CKPT-6.4)
HASH_SIDECAR = "expert-hashes.json"   # PLACE-4.10's block hashes beside the shards; no orphan (CKPT-6.5)
FORMAT = "lite-llm-checkpoint"
SCHEMA_VERSION = 1                # CKPT-3.2: the one manifest version this reader implements
DTYPE = "F32"                     # CKPT-1.3: binary32, little-endian
MAX_HEADER = 100_000_000          # CKPT-2.3: the safetensors header limit
HASH_CHUNK = 1 << 24              # bytes read per step when hashing a shard
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}   # safetensors dtypes (CKPT-2.3)


# ----------------------------------------------------------------------------------------------
# The manifest (CKPT-3)

@dataclass(frozen=True)
class Manifest:
    """A manifest that passed CKPT-3.1 .. CKPT-3.5, with the configuration it holds."""

    directory: Path        # the checkpoint directory
    raw: dict              # the manifest's JSON object as read (or as written)
    cfg: ModelConfig       # raw["config"], validated (TIER-1.1)
    generation: str = ""   # SHA-256 of the manifest file's bytes as read or written (CKPT-4.7)

    @property
    def dense(self) -> dict:
        return self.raw["dense"]

    @property
    def tiers(self) -> list[dict]:
        return self.raw["tiers"]

    def shards(self, tier_ids: Iterable[int] | None = None) -> list[tuple[str, dict]]:
        """(label, entry) of the dense shard and of the given tiers' shards (default: all), dense first."""
        ids = range(self.cfg.n_tiers) if tier_ids is None else tier_ids
        return [("dense shard", self.dense)] + [(f"shard of tier {self.tiers[i]['name']!r}", self.tiers[i]) for i in ids]


def by_bytes(names: Iterable[str]) -> list[str]:
    """Names in ascending byte order of their UTF-8 encoding (CKPT-2.2, CKPT-3.3)."""
    return sorted(names, key=lambda n: n.encode("utf-8"))


def tensor_list(shapes: dict[str, tuple[int, ...]]) -> list[dict]:
    """The ``tensors`` field of a shard entry: name, dtype, shape, in byte order of name (CKPT-3.3)."""
    return [{"name": n, "dtype": DTYPE, "shape": list(shapes[n])} for n in by_bytes(shapes)]


def count(shapes: Iterable[Iterable[int]]) -> int:
    """Number of elements of tensors with these shapes (exact Python integers)."""
    return sum(math.prod(s) for s in shapes)


def expected_shapes(cfg: ModelConfig, tier: int | None) -> dict[str, tuple[int, ...]]:
    """The tensors of the dense shard (tier None) or of tier ``tier``'s shard (CKPT-1.2)."""
    return dense_shapes(cfg) if tier is None else tier_shapes(cfg, tier)


@lru_cache(maxsize=None)
def manifest_validator():
    """A validator of ``schemas/manifest.schema.json``, with the config schema its ``config`` ``$ref``
    names (by ``$id``) put in place, so nothing is fetched and any jsonschema 4 resolves it."""
    import jsonschema

    schema = json.loads(resources.files("lite_llm.spec").joinpath("schemas/manifest.schema.json").read_text())
    config = schema["properties"]["config"]
    assert config["$ref"] == config_schema()["$id"], "manifest schema and config schema disagree on the $id"
    schema["properties"]["config"] = config_schema()
    return jsonschema.Draft202012Validator(schema)


def generation_of(data: bytes) -> str:
    """The generation of a checkpoint whose manifest file holds ``data``: its SHA-256, hex (CKPT-4.7)."""
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(raw: dict) -> bytes:
    """The deterministic serialisation of CKPT-3.6: sorted keys, 2-space indent, ASCII, final newline."""
    return (json.dumps(raw, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def build_manifest(cfg: ModelConfig, dense: dict, tiers: list[dict]) -> dict:
    """A manifest object from the configuration and the shard entries (CKPT-3.1)."""
    return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "spec_version": SPEC_VERSION,
            "config": config_to_dict(cfg), "dense": dense, "tiers": tiers}


def tier_entry(cfg: ModelConfig, tier: int, shard: dict) -> dict:
    """A tier entry: the shard entry plus id, name, placement and budget B_t (CKPT-3.4)."""
    t = cfg.tiers[tier]
    return {"id": tier, "name": t.name, "placement": t.placement, "budget": shard["parameters"], **shard}


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read and check a checkpoint's manifest (CKPT-3.1 .. CKPT-3.5); opens no shard."""
    directory = Path(path)
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise CheckpointMissingError(f"the checkpoint directory {what}", path=directory)
    mpath = directory / MANIFEST
    try:
        text = mpath.read_bytes()
    except FileNotFoundError:
        raise CheckpointMissingError("the manifest does not exist (a save that never committed leaves none, "
                                     "CKPT-4.2)", path=mpath) from None
    except OSError as e:
        raise CheckpointError(f"cannot read the manifest: {e.strerror}", path=mpath) from None
    cfg = checked_manifest(text, str(mpath))
    return Manifest(directory, jsonio.loads(text), cfg, generation_of(text))


@lru_cache(maxsize=64)
def checked_manifest(text: bytes, mpath: str) -> ModelConfig:
    """CKPT-3.1, CKPT-3.2, CKPT-3.5 on a manifest's bytes; its config. Cached by content: JSON Schema
    validation costs milliseconds per tensor entry, and a process reads the same manifest often."""
    try:
        raw = jsonio.loads(text.decode("utf-8"))                       # bounded depth and numbers
    except ValueError as e:                                            # not UTF-8, not JSON, or out of bounds
        raise CheckpointSchemaError(f"the manifest is not UTF-8 JSON within bounds: {e}", path=mpath) from None
    if not isinstance(raw, dict):
        raise CheckpointSchemaError(f"the manifest is a JSON {type(raw).__name__}, not an object", path=mpath)
    version = raw.get("schema_version")                                        # CKPT-3.2: first
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise CheckpointSchemaError(f"schema_version {version!r} is not implemented by this reader "
                                    f"(it implements {SCHEMA_VERSION})", path=mpath)
    import jsonschema

    err = jsonschema.exceptions.best_match(manifest_validator().iter_errors(raw))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise CheckpointSchemaError(f"manifest field {where}: {err.message}", path=mpath)
    try:
        cfg = config_from_dict(raw["config"])
    except ConfigError as e:
        raise CheckpointSchemaError(f"the manifest's config is invalid: {e}", path=mpath) from None
    check_manifest(raw, cfg, Path(mpath))
    return cfg


def check_manifest(raw: dict, cfg: ModelConfig, mpath: Path) -> None:
    """The manifest agrees with its own configuration (CKPT-3.4, CKPT-3.5)."""
    tiers = raw["tiers"]
    if len(tiers) != cfg.n_tiers:
        raise CheckpointMismatchError(f"the manifest lists {len(tiers)} tiers, its config has {cfg.n_tiers}", path=mpath)
    for i, (entry, t) in enumerate(zip(tiers, cfg.tiers)):
        for field, want in (("id", i), ("name", t.name), ("placement", t.placement)):
            if entry[field] != want:
                raise CheckpointMismatchError(f"tiers/{i}/{field} is {entry[field]!r}, the config says {want!r}",
                                              path=mpath)
        if entry["budget"] != entry["parameters"]:
            raise CheckpointMismatchError(f"tiers/{i}/budget {entry['budget']} is not the tier's parameter count "
                                          f"{entry['parameters']}", path=mpath)
    for where, entry, tier in [("dense", raw["dense"], None)] + [(f"tiers/{i}", e, i) for i, e in enumerate(tiers)]:
        check_tensor_list(where, entry["tensors"], expected_shapes(cfg, tier), mpath)
        n = count(t["shape"] for t in entry["tensors"])
        if entry["parameters"] != n:
            raise CheckpointMismatchError(f"{where}/parameters is {entry['parameters']}, its tensors hold {n}",
                                          path=mpath)
    files = [raw["dense"]["file"]] + [e["file"] for e in tiers]
    dup = by_bytes({f for f in files if files.count(f) > 1})
    if dup:
        raise CheckpointMismatchError(f"several entries name the file(s) {', '.join(dup)}", path=mpath)


def check_tensor_list(where: str, listed: list[dict], shapes: dict[str, tuple[int, ...]], mpath: Path) -> None:
    """A manifest ``tensors`` list equals what the config implies, in byte order (CKPT-3.3, CKPT-3.5)."""
    names = [t["name"] for t in listed]
    missing = [n for n in shapes if n not in names]
    if missing:
        raise CheckpointMismatchError(f"{where}/tensors lacks {missing[0]}, which the config defines "
                                      f"({len(missing)} missing)", path=mpath)
    extra = [n for n in names if n not in shapes]
    if extra:
        raise CheckpointMismatchError(f"{where}/tensors lists {extra[0]}, which the config does not define "
                                      f"for this shard", path=mpath)
    if names != by_bytes(shapes):
        raise CheckpointMismatchError(f"{where}/tensors is not one entry per tensor in ascending name order",
                                      path=mpath)
    for t in listed:
        if tuple(t["shape"]) != shapes[t["name"]]:
            raise CheckpointMismatchError(f"{where}: tensor {t['name']} has shape {t['shape']} in the manifest, "
                                          f"the config implies {list(shapes[t['name']])}", path=mpath)


# ----------------------------------------------------------------------------------------------
# Shards (CKPT-2)

def shard_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """The canonical safetensors bytes of binary32 tensors (CKPT-2.2), written by safetensors itself."""
    from safetensors.numpy import save

    return save({n: np.ascontiguousarray(tensors[n], dtype="<f4") for n in by_bytes(tensors)})


@dataclass(frozen=True)
class ShardHeader:
    """A shard's parsed header (CKPT-2.1): where the data starts and each tensor's place in it."""

    data_start: int                                             # 8 + N
    tensors: dict[str, tuple[str, tuple[int, ...], int, int]]   # name -> (dtype, shape, begin, end)


def read_header(path: Path, size: int) -> ShardHeader:
    """Parse and check a safetensors header against the file's size (CKPT-2.3)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointTruncatedError(f"holds {size} bytes, fewer than the 8 of a header length", path=path)
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER:
            raise CheckpointHeaderError(f"header length {n} exceeds the limit of {MAX_HEADER} bytes", path=path)
        if 8 + n > size:
            raise CheckpointTruncatedError(f"the header claims {n} bytes, the file holds {size - 8} after the "
                                           f"length", path=path)
        text = f.read(n)
    try:
        header = jsonio.loads(text.decode("utf-8"))                    # bounded depth and numbers
    except ValueError as e:
        raise CheckpointHeaderError(f"the header is not UTF-8 JSON within bounds: {e}", path=path) from None
    if not isinstance(header, dict):
        raise CheckpointHeaderError("the header is not a JSON object", path=path)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise CheckpointHeaderError("__metadata__ is not an object of strings", path=path)
            continue
        tensors[name] = header_entry(name, info, path)
    pos = 0
    for name, (_, _, begin, end) in sorted(tensors.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != pos:
            raise CheckpointHeaderError(f"tensor {name}'s data starts at {begin}, expected {pos} "
                                        f"({'a gap' if begin > pos else 'an overlap'} in the data)", path=path)
        pos = end
    have = size - 8 - n
    if pos > have:
        raise CheckpointTruncatedError(f"the header describes {pos} data bytes, the file holds {have}", path=path)
    if pos < have:
        raise CheckpointHeaderError(f"{have - pos} bytes follow the last tensor", path=path)
    return ShardHeader(8 + n, tensors)


def header_entry(name: str, info, path: Path) -> tuple[str, tuple[int, ...], int, int]:
    """One header entry, checked: a known dtype, a shape, offsets that span the shape exactly (CKPT-2.3)."""
    def bad(what):
        return CheckpointHeaderError(f"tensor {name}: {what}", path=path)

    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise bad("entry is not an object with dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in ITEMSIZE:
        raise bad(f"dtype {dtype!r} is not a safetensors dtype")
    ints = lambda xs: isinstance(xs, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in xs)
    if not ints(shape):
        raise bad(f"shape {shape!r} is not a list of non-negative integers")
    if not ints(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
        raise bad(f"data_offsets {offsets!r} is not [begin, end] with begin <= end")
    if offsets[1] - offsets[0] != ITEMSIZE[dtype] * math.prod(shape):
        raise bad(f"data_offsets {offsets} span {offsets[1] - offsets[0]} bytes, shape {shape} of {dtype} needs "
                  f"{ITEMSIZE[dtype] * math.prod(shape)}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, lowercase hex, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def open_shard(directory: Path, label: str, entry: dict, *, hash_it: bool) -> ShardHeader:
    """Checks (1) .. (5) of CKPT-5.4 on one shard, in order; the first failure is raised, naming the file."""
    path = directory / entry["file"]
    try:
        size = path.stat().st_size                                              # (1) exists
    except FileNotFoundError:
        raise CheckpointMissingError(f"the {label} does not exist", path=path) from None
    if not path.is_file():
        raise CheckpointMissingError(f"the {label} is not a regular file", path=path)
    if size != entry["bytes"]:                                                  # (2) size
        cls = CheckpointTruncatedError if size < entry["bytes"] else CheckpointMismatchError
        raise cls(f"the {label} holds {size} bytes, the manifest records {entry['bytes']}", path=path)
    try:
        if hash_it:                                                             # (3) SHA-256
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                raise CheckpointHashError(f"the {label}'s SHA-256 is {digest}, the manifest records "
                                          f"{entry['sha256']}: the file changed after it was written", path=path)
        header = read_header(path, size)                                        # (4) well-formed header
    except OSError as e:
        raise CheckpointError(f"cannot read the {label}: {e.strerror}", path=path) from None
    listed = {t["name"]: (t["dtype"], tuple(t["shape"])) for t in entry["tensors"]}   # (5) header == manifest
    for name, want in listed.items():
        if name not in header.tensors:
            raise CheckpointMismatchError(f"tensor {name}, listed in the manifest, is not in the {label}", path=path)
        got = header.tensors[name][:2]
        if got != want:
            raise CheckpointMismatchError(f"tensor {name} is {got[0]} {list(got[1])} in the {label}, the manifest "
                                          f"records {want[0]} {list(want[1])}", path=path)
    extra = by_bytes(set(header.tensors) - set(listed))
    if extra:
        raise CheckpointMismatchError(f"tensor {extra[0]} in the {label} is not in the manifest", path=path)
    return header


def map_shard(path: Path, header: ShardHeader) -> dict[str, np.ndarray]:
    """Read-only binary32 arrays over a memory map of the shard (CKPT-5.6); nothing is read yet."""
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, (_, shape, begin, end) in header.tensors.items():
        lo = header.data_start + begin
        out[name] = np.asarray(mm[lo: lo + end - begin]).view("<f4").reshape(shape)   # shape as in the header
    return out


# ----------------------------------------------------------------------------------------------
# Writing (CKPT-4)

def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries to stable storage (CKPT-4.1: SHOULD); skipped where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (CKPT-4.1): temporary file, fsync, rename, fsync the directory."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)                 # CKPT-4.1: an error leaves no temporary file
            raise
    except OSError as e:
        raise CheckpointError(f"cannot write: {e.strerror}", path=path) from None
    fsync_dir(path.parent)


def write_shard(directory: Path, stem: str, tensors: dict[str, np.ndarray]) -> dict:
    """Write one shard under its content name (CKPT-1.4, CKPT-2.2) and return its entry (CKPT-3.3).

    The name changes with the content, so this never replaces a file a committed manifest names
    with different bytes (CKPT-4.3); at most it rewrites an uncommitted orphan with the same bytes.
    """
    data = shard_bytes(tensors)
    digest = hashlib.sha256(data).hexdigest()
    file = f"{stem}.{digest[:16]}.safetensors"
    write_file_atomic(directory / file, data)
    shapes = {n: tuple(a.shape) for n, a in tensors.items()}
    return {"file": file, "sha256": digest, "bytes": len(data), "parameters": count(shapes.values()),
            "tensors": tensor_list(shapes)}


@contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Hold the checkpoint's exclusive writer lock, waiting for it as long as another writer holds it (CKPT-4.6).

    An ``flock`` on ``directory/.lite-llm.lock`` through ``filelock``, with its soft (existence)
    fallback off: the kernel drops the lock when its holder dies, even by SIGKILL, so a killed writer
    never blocks the next one. ``filelock`` retries when the inode it locked was unlinked meanwhile,
    which is what lets the holder remove the file as its last step before releasing (the directory of
    a committed checkpoint then holds exactly the files CKPT-1.1 names). The directory must exist.
    Other threads contend like other processes (an flock belongs to an open file); the lock is not
    re-entrant: taking it again in the thread that holds it is a deadlock, which ``filelock`` reports
    with a RuntimeError.
    """
    from filelock import FileLock

    path = directory / LOCK
    lock = FileLock(str(path), timeout=-1, fallback_to_soft=False)
    try:
        lock.acquire()
    except OSError as e:
        raise CheckpointError(f"cannot take the writer lock: {e.strerror or e}", path=path) from None
    try:
        try:
            held = os.stat(path)
        except OSError:
            held = None
        yield
    finally:
        try:
            # CKPT-4.6: the holder removes the lock file before it releases the lock, and only its own
            # file (a writer that deleted the file by hand and took a new one must keep its lock).
            if held is not None and os.path.samestat(os.stat(path), held):
                path.unlink()
        except OSError:
            pass
        finally:
            lock.release()


def current_generation(directory: Path) -> str | None:
    """The generation of the manifest now on disk, None without one (CKPT-4.7)."""
    mpath = directory / MANIFEST
    try:
        return generation_of(mpath.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CheckpointError(f"cannot read the manifest: {e.strerror}", path=mpath) from None


def commit_manifest(directory: Path, raw: dict, planned: str | None) -> str:
    """Write the manifest, the commit (CKPT-4.2), under the generation check of CKPT-4.7; its generation.

    Called with the writer lock held. ``planned`` is the generation the writer planned against (None:
    no manifest, a save). A different manifest on disk just before the commit, or another than the
    one written just after it, raises E_CKPT_CONFLICT, so success is never reported for a manifest
    that is not the one on disk.
    """
    mpath = directory / MANIFEST
    now = current_generation(directory)
    if now != planned:
        what = "a manifest appeared" if planned is None else (
            "the manifest was removed" if now is None else f"the manifest changed (generation {now[:16]}...)")
        raise CheckpointConflictError(f"{what} since this writer read the checkpoint (generation "
                                      f"{(planned or 'none')[:16]}); a writer that does not take the lock "
                                      f"{LOCK} is at work; nothing was committed", path=mpath)
    data = manifest_bytes(raw)
    write_file_atomic(mpath, data)                                              # CKPT-4.2: the commit
    mine = generation_of(data)
    if current_generation(directory) != mine:
        raise CheckpointConflictError(f"the manifest on disk is not the one just committed (generation "
                                      f"{mine[:16]}): another writer replaced it; this write is lost", path=mpath)
    return mine


def check_weights(cfg: ModelConfig, weights: dict[str, np.ndarray]) -> None:
    """The weights are exactly the config's tensors, binary32, of the right shapes (CKPT-4.5)."""
    want = dict(dense_shapes(cfg))
    for t in range(cfg.n_tiers):
        want.update(tier_shapes(cfg, t))
    missing = [n for n in want if n not in weights]
    if missing:
        raise CheckpointMismatchError(f"the weights lack tensor {missing[0]} ({len(missing)} missing)")
    extra = by_bytes(n for n in weights if n not in want)
    if extra:
        raise CheckpointMismatchError(f"the weights hold tensor {extra[0]}, which the config does not define")
    for n, shape in want.items():
        a = weights[n]
        if not isinstance(a, np.ndarray) or a.dtype != np.float32:
            what = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise CheckpointMismatchError(f"tensor {n} is {what}, not binary32 (float32)")
        if a.shape != shape:
            raise CheckpointMismatchError(f"tensor {n} has shape {list(a.shape)}, the config implies {list(shape)}")


def save_checkpoint(path: str | os.PathLike, cfg: ModelConfig, weights: dict[str, np.ndarray]) -> Manifest:
    """Save a new checkpoint: every shard, then the manifest (CKPT-1 .. CKPT-4).

    Refuses a directory that already holds a manifest (CKPT-4.4) and weights that do not match the
    config (CKPT-4.5), before writing anything. The writer lock (CKPT-4.6) is held from the check for
    a manifest to the commit, so of concurrent saves into one directory exactly one succeeds and the
    others get E_CKPT_EXISTS having written no shard (CKPT-4.8); the commit is generation-checked
    (CKPT-4.7).
    """
    directory = Path(path)
    check_weights(cfg, weights)

    def refuse_existing():
        if (directory / MANIFEST).exists():
            raise CheckpointExistsError("already holds a checkpoint; expand it or save elsewhere", path=directory)

    refuse_existing()                            # CKPT-4.8: MAY, before the lock, so a refusal creates nothing
    if directory.exists() and not directory.is_dir():
        raise CheckpointError("exists and is not a directory", path=directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the checkpoint directory: {e.strerror}", path=directory) from None
    with writer_lock(directory):                                                # CKPT-4.6
        refuse_existing()                                                       # CKPT-4.8: MUST, under the lock
        dense = write_shard(directory, "dense", {n: weights[n] for n in dense_shapes(cfg)})
        tiers = [tier_entry(cfg, i, write_shard(directory, f"tier-{t.name}",
                                                {n: weights[n] for n in tier_shapes(cfg, i)}))
                 for i, t in enumerate(cfg.tiers)]
        raw = build_manifest(cfg, dense, tiers)
        generation = commit_manifest(directory, raw, None)                      # CKPT-4.2, CKPT-4.7
    return Manifest(directory, raw, cfg, generation)


# ----------------------------------------------------------------------------------------------
# Loading and verification (CKPT-5, CKPT-6)

def resolve_tiers(cfg: ModelConfig, tiers) -> tuple[int, ...]:
    """The TierSet of a load or verify (CKPT-5.1): None = every tier, a string in the CLI form, or names/ids."""
    if tiers is None:
        return tuple(range(cfg.n_tiers))
    if isinstance(tiers, str):
        return parse_tier_set(cfg, tiers)
    return tier_set(cfg, tiers)


def load_checkpoint(path: str | os.PathLike, tiers=None, *, verify: bool = True) -> tuple[ModelConfig, dict]:
    """The config and the tensors of the dense shard and of the TierSet's tiers (CKPT-5.1 .. CKPT-5.6).

    ``tiers``: None (every tier), a TierSet string (``all``, ``exclusive:NAME``, ``cumulative:NAME``,
    ``a,b``) or an iterable of tier names or ids. The returned config is the whole ``T_max``; tensors
    of tiers outside the TierSet are absent (CKPT-5.3). Arrays are read-only memory maps of the
    shards, in canonical order (dense, then tiers by id). ``verify=False`` skips the SHA-256 of the
    opened shards; sizes and headers are checked regardless (CKPT-5.5).
    """
    m = read_manifest(path)
    ids = resolve_tiers(m.cfg, tiers)                                           # CKPT-5.1: before any shard
    shards = m.shards(ids)
    headers = [open_shard(m.directory, label, entry, hash_it=verify) for label, entry in shards]   # CKPT-5.4
    weights: dict[str, np.ndarray] = {}
    for (label, entry), header, tier in zip(shards, headers, (None, *ids)):
        arrays = map_shard(m.directory / entry["file"], header)
        weights.update((n, arrays[n]) for n in expected_shapes(m.cfg, tier))
    return m.cfg, weights


@dataclass(frozen=True)
class Problem:
    """One problem verification found: the file, the error code and clause, and what is wrong."""

    file: str
    code: str
    clause: str
    message: str

    @classmethod
    def of(cls, e: CheckpointError) -> "Problem":
        return cls(e.path, e.code, e.clause, e.problem)


@dataclass(frozen=True)
class ShardCheck:
    """The outcome of checking one shard: its file, what it holds, and its problem (None if it passed)."""

    file: str
    label: str
    problem: Problem | None


@dataclass(frozen=True)
class VerifyReport:
    """The result of verifying a checkpoint for a TierSet (CKPT-6.1 .. CKPT-6.3)."""

    directory: str
    tier_set: tuple[int, ...]            # the tier ids checked (empty if the manifest failed)
    manifest_problem: Problem | None     # a manifest that fails CKPT-3 is the only problem (CKPT-6.2)
    shards: tuple[ShardCheck, ...]       # every shard checked, dense first, then tiers by id
    orphans: tuple[str, ...]             # files the manifest does not name: notes, never problems

    @property
    def problems(self) -> tuple[Problem, ...]:
        head = () if self.manifest_problem is None else (self.manifest_problem,)
        return head + tuple(s.problem for s in self.shards if s.problem is not None)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_checkpoint(path: str | os.PathLike, tiers=None) -> VerifyReport:
    """Check the manifest and, with hashes, the dense shard and the TierSet's shards (default: all).

    Every shard is checked on its own and every failure reported (CKPT-6.2); files the manifest does
    not name are reported as orphans (CKPT-6.3), except the writers' lock file (CKPT-6.4). A TierSet
    naming an unknown tier raises E_UNKNOWN_TIER.
    """
    directory = Path(path)
    try:
        m = read_manifest(directory)
    except CheckpointError as e:
        return VerifyReport(str(directory), (), Problem.of(e), (), ())
    ids = resolve_tiers(m.cfg, tiers)
    checks = []
    for label, entry in m.shards(ids):
        try:
            open_shard(directory, label, entry, hash_it=True)
            problem = None
        except CheckpointError as e:
            problem = Problem.of(e)
        checks.append(ShardCheck(str(directory / entry["file"]), label, problem))
    named = {MANIFEST, LOCK, HASH_SIDECAR, m.dense["file"], *(t["file"] for t in m.tiers)}   # CKPT-6.4, CKPT-6.5
    orphans = tuple(by_bytes(p.name for p in directory.iterdir() if p.name not in named))
    return VerifyReport(str(directory), ids, None, tuple(checks), orphans)
