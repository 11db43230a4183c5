"""The exhaustive exp check on a reduced range: the worst case is found, the check can fail, and the
worker processes give the same statistics as one process."""
from __future__ import annotations

import numpy as np

from lite_llm.proofs import canonical_exp_accuracy as cea
from lite_llm.proofs.certificate import COUNTEREXAMPLE, PROVED

WORST_T = np.float32(-59.954247)                      # HSER-6.4's stated worst case
WORST_BITS = int(WORST_T.view(np.uint32))
SPAN = 1 << 16


def test_reduced_range_finds_the_stated_worst_case():
    s = cea.scan(WORST_BITS - SPAN, WORST_BITS + SPAN, processes=1)
    print(f"max error {s['max_err']:.6f} ulp at t = {cea.f32(s['argmax_bits'])!r}")
    assert s["n"] == 2 * SPAN + 1
    assert s["argmax_bits"] == WORST_BITS and f"{s['max_err']:.3f}" == "1.218"
    assert s["max_err"] <= s["max_upper"] < 1.2184            # the conservative bound adds almost nothing here


def test_error_is_measured_against_an_independent_exp():
    """At the worst case, recompute the error with mpmath instead of numpy.exp."""
    import mpmath

    from lite_llm.reference.cexp import canonical_exp

    c = float(canonical_exp(np.array([WORST_T]))[0])
    with mpmath.workprec(200):
        e = mpmath.exp(mpmath.mpf(float(WORST_T)))
        near = np.float32(float(e))
        ulp = float(np.spacing(near))
        err = float(abs(mpmath.mpf(c) - e) / ulp)
    print(f"mpmath error {err:.9f} ulp")
    assert 1.2183 < err < 1.2184


def test_processes_agree_with_one_process():
    lo, hi = WORST_BITS - 3 * cea.CHUNK // 2, WORST_BITS + cea.CHUNK // 3     # three chunks
    one, two = cea.scan(lo, hi, processes=1), cea.scan(lo, hi, processes=2)
    for k in ("n", "max_err", "argmax_bits", "max_upper", "over_1_ulp", "min_result", "subnormal_or_zero"):
        assert one[k] == two[k], k


def test_partial_range_certificate_passes_without_the_full_range_claim():
    c = cea.prove(WORST_BITS - SPAN, WORST_BITS + SPAN, processes=1)
    names = [x.name for x in c.claims]
    assert c.ok and "worst_case_as_stated" not in names and names[0] == "within_stated_ulp"
    assert c.claims[0].details["at bits"] == f"0x{WORST_BITS:08x}"


def test_a_worse_exp_is_caught(monkeypatch):
    """Shift canonical_exp up by 2 ulps: the 1.5-ulp claim must come back as a counterexample."""
    import lite_llm.reference.cexp as cexp

    real = cexp.canonical_exp
    monkeypatch.setattr(cexp, "canonical_exp", lambda t: np.nextafter(np.nextafter(real(t), np.float32(2)),
                                                                      np.float32(2)))
    c = cea.prove(WORST_BITS - 256, WORST_BITS + 256, processes=1)
    within = c.claims[0]
    assert within.result == COUNTEREXAMPLE and within.expected == PROVED and not c.ok
    assert within.model["conservative error (ulp)"] > 1.5


def test_range_constants_match_the_spec_count():
    assert cea.f32(cea.LO_BITS) == 0.0 and np.signbit(np.uint32(cea.LO_BITS).view(np.float32))
    assert cea.f32(cea.HI_BITS) == -87.0
    assert cea.HI_BITS - cea.LO_BITS + 1 == cea.spec_statement()["inputs"] == 1_118_699_521
