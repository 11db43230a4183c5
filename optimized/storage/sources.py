"""Where expert bytes come from: a checkpoint on local disk or behind any fsspec URL, or memory.

``CheckpointSource`` opens a checkpoint (CKPT chapter) by directory or URL (``s3://``, ``http://``,
``file://``, ... anything fsspec reads). It reads the manifest (CKPT-3, checked as the loader does),
the dense shard whole (it is needed whole, SHA-256 checked, CKPT-5.4), and only the headers and
router tensors of the TierSet's tier shards. Experts are read by byte range: expert (g, e) of a tier
tensor of shape (G, E, a, b) is one contiguous run of ``4 a b`` bytes (row-major, CKPT-1.3), found
from the shard header (CKPT-2.1) -- positioned reads (``os.pread``) on local files, range requests
through fsspec elsewhere; a shard is never read whole for one expert.

Every block fetched (one expert's slice of one tensor, or one router tensor) is checked against its
SHA-256 before use (PLACE-4.10). The block hashes come from the sidecar ``expert-hashes.json``
(written by :func:`write_expert_hashes`, bound to each shard's manifest SHA-256) when the checkpoint
has one; otherwise from one streaming pass over each shard at open, which also checks the shard's
manifest SHA-256 (CKPT-5.5). A failed read (an I/O error, a 5xx answer, a reset connection, a short
or corrupt body) is retried with exponential backoff, then fails with an error that names the
storage class, the tier, the expert and the URL (PLACE-4.10); a unit is returned only when all its
blocks passed, so no partial expert is ever used.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lite_llm.spec import jsonio
from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import (CheckpointError, CheckpointHashError, CheckpointMismatchError, CheckpointMissingError,
                                  CheckpointTruncatedError)
from lite_llm.spec.tensors import dense_shapes
from lite_llm.spec.tierset import all_tiers, parse_tier_set
from lite_llm.spec.tierset import tier_set as resolve_tier_set

from ..checkpoint import check_shard_tensors, header_from_bytes, header_length, manifest_from_bytes
from .units import EXPERT_KINDS, UnitMap

MANIFEST = "manifest.json"
HASHES = "expert-hashes.json"               # PLACE-4.10: the block-hash sidecar
HASHES_FORMAT = "lite-llm-expert-hashes"
CHUNK = 8 << 20                              # bytes per request of a whole-file read


class StorageReadError(CheckpointError):
    """A block could not be read from a storage class after every retry (PLACE-4.10); E_CHECKPOINT."""


@dataclass(frozen=True)
class RetryPolicy:
    """How reads are retried: ``attempts`` tries, sleeping ``backoff * 2**i`` (capped) between them."""

    attempts: int = 4            # tries per block, the first included
    backoff: float = 0.05        # seconds before the first retry
    max_backoff: float = 2.0     # cap on one sleep
    read_timeout: float = 30.0   # seconds an object-storage peer may stay silent (connect or read) before a try fails


# ---------------------------------------------------------------------------------------------
# Byte-range readers

class LocalReader:
    """Positioned reads of one local file (``os.pread``; thread-safe, no shared file offset)."""

    storage_class = "disk"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.url = str(self.path)
        self._fd = None
        self._lock = threading.Lock()

    def _open(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            return self._fd

    def size(self) -> int:
        return self.path.stat().st_size

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self, start: int, length: int) -> bytes:
        fd = self._open()
        parts, pos, left = [], start, length
        while left > 0:
            b = os.pread(fd, left, pos)
            if not b:
                break
            parts.append(b)
            pos += len(b)
            left -= len(b)
        return b"".join(parts)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class FsspecReader:
    """Range reads of one object through fsspec (``fs.cat_file(path, start, end)``)."""

    storage_class = "object"

    def __init__(self, fs, path: str, url: str):
        self.fs, self.path, self.url = fs, path, url

    def size(self) -> int:
        return int(self.fs.size(self.path))

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def read(self, start: int, length: int) -> bytes:
        if length == 0:
            return b""
        return bytes(self.fs.cat_file(self.path, start=start, end=start + length))

    def close(self) -> None:
        pass


def with_read_timeout(url: str, options: dict, seconds: float) -> dict:
    """fsspec options that bound how long a silent peer can hold one read (a hung server fails the try, which
    is then retried, instead of stalling the run): aiohttp's socket timeouts for http(s), botocore's for s3.
    Options the caller gave for the same client win."""
    protocol = url.split("://", 1)[0]
    if protocol in ("http", "https") and "client_kwargs" not in options:
        import aiohttp

        options["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=seconds,
                                                                     sock_read=seconds)}
    elif protocol in ("s3", "s3a") and "config_kwargs" not in options:
        options["config_kwargs"] = {"connect_timeout": seconds, "read_timeout": seconds}
    return options


class Location:
    """A checkpoint directory or URL: makes a reader for each file in it."""

    def __init__(self, location: str | os.PathLike, storage_options: dict | None = None, read_timeout: float = 30.0):
        text = os.fspath(location)
        self.text = text
        if "://" in text and not text.startswith("file://"):
            import fsspec

            options = with_read_timeout(text, dict(storage_options or {}), read_timeout)
            self.fs, root = fsspec.core.url_to_fs(text, **options)
            self.root = root.rstrip("/")
            self.remote = True
        else:
            self.root = text[len("file://"):] if text.startswith("file://") else text
            self.remote = False
        self.storage_class = "object" if self.remote else "disk"

    def reader(self, name: str):
        if self.remote:
            return FsspecReader(self.fs, f"{self.root}/{name}", f"{self.text.rstrip('/')}/{name}")
        return LocalReader(Path(self.root) / name)


# ---------------------------------------------------------------------------------------------
# Statistics the store reports (bytes read and retries per storage class)

class ReadCounters:
    def __init__(self):
        self.lock = threading.Lock()
        self.reads = 0
        self.bytes = 0
        self.retries = 0
        self.failures = 0

    def add(self, n_bytes: int, retries: int) -> None:
        with self.lock:
            self.reads += 1
            self.bytes += n_bytes
            self.retries += retries


def fetch(reader, start: int, length: int, digest: str | None, what: str, retry: RetryPolicy,
          counters: ReadCounters | None = None) -> bytes:
    """``length`` bytes at ``start``, checked against ``digest`` (SHA-256 hex) when given; retried with
    backoff on any failure; a StorageReadError or CheckpointHashError naming ``what`` and the URL."""
    last = None
    for attempt in range(retry.attempts):
        if attempt:
            time.sleep(min(retry.max_backoff, retry.backoff * 2 ** (attempt - 1)))
        try:
            b = reader.read(start, length)
        except FileNotFoundError as e:
            raise CheckpointMissingError(f"{what}: {e}", path=reader.url) from None
        except Exception as e:  # noqa: BLE001 -- fsspec backends raise many types; every one is retried
            last = f"{type(e).__name__}: {e}"
            continue
        if len(b) != length:
            last = f"short read: {len(b)} of {length} bytes"
            continue
        if digest is not None and hashlib.sha256(b).hexdigest() != digest:
            last = "SHA-256 mismatch"
            continue
        if counters is not None:
            counters.add(length, attempt)
        return b
    if counters is not None:
        with counters.lock:
            counters.failures += 1
            counters.retries += retry.attempts - 1
    msg = (f"{reader.storage_class} storage: {what}: bytes [{start}, {start + length}) failed after "
           f"{retry.attempts} attempt(s): {last}")
    if last == "SHA-256 mismatch":
        raise CheckpointHashError(msg, path=reader.url, clause="PLACE-4.10")
    raise StorageReadError(msg, path=reader.url, clause="PLACE-4.10")


def read_whole(reader, size: int, what: str, retry: RetryPolicy, counters=None, sink=None) -> bytes | None:
    """The whole file in CHUNK-sized range reads (each retried); passed to ``sink`` chunk by chunk
    when given (returns None then), else returned."""
    parts = []
    for start in range(0, size, CHUNK):
        b = fetch(reader, start, min(CHUNK, size - start), None, what, retry, counters)
        if sink is not None:
            sink(b)
        else:
            parts.append(b)
    return None if sink is not None else b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Manifest and shard headers (CKPT-3, CKPT-2.3), from bytes

def parse_manifest(text: bytes, where: str) -> tuple[dict, ModelConfig]:
    """The manifest and its configuration, checked exactly as the loader checks them (CKPT-3.1, 3.2, 3.5)."""
    return manifest_from_bytes(text, where)


@dataclass(frozen=True)
class ShardHeader:
    data_start: int                                            # 8 + header length
    tensors: dict[str, tuple[tuple[int, ...], int, int]]      # name -> (shape, begin, end) within the data


def parse_header(reader, size: int, entry: dict, retry: RetryPolicy, counters=None) -> ShardHeader:
    """Read a shard's header by range and check it as the loader does (CKPT-2.3, CKPT-5.4 check 5)."""
    url = reader.url
    if size < 8:
        raise CheckpointTruncatedError("shorter than the 8-byte header length", path=url)
    n = header_length(fetch(reader, 0, 8, None, "header length", retry, counters), size, url)
    tensors = header_from_bytes(fetch(reader, 8, n, None, "header", retry, counters), size, url)
    check_shard_tensors(tensors, entry, url)
    return ShardHeader(8 + n, {name: (shape, b, end) for name, (shape, b, end, _) in tensors.items()})


