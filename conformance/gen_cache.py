"""Selection-level cases of the expert-cache policy (PLACE-4), ``selection/cache/...``.

``cache_trace`` takes a trace (PLACE-4.3) as three int64 tensors, ``offsets`` (S + 1), ``units`` (n)
and ``sizes`` (U), and the parameters ``capacity`` (bytes) and ``half_life`` (steps, optional:
default U); it returns per request ``hit`` and ``admitted`` (bool), per step the resident set
``resident`` (S, U) bool, and the final decayed ``counts`` (U) int64. Hand-made traces hit each
rule (protection, the admission test, the tie-breaks of the eviction order, decay, victims of
several sizes); Zipf-skewed and model-derived traces check the policy over many steps; malformed
traces and parameters are rejected with E_SHAPE.
"""
from __future__ import annotations

import numpy as np

from .draw import uniform
from .generate import CaseSpec

I64 = np.int64
BASE = ["PLACE-4.4", "PLACE-4.5", "PLACE-4.6", "PLACE-4.7"]


def trace_inputs(steps, sizes) -> dict[str, np.ndarray]:
    offsets = np.zeros(len(steps) + 1, I64)
    offsets[1:] = np.cumsum([len(s) for s in steps]) if steps else []
    return {"offsets": offsets, "units": np.array([u for s in steps for u in s], I64),
            "sizes": np.array(sizes, I64)}


def case(name, desc, clauses, steps, sizes, capacity, half_life=None, error=None, inputs=None) -> CaseSpec:
    params = {"capacity": capacity, **({} if half_life is None else {"half_life": half_life})}
    return CaseSpec(f"selection/cache/{name}", desc, BASE + clauses, "cache_trace", params,
                    inputs if inputs is not None else trace_inputs(steps, sizes), error=error)


def zipf_steps(label: str, n_units: int, steps: int, k: int, s: float) -> list[list[int]]:
    """Steps of k distinct units drawn with Zipf(s) weights (Gumbel top-k on the draw module's uniforms)."""
    w = np.log(1.0 / np.arange(1, n_units + 1, dtype=np.float64) ** s)
    u = (uniform(label, (steps, n_units)).astype(np.float64) + 1.0) / 2.0          # (0, 1]
    g = w[None, :] - np.log(-np.log(np.clip(u, 1e-12, 1 - 1e-12)))
    return [sorted(np.argsort(-row, kind="stable")[:k].tolist()) for row in g]


def model_steps() -> tuple[list[list[int]], list[int]]:
    """A trace of a small model's routing records: 3 layers x 6 forward calls, the experts of all rows."""
    from lite_llm.reference.cache_policy import step_units, unit_sizes
    from lite_llm.reference.router import route
    from lite_llm.reference.router_weights import quantize_router
    from lite_llm.spec.config import config_from_dict

    from .draw import gauss
    from .gen_loss import weights
    from .gen_routing import config

    cfgd = config(tiers=((2, 3), (3, 2)), k=(1, 1, 2))
    cfgd["n_layers"] = 3
    cfg = config_from_dict(cfgd)
    steps = []
    for call in range(6):
        for layer in range(cfg.n_layers):
            qr = quantize_router(cfg, _router_weights(weights(cfgd, seed=40 + layer), cfg.n_tiers))
            r = route(gauss(f"cache.h{call}.{layer}", (3, cfg.d_model)), qr, [0, 1], 0)
            steps.append(step_units(cfg, r, layer, [0, 1]))
    sizes = unit_sizes(cfg)[:cfg.n_layers * sum(t.groups * t.experts_per_group for t in cfg.tiers)]
    return steps, sizes.tolist()


def _router_weights(w: dict, n_tiers: int):
    from lite_llm.reference.router_weights import RouterWeights

    return RouterWeights(tuple(w[f"router_tier.{t}"] for t in range(n_tiers)),
                         tuple(w[f"router_group.{t}"] for t in range(n_tiers)),
                         tuple(w[f"router_expert.{t}"] for t in range(n_tiers)))


