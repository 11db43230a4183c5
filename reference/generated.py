"""Generated tiers (INIT-3.1 .. INIT-3.3): weights made on demand from (seed, tensor name), never stored.

Every element of every tensor is a function of the weights seed, the tensor's name and the element's
index (INIT-1.2), so any slice of a tensor can be generated without the rest. A generated tier is a
storage class: reading expert (g, e) generates exactly its elements of the three expert tensors
(INIT-3.2); reading router rows generates exactly those rows (INIT-3.3). The values are those of
``weights.init_model_weights`` bit for bit (INIT-3.1).

    tier = GeneratedTier(cfg, seed=7)
    w = tier.read_expert(layer=3, tier=1, group=2, expert=0)     # {"w_gate": (F, d), "w_up", "w_down"}
    rows = tier.read_router_rows(3, 1, "router_group", [0, 5])   # (2, d)

Plain NumPy, written for clarity; ``optimized.generated`` is the torch version (CPU and CUDA).
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.config import ModelConfig, parse_seed

from .init import GOLDEN, fnv1a64
from .seeds import MASK64, mix64, mix64_array
from .weights import init_bound

EXPERT_KINDS = ("w_gate", "w_up", "w_down")            # INIT-2.3
ROUTER_KINDS = ("router_tier", "router_group", "router_expert")   # INIT-2.1, levels 1, 2, 3


def uniform_range(seed: int, name: str, start: int, count: int, bound: np.float32) -> np.ndarray:
    """Elements ``start .. start + count - 1`` (row-major) of tensor ``name``'s uniform stream (INIT-1.2,
    INIT-1.3), binary32 (count,), equal to ``init.uniform_tensor(...).ravel()[start:start + count]``.

    ``start`` is an exact Python integer of any size: the word of element i uses (i + 1) mod 2**64
    (INIT-3.1), which uint64 arithmetic gives by wrapping.
    """
    base = mix64(parse_seed(seed) ^ fnv1a64(name))
    first = np.uint64((start + 1) & MASK64)
    with np.errstate(over="ignore"):
        idx = first + np.arange(count, dtype=np.uint64)                 # (count,) i + 1 mod 2**64
        x = mix64_array(np.uint64(base) + idx * np.uint64(GOLDEN))
    u = (x >> np.uint64(40)).astype(np.int64)                           # top 24 bits
    f = (2 * u + 1 - (1 << 24)).astype(np.float32) * np.float32(2.0 ** -24)   # exact, in (-1, 1)
    return f * np.float32(bound)                                        # one binary32 rounding


def tier_prefix(cfg: ModelConfig, layer: int, tier: int) -> str:
    return f"layers.{layer}.tiers.{cfg.tiers[tier].name}"


def expert_shapes(cfg: ModelConfig, tier: int) -> dict[str, tuple[int, int]]:
    """(a, b) of one expert's slice of each expert tensor (INIT-2.3): (F, d), (F, d), (d, F)."""
    d, F = cfg.d_model, cfg.tiers[tier].d_ff
    return {"w_gate": (F, d), "w_up": (F, d), "w_down": (d, F)}


def generated_expert(cfg: ModelConfig, seed: int, layer: int, tier: int, group: int, expert: int) -> dict:
    """Expert (group, expert) of tier ``tier`` in ``layer``: the slices ``[g, e]`` of w_gate, w_up, w_down,
    each the row-major elements [(g E + e) a b, (g E + e + 1) a b) of its tensor's stream (INIT-3.2)."""
    tc = cfg.tiers[tier]
    check_index(cfg, layer, tier, group, expert)
    p = tier_prefix(cfg, layer, tier)
    out = {}
    for kind, (a, b) in expert_shapes(cfg, tier).items():
        name = f"{p}.{kind}"
        start = (group * tc.experts_per_group + expert) * a * b
        out[kind] = uniform_range(seed, name, start, a * b, init_bound(cfg, name)).reshape(a, b)
    return out


def router_rows(cfg: ModelConfig, seed: int, layer: int, tier: int, kind: str, rows) -> np.ndarray:
    """Rows of one router tensor of tier ``tier`` in ``layer`` (INIT-3.3), binary32 (n, d).

    ``kind`` "router_tier": ``rows`` is ignored, the whole (d,) stream as one row; "router_group":
    ``rows`` are group indices g (row g = elements [g d, (g+1) d)); "router_expert": ``rows`` are flat
    indices g E_t + e of (G_t, E_t, d) (row = elements [(g E_t + e) d, ...)).
    """
    d = cfg.d_model
    name = f"{tier_prefix(cfg, layer, tier)}.{kind}"
    bound = init_bound(cfg, name)                                       # fan-in bound of d (INIT-2.1)
    if kind == "router_tier":
        return uniform_range(seed, name, 0, d, bound).reshape(1, d)
    if kind not in ROUTER_KINDS:
        raise ValueError(f"{kind!r} is not a router tensor kind {ROUTER_KINDS}")
    rows = [int(r) for r in rows]
    out = np.empty((len(rows), d), np.float32)
    for i, r in enumerate(rows):
        out[i] = uniform_range(seed, name, r * d, d, bound)
    return out


def check_index(cfg: ModelConfig, layer: int, tier: int, group: int, expert: int) -> None:
    tc = cfg.tiers[tier]
    for what, v, n in (("layer", layer, cfg.n_layers), ("group", group, tc.groups),
                       ("expert", expert, tc.experts_per_group)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
            raise IndexError(f"{what} {v!r} is outside [0, {n}) for tier {tc.name!r}")


class GeneratedTier:
    """A storage class whose weights come from the INIT generator (INIT-3.1): nothing is stored.

    Counts what it materialises: ``params`` (elements generated) and ``reads`` (slices), so that a
    caller can check the parameters a token touched against PARAM-3 (INIT-3.4).
    """

    storage_class = "generated"

    def __init__(self, cfg: ModelConfig, seed: int):
        self.cfg = cfg
        self.seed = parse_seed(seed)
        self.params = 0
        self.reads = 0

    def read_expert(self, layer: int, tier: int, group: int, expert: int) -> dict[str, np.ndarray]:
        """{"w_gate": (F, d), "w_up": (F, d), "w_down": (d, F)} of expert (group, expert) (INIT-3.2)."""
        w = generated_expert(self.cfg, self.seed, layer, tier, group, expert)
        self.params += sum(a.size for a in w.values())
        self.reads += 1
        return w

    def read_router_rows(self, layer: int, tier: int, kind: str, rows=()) -> np.ndarray:
        """Rows of a router tensor (INIT-3.3); see :func:`router_rows`."""
        r = router_rows(self.cfg, self.seed, layer, tier, kind, rows)
        self.params += r.size
        self.reads += 1
        return r

    def read_tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A whole tensor (dense ones, or small tiers), as INIT-2 initialises it."""
        from .weights import init_tensor

        a = init_tensor(self.cfg, self.seed, name, shape)
        self.params += a.size
        self.reads += 1
        return a
