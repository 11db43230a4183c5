"""TierSets and their modes (spec chapter TIER-2, TIER-3)."""
from __future__ import annotations

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
    """Parse the CLI/harness form: ``all``, ``exclusive:NAME``, ``cumulative:NAME`` or ``a,b,c``."""
    text = text.strip()
    if text == "all":
        return all_tiers(cfg)
    mode, sep, arg = text.partition(":")
    if sep and mode == "exclusive":
        return exclusive(cfg, _name_or_id(arg))
    if sep and mode == "cumulative":
        return cumulative(cfg, _name_or_id(arg))
    return tier_set(cfg, [_name_or_id(p) for p in text.split(",") if p.strip()])


def _name_or_id(s: str) -> str | int:
    s = s.strip()
    return int(s) if s.isdigit() else s
