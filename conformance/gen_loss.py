"""Loss-level cases: the auxiliary load-balancing loss of chapter AUX (``loss/...``).

The operation ``aux_loss`` takes the configuration, the routing records of the layers as inputs
``route.{l}.{field}`` (HSER-9.3, all ten arrays), the parameter ``tierset`` (the TierSet the records
were routed under) and optionally ``alpha``. It returns ``total`` (binary64, within
1e-9 * max(1, |L_aux|) of the reference, AUX-1.1) and, optionally (AUX-1.4 is a SHOULD), ``cv``
(L, 3): CV_1, CV_2, CV_3 of every layer.
"""
from __future__ import annotations

import numpy as np

from .case import Tolerance
from .draw import gauss
from .gen_routing import config, reference_route, tied_weights, weights
from .generate import CaseSpec

RECORD = ("tier", "group", "expert", "gate", "count", "tier_probs", "chosen_tiers", "group_probs", "chosen_groups",
          "expert_probs")


def records(cfg: dict, hiddens, tierset, w=None) -> dict[str, np.ndarray]:
    """Routing records of one layer per hidden-state batch, as ``route.{l}.{field}`` inputs."""
    out = {}
    for layer, h in enumerate(hiddens):
        ww = w[layer] if isinstance(w, list) else (w or weights(cfg, seed=20 + layer))
        r = reference_route(cfg, h, ww, tierset, 0)
        out.update({f"route.{layer}.{f}": r[f] for f in RECORD})
    return out


def expected(cfg: dict, inputs: dict, tierset, alpha=None) -> dict:
    """The reference loss, and tolerances scaled as AUX-1.1 states."""
    from .adapters import Request
    from lite_llm.reference.adapter import ReferenceAdapter

    params = {"tierset": tierset, **({} if alpha is None else {"alpha": alpha})}
    return ReferenceAdapter().run(Request("", "aux_loss", cfg, params, inputs, {}))


def aux_case(name, description, clauses, cfg, inputs, tierset, alpha=None) -> CaseSpec:
    out = expected(cfg, inputs, tierset, alpha)
    tol_total = Tolerance(0.0, 1e-9 * max(1.0, abs(float(out["total"]))))
    tol_cv = Tolerance(0.0, 1e-9 * max(1.0, float(np.abs(out["cv"]).max(initial=0.0))))
    return CaseSpec(f"loss/{name}", description, ["AUX-1.1", "AUX-1.4"] + clauses, "aux_loss",
                    {"tierset": tierset, **({} if alpha is None else {"alpha": alpha})}, inputs, config=cfg,
                    tolerance={"total": tol_total, "cv": tol_cv}, optional=("cv",))


def cases() -> list[CaseSpec]:
    out = []
    cfg = config(tiers=((2, 4), (4, 2), (3, 3)), k=(1, 2, 1))
    hs = [gauss("loss.h0", (24, 16)), gauss("loss.h1", (24, 16))]
    rec = records(cfg, hs, [0, 1, 2])
    out.append(aux_case("aux-two-layers", "Two layers of 24 tokens, k = (1, 2, 1): level 1 over the TierSet, level 2 "
                        "and 3 as token-weighted means over the routers tokens reached, default alpha 0.01.",
                        ["AUX-1.2", "AUX-1.3"], cfg, rec, [0, 1, 2]))
    out.append(aux_case("aux-alpha", "The same records with alpha = 0.25.", ["AUX-1.4"], cfg, rec, [0, 1, 2], alpha=0.25))
    out.append(aux_case("aux-tierset-subset", "TierSet {0, 2}: tier 1 is neither an entry nor a zero of p.",
                        ["AUX-1.2", "TIER-2.6"], cfg, records(cfg, hs[:1], [0, 2]), [0, 2]))
    out.append(aux_case("aux-empty-batch", "No tokens: every CV and the loss are 0.", ["AUX-1.5"], cfg,
                        records(cfg, [np.zeros((0, 16), np.float32)] * 2, [0, 1, 2]), [0, 1, 2]))
    single = config(tiers=((1, 1), (1, 1)), k=(1, 1, 1))
    out.append(aux_case("aux-single-candidates", "TierSet {1} of tiers with one group of one expert: every level has "
                        "one candidate and gives 0.", ["AUX-1.5"], single, records(single, hs[:1], [1]), [1]))
    same = np.repeat(gauss("loss.same", (1, 16)), 16, axis=0)
    out.append(aux_case("aux-collapsed", "Sixteen identical tokens: every token puts the same probabilities on the "
                        "same candidates (the imbalance the loss penalises).", ["AUX-1.2", "AUX-1.3"], cfg,
                        records(cfg, [same], [0, 1, 2]), [0, 1, 2]))
    out.append(aux_case("aux-tied-routers", "Identical router rows: uniform probabilities at every level give CV 0.",
                        ["AUX-1.2", "AUX-1.3"], cfg, records(cfg, hs[:1], [0, 1, 2], w=[tied_weights(cfg)]), [0, 1, 2]))
    return out
