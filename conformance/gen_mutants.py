"""Cases added to kill the mutants that survived the conformance suite (``scripts/mutation.py``, issue 11).

Each case checks behaviour that the spec text decides and that no earlier case pinned down; the
mutant it was written for is named in a comment (its key, ``module:operator#occurrence``, as in
``benchmarks/results/mutation-*.json``). The cases live in their levels' directories like every
other case; only their generator is shared.
"""
from __future__ import annotations

import numpy as np

from .draw import gauss
from .generate import CaseSpec

F32 = np.float32


def _prescaled_rows(limbs: int, rows: int = 4, d: int = 16) -> np.ndarray:
    """Rows with absmax a < 2**-64 on which scaling by a factor other than a power of two before the
    reciprocal (HSER-2.3 step 1 scales by exactly 2**64) changes some integer: a deterministic search."""
    rng = np.random.default_rng(20261202 + limbs)
    scale = F32(2.0 ** (7 * (limbs - 1)))

    def q(x: np.ndarray, f: float) -> np.ndarray:
        a = np.max(np.abs(x), axis=1)
        xs, a_s = x * F32(f), a * F32(f)
        return np.rint(((xs * (F32(127.0) / a_s)[:, None]) * scale))

    out = []
    while len(out) < rows:
        x = (rng.uniform(-1, 1, (256, d)) * 2.0 ** int(rng.integers(-140, -70))).astype(F32)
        differ = (q(x, 2.0 ** 64) != q(x, 3.0 ** 64)).any(axis=1)
        out.extend(x[differ][: rows - len(out)])
    return np.stack(out).astype(F32)


def routing_cases() -> list[CaseSpec]:
    from .gen_routing import config, route_case, weights

    out = []
    # optimized/quantize.py:core/NumberReplacer#16 (2.0 ** 64 -> 3.0 ** 64 in step 1's prescale)
    for limbs in (1, 2):
        out.append(CaseSpec(
            f"routing/op/quantize-prescale-tiny-rows-limbs{limbs}",
            f"Rows whose absmax is below 2**-64 ({limbs} limb(s)): HSER-2.3 scales them by exactly 2**64 before "
            "the reciprocal, so Q is that of the row times 2**64; a prescale that is not a power of two rounds "
            "x * f and a * f and changes some integers of every row here.",
            ["HSER-2.1", "HSER-2.3"], "quantize", {"limbs": limbs}, {"x": _prescaled_rows(limbs)}))
    # optimized/quantize.py:core/NumberReplacer#11 (x.new_zeros(x.shape[-1]): absmax of the wrong length when
    # rows are empty)
    out.append(CaseSpec(
        "routing/op/quantize-width0", "Three rows without elements (d = 0): a = 0 for each (HSER-2.1), so absmax "
        "and scale hold three zeros and Q is (3, 0).", ["HSER-2.1", "HSER-2.2", "HSER-2.5"], "quantize",
        {"limbs": 2}, {"x": np.zeros((3, 0), F32)}))
    # optimized/validate.py:core/ReplaceComparisonOperator_NotEq_IsNot#0 (h.shape[1] is not d_model: true
    # for every int above 256, which CPython does not share)
    wide = config(d=384)
    out.append(route_case(
        "d-model-384", "Four tokens with d_model = 384 (above the integers a Python implementation may find "
        "identical by `is`): shape (T, d_model) is accepted (HSER-1.1) and routed like any other.",
        ["HSER-1.1", "HSER-7.1", "HSER-8.1", "HSER-9.3"], wide, gauss("mutants.route.d384", (4, 384)),
        w=weights(wide)))
    # optimized/validate.py:core/ReplaceComparisonOperator_NotEq_Lt#1 (h.shape[1] < d_model: only too narrow
    # hidden states rejected)
    main = config()
    out.append(CaseSpec(
        "routing/errors/shape-width-17", "Hidden states 17 wide for d_model 16: too wide is rejected like too "
        "narrow (routing/errors/shape-width).", ["HSER-1.1", "HSER-10.1", "HSER-10.2"], "route",
        {"tierset": [0, 1, 2], "seed": 0}, {"hidden": gauss("mutants.route.width17", (4, 17)), **weights(main)},
        config=main, error="E_SHAPE"))
    return out


def model_cases() -> list[CaseSpec]:
    from .gen_layer import model_config
    from .gen_model import forward_case, model_weights

    small = model_config(tiers=((1, 2, 2), (2, 1, 2)), k=(1, 1, 1), d=8, layers=1, vocab=8)
    # optimized/model.py:core/NumberReplacer#51 and #53 (torch.empty((-1, ...)) on the B = 0 path)
    return [forward_case("forward-empty-batch", "A batch of zero sequences of 5 tokens, shape (0, 5): an integer "
                         "array of shape (B, T) (MODEL-1.1 rejects no B), so logits (0, 5, V), router inputs (0, d) "
                         "and empty routing records.", ["MODEL-1.1", "MODEL-2.6"], small, model_weights(small), (0, 5))]


def cases() -> list[CaseSpec]:
    return routing_cases() + model_cases()
