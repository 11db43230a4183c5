"""Model and router configuration: the types every implementation shares (spec chapter TIER-1).

A configuration is plain data. It holds no arithmetic: the implementations compute from it, each
in its own code. ``load_config``/``config_from_dict`` validate against ``schemas/config.schema.json``
and the semantic limits JSON Schema cannot express, raising :class:`ConfigError` naming the field.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import ConfigError, LiteLLMError

SPEC_VERSION = "0.1"
MAX_D_MODEL = 1 << 17        # HSER-3.2: 127*127*2**17 < 2**31, so one limb pair's sum fits int32
MAX_TIERS = 1 << 16          # HSER-4.2: the tier field of a level word is 16 bits
MAX_GROUPS = (1 << 31) - 1   # HSER-9.3: group and expert indices are int32 in the routing record
MAX_K = 1 << 16              # TIER-1.5: each fan-out, and K = k_tier * k_group * k_expert, at most 2**16
PLACEMENTS = ("HBM", "DRAM", "NVMe", "Object")


@dataclass(frozen=True)
class TierConfig:
    """One tier t of T_max (TIER-1.2). Its id is its position in ModelConfig.tiers."""

    name: str                  # unique label such as "tier_1b"; requests may name tiers by it
    groups: int                # G_t: expert groups, the level-2 candidates of this tier
    experts_per_group: int     # E_t: experts in every group of this tier (level-3 candidates)
    d_ff: int                  # inner width of each SwiGLU expert; tiers may differ
    placement: str = "HBM"     # storage placement (PLACE chapter): HBM | DRAM | NVMe | Object

    @property
    def experts(self) -> int:
        """G_t * E_t: experts in the tier."""
        return self.groups * self.experts_per_group


@dataclass(frozen=True)
class RouterConfig:
    """The HSER router's fan-out, precision and seed (HSER chapter)."""

    k_tier: int = 1            # tiers chosen per token; more tiers = more active parameters
    k_group: int = 2           # groups chosen in each chosen tier
    k_expert: int = 2          # experts chosen in each chosen group
    hidden_limbs: int = 2      # 1: 8-bit hidden states, 2: 15-bit, 3: 22-bit (HSER-2.3; fidelity HSER-2.7)
    weight_limbs: int = 2      # 1 or 2 for router weights; 2+2 costs four int8 products per pair, 3+2 six
    seed: int = 0              # s in [0, 2**64): picks the tie order, never the scores (HSER-4.1)

    @property
    def slots(self) -> int:
        """K = k_tier * k_group * k_expert: the most experts a token can activate per layer (HSER-9.1)."""
        return self.k_tier * self.k_group * self.k_expert


@dataclass(frozen=True)
class ModelConfig:
    """A whole Lite LLM model: backbone sizes, the tiers of T_max and the router (TIER-1.1)."""

    d_model: int                              # hidden size d (at most 2**17)
    tiers: tuple[TierConfig, ...]             # T_max in id order; expansion appends (EXP chapter)
    router: RouterConfig = field(default_factory=RouterConfig)
    n_layers: int = 2                         # L transformer layers, each with its own router
    n_heads: int = 4                          # attention heads; d_model / n_heads must be even (RoPE)
    vocab_size: int = 256                     # token ids are in [0, vocab_size)
    max_seq_len: int = 128                    # longest sequence the model accepts
    rope_theta: float = 10000.0               # rotary base
    norm_eps: float = 1e-5                    # RMSNorm epsilon

    @property
    def n_tiers(self) -> int:
        return len(self.tiers)

    def tier_id(self, name_or_id: str | int) -> int:
        """The id of a tier given by name or id; UnknownTierError if there is none (TIER-2.2)."""
        from .errors import UnknownTierError

        import numbers

        if isinstance(name_or_id, bool) or not isinstance(name_or_id, (str, numbers.Integral)):
            raise UnknownTierError(f"tier {name_or_id!r} is not a tier name or id")
        if isinstance(name_or_id, numbers.Integral):
            name_or_id = int(name_or_id)
            if 0 <= name_or_id < len(self.tiers):
                return name_or_id
            raise UnknownTierError(f"tier id {name_or_id} is not in T_max (ids 0..{len(self.tiers) - 1})")
        for i, t in enumerate(self.tiers):
            if t.name == name_or_id:
                return i
        raise UnknownTierError(
            f"tier {name_or_id!r} is not in T_max; known tiers: {', '.join(t.name for t in self.tiers)}")

    def with_tier(self, tier: TierConfig) -> "ModelConfig":
        """The config with one more tier appended (the tier-expansion operator's config step)."""
        return config_from_dict({**config_to_dict(self), "tiers": [*config_to_dict(self)["tiers"], asdict(tier)]})


@lru_cache(maxsize=None)
def config_schema() -> dict:
    """The JSON Schema of a configuration file."""
    return json.loads(resources.files(__package__).joinpath("schemas/config.schema.json").read_text())


@lru_cache(maxsize=None)
def config_validator():
    """A compiled validator of the config schema (checking the schema itself once, not per config)."""
    import jsonschema

    cls = jsonschema.validators.validator_for(config_schema())
    cls.check_schema(config_schema())
    return cls(config_schema())


