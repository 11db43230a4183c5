"""Training text that needs no download: the Python standard library's own sources, as bytes (TRAIN-4.3).

Tokens are bytes (vocabulary 256). The ``.py`` files under ``sysconfig.get_paths()["stdlib"]`` are read
in sorted order of their relative path (test suites and site-packages left out); every tenth file
(``index % 10 == 0``) is the validation split, the others the training split, each the files' bytes
joined by a NUL byte. ``Corpus.digest`` (SHA-256 of both splits) names the text in the run log: another
Python version has other sources and so another corpus.

Batches are windows of ``T + 1`` bytes at offsets drawn by NumPy's PCG64 from (seed, step), on the
host, so a run draws the same batches on every device. Validation uses fixed, evenly spaced windows.
"""
from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__", "lib2to3", "turtledemo"}


@dataclass(frozen=True)
class Corpus:
    train: np.ndarray        # (n,) uint8
    val: np.ndarray          # (m,) uint8
    files: int
    digest: str              # SHA-256 of train + val
    root: str


def stdlib_files(root: Path) -> list[Path]:
    out = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]):
            continue
        out.append(p)
    return sorted(out, key=lambda p: str(p.relative_to(root)))


def load_corpus(max_bytes: int = 32 << 20, root: str | None = None) -> Corpus:
    """The standard library's sources as byte tokens, split 9:1 by file, at most ``max_bytes`` in all."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    train, val, total, n = [], [], 0, 0
    for i, p in enumerate(stdlib_files(base)):
        try:
            b = p.read_bytes()
        except OSError:
            continue
        (val if i % 10 == 0 else train).append(b)
        total += len(b) + 1
        n += 1
        if total >= max_bytes:
            break
    tr = np.frombuffer(b"\0".join(train), dtype=np.uint8)
    va = np.frombuffer(b"\0".join(val), dtype=np.uint8)
    if tr.size < 1024 or va.size < 1024:
        raise FileNotFoundError(f"too little Python source under {base} to train on")
    h = hashlib.sha256(tr.tobytes())
    h.update(va.tobytes())
    return Corpus(tr, va, n, h.hexdigest(), str(base))


def train_batch(corpus: Corpus, seed: int, step: int, batch: int, seq: int) -> torch.Tensor:
    """(batch, seq + 1) int64 windows of the training split, drawn from (seed, step) (TRAIN-4.3)."""
    rng = np.random.Generator(np.random.PCG64([seed & 0xFFFFFFFFFFFFFFFF, step]))
    off = rng.integers(0, corpus.train.size - seq - 1, size=batch)
    return torch.from_numpy(np.stack([corpus.train[o:o + seq + 1] for o in off]).astype(np.int64))


def val_batches(corpus: Corpus, n_seqs: int, batch: int, seq: int) -> list[torch.Tensor]:
    """Fixed validation windows: ``n_seqs`` evenly spaced windows of seq + 1 bytes, in batches."""
    n_seqs = max(1, min(n_seqs, (corpus.val.size - 1) // (seq + 1)))
    off = np.linspace(0, corpus.val.size - seq - 1, n_seqs).astype(np.int64)
    rows = np.stack([corpus.val[o:o + seq + 1] for o in off]).astype(np.int64)
    return [torch.from_numpy(rows[i:i + batch]) for i in range(0, n_seqs, batch)]
