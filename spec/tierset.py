"""TierSets and their modes (spec chapter TIER-2, TIER-3)."""
from __future__ import annotations

import re
from collections.abc import Iterable

from .config import ModelConfig
from .errors import DuplicateTierError, EmptyTierSetError, UnknownTierError


def tier_set(cfg: ModelConfig, tiers: Iterable[str | int]) -> tuple[int, ...]:
    """The TierSet named by ``tiers`` (names or ids) as sorted tier ids (TIER-2.1 .. TIER-2.4).

    Unknown tiers, repeated tiers and an empty TierSet are errors, never silently repaired.
    """
    if isinstance(tiers, (str, bytes, int)) or not isinstance(tiers, Iterable):
        raise UnknownTierError(f"a TierSet must be a collection of tier names or ids, got {tiers!r}")
    ids = [cfg.tier_id(t) for t in tiers]
    if not ids:
        raise EmptyTierSetError("the TierSet is empty; a request must allow at least one tier")
    seen = sorted({i for i in ids if ids.count(i) > 1})
    if seen:
        raise DuplicateTierError(f"the TierSet names tier(s) {', '.join(cfg.tiers[i].name for i in seen)} more than once")
    return tuple(sorted(ids))


def exclusive(cfg: ModelConfig, tier: str | int) -> tuple[int, ...]:
    """Exclusive mode: exactly the named tier (TIER-3.1)."""
    return (cfg.tier_id(tier),)


def cumulative(cfg: ModelConfig, tier: str | int) -> tuple[int, ...]:
    """Cumulative mode: the named tier and every tier with a smaller id (TIER-3.2)."""
    return tuple(range(cfg.tier_id(tier) + 1))


def all_tiers(cfg: ModelConfig) -> tuple[int, ...]:
    """Max mode: every tier of T_max (TIER-3.3)."""
    return tuple(range(cfg.n_tiers))


def parse_tier_set(cfg: ModelConfig, text: str) -> tuple[int, ...]:
    """Parse the string form of a TierSet (TIER-3.5): ``all``, ``exclusive:TIER``, ``cumulative:TIER``
    or a comma-separated list ``a,b,c`` of tiers, each a name or a decimal id.

    Spaces (U+0020 only) around the whole string, around the mode's argument and around each list
    item are ignored. A string that is empty after that is the empty TierSet (E_EMPTY_TIERSET); an
    empty item (``1,,2``, ``1,2,``, ``,1``) or an empty mode argument names no tier
    (E_UNKNOWN_TIER). An item of ASCII digits is an id, anything else a name.
    """
    if not isinstance(text, str):
        raise UnknownTierError(f"a TierSet string form must be a string, got {text!r}")
    text = text.strip(" ")
    if text == "all":
        return all_tiers(cfg)
    mode, sep, arg = text.partition(":")
    if sep and mode == "exclusive":
        return exclusive(cfg, _name_or_id(arg))
    if sep and mode == "cumulative":
        return cumulative(cfg, _name_or_id(arg))
    if text == "":
        return tier_set(cfg, [])
    return tier_set(cfg, [_name_or_id(p) for p in text.split(",")])


def _name_or_id(s: str) -> str | int:
    s = s.strip(" ")
    if s == "":
        raise UnknownTierError("an empty item of a TierSet names no tier")
    return int(s) if _DIGITS.fullmatch(s) else s


_DIGITS = re.compile(r"[0-9]+")
