"""The expert store: caches in GPU and host memory over a slow backing source, driven by the policy.

Storage classes, fastest first (PLACE-1.2): ``gpu`` (CUDA memory, a byte budget), ``host`` (host
memory, a byte budget; pinned buffers when CUDA exists, so that copies to the GPU run on a separate
CUDA stream, overlapped with compute), and the backing source: ``disk`` (a local checkpoint, read by
byte range), ``object`` (an fsspec URL) or ``memory`` (a weights dict). On a machine without a GPU the
host cache is the fast tier.

Each cache runs the policy of PLACE-4.4 .. PLACE-4.7 over the same request stream with its own
capacity (PLACE-4.8), so the resident set of each is the spec's at every step. A step's misses are
fetched on background threads while the step computes the experts it already holds; a unit is handed
out only when its blocks have all been read and checked (PLACE-4.10). Between steps the store
prefetches, on the same threads, the units of the next layer that the policy's statistics rank first
(PLACE-4.9) into a small staging area outside the caches: only the real route decides what is
computed (PLACE-1.4), and prefetching changes timing, never bits (PLACE-1.3).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from .policy import CachePolicy

ALIGN = 16            # floats: each of an expert's three tensors starts on a 64-byte boundary


@dataclass
class ClassStats:
    """Counters of one storage class. A cache: ``hits`` and ``misses`` of the units requested from it,
    ``bytes_moved`` the bytes copied into it (fills and one-step copies). The backing source: ``hits``
    the units the caches' misses asked of it, ``bytes_moved`` the expert bytes read from it (demand
    and prefetch), ``retries`` and ``failures`` of its reads."""

    name: str
    capacity: int | None = None       # bytes (caches); None for the backing source
    hits: int = 0
    misses: int = 0
    bytes_moved: int = 0
    retries: int = 0
    failures: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class StorageMetrics:
    """Hits, misses and bytes moved per storage class (fastest first), and the prefetcher's work."""

    classes: list[ClassStats]
    prefetch_issued: int = 0          # units fetched ahead of their step
    prefetch_used: int = 0            # of those, units a later step requested while staged
    prefetch_bytes: int = 0
    wait_s: float = 0.0               # time compute waited for units (materialisation)
    steps: int = 0
    hash_source: str = ""             # where block hashes came from (sidecar, hash pass, none)

    def by_name(self, name: str) -> ClassStats:
        return next(c for c in self.classes if c.name == name)

    def as_dict(self) -> dict:
        return {"classes": [c.as_dict() for c in self.classes], "prefetch_issued": self.prefetch_issued,
                "prefetch_used": self.prefetch_used, "prefetch_bytes": self.prefetch_bytes,
                "wait_s": self.wait_s, "steps": self.steps, "hash_source": self.hash_source}

    def format(self) -> str:
        rows = ["storage class   capacity          hits     misses    bytes moved  retries"]
        for c in self.classes:
            cap = "-" if c.capacity is None else human_bytes(c.capacity)
            rows.append(f"{c.name:<15} {cap:>10} {c.hits:>12} {c.misses:>10} {human_bytes(c.bytes_moved):>14} "
                        f"{c.retries:>8}")
        rows.append(f"prefetch: {self.prefetch_issued} issued, {self.prefetch_used} used "
                    f"({human_bytes(self.prefetch_bytes)}); waited {self.wait_s:.3f} s for units over "
                    f"{self.steps} steps; block hashes: {self.hash_source}")
        return "\n".join(rows)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def parse_bytes(text: str) -> int:
    """'2GiB', '512MiB', '1.5GB', '1000' -> bytes."""
    t = str(text).strip()
    units = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 10 ** 6, "mb": 10 ** 6, "mib": 1 << 20,
             "g": 10 ** 9, "gb": 10 ** 9, "gib": 1 << 30, "t": 10 ** 12, "tb": 10 ** 12, "tib": 1 << 40}
    i = len(t)
    while i and not (t[i - 1].isdigit() or t[i - 1] == "."):
        i -= 1
    num, unit = t[:i], t[i:].strip().lower()
    if unit not in units or not num:
        raise ValueError(f"{text!r} is not a size such as 2GiB, 512MiB or 1000")
    value = float(num) * units[unit]
    if value < 0 or value != value:
        raise ValueError(f"{text!r} is not a non-negative size")
    return int(value)


