"""Example configurations shipped with the package; ``resolve_config`` accepts a bundled name or a path."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from lite_llm.spec.config import ModelConfig, load_config


def bundled() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".json"))


def config_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists() or p.suffix == ".json" or "/" in name_or_path:
        return p
    return Path(str(resources.files(__package__).joinpath(f"{name_or_path}.json")))


def resolve_config(name_or_path: str) -> ModelConfig:
    """A config from a JSON file, or one of the bundled examples by name (e.g. ``tiny``)."""
    return load_config(config_path(name_or_path))