def check_size(reader, entry: dict) -> int:
    """CKPT-5.4 checks (1) and (2): the file exists and has the manifest's size."""
    try:
        size = reader.size()
    except FileNotFoundError:
        raise CheckpointMissingError("the shard does not exist", path=reader.url) from None
    except Exception as e:  # noqa: BLE001
        raise StorageReadError(f"{reader.storage_class} storage: cannot stat: {type(e).__name__}: {e}",
                               path=reader.url) from None
    if size < entry["bytes"]:
        raise CheckpointTruncatedError(f"{size} bytes, the manifest records {entry['bytes']}", path=reader.url)
    if size > entry["bytes"]:
        raise CheckpointMismatchError(f"{size} bytes, the manifest records {entry['bytes']}", path=reader.url)
    return size


# ---------------------------------------------------------------------------------------------
# Block hashes (PLACE-4.10)

def block_ranges(header: ShardHeader):
    """(tensor name, block index, start, length) of every block of a tier shard: one per expert slice
    of the expert tensors (leading axes (G, E)), one per other tensor."""
    for name, (shape, b, end) in sorted(header.tensors.items()):
        if name.rsplit(".", 1)[-1] in EXPERT_KINDS:
            n = shape[0] * shape[1]
            block = (end - b) // n
            for i in range(n):
                yield name, i, header.data_start + b + i * block, block
        else:
            yield name, 0, header.data_start + b, end - b