def parse_seed(value, *, decimal: bool = False) -> int:
    """A seed as an int in [0, 2**64) (HSER-4.1), else SeedError (E_SEED).

    Accepted: Python and NumPy integers (not booleans) in range, whatever their size, so a JSON
    integer in [2**53, 2**64) that the request's parser read exactly is accepted; and a string ``0x``
    (lower-case x) followed by 1 to 16 hexadecimal digits (either case), nothing else: no sign,
    space, underscore, ``0X`` prefix or decimal digits. ``None`` is not a seed (callers treat a
    missing or null seed as absent before calling). ``decimal=True`` also accepts a string of 1 or
    more ASCII decimal digits: the command-line form, which is not a JSON form.
    """
    import numbers

    from .errors import SeedError

    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)
    if isinstance(value, str):
        if _HEX_SEED.fullmatch(value):
            value = int(value[2:], 16)
        elif decimal and _DECIMAL_SEED.fullmatch(value):
            value = int(value)
        else:
            raise SeedError(f"seed {value!r} is not 0x followed by 1 to 16 hex digits"
                            f"{' or a decimal integer' if decimal else ''}")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise SeedError(f"seed {value!r} is not an integer in [0, 2**64)")
    return value


_HEX_SEED = re.compile(r"0x[0-9a-fA-F]{1,16}")      # HSER-4.1: the only string form of a seed in JSON
_DECIMAL_SEED = re.compile(r"[0-9]+")                # command lines only (parse_seed(..., decimal=True))


def seed_to_json(seed: int):
    """The JSON form of a seed: an integer when exact in every parser, else a hex string."""
    return seed if seed < 1 << 53 else f"0x{seed:016x}"


def config_from_dict(d: dict) -> ModelConfig:
    """Validate a JSON-shaped dict (TIER-1.1) and build a ModelConfig."""
    import jsonschema

    try:
        config_validator().validate(d)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ConfigError(f"config field {where}: {e.message}") from None
    check_integer_fields(d)
    router = RouterConfig(**{**d["router"], "seed": parse_seed(d["router"].get("seed", 0))})
    tiers = tuple(TierConfig(**t) for t in d["tiers"])
    rest = {k: v for k, v in d.items() if k not in ("spec_version", "tiers", "router")}
    cfg = ModelConfig(tiers=tiers, router=router, **rest)
    check_config(cfg)
    return cfg


def check_integer_fields(d: dict) -> None:
    """TIER-1.1: a field the config types as an integer holds a JSON integer, not ``1000.0``.

    JSON Schema counts ``1000.0`` as an integer; the spec does not: such a value is an E_CONFIG.
    """
    def check(obj: dict, cls, where: str) -> None:
        for f in fields(cls):
            v = obj.get(f.name)
            if f.type == "int" and f.name != "seed" and v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ConfigError(f"config field {where}{f.name}: {v!r} is not an integer")

    check(d, ModelConfig, "")
    check(d.get("router", {}), RouterConfig, "router/")
    for i, t in enumerate(d.get("tiers", [])):
        check(t, TierConfig, f"tiers/{i}/")


def check_config(cfg: ModelConfig) -> None:
    """The semantic limits of TIER-1.1 that the JSON Schema cannot state."""
    names = [t.name for t in cfg.tiers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"tier names must be unique; repeated: {', '.join(dup)}")
    if not 1 <= cfg.d_model <= MAX_D_MODEL:
        raise ConfigError(f"d_model={cfg.d_model} is outside [1, {MAX_D_MODEL}]")
    if not 1 <= len(cfg.tiers) <= MAX_TIERS:
        raise ConfigError(f"{len(cfg.tiers)} tiers is outside [1, {MAX_TIERS}]")
    for i, t in enumerate(cfg.tiers):
        for f in ("groups", "experts_per_group", "d_ff"):
            v = getattr(t, f)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_GROUPS:
                raise ConfigError(f"tiers/{i}/{f}={v!r} must be an integer in [1, {MAX_GROUPS}]")
        if t.placement not in PLACEMENTS:
            raise ConfigError(f"tiers/{i}/placement={t.placement!r} is not one of {PLACEMENTS}")
    r = cfg.router
    for f in ("k_tier", "k_group", "k_expert"):
        v = getattr(r, f)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_K:
            raise ConfigError(f"router/{f}={v!r} must be an integer in [1, {MAX_K}]")
    if r.slots > MAX_K:
        raise ConfigError(f"router fan-out K = k_tier*k_group*k_expert = {r.slots} exceeds {MAX_K}")
    # HSER-3.2: 3 + 3 limbs could reach |acc| = 2**58.98 > 2**53, so only hidden states take a third limb
    for f, allowed, words in (("hidden_limbs", (1, 2, 3), "1, 2 or 3"), ("weight_limbs", (1, 2), "1 or 2")):
        if getattr(r, f) not in allowed:
            raise ConfigError(f"router/{f}={getattr(r, f)!r} must be {words}")
    try:
        parse_seed(r.seed)
    except LiteLLMError as e:
        raise ConfigError(f"router/seed: {e}") from None
    if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
        raise ConfigError(f"d_model={cfg.d_model} must split into n_heads={cfg.n_heads} heads of even size")


def config_to_dict(cfg: ModelConfig) -> dict:
    """The JSON form of a config (inverse of config_from_dict)."""
    d = asdict(cfg)
    d["tiers"] = [dict(t) for t in d["tiers"]]
    d["router"] = {**d["router"], "seed": seed_to_json(cfg.router.seed)}
    return {"spec_version": SPEC_VERSION, **d}


def load_config(path: str | Path) -> ModelConfig:
    """Read and validate a JSON config file; errors name the file."""
    from . import jsonio

    path = Path(path)
    try:
        d = jsonio.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except ValueError as e:                     # json.JSONDecodeError is a ValueError
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    try:
        return config_from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.message}") from None
