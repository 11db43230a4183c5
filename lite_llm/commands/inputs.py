"""Checked inputs of the commands: numbers, .npy files, output paths and memory, each refused in one line.

Every problem becomes a :class:`UsageError` (code ``E_USAGE``, exit status REJECTED) or, for a
command that would allocate more memory than the machine has, a :class:`MemoryLimitError`
(``E_MEMORY``), raised before any work is done, so nothing is half-written and no traceback is shown.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from lite_llm.spec.config import ModelConfig, parse_seed
from lite_llm.spec.errors import LiteLLMError, SeedError
from lite_llm.spec.tensors import dense_shapes, tier_shapes

NPY_MAGIC = b"\x93NUMPY"


class UsageError(LiteLLMError):
    """A command-line input is unusable: a missing or unreadable file, a bad number, a missing directory."""

    code = "E_USAGE"


class MemoryLimitError(LiteLLMError):
    """The command would need more memory than is available (override with --allow-large)."""

    code = "E_MEMORY"


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative; expected an integer >= 0")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    v = non_negative_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v}: expected an integer >= 1")
    return v


def seed_arg(text: str) -> int:
    """argparse type of a seed: the command-line forms of HSER-4.1 (``0x`` hex, or decimal digits), read by
    the spec's ``parse_seed``; a bad seed is a usage error that names E_SEED."""
    try:
        return parse_seed(text, decimal=True)
    except SeedError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def load_npy(path: str | Path, what: str = "input") -> np.ndarray:
    """A .npy file as an array; a missing, empty, truncated, non-.npy or pickled file is a UsageError."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} file {p} does not exist")
    if p.is_dir():
        raise UsageError(f"{what} file {p} is a directory, not a .npy file")
    try:
        with open(p, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise UsageError(f"{what} file {p} cannot be read: {e.strerror}") from None
    if not head:
        raise UsageError(f"{what} file {p} is empty (0 bytes), not a .npy file")
    if head != NPY_MAGIC:
        raise UsageError(f"{what} file {p} is not a .npy file (it does not start with the .npy magic bytes)")
    try:
        a = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise UsageError(f"{what} file {p} holds Python objects (a pickle); lite-llm reads numeric arrays "
                             f"only") from None
        raise UsageError(f"{what} file {p} is a damaged .npy file: {str(e).splitlines()[0]}") from None
    except (EOFError, OSError) as e:
        raise UsageError(f"{what} file {p} is truncated or damaged: {e}") from None
    if not isinstance(a, np.ndarray):
        raise UsageError(f"{what} file {p} is not a single array")
    return a


def output_path(path: str | None, what: str = "output") -> Path | None:
    """An output file's path, checked before any work: its directory exists and can be written."""
    if path is None or path == "-":
        return None if path is None else Path("-")
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{what} {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{what} {p}: directory {parent} is not writable")
    if p.is_dir():
        raise UsageError(f"{what} {p} is a directory; give a file name")
    return p


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux, else physical memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def human_bytes(n: int) -> str:
    for unit, scale in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def tensor_bytes(shapes: dict[str, tuple[int, ...]], itemsize: int = 4) -> int:
    total = 0
    for s in shapes.values():
        n = 1
        for k in s:
            n *= k
        total += n
    return total * itemsize


def model_bytes(cfg: ModelConfig, tiers=None) -> int:
    """Bytes of the binary32 weights of the dense part and ``tiers`` (default all), from INIT-2's shapes."""
    ids = range(cfg.n_tiers) if tiers is None else tiers
    return tensor_bytes(dense_shapes(cfg)) + sum(tensor_bytes(tier_shapes(cfg, t)) for t in ids)


def router_bytes(cfg: ModelConfig, tiers=None) -> int:
    """Bytes of one layer's router rows (binary32) of ``tiers``: d (1 + G_t + G_t E_t) per tier (PARAM-3)."""
    ids = range(cfg.n_tiers) if tiers is None else tiers
    return sum(4 * cfg.d_model * (1 + cfg.tiers[t].groups * (1 + cfg.tiers[t].experts_per_group)) for t in ids)


def check_memory(nbytes: int, what: str, allow: bool = False, factor: float = 2.0) -> None:
    """Refuse, before allocating, work whose arrays (``nbytes`` times ``factor`` for copies) exceed memory."""
    need, avail = int(nbytes * factor), available_memory()
    if need > avail and not allow:
        raise MemoryLimitError(f"{what} needs about {human_bytes(need)} of memory and {human_bytes(avail)} is "
                               f"available; use a smaller config, or --allow-large to try anyway")


def add_allow_large(p) -> None:
    p.add_argument("--allow-large", action="store_true",
                   help="run even when the estimated memory exceeds what is available")
