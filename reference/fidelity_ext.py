"""Prototype extensions of HSER-2 for router fidelity on heavy-tailed hidden states (issue 11, item 4).

NOT normative and not used by the router: ``quantize.py``, ``router.py`` and the v0.1 vectors are
unchanged. This module measures, on the same data and the same routers as ``fidelity.py``, how two
candidate extensions of HSER-2 change the agreement of the exact router with the float64 router:

* **more hidden limbs** (``hidden_limbs = 3``): HSER-2.3 as written, with ``L = 3``:
  ``Q_i = round_half_even(y_i * 2**14)``, ``|Q_i| <= 127 * 128**2 < 2**21``, three int8 limbs.
* **power-of-two block scales** (``block = B``): the row keeps its one division ``r = 127 / a``
  (HSER-2.3); each block ``b`` of ``B`` consecutive channels gets an exponent
  ``k_b = max{k in [0, kmax] : a_b * 2**k <= a}`` with ``a_b`` the block's absmax (exact integer
  arithmetic on binary32 exponents), and ``y_i = (x_i * 2**k_b) * r`` (the first product is exact),
  ``Q_i = round_half_even(y_i * 2**(7 (L - 1)))``. So ``|Q_i| <= 127 * 128**(L-1)`` as before, and a
  block whose values are 2**k_b times smaller than the row's outliers is quantized 2**k_b times
  finer. The exact logit is ``acc = sum_b 2**(kmax - k_b) * acc_b`` (an int64 sum of shifted exact
  block dot products) scaled by ``scale_x * 2**-kmax`` (a power of two: exact). With ``kmax = 0``
  (or every ``k_b = 0``) this is HSER-2 v0.1 bit for bit.

Selection follows HSER-4/5/7 (same tie keys, same top-k order) but vectorised over every token, so
tens of thousands of tokens take seconds; ``fidelity.fidelity`` (the per-token reference) is the
check: ``scheme_agreement`` gives the same numbers for the v0.1 schemes (tests hold it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lite_llm.spec.config import ModelConfig

from .quantize import dequant_scale, quantize_rows
from .router_weights import RouterWeights
from .seeds import level_seed, tie_keys

F32 = np.float32


@dataclass(frozen=True)
class Scheme:
    """How the exact router quantizes: limbs on each side and (optionally) power-of-two block scales."""

    hidden_limbs: int
    weight_limbs: int
    block: int = 0          # channels per block of the hidden state; 0: one scale per row (HSER-2 v0.1)
    kmax: int = 8           # largest block exponent (4 bits); 2**(45 + kmax) < 2**53 bounds acc at d <= 2**17

    @property
    def name(self) -> str:
        s = f"{self.hidden_limbs}+{self.weight_limbs}"
        return s if not self.block else f"{s} B{self.block} k<={self.kmax}"

    def int8_products_per_logit(self, d: int) -> int:
        """int8 x int8 products per (token, router row): one per limb pair per channel."""
        return self.hidden_limbs * self.weight_limbs * d

    def combines_per_logit(self, d: int) -> int:
        """int64 combines (shift-add of a block's limb sums) per (token, router row)."""
        return -(-d // self.block) if self.block else 1

    def extra_hidden_bytes(self, d: int) -> int:
        """Bytes per token beyond HSER-2 v0.1's two int8 limbs, if the limbs are materialised."""
        return (self.hidden_limbs - 2) * d + ((-(-d // self.block) + 1) // 2 if self.block else 0)


def block_exponents(x: np.ndarray, absmax: np.ndarray, block: int, kmax: int) -> np.ndarray:
    """k[t, b] = max{k in [0, kmax] : a_b * 2**k <= a} per token t and block b, exactly (int64)."""
    T, d = x.shape
    nb = -(-d // block)
    pad = np.zeros((T, nb * block), F32)
    pad[:, :d] = np.abs(x)
    ab = pad.reshape(T, nb, block).max(axis=2)                                # (T, nb) binary32, exact
    ma, ea = np.frexp(absmax.astype(np.float64))                               # a = ma * 2**ea, ma in [0.5, 1)
    mb, eb = np.frexp(ab.astype(np.float64))
    k = ea[:, None] - eb - (mb > ma[:, None])                                  # a_b * 2**k <= a < a_b * 2**(k+1)
    k = np.where(ab == 0, kmax, k)
    return np.clip(k, 0, kmax).astype(np.int64)


def quantize_hidden(x: np.ndarray, s: Scheme) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q (T, d) int64, k (T, nb) int64, scale_x (T,) binary64) of binary32 hidden states under s."""
    x = np.asarray(x, F32)
    if not s.block:
        q, a = quantize_rows(x, s.hidden_limbs)                               # HSER-2 v0.1 itself
        return q, np.zeros((x.shape[0], 1), np.int64), dequant_scale(a, s.hidden_limbs)
    a = np.max(np.abs(x), axis=1)
    k = block_exponents(x, a, s.block, s.kmax)
    up = np.repeat(np.ldexp(F32(1.0), k).astype(F32), s.block, axis=1)[:, : x.shape[1]]   # 2**k_b per channel
    small = a < F32(2.0 ** -64)                                                # HSER-2.3 step 1 (exact)
    f = np.where(small, F32(2.0 ** 64), F32(1.0))
    r = F32(127.0) / np.where(a == 0, F32(1.0), a * f)                         # one division per row
    y = ((x * f[:, None]) * up) * r[:, None]                                   # exact, exact, rounded
    q = np.rint(y * F32(2.0 ** (7 * (s.hidden_limbs - 1))))
    q[a == 0] = 0
    assert np.abs(q).max(initial=0) <= 127 * 128 ** (s.hidden_limbs - 1)
    sx = dequant_scale(a, s.hidden_limbs) * np.float64(2.0 ** -s.kmax)        # exact power-of-two scaling
    return q.astype(np.int64), k, sx


def exact_acc(qx: np.ndarray, k: np.ndarray, qw: np.ndarray, s: Scheme, xs: np.ndarray | None = None) -> np.ndarray:
    """acc[t, j] = sum_b 2**(kmax - k[t, b]) * (Qx_b . Qw_b) exactly, as integer-valued binary64 (T, n).

    Computed as one binary64 product of the integers Qx_i * 2**(kmax - k_b) and Qw_i: every product
    and every partial sum is an integer of magnitude at most sum_i |Qx_i| 2**(kmax - k_b) |Qw_i| < 2**53
    (checked), so the result is exact in any summation order, the same integers an int8 kernel would
    combine block by block in int64. ``xs`` is shifted_hidden(qx, k, s) if the caller has it.
    """
    x = shifted_hidden(qx, k, s) if xs is None else xs
    w = qw.astype(np.float64)
    bound = np.abs(x).sum(axis=1).max(initial=0) * np.abs(w).max(initial=0)
    assert bound < 2 ** 53, f"{s.name}: |acc| may reach 2**{np.log2(bound):.1f}"
    return x @ w.T


def shifted_hidden(qx: np.ndarray, k: np.ndarray, s: Scheme) -> np.ndarray:
    """Qx_i * 2**(kmax - k_b), binary64 (exact), the hidden operand of exact_acc."""
    if not s.block:
        return qx.astype(np.float64)
    up = np.repeat(np.ldexp(1.0, s.kmax - k), s.block, axis=1)[:, : qx.shape[1]]
    return qx.astype(np.float64) * up


@dataclass(frozen=True)
class Layout:
    """Columns of the stacked router rows: level-1 rows, then each tier's groups, then its experts."""

    rows: np.ndarray                          # (n, d) binary32: every router row of the layer
    tier: np.ndarray                          # (n_tiers,) column of tier t's level-1 row
    group: tuple[np.ndarray, ...]             # per tier: (G_t,) columns
    expert: tuple[np.ndarray, ...]            # per tier: (G_t, E_t) columns


def layout(w: RouterWeights) -> Layout:
    rows, n = [np.stack(w.tier)], len(w.tier)
    tier = np.arange(n)
    group, expert = [], []
    for t in range(len(w.tier)):
        G = w.group[t].shape[0]
        rows.append(w.group[t])
        group.append(np.arange(n, n + G))
        n += G
    for t in range(len(w.tier)):
        G, E = w.expert[t].shape[:2]
        rows.append(w.expert[t].reshape(G * E, -1))
        expert.append(np.arange(n, n + G * E).reshape(G, E))
        n += G * E
    return Layout(np.concatenate(rows).astype(F32), tier, tuple(group), tuple(expert))


def scheme_logits(x: np.ndarray, lay: Layout, s: Scheme | None, cache: dict | None = None) -> np.ndarray:
    """Logits (T, n) of every router row: exact under scheme s (HSER-3.3 order), or float64 (s None).

    ``cache`` (optional) keeps the hidden quantization of x per (limbs, block, kmax) across routers.
    """
    if s is None:
        return np.asarray(x, np.float64) @ lay.rows.astype(np.float64).T
    qw, aw = quantize_rows(lay.rows, s.weight_limbs)                           # HSER-2.6: row by row
    sw = dequant_scale(aw, s.weight_limbs)
    key = (s.hidden_limbs, s.block, s.kmax if s.block else 0)
    if cache is not None and key in cache:
        qx, k, sx, xs = cache[key]
    else:
        qx, k, sx = quantize_hidden(x, s)
        xs = shifted_hidden(qx, k, s)
        if cache is not None:
            cache[key] = (qx, k, sx, xs)
    acc = exact_acc(qx, k, qw, s, xs)
    return (acc * sx[:, None]) * sw[None, :]


def batched_top_k(z: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """top_k (HSER-5.2) of many candidate lists at once: z (T, G, n), keys (G, n) -> (T, G, min(k, n)).

    The columns are put in ascending key order, then the best is taken k times by argmax, which
    returns the first of equal maxima: the one with the smaller key, as HSER-5.1 orders them (-0.0
    and +0.0 compare equal here too). Logits are finite, so -inf marks the ones already taken.
    """
    by_key = np.argsort(keys, axis=-1, kind="stable")                           # (G, n)
    zk = np.take_along_axis(z, np.broadcast_to(by_key, z.shape), axis=2).copy()  # (T, G, n)
    out = []
    for _ in range(min(k, z.shape[2])):
        j = np.argmax(zk, axis=2)                                                # (T, G) position in key order
        out.append(np.take_along_axis(np.broadcast_to(by_key, z.shape), j[..., None], axis=2)[..., 0])
        np.put_along_axis(zk, j[..., None], -np.inf, axis=2)
    return np.stack(out, axis=2) if out else np.zeros(z.shape[:2] + (0,), np.int64)


def active_codes(cfg: ModelConfig, lay: Layout, z: np.ndarray, tiers, seed: int) -> np.ndarray:
    """Each token's active set as sorted codes (t << 40 | g << 20 | e), -1 padded: (T, K) int64.

    HSER-7.1 .. 7.3 with the tie keys of HSER-4.5 and the order of HSER-5, for every token at once.
    """
    rc = cfg.router
    T = z.shape[0]
    cands = np.asarray(sorted(tiers))
    keys1 = tie_keys(level_seed(seed, 1), cfg.n_tiers)[cands]
    chosen = cands[batched_top_k(z[:, None, lay.tier[cands]], keys1[None], rc.k_tier)[:, 0]]   # (T, k1') tier ids
    K = rc.k_tier * rc.k_group * rc.k_expert
    out = np.full((T, K), -1, np.int64)
    for t in cands:
        G, E = lay.expert[t].shape
        topg = batched_top_k(z[:, None, lay.group[t]], tie_keys(level_seed(seed, 2, int(t)), G)[None],
                             rc.k_group)[:, 0]                                   # (T, k2')
        keys3 = np.stack([tie_keys(level_seed(seed, 3, int(t), g), E) for g in range(G)])
        tope = batched_top_k(z[:, lay.expert[t]], keys3, rc.k_expert)            # (T, G, k3')
        for a in range(chosen.shape[1]):
            tok = np.flatnonzero(chosen[:, a] == t)
            for b in range(topg.shape[1]):
                g = topg[tok, b]
                e = tope[tok, g]                                                 # (n, k3')
                c = (np.int64(t) << 40) | (g.astype(np.int64)[:, None] << 20) | e.astype(np.int64)
                for j in range(e.shape[1]):
                    out[tok, (a * rc.k_group + b) * rc.k_expert + j] = c[:, j]
    return np.sort(out, axis=1)


def scheme_matches(cfg: ModelConfig, w: RouterWeights, h: np.ndarray, schemes, tiers=None,
                   seed: int | None = None, cache: dict | None = None) -> dict[str, np.ndarray]:
    """Per token, whether its active set under each scheme equals the float64 router's: name -> (T,) bool."""
    tiers = tuple(range(cfg.n_tiers)) if tiers is None else tuple(tiers)
    seed = cfg.router.seed if seed is None else seed
    x = np.asarray(h, F32)
    lay = layout(w)
    ideal = active_codes(cfg, lay, scheme_logits(x, lay, None), tiers, seed)
    return {s.name: np.all(active_codes(cfg, lay, scheme_logits(x, lay, s, cache), tiers, seed) == ideal, axis=1)
            for s in schemes}


def scheme_agreement(cfg: ModelConfig, w: RouterWeights, h: np.ndarray, schemes, tiers=None,
                     seed: int | None = None) -> dict[str, float]:
    """Fraction of tokens whose active set under each scheme equals the float64 router's."""
    return {k: float(np.mean(v)) for k, v in scheme_matches(cfg, w, h, schemes, tiers, seed).items()}


V01 = tuple(Scheme(lx, lw) for lx in (1, 2) for lw in (1, 2))                # HSER-2 v0.1 limb settings
EXTENSIONS = (Scheme(3, 2), Scheme(2, 2, block=64), Scheme(2, 2, block=32), Scheme(2, 3))