def hash_pass(reader, size: int, header: ShardHeader, entry: dict, retry: RetryPolicy, counters=None) -> dict:
    """Block hashes of a whole shard in one streaming pass, checked against the manifest's SHA-256."""
    whole = hashlib.sha256()
    ranges = sorted(block_ranges(header), key=lambda r: r[2])
    hashes: dict[str, list[str]] = {}
    state = {"pos": 0, "buf": bytearray(), "i": 0}

    def sink(chunk: bytes):
        whole.update(chunk)
        state["buf"] += chunk
        base = state["pos"]
        while state["i"] < len(ranges):
            name, _, start, length = ranges[state["i"]]
            if start + length > base + len(state["buf"]):
                break
            hashes.setdefault(name, []).append(hashlib.sha256(state["buf"][start - base:start - base + length])
                                               .hexdigest())
            state["i"] += 1
        keep = ranges[state["i"]][2] - base if state["i"] < len(ranges) else len(state["buf"])
        del state["buf"][:keep]
        state["pos"] = base + keep

    read_whole(reader, size, "hash pass", retry, counters, sink)
    if whole.hexdigest() != entry["sha256"]:
        raise CheckpointHashError(f"SHA-256 {whole.hexdigest()} differs from the manifest's {entry['sha256']}",
                                  path=reader.url)
    return hashes


