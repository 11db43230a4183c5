"""The string form of a TierSet (TIER-3.5) and the string forms of a seed (HSER-4.1), as decided in issue 11."""
from __future__ import annotations

import pytest

from lite_llm.spec.config import config_from_dict, parse_seed
from lite_llm.spec.errors import SeedError
from lite_llm.spec.tierset import parse_tier_set, tier_set


@pytest.fixture(scope="module")
def cfg():
    return config_from_dict({
        "spec_version": "0.1", "d_model": 16, "n_heads": 2,
        "tiers": [{"name": f"tier_{i}", "groups": 2, "experts_per_group": 2, "d_ff": 4} for i in range(4)],
        "router": {"k_tier": 1, "k_group": 1, "k_expert": 1}})


@pytest.mark.parametrize("text, ids", [
    ("all", (0, 1, 2, 3)), ("  all ", (0, 1, 2, 3)), ("exclusive:2", (2,)), ("exclusive: tier_1 ", (1,)),
    ("cumulative:1", (0, 1)), ("cumulative:tier_2", (0, 1, 2)), (" tier_3 , 1 ", (1, 3)), ("02,3", (2, 3)),
])
def test_string_forms(cfg, text, ids):
    """TIER-3.5: modes take names or ids; spaces around the string, the argument and each item are ignored."""
    assert parse_tier_set(cfg, text) == ids


@pytest.mark.parametrize("text, code", [
    ("", "E_EMPTY_TIERSET"), ("   ", "E_EMPTY_TIERSET"), ("1,,2", "E_UNKNOWN_TIER"), ("1,2,", "E_UNKNOWN_TIER"),
    (",1", "E_UNKNOWN_TIER"), ("exclusive:", "E_UNKNOWN_TIER"), ("1\t", "E_UNKNOWN_TIER"), ("1,,1", "E_UNKNOWN_TIER"),
    ("exclusive :1", "E_UNKNOWN_TIER"), ("\u00b2", "E_UNKNOWN_TIER"), ("tier_1,1", "E_DUPLICATE_TIER"),
])
def test_string_form_rejections(cfg, text, code):
    """TIER-3.5: an empty string is the empty TierSet; an empty item or argument names no tier; only U+0020
    is a space; only ASCII digits make an id."""
    with pytest.raises(Exception) as e:
        parse_tier_set(cfg, text)
    assert e.value.code == code


def test_a_string_in_a_list_is_a_name(cfg):
    """TIER-2.1: ["1"] names the tier called "1", not tier id 1; a JSON number 1.0 is not an id."""
    for bad in (["1"], [1.0]):
        with pytest.raises(Exception) as e:
            tier_set(cfg, bad)
        assert e.value.code == "E_UNKNOWN_TIER"
    assert tier_set(cfg, [1, "tier_3"]) == (1, 3)


def test_seed_string_forms():
    """HSER-4.1: a string seed is exactly 0x and 1 to 16 hex digits; integers of any size in [0, 2**64)."""
    assert parse_seed("0x1f") == parse_seed("0x1F") == 31
    assert parse_seed((1 << 64) - 1) == (1 << 64) - 1 and parse_seed(1 << 53) == 1 << 53
    for bad in ("12", "+12", "1_2", "0X1F", "0x_1f", "0x", " 0x1", "0x1\n", "0x" + "1" * 17, 1.0, None, True):
        with pytest.raises(SeedError):
            parse_seed(bad)
    assert parse_seed("12", decimal=True) == 12                  # the command-line form
    for bad in ("+12", "1_2", " 12", "\u0661"):
        with pytest.raises(SeedError):
            parse_seed(bad, decimal=True)
