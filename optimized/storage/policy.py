"""The expert-cache policy of PLACE-4.4 .. PLACE-4.7, incremental and fast (heaps, lazy deletion).

Written from the spec text, independently of the reference (``lite_llm.reference.cache_policy``);
the conformance operation ``cache_trace`` and the tests hold the two to the same resident set at
every step. Pure Python: the runtime (``store``) and the storage benchmark both drive it.

State per unit u: a decayed request count n_u (an integer) and the step l_u of its last request.
Step k over the ascending request set S: (1) every H steps the counts halve (floor); (2) each unit of
S counts one more request; (3) units of S are decided in ascending id order: a resident unit is a
hit; a miss is admitted when the shortest prefix of the unprotected residents in eviction order
ascending (n, l, id) frees room for it and every one of those victims has a smaller count; (4) S's
last-use steps become k. Units of S are protected from eviction during their own step.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StepDecision:
    """What one step did (PLACE-4.6, PLACE-4.7); lists in the order of the step's units."""

    units: list[int]
    hit: list[bool]
    admitted: list[bool]          # misses made resident
    evicted: list[int] = field(default_factory=list)   # units removed to make room, in eviction order


class CachePolicy:
    """The PLACE-4 policy for one cache of ``capacity`` bytes over units of the given ``sizes``."""

    def __init__(self, sizes, capacity: int, half_life: int | None = None):
        self.sizes = [int(s) for s in sizes]
        U = len(self.sizes)
        for name, v, low in (("capacity", capacity, 0), ("half_life", half_life if half_life is not None else 1, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name}={v!r} must be an integer >= {low} (PLACE-4.4)")
        self.capacity = int(capacity)
        self.half_life = max(1, U) if half_life is None else int(half_life)       # PLACE-4.5 default H = U
        self.count = [0] * U
        self.last = [-1] * U
        self.resident: set[int] = set()
        self.used = 0
        self.k = 0                       # the next step's index
        self._heap: list[tuple[int, int, int]] = []    # (n, l, id) of residents; stale entries skipped

    def _key(self, u: int) -> tuple[int, int, int]:
        return (self.count[u], self.last[u], u)

    def _valid(self, entry) -> bool:
        u = entry[2]
        return u in self.resident and entry == self._key(u)

    def step(self, units) -> StepDecision:
        """Apply one step requesting ``units`` (ascending, distinct) and return its decisions."""
        S = [int(u) for u in units]
        k = self.k
        if k > 0 and k % self.half_life == 0:                                     # 1. decay (PLACE-4.5)
            self.count = [c >> 1 for c in self.count]
            self._heap = [self._key(u) for u in self.resident]
            heapq.heapify(self._heap)
        for u in S:                                                               # 2. count
            self.count[u] += 1
        protected = set(S)
        dec = StepDecision(S, [False] * len(S), [False] * len(S))
        for i, u in enumerate(S):                                                 # 3. decide (PLACE-4.6)
            if u in self.resident:
                dec.hit[i] = True
                continue
            need = self.sizes[u]
            if need > self.capacity:
                continue
            victims, aside, free = [], [], self.capacity - self.used
            while free < need and self._heap:
                e = heapq.heappop(self._heap)
                if not self._valid(e):
                    continue
                if e[2] in protected:
                    aside.append(e)
                    continue
                victims.append(e)
                free += self.sizes[e[2]]
            ok = free >= need and all(e[0] < self.count[u] for e in victims)     # PLACE-4.7 admission
            for e in aside:
                heapq.heappush(self._heap, e)
            if not ok:
                for e in victims:
                    heapq.heappush(self._heap, e)
                continue
            for e in victims:
                self.resident.discard(e[2])
                self.used -= self.sizes[e[2]]
                dec.evicted.append(e[2])
            self.resident.add(u)
            self.used += need
            dec.admitted[i] = True
        for u in S:                                                               # 4. last use
            self.last[u] = k
            if u in self.resident:
                heapq.heappush(self._heap, self._key(u))
        self.k += 1
        return dec

    def prefetch_candidates(self, units, limit: int) -> list[int]:
        """Up to ``limit`` of ``units`` not resident, by count descending, then last use descending,
        then id ascending (PLACE-4.9): the units the statistics say a coming step most likely reads."""
        cand = [u for u in units if u not in self.resident and self.count[u] > 0]
        cand.sort(key=lambda u: (-self.count[u], -self.last[u], u))
        return cand[:max(0, limit)]


def simulate(offsets, units, sizes, capacity: int, half_life: int | None = None) -> dict[str, np.ndarray]:
    """Run the policy over a trace (PLACE-4.3): per request ``hit``, ``admitted``; per step ``resident``
    (S, U); the final ``counts`` (the outputs of the conformance operation ``cache_trace``)."""
    offsets = np.asarray(offsets, np.int64)
    units = np.asarray(units, np.int64)
    p = CachePolicy(np.asarray(sizes, np.int64).tolist(), capacity, half_life)
    S, U = len(offsets) - 1, len(p.sizes)
    hit = np.zeros(len(units), bool)
    adm = np.zeros(len(units), bool)
    res = np.zeros((S, U), bool)
    for k in range(S):
        a, b = int(offsets[k]), int(offsets[k + 1])
        d = p.step(units[a:b].tolist())
        hit[a:b] = d.hit
        adm[a:b] = d.admitted
        if p.resident:
            res[k, sorted(p.resident)] = True
    return {"hit": hit, "admitted": adm, "resident": res, "counts": np.array(p.count, np.int64)}