def _layout(d: int, f: int) -> tuple[int, int, int]:
    """Offsets (floats) of w_gate (f, d), w_up (f, d), w_down (d, f) in one flat buffer, and its length."""
    a = -(-f * d // ALIGN) * ALIGN
    return a, 2 * a, 2 * a + -(-d * f // ALIGN) * ALIGN


class Unit:
    """One expert's weights in one flat buffer: w_gate (F, d), w_up (F, d), w_down (d, F) views."""

    __slots__ = ("buf", "w_gate", "w_up", "w_down", "event")

    def __init__(self, buf: torch.Tensor, d: int, f: int, event=None):
        a, b, _ = _layout(d, f)
        self.buf = buf
        self.w_gate = buf[:f * d].view(f, d)
        self.w_up = buf[a:a + f * d].view(f, d)
        self.w_down = buf[b:b + d * f].view(d, f)
        self.event = event                      # CUDA event the copy recorded (None on the CPU)


class ExpertStore:
    """Serves expert units from a source through a host cache and (on CUDA) a GPU cache."""

    def __init__(self, source, device="cpu", cache_gpu: int | None = None, cache_host: int | None = None,
                 half_life: int | None = None, workers: int = 4, prefetch: bool = True, device_cache: bool = False):
        """``device_cache``: on a CPU, also run the device-cache level (named ``device``, copies by
        ``clone``) so the two-level logic of CUDA can be tested without a GPU; always on with CUDA."""
        self.source = source
        self.cfg = source.cfg
        self.units = source.units
        self.device = torch.device(device)
        self.sizes = self.units.sizes()
        total = sum(self.sizes)
        self.cuda = self.device.type == "cuda"
        self.two = self.cuda or device_cache                  # a device cache above the host cache
        self.top = "gpu" if self.cuda else "device"
        self.pin = torch.cuda.is_available()
        self.host_cap = total if cache_host is None else int(cache_host)
        self.gpu_cap = (total if cache_gpu is None else int(cache_gpu)) if self.two else None
        self.host_policy = CachePolicy(self.sizes, self.host_cap, half_life)
        self.gpu_policy = CachePolicy(self.sizes, self.gpu_cap, half_life) if self.two else None
        self.host: dict[int, Unit] = {}
        self.gpu: dict[int, Unit] = {}
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="lite-llm-store")
        self.copy_stream = torch.cuda.Stream(device=self.device) if self.cuda else None
        self.prefetch_enabled = prefetch
        self.staging: OrderedDict[int, Future] = OrderedDict()
        self.last_request: dict[int, int] = {}           # layer -> units its last step requested
        self.lock = threading.Lock()
        classes = ([ClassStats(self.top, self.gpu_cap)] if self.two else []) + [ClassStats("host", self.host_cap),
                                                                              ClassStats(source.storage_class)]
        self.metrics = StorageMetrics(classes, hash_source=getattr(source, "hash_source", ""))
        self.trace: list[list[int]] = []                 # the units of every step, as the policies saw them
        self.trace_layers: list[int] = []

    # --- fetching --------------------------------------------------------------------------------
    def _host_buffer(self, unit: int) -> torch.Tensor:
        info = self.units.info(unit)
        n = _layout(self.cfg.d_model, info.d_ff)[2]
        return torch.empty(n, dtype=torch.float32, pin_memory=self.pin)

    def _load(self, unit: int) -> Unit:
        """Read and check a unit from the source into a new host buffer (worker thread)."""
        info = self.units.info(unit)
        d, f = self.cfg.d_model, info.d_ff
        blocks = self.source.read_unit(unit)                 # every block checked, or an exception
        with self.lock:
            self.metrics.by_name(self.source.storage_class).bytes_moved += sum(len(b) for b in blocks)
        u = Unit(self._host_buffer(unit), d, f)
        for dst, b in zip((u.w_gate, u.w_up, u.w_down), blocks):
            dst.copy_(torch.frombuffer(bytearray(b), dtype=torch.float32).view(dst.shape))
        return u

    def _from_source(self, unit: int, keep: bool) -> Future:
        """A future of the unit read from the source (or taken from the staging area), stored in the
        host cache before the future completes when the host policy admitted it."""
        with self.lock:
            staged = self.staging.pop(unit, None)
        if staged is not None:
            self.metrics.prefetch_used += 1
        return self.pool.submit(self._fetch_host, unit, keep, staged)

    def _fetch_host(self, unit: int, keep: bool, staged: Future | None) -> Unit:
        u = staged.result() if staged is not None else self._load(unit)
        if keep and unit in self.host_policy.resident:
            self.host[unit] = u
        return u

    def _to_gpu(self, host: Unit, unit: int) -> Unit:
        info = self.units.info(unit)
        if not self.cuda:                                     # the CPU stand-in of the device level
            return Unit(host.buf.clone(), self.cfg.d_model, info.d_ff)
        with torch.cuda.stream(self.copy_stream):
            g = torch.empty(host.buf.shape, dtype=torch.float32, device=self.device)
            g.copy_(host.buf, non_blocking=True)
            ev = torch.cuda.Event()
            ev.record(self.copy_stream)
        return Unit(g, self.cfg.d_model, info.d_ff, ev)

    # --- one step ------------------------------------------------------------------------------
    def request(self, layer: int, units: list[int]) -> "StepHandle":
        """Start serving one step's units (ascending): policy decisions now, fetches in the background."""
        units = [int(u) for u in units]
        self.trace.append(units)
        self.trace_layers.append(layer)
        self.metrics.steps += 1
        self.last_request[layer] = len(units)
        host_dec = self.host_policy.step(units)
        gpu_dec = self.gpu_policy.step(units) if self.two else None
        for u in host_dec.evicted:
            self.host.pop(u, None)
        if gpu_dec is not None:
            for u in gpu_dec.evicted:
                self.gpu.pop(u, None)
        hs = self.metrics.by_name("host")
        src = self.metrics.by_name(self.source.storage_class)
        gs = self.metrics.by_name(self.top) if self.two else None
        handle = StepHandle(self)
        for i, u in enumerate(units):
            size = self.sizes[u]
            if gpu_dec is not None and gpu_dec.hit[i]:
                gs.hits += 1
                handle.ready[u] = self.gpu[u]
                continue
            if gs is not None:
                gs.misses += 1
            if host_dec.hit[i]:
                hs.hits += 1
                host_f: Future = Future()
                host_f.set_result(self.host[u])
            else:
                hs.misses += 1
                src.hits += 1
                hs.bytes_moved += size
                host_f = self._from_source(u, host_dec.admitted[i])
            if gpu_dec is None:
                handle.pending[u] = host_f
                continue
            gs.bytes_moved += size
            keep = gpu_dec.admitted[i]
            gf = self.pool.submit(self._gpu_from, host_f, u, keep)
            handle.pending[u] = gf
        return handle

    def _gpu_from(self, host_f: Future, u: int, keep: bool) -> Unit:
        g = self._to_gpu(host_f.result(), u)
        if keep and u in self.gpu_policy.resident:
            self.gpu[u] = g
        return g

    def prefetch_next(self, layer: int) -> None:
        """Stage the units of ``layer`` the host policy ranks first (PLACE-4.9), as many as that layer's
        last step requested, into the staging area (bounded: twice that many units)."""
        if not self.prefetch_enabled:
            return
        limit = self.last_request.get(layer, 0)
        if limit == 0:
            return
        cand = self.host_policy.prefetch_candidates(self.units.layer_units(layer, self.source.tier_ids), limit)
        with self.lock:
            for u in cand:
                if u in self.staging or u in self.host:
                    continue
                self.staging[u] = self.pool.submit(self._load, u)
                self.metrics.prefetch_issued += 1
                self.metrics.prefetch_bytes += self.sizes[u]
            while len(self.staging) > 2 * max(1, limit):
                self.staging.popitem(last=False)

    def sync_metrics(self) -> StorageMetrics:
        src = self.metrics.by_name(self.source.storage_class)
        c = self.source.counters
        src.retries, src.failures = c.retries, c.failures
        return self.metrics

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.source.close()


class StepHandle:
    """The units of one step: ``get(u)`` waits for a unit (its blocks all checked) on the compute device."""

    def __init__(self, store: ExpertStore):
        self.store = store
        self.ready: dict[int, Unit] = {}
        self.pending: dict[int, Future] = {}

    def get(self, unit: int) -> Unit:
        u = self.ready.get(unit)
        if u is None:
            t0 = time.perf_counter()
            u = self.pending.pop(unit).result()        # raises the read error, naming tier, expert and URL
            self.store.metrics.wait_s += time.perf_counter() - t0
            self.ready[unit] = u
        if u.event is not None:
            stream = torch.cuda.current_stream(self.store.device)
            stream.wait_event(u.event)                 # the copy stream's H2D copy is complete
            u.buf.record_stream(stream)                # not reused by the allocator while compute reads it
        return u

    def wait_all(self) -> None:
        for unit in list(self.pending):
            try:
                self.get(unit)
            except Exception:  # noqa: BLE001 -- the step already failed; drain the rest
                pass


def expert_bytes(units) -> int:
    return int(np.sum(units.sizes()))
