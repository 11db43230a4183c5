"""Writing checkpoints from the optimized implementation (CKPT-1 .. CKPT-4; TRAIN-4.2, TRAIN-5.2), from the spec.

``shard_bytes`` builds the canonical safetensors bytes of CKPT-2.2 itself (no safetensors call):
header entries in ascending byte order of name, ``{"dtype":"F32","shape":[...],"data_offsets":[b,e]}``,
JSON without whitespace, no ``__metadata__``, padded with spaces to a multiple of 8, the data back to
back. ``manifest_bytes`` is CKPT-3.6's serialisation. Every file is written atomically (CKPT-4.1),
shards first and the manifest last (CKPT-4.2), into a directory that holds no checkpoint (CKPT-4.4),
under the writers' lock with the existence check made while it is held and the commit read back
(CKPT-4.6 .. CKPT-4.8), so of two saves into one directory exactly one succeeds.
The tests compare these bytes with the reference writer's, file for file.

``save_checkpoint(dir, cfg, tensors, frozen=...)``: ``frozen`` maps a shard stem (``dense`` or
``tier-NAME``) to the SHA-256 the shard must have, the source checkpoint's; a frozen shard whose new
bytes differ is refused before the manifest is written (TRAIN-5.2), so a training run that let a
frozen tensor move cannot commit.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from lite_llm.spec.config import SPEC_VERSION, ModelConfig, config_to_dict
from lite_llm.spec.errors import CheckpointConflictError, CheckpointError, CheckpointExistsError, CheckpointMismatchError
from lite_llm.spec.tensors import dense_shapes, tier_shapes

MANIFEST = "manifest.json"
LOCK = ".lite-llm.lock"              # CKPT-4.6: the writers' lock file, removed by its holder on release
FORMAT = "lite-llm-checkpoint"
SCHEMA_VERSION = 1


def byte_order(names) -> list[str]:
    return sorted(names, key=lambda n: n.encode("utf-8"))


def as_f32_le(a) -> bytes:
    """A tensor's data: binary32 little-endian, row-major (CKPT-1.3)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu").contiguous().numpy()
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def shard_bytes(tensors: dict) -> bytes:
    """The canonical safetensors bytes of binary32 tensors (CKPT-2.1, CKPT-2.2)."""
    header, data, pos = {}, [], 0
    for name in byte_order(tensors):
        b = as_f32_le(tensors[name])
        header[name] = {"dtype": "F32", "shape": [int(s) for s in tensors[name].shape], "data_offsets": [pos, pos + len(b)]}
        data.append(b)
        pos += len(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((-len(text)) % 8)                                   # pad to a multiple of 8 bytes
    return len(text).to_bytes(8, "little") + text + b"".join(data)


def manifest_bytes(raw: dict) -> bytes:
    """CKPT-3.6: sorted keys, two-space indentation, ASCII escapes, one final newline."""
    return (json.dumps(raw, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def fsync_dir(directory: Path) -> None:
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


def write_atomic(path: Path, data: bytes) -> None:
    """CKPT-4.1: a ``.NAME.RANDOM.tmp`` file in the directory, fsync, rename, fsync the directory;
    the temporary file is removed on error."""
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
            tmp.unlink(missing_ok=True)
            raise
    except OSError as e:
        raise CheckpointError(f"cannot write: {e.strerror}", path=path) from None
    fsync_dir(path.parent)


def shard_entry(file: str, data: bytes, shapes: dict) -> dict:
    """A shard entry of the manifest (CKPT-3.3)."""
    return {"file": file, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "parameters": sum(math.prod(s) for s in shapes.values()),
            "tensors": [{"name": n, "dtype": "F32", "shape": list(shapes[n])} for n in byte_order(shapes)]}


def check_tensors(cfg: ModelConfig, tensors: dict) -> None:
    """CKPT-4.5: exactly the config's tensors, binary32, of the right shapes, before any file is written."""
    want = dict(dense_shapes(cfg))
    for t in range(cfg.n_tiers):
        want.update(tier_shapes(cfg, t))
    for n, s in want.items():
        if n not in tensors:
            raise CheckpointMismatchError(f"the weights lack tensor {n}")
        a = tensors[n]
        dt = a.dtype
        if dt not in (torch.float32, np.float32):
            raise CheckpointMismatchError(f"tensor {n} is {dt}, not binary32 (float32)")
        if tuple(a.shape) != tuple(s):
            raise CheckpointMismatchError(f"tensor {n} has shape {list(a.shape)}, the config implies {list(s)}")
    extra = byte_order(set(tensors) - set(want))
    if extra:
        raise CheckpointMismatchError(f"the weights hold tensor {extra[0]}, which the config does not define")


def save_checkpoint(path, cfg: ModelConfig, tensors: dict, *, frozen: dict[str, str] | None = None) -> dict:
    """Write a new checkpoint (CKPT-1 .. CKPT-4) and return its manifest object.

    ``tensors``: name -> binary32 torch tensor or numpy array. ``frozen``: shard stem -> the SHA-256 its
    bytes must have (TRAIN-5.2); a mismatch raises E_CKPT_MISMATCH before the manifest is written.
    """
    directory = Path(path)
    check_tensors(cfg, tensors)
    if (directory / MANIFEST).exists():                            # CKPT-4.8: refuse before creating anything
        raise CheckpointExistsError("already holds a checkpoint; save elsewhere", path=directory)
    directory.mkdir(parents=True, exist_ok=True)
    with writer_lock(directory):                                   # CKPT-4.6
        if (directory / MANIFEST).exists():                        # CKPT-4.8: again, under the lock
            raise CheckpointExistsError("already holds a checkpoint; save elsewhere", path=directory)
        return _save_locked(directory, cfg, tensors, frozen or {})


def _save_locked(directory: Path, cfg: ModelConfig, tensors: dict, frozen: dict[str, str]) -> dict:
    parts = [("dense", dense_shapes(cfg))] + [(f"tier-{t.name}", tier_shapes(cfg, i)) for i, t in enumerate(cfg.tiers)]
    entries = []
    for stem, shapes in parts:
        data = shard_bytes({n: tensors[n] for n in shapes})
        digest = hashlib.sha256(data).hexdigest()
        if stem in frozen and frozen[stem] != digest:
            raise CheckpointMismatchError(f"frozen shard {stem} would change (SHA-256 {digest[:16]}, the source "
                                          f"checkpoint's {frozen[stem][:16]}): a frozen tensor moved (TRAIN-5.2)",
                                          path=directory)
        file = f"{stem}.{digest[:16]}.safetensors"                                  # CKPT-1.4
        write_atomic(directory / file, data)
        entries.append(shard_entry(file, data, shapes))
    tiers = [{"id": i, "name": t.name, "placement": t.placement, "budget": e["parameters"], **e}
             for i, (t, e) in enumerate(zip(cfg.tiers, entries[1:]))]                 # CKPT-3.4
    raw = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "spec_version": SPEC_VERSION,
           "config": config_to_dict(cfg), "dense": entries[0], "tiers": tiers}
    if (directory / MANIFEST).exists():                                               # CKPT-4.7, before the commit
        raise CheckpointConflictError("another writer committed a checkpoint here meanwhile", path=directory)
    data = manifest_bytes(raw)
    write_atomic(directory / MANIFEST, data)                                          # CKPT-4.2: the commit
    if (directory / MANIFEST).read_bytes() != data:                                   # CKPT-4.7, read back
        raise CheckpointConflictError("the manifest on disk is not the one this save wrote", path=directory)
    return raw


@contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Hold the exclusive writer lock of CKPT-4.6 on ``directory/.lite-llm.lock`` (an flock through
    ``filelock``, no fallback to a lock by existence, so a killed holder never blocks the next writer),
    waiting while another writer holds it; the holder removes its own lock file before releasing."""
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
            if held is not None and os.path.samestat(os.stat(path), held):
                path.unlink()
        except OSError:
            pass
        finally:
            lock.release()


def shard_hashes(manifest: dict) -> dict[str, str]:
    """Shard stem -> SHA-256 of a manifest's shards (``dense``, ``tier-NAME``)."""
    out = {"dense": manifest["dense"]["sha256"]}
    out.update({f"tier-{t['name']}": t["sha256"] for t in manifest["tiers"]})
    return out
