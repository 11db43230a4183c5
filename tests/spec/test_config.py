"""Config schema and semantic validation (TIER-1.1 .. TIER-1.6), TierSets (TIER-2, TIER-3)."""
from __future__ import annotations

import pytest

from lite_llm.spec.configs import bundled, resolve_config
from lite_llm.spec.config import config_from_dict, config_to_dict, parse_seed
from lite_llm.spec.errors import ConfigError, DuplicateTierError, EmptyTierSetError, SeedError, UnknownTierError
from lite_llm.spec.tierset import all_tiers, cumulative, exclusive, parse_tier_set, tier_set
from lite_llm.spec.config import TierConfig
from tests.helpers import make_config


def test_bundled_configs_validate_and_round_trip():
    for name in bundled():
        cfg = resolve_config(name)
        assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("patch, field", [
    ({"d_model": 0}, "d_model"),
    ({"d_model": (1 << 17) + 1}, "d_model"),
    ({"router": {"k_tier": 0, "k_group": 1, "k_expert": 1}}, "router/k_tier"),
    ({"router": {"k_tier": 1, "k_group": 1, "k_expert": 1, "hidden_limbs": 4}}, "router/hidden_limbs"),
    ({"router": {"k_tier": 1, "k_group": 1, "k_expert": 1, "weight_limbs": 3}}, "router/weight_limbs"),
    ({"router": {"k_tier": 1, "k_group": 1, "k_expert": 1, "hidden_limbs": 3, "weight_limbs": 3}},
     "router/weight_limbs"),
    ({"tiers": []}, "tiers"),
    ({"tiers": [{"name": "Bad Name", "groups": 1, "experts_per_group": 1, "d_ff": 1}]}, "tiers/0/name"),
    ({"tiers": [{"name": "a", "groups": 0, "experts_per_group": 1, "d_ff": 1}]}, "tiers/0/groups"),
    ({"unknown_field": 1}, "(top level)"),
    ({"router": {"k_tier": 1, "k_group": 1, "k_expert": 1, "seed": 2 ** 60}}, "router/seed"),
    ({"router": {"k_tier": 1, "k_group": 1, "k_expert": 2 ** 17}}, "router/k_expert"),
    ({"router": {"k_tier": 64, "k_group": 64, "k_expert": 64}}, "K = "),
    ({"tiers": [{"name": "a", "groups": 2 ** 31, "experts_per_group": 1, "d_ff": 1}]}, "tiers/0/groups"),
])
def test_invalid_configs_name_the_field(patch, field):
    """TIER-1.1, TIER-1.3, TIER-1.5: each field of a tier and of the router in range; E_CONFIG naming the field."""
    d = config_to_dict(make_config())
    d.update(patch)
    with pytest.raises(ConfigError, match=field.replace("(", r"\(").replace(")", r"\)")) as e:
        config_from_dict(d)
    assert e.value.code == "E_CONFIG"


def test_three_hidden_limbs_are_valid():
    """TIER-1.5: hidden_limbs in {1, 2, 3}, weight_limbs in {1, 2}; the default stays 2 + 2."""
    d = config_to_dict(make_config())
    d["router"]["hidden_limbs"] = 3
    assert config_from_dict(d).router.hidden_limbs == 3
    assert config_from_dict(config_to_dict(make_config())).router.hidden_limbs == 2


def test_semantic_limits():
    """TIER-1.1: unique tier names, heads of even size."""
    d = config_to_dict(make_config())
    d["tiers"][1]["name"] = d["tiers"][0]["name"]
    with pytest.raises(ConfigError, match="unique"):
        config_from_dict(d)
    d = config_to_dict(make_config())
    d["n_heads"] = 5
    with pytest.raises(ConfigError, match="n_heads"):
        config_from_dict(d)


def test_seed_forms():
    """HSER-4.1: JSON integers below 2**53, hex strings for the full range; anything else E_SEED."""
    assert parse_seed("0xFFFFFFFFFFFFFFFF") == 2 ** 64 - 1
    assert parse_seed(12) == 12
    for bad in (-1, 2 ** 64, "0x1" + "0" * 16, "zz", 1.5, True):
        with pytest.raises(SeedError):
            parse_seed(bad)
    d = config_to_dict(make_config(seed=2 ** 63 + 5))
    assert d["router"]["seed"] == "0x8000000000000005"
    assert config_from_dict(d).router.seed == 2 ** 63 + 5


def test_tier_ids_are_positions_and_expansion_appends():
    """TIER-1.2, TIER-1.6."""
    cfg = make_config()
    assert [cfg.tier_id(t.name) for t in cfg.tiers] == [0, 1, 2]
    bigger = cfg.with_tier(TierConfig("tier_new", 2, 2, 8))
    assert [t.name for t in bigger.tiers[:3]] == [t.name for t in cfg.tiers]
    assert bigger.tier_id("tier_new") == 3


def test_tierset_modes():
    """TIER-2.1, TIER-2.5, TIER-3.1, TIER-3.2, TIER-3.3."""
    cfg = make_config()
    assert exclusive(cfg, "tier_1") == (1,)
    assert cumulative(cfg, "tier_1") == (0, 1)
    assert all_tiers(cfg) == (0, 1, 2)
    assert tier_set(cfg, ["tier_2", 0]) == (0, 2)
    assert parse_tier_set(cfg, "cumulative:tier_2") == (0, 1, 2)
    assert parse_tier_set(cfg, "exclusive:1") == (1,)
    assert parse_tier_set(cfg, "tier_2,tier_0") == (0, 2)


def test_tierset_errors():
    """TIER-2.2 .. TIER-2.4."""
    cfg = make_config()
    with pytest.raises(UnknownTierError, match="tier_9"):
        tier_set(cfg, ["tier_9"])
    with pytest.raises(UnknownTierError, match="3"):
        tier_set(cfg, [3])
    with pytest.raises(EmptyTierSetError):
        tier_set(cfg, [])
    with pytest.raises(DuplicateTierError, match="tier_1"):
        tier_set(cfg, ["tier_1", 1])
    with pytest.raises(UnknownTierError):
        cumulative(cfg, "nope")
