"""Profile the exact router kernels on a GPU: S1 (one fused level) under ncu, S2 (three levels) with
torch.profiler's kernel table. Usage on the device machine:
    ncu --clock-control none --section SpeedOfLight --section ComputeWorkloadAnalysis \
        --section MemoryWorkloadAnalysis --section Occupancy -k regex:_quantize_level -c 1 \
        python3 scripts/profile_router.py s1
    python3 scripts/profile_router.py s2
"""
import sys

import torch

from lite_llm.benchmarks.bench_router import hidden_copies, random_router_weights, scenario_config
from lite_llm.optimized.router import QuantizedRows, key_ranks, load_router, route
from lite_llm.optimized.seeds import as_signed, level_seed, ordered, tie_keys
from lite_llm.optimized.triton import route_flat

dev = "cuda"
what = sys.argv[1]
if what == "s1":
    T, d, n, k = 16384, 4096, 64, 2
    cfg = scenario_config(1, 1, n, (1, 1, k), d)
    w = random_router_weights(cfg, dev)
    rows_q = QuantizedRows.of(w["layers.0.tiers.t0.router_expert"].reshape(n, d), 2)
    keys = ordered(tie_keys(torch.tensor(as_signed(level_seed(0, 3, 0, 0)), device=dev), n))
    ranks = key_ranks(keys[None, :], torch.tensor([n], device=dev))[0]
    h = hidden_copies(T, d, dev)[0]
    for _ in range(3):
        route_flat(h, rows_q, ranks, k, check=False)
    torch.cuda.synchronize()
else:
    T, d, M, G, E = 16384, 4096, 5, 32, 64
    cfg = scenario_config(M, G, E, (1, 2, 2), d)
    w = random_router_weights(cfg, dev)
    qr = load_router(cfg, w, 0, dev)
    h = hidden_copies(T, d, dev)[0]
    for _ in range(3):
        route(h, qr, tuple(range(M)), backend="triton")
    torch.cuda.synchronize()
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as p:
        for _ in range(5):
            route(h, qr, tuple(range(M)), backend="triton")
        torch.cuda.synchronize()
    print(p.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))
