"""A third implementation, added the way any new one is: an adapter module outside the suite.

``MixedAdapter`` is a thin implementation of its own: it routes with the optimized package but
answers the operation-level pieces (canonical exp, tree sum, softmax) with the reference, so it is
neither built-in adapter. It takes ``device`` like the built-in ones. ``BrokenAdapter`` is the same
with one planted error (the canonical exp one ulp off), to show the suite tells them apart.
Nothing in ``lite_llm.conformance`` knows about this module: the runner reaches it by ``module:attr``.
"""
from __future__ import annotations

import numpy as np

from lite_llm.optimized.adapter import OptimizedAdapter
from lite_llm.reference.adapter import ReferenceAdapter
from lite_llm.spec.adapter import Request

PIECES = {"canonical_exp", "tree_sum", "softmax"}


class MixedAdapter:
    name = "mixed (optimized route, reference pieces)"

    def __init__(self, device: str = "cpu"):
        self.opt = OptimizedAdapter(device)
        self.ref = ReferenceAdapter()
        self.operations = {"route", "tier_set", *PIECES}

    def run(self, req: Request) -> dict:
        return (self.ref if req.operation in PIECES else self.opt).run(req)


class BrokenAdapter(MixedAdapter):
    name = "mixed, canonical exp one ulp off"

    def run(self, req: Request) -> dict:
        out = super().run(req)
        if req.operation == "canonical_exp":
            y = np.asarray(out["y"], np.float32)
            out = {"y": np.nextafter(y, np.float32(np.inf))}
        return out
