"""Router fidelity against an unquantized float64 router (HSER-2.7): measured, printed, floored."""
from __future__ import annotations

import pytest

from lite_llm.commands.fidelity import hidden_states
from lite_llm.spec.configs import resolve_config
from lite_llm.reference.fidelity import fidelity
from lite_llm.reference.router_weights import init_router_weights

FLOORS = {(1, 1): 0.85, (2, 2): 0.998, (3, 2): 0.998}   # HSER-2.7's stated floors (3+2: at least 2+2's)


@pytest.mark.parametrize("config", ["fidelity-flat64", "fidelity-hser"])
@pytest.mark.parametrize("kind", ["gaussian", "heavy"])
def test_fidelity_floor(config, kind):
    """HSER-2.7: agreement with the float64 router, for every limb combination, printed; floors held."""
    cfg = resolve_config(config)
    rows = fidelity(cfg, init_router_weights(cfg, 1), hidden_states(kind, 4096, cfg.d_model, 0), range(cfg.n_tiers),
                    cfg.router.seed)
    print(f"\n{config} {kind}: " + ", ".join(f"{f.hidden_limbs}+{f.weight_limbs} limbs {100 * f.agree:.3f}%" for f in rows))
    for f in rows:
        floor = FLOORS.get((f.hidden_limbs, f.weight_limbs))
        if floor is not None:
            assert f.agree >= floor, f"{f.hidden_limbs}+{f.weight_limbs} limbs: {f.agree:.4%} < {floor:.1%}"
    # more limbs never make it worse here
    by = {(f.hidden_limbs, f.weight_limbs): f.agree for f in rows}
    assert by[(3, 2)] >= by[(2, 2)] >= max(v for k, v in by.items() if k != (3, 2)) and by[(1, 1)] <= min(by.values())