def cases() -> list[CaseSpec]:
    out = []
    one = [1] * 6
    out.append(case("worked-admission", "Capacity 2 of 6 unit-size units: 0 and 1 fill the cache; 2 (count 1) "
                    "cannot displace 0 or 1 (count 1, not below); once 2 has 2 requests it displaces the first "
                    "count-1 unit in eviction order (equal last use: the smaller id, 0).", [],
                    [[0, 1], [2], [2], [0], [3], [3], [3]], one, 2, half_life=100))
    out.append(case("worked-protection", "A step that requests more units than fit: its own resident units are "
                    "never evicted for its misses (PLACE-4.6), so the extra units are used once.", [],
                    [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3], [2, 3]], one, 2))
    out.append(case("worked-tie-by-id", "Residents of equal count and equal last use: the smaller id is evicted "
                    "first.", [], [[0, 1], [4], [4], [5], [5], [5]], one, 2))
    out.append(case("worked-decay", "Half-life 3: counts halve (floor) at steps 3, 6, 9; a formerly hot unit "
                    "loses its place to a unit that became popular.", [],
                    [[0], [0], [0], [1], [1], [1], [1], [2], [2], [2], [2], [1]], one, 1, half_life=3))
    out.append(case("variable-sizes", "Units of sizes 1..4 in a 6-byte cache: a miss evicts the shortest prefix of "
                    "the eviction order that makes room, and only if every victim has a smaller count.", [],
                    [[0, 1, 2], [3], [3], [3], [0], [1, 2], [1, 2], [1, 2], [3]], [1, 2, 3, 4], 6))
    out.append(case("capacity-zero", "Capacity 0: every request is a miss and nothing is admitted.", [],
                    [[0, 1], [0, 1], [1]], [1, 1], 0))
    out.append(case("unit-larger-than-cache", "A unit larger than the whole cache is never admitted; the others "
                    "are.", [], [[0, 1], [0, 1], [0, 1]], [1, 9], 4))
    out.append(case("empty-steps", "Steps that request nothing still count for decay and last use.", [],
                    [[], [0], [], [], [1], [1], [0]], [1, 1], 1, half_life=2))
    out.append(case("no-steps", "An empty trace.", [], [], [5, 5], 10))
    zs = zipf_steps("cache.zipf", 48, 200, 3, 1.1)
    out.append(case("zipf-default-half-life", "200 steps of 3 Zipf(1.1)-skewed units out of 48, capacity 5 units, "
                    "default half-life (U = 48 steps).", [], zs, [3] * 48, 15))
    out.append(case("zipf-mixed-sizes", "The same trace with units of two sizes and half-life 16.", [], zs,
                    [4 if u % 3 == 0 else 3 for u in range(48)], 40, half_life=16))
    ms, msz = model_steps()
    out.append(case("model-trace", "The trace of a small model's routing records (PLACE-4.1 unit ids, PLACE-4.2 "
                    "steps: 3 layers x 6 calls, 3 tokens each), cache of a quarter of its expert bytes.",
                    ["PLACE-4.1", "PLACE-4.2"], ms, msz, sum(msz) // 4))
    bad = [("unsorted-step", [[1, 0]], one, 2, None, "a step's units are not ascending"),
           ("repeated-unit", [[1, 1]], one, 2, None, "a unit repeats within a step"),
           ("unit-out-of-range", [[0, 6]], one, 2, None, "unit 6 of 6 units"),
           ("zero-size", [[0]], [1, 0], 2, None, "a unit of size 0"),
           ("negative-capacity", [[0]], one, -1, None, "capacity -1"),
           ("zero-half-life", [[0]], one, 1, 0, "half-life 0")]
    for name, steps, sizes, cap, hl, why in bad:
        out.append(case(f"errors/{name}", f"{why}: rejected with E_SHAPE.", ["PLACE-4.3"], steps, sizes, cap, hl,
                        error="E_SHAPE"))
    inp = trace_inputs([[0], [1]], one)
    inp["offsets"] = np.array([0, 2, 1], I64)
    out.append(case("errors/offsets-decrease", "offsets decrease: rejected with E_SHAPE.", ["PLACE-4.3"], None, None,
                    1, error="E_SHAPE", inputs=inp))
    inp = trace_inputs([[0], [1]], one)
    inp["offsets"] = np.array([0, 1, 3], I64)
    out.append(case("errors/offsets-past-end", "offsets end past the requests: rejected with E_SHAPE.",
                    ["PLACE-4.3"], None, None, 1, error="E_SHAPE", inputs=inp))
    return out