def write_expert_hashes(location, storage_options: dict | None = None, retry: RetryPolicy = RetryPolicy()) -> str:
    """Write the block-hash sidecar ``expert-hashes.json`` of a checkpoint (PLACE-4.10), computed from
    the shard bytes (each shard's SHA-256 checked against the manifest first). Returns its URL/path.
    The sidecar binds every shard by its manifest SHA-256, so a stale sidecar is ignored."""
    loc = Location(location, storage_options, retry.read_timeout)
    m = loc.reader(MANIFEST)
    if not m.exists():
        raise CheckpointMissingError("the manifest does not exist", path=m.url)
    raw, cfg = parse_manifest(read_whole(m, m.size(), "manifest", retry), m.url)
    shards = {}
    for entry in raw["tiers"]:
        r = loc.reader(entry["file"])
        size = check_size(r, entry)
        header = parse_header(r, size, entry, retry)
        shards[entry["file"]] = {"sha256": entry["sha256"], "tensors": hash_pass(r, size, header, entry, retry)}
    text = json.dumps({"format": HASHES_FORMAT, "version": 1, "shards": shards}, sort_keys=True, indent=1) + "\n"
    if loc.remote:
        loc.fs.pipe_file(f"{loc.root}/{HASHES}", text.encode())
        return f"{loc.text.rstrip('/')}/{HASHES}"
    path = Path(loc.root) / HASHES
    tmp = path.with_name(f".{HASHES}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return str(path)


def read_sidecar(loc: Location, retry: RetryPolicy) -> dict:
    """The sidecar's shards map, or {} when the checkpoint has none (or it is malformed)."""
    r = loc.reader(HASHES)
    try:
        if not r.exists():
            return {}
        d = jsonio.loads(read_whole(r, r.size(), "hash sidecar", retry).decode("utf-8"))
    except (CheckpointError, ValueError, OSError):
        return {}
    if not isinstance(d, dict) or d.get("format") != HASHES_FORMAT or d.get("version") != 1:
        return {}
    return d.get("shards", {}) if isinstance(d.get("shards"), dict) else {}


# ---------------------------------------------------------------------------------------------
# The checkpoint source

class CheckpointSource:
    """A checkpoint opened for serving: dense tensors, router tensors, and experts on demand."""

    def __init__(self, location, tiers=None, *, verify: bool = True, retry: RetryPolicy = RetryPolicy(),
                 storage_options: dict | None = None):
        self.loc = Location(location, storage_options, retry.read_timeout)
        self.retry = retry
        self.storage_class = self.loc.storage_class
        self.counters = ReadCounters()
        m = self.loc.reader(MANIFEST)
        try:
            exists = m.exists()
        except Exception as e:  # noqa: BLE001
            raise StorageReadError(f"{m.storage_class} storage: cannot reach the manifest: {type(e).__name__}: {e}",
                                   path=m.url) from None
        if not exists:
            raise CheckpointMissingError("the manifest does not exist", path=m.url)
        self.raw, self.cfg = parse_manifest(read_whole(m, m.size(), "manifest", retry, self.counters), m.url)
        cfg = self.cfg
        if tiers is None:
            self.tier_ids = all_tiers(cfg)
        elif isinstance(tiers, str):
            self.tier_ids = parse_tier_set(cfg, tiers)
        else:
            self.tier_ids = resolve_tier_set(cfg, tiers)
        self.units = UnitMap(cfg)
        self.verify = verify
        sidecar = read_sidecar(self.loc, retry)
        self.readers, self.headers, self.hashes = {}, {}, {}
        for t in self.tier_ids:                                                   # CKPT-5.2: only T's shards
            entry = self.raw["tiers"][t]
            r = self.loc.reader(entry["file"])
            size = check_size(r, entry)
            h = parse_header(r, size, entry, retry, self.counters)
            side = sidecar.get(entry["file"])
            if isinstance(side, dict) and side.get("sha256") == entry["sha256"] and self._complete(side, h):
                self.hashes[t] = side["tensors"]
            else:
                self.hashes[t] = hash_pass(r, size, h, entry, retry, self.counters)
            self.readers[t], self.headers[t] = r, h
        self.hash_source = "sidecar" if sidecar and all(
            self.hashes[t] is sidecar.get(self.raw["tiers"][t]["file"], {}).get("tensors") for t in self.tier_ids) \
            else "hash pass"

    @staticmethod
    def _complete(side: dict, header: ShardHeader) -> bool:
        t = side.get("tensors")
        if not isinstance(t, dict):
            return False
        counts = {}
        for name, i, _, _ in block_ranges(header):
            counts[name] = max(counts.get(name, 0), i + 1)
        return all(isinstance(t.get(n), list) and len(t[n]) == c for n, c in counts.items())

    def location_of(self, tier: int) -> str:
        return self.readers[tier].url

    def dense(self) -> dict[str, np.ndarray]:
        """Every dense tensor (INIT-2.2): the dense shard read whole, SHA-256 checked (CKPT-5.4, 5.5)."""
        entry = self.raw["dense"]
        r = self.loc.reader(entry["file"])
        size = check_size(r, entry)
        data = read_whole(r, size, "dense shard", self.retry, self.counters)
        if self.verify and hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointHashError("SHA-256 differs from the manifest's", path=r.url)
        h = parse_header(r, size, entry, self.retry, self.counters)
        out = {}
        for name, shape in dense_shapes(self.cfg).items():
            _, b, end = h.tensors[name]
            out[name] = np.frombuffer(data, "<f4", (end - b) // 4, h.data_start + b).reshape(shape).copy()
        return out

    def _block(self, tier: int, name: str, index: int, what: str) -> bytes:
        h = self.headers[tier]
        shape, b, end = h.tensors[name]
        if name.rsplit(".", 1)[-1] in EXPERT_KINDS:
            block = (end - b) // (shape[0] * shape[1])
            start = h.data_start + b + index * block
        else:
            block, start = end - b, h.data_start + b
        return fetch(self.readers[tier], start, block, self.hashes[tier][name][index], what, self.retry, self.counters)

    def routers(self) -> dict[str, np.ndarray]:
        """The router tensors of the TierSet's tiers in every layer (INIT-2.1), each block checked."""
        out = {}
        for t in self.tier_ids:
            tc = self.cfg.tiers[t]
            for layer in range(self.cfg.n_layers):
                for kind in ("router_tier", "router_group", "router_expert"):
                    name = f"layers.{layer}.tiers.{tc.name}.{kind}"
                    shape = self.headers[t].tensors[name][0]
                    out[name] = np.frombuffer(self._block(t, name, 0, f"tier {tc.name} {name}"), "<f4").reshape(shape).copy()
        return out

    def read_unit(self, unit: int) -> list[bytes]:
        """The three blocks (w_gate, w_up, w_down slices) of an expert unit, each checked (PLACE-4.10)."""
        info = self.units.info(unit)
        tc = self.cfg.tiers[info.tier]
        i = info.group * tc.experts_per_group + info.expert
        what = info.label(self.cfg)
        return [self._block(info.tier, f"layers.{info.layer}.tiers.{tc.name}.{k}", i, what) for k in EXPERT_KINDS]

    def close(self) -> None:
        for r in self.readers.values():
            r.close()


class MemorySource:
    """Experts from an in-memory weights dict (name -> array): the all-in-memory case, and tests."""

    storage_class = "memory"

    def __init__(self, cfg: ModelConfig, weights, tiers=None):
        self.cfg = cfg
        self.tier_ids = all_tiers(cfg) if tiers is None else resolve_tier_set(cfg, tiers)
        self.weights = weights
        self.units = UnitMap(cfg)
        self.counters = ReadCounters()
        self.hash_source = "none (memory)"

    def dense(self) -> dict:
        return {n: np.asarray(self.weights[n]) for n in dense_shapes(self.cfg)}

    def routers(self) -> dict:
        out = {}
        for t in self.tier_ids:
            for layer in range(self.cfg.n_layers):
                for kind in ("router_tier", "router_group", "router_expert"):
                    name = f"layers.{layer}.tiers.{self.cfg.tiers[t].name}.{kind}"
                    out[name] = np.asarray(self.weights[name])
        return out

    def read_unit(self, unit: int) -> list[bytes]:
        info = self.units.info(unit)
        p = f"layers.{info.layer}.tiers.{self.cfg.tiers[info.tier].name}"
        blocks = []
        for k in EXPERT_KINDS:
            w = self.weights[f"{p}.{k}"]
            a = w[info.group, info.expert]
            a = a.cpu().numpy() if hasattr(a, "cpu") else np.asarray(a)
            blocks.append(np.ascontiguousarray(a, "<f4").tobytes())
        self.counters.add(sum(len(b) for b in blocks), 0)
        return blocks

    def close(self) -> None:
        pass
