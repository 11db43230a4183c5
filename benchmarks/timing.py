"""Timing helpers shared by the benchmarks: CUDA events after warm-up, median of many runs,
inputs rotated so the L2 cache does not hold them between runs, and a table printer.

On the CPU (``--quick`` smoke runs in CI) the same functions time with ``time.perf_counter``;
those numbers only show the code path runs, they measure nothing worth reporting.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import torch

H100_HBM_TBPS = 3.35        # nominal HBM3 bandwidth of an H100 SXM (TB/s); the floors also use a measured copy


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


_CAP: list[int] = []          # (warmup, reps) cap set by ``quick_mode`` for the --quick smoke runs


def quick_mode(on: bool = True) -> None:
    """Cap every timing at 1 warm-up and 3 runs (``--quick``: the code paths, no timing claim)."""
    _CAP[:] = [1, 3] if on else []


def time_us(fn: Callable[[int], object], device, warmup: int = 5, reps: int = 30) -> float:
    """Median time of ``fn(i)`` in microseconds; ``i`` counts calls so ``fn`` can rotate its inputs."""
    if _CAP:
        warmup, reps = min(warmup, _CAP[0]), min(reps, _CAP[1])
    for i in range(warmup):
        fn(i)
    sync(device)
    times = []
    if torch.device(device).type == "cuda":
        for i in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(warmup + i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3)
    else:
        for i in range(reps):
            t0 = time.perf_counter()
            fn(warmup + i)
            times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def copies_for_l2(nbytes_one: int, l2_bytes: int = 50 << 20, at_least: int = 2) -> int:
    """How many copies of an input to rotate through so that together they overflow L2 (H100: 50 MB)."""
    return max(at_least, -(-3 * l2_bytes // max(nbytes_one, 1)))


def copy_bandwidth_tbps(device, nbytes: int = 1 << 30) -> float:
    """Measured device-to-device copy bandwidth (read + write bytes / time), TB/s."""
    if torch.device(device).type != "cuda":
        return float("nan")
    a = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    us = time_us(lambda i: b.copy_(a), device, warmup=3, reps=20)
    return 2 * a.numel() / (us * 1e-6) / 1e12


def print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    """A plain aligned table: one dict per row, values formatted by ``fmt``."""
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


def device_name(device) -> str:
    return torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu"


@contextlib.contextmanager
def one_cpu_thread(device):
    """On the CPU, run torch on one thread (restored afterwards). Measured on the shared 2-core machine:
    the generator's and the router's elementwise passes took ~10x more CPU time on two intra-op threads
    (busy-waiting under load) than on one, and the timings became noise; one thread is also how
    NumPy, the reference, runs. CUDA runs are unaffected."""
    if torch.device(device).type != "cpu":
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None (with a note) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: JSON only (draw the plot elsewhere with --plot-from FILE.json)")
        return None
    return plt
