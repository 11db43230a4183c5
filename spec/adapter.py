"""The in-process adapter interface (CONF-3.1 .. CONF-3.3): what an implementation's adapter receives.

An *adapter* is any Python object with

- ``run(request) -> mapping``: perform ``request.operation`` (one of :data:`lite_llm.spec.operations.OPERATIONS`)
  and return its outputs, name -> array (NumPy arrays, or anything ``numpy.asarray`` accepts, torch
  tensors included);
- optionally ``operations``: the names of the operations it offers (OVW-1.3); a case whose
  operation is not listed is skipped as *not offered*; without the attribute every operation is tried;
- optionally ``name`` (shown in reports) and ``close()`` (called once at the end).

It rejects an input by raising an exception with a string attribute ``code`` (``E_SHAPE``, ...):
every :class:`lite_llm.spec.errors.LiteLLMError` has one. ``NotImplementedError`` marks the case as
skipped. Any other exception is an *errored* case: the harness broke, not the specification.

Each implementation keeps its adapter beside its code (``lite_llm.reference.adapter``,
``lite_llm.optimized.adapter``); this module holds only what the interface itself defines, so an
adapter never imports the conformance suite. The helpers decode the input-naming rules of CONF-3.2.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .operations import DATA_INPUTS


@dataclass
class Request:
    """What an adapter is asked to do for one case (CONF-3.2)."""

    case_id: str                   # the case's stable id (for messages)
    operation: str                 # e.g. "route", "canonical_exp", "forward"
    config: dict | None            # the configuration in its JSON form (may be invalid on purpose)
    params: dict                   # scalar parameters, JSON values (seeds may be "0x..." strings)
    inputs: dict                   # name -> np.ndarray (tensors) or Path (directory inputs)
    dtypes: dict[str, str]         # logical dtype of each tensor input; bfloat16 arrives as uint16 bits
    outputs: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # name -> (dtype, shape) expected
    files: dict[str, Path] = field(default_factory=dict)   # tensor input name -> the .npy it was read from

    def tensor(self, name: str) -> np.ndarray:
        return self.inputs[name]


def bfloat16_to_float32(bits16: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) to binary32, exactly (HSER-1.2)."""
    return (np.asarray(bits16, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


@lru_cache(maxsize=256)
def _parse_config(text: str):
    from .config import config_from_dict
    from .errors import LiteLLMError

    try:
        return config_from_dict(json.loads(text)), None
    except LiteLLMError as e:
        return None, e


def request_config(req: Request):
    """The request's ModelConfig, memoised on its JSON text (schema validation costs ~80 ms a call)."""
    cfg, err = _parse_config(json.dumps(req.config, sort_keys=True))
    if err is not None:
        raise err
    return cfg


def weight_inputs(req: Request) -> dict:
    """The model tensors of a request: every tensor input except the data inputs, by INIT-2 name."""
    return {k: v for k, v in req.inputs.items() if k not in DATA_INPUTS and not isinstance(v, Path)}


def record_count(req: Request) -> int:
    """How many routing records ``route.{i}.{field}`` a request carries (aux_loss, activation_stats)."""
    return len({k.split(".")[1] for k in req.inputs if k.startswith("route.")})


def tier_set_outputs(req: Request) -> dict:
    """The ``tier_set`` operation: TierSets are resolved by the shared spec module (TIER-2, TIER-3)."""
    from .tierset import parse_tier_set, tier_set

    cfg = request_config(req)
    spec = req.params["tierset"]
    ids = parse_tier_set(cfg, spec) if isinstance(spec, str) else tier_set(cfg, spec)
    return {"tiers": np.asarray(ids, np.int32)}
