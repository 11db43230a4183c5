"""Bounded JSON reading for every JSON a user hands in: configs, manifests, safetensors headers.

Python's ``json`` recurses once per nesting level (a 100,000-deep document raises RecursionError)
and converts integer literals of any length (a 100,000-digit integer costs seconds, then fails the
``int`` digit limit). :func:`loads` rejects both up front with a ``ValueError`` naming the problem,
which each reader turns into its own error code (E_CONFIG, E_CKPT_SCHEMA, E_CKPT_HEADER).
"""
from __future__ import annotations

import json

MAX_DEPTH = 64          # configs nest 3 levels, manifests 4, safetensors headers 3
MAX_NUMBER_CHARS = 64   # a uint64 seed has 20 digits; a binary64 in shortest form has at most 24 characters


def nesting_depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise ValueError(f"an integer of {len(literal)} digits (at most {MAX_NUMBER_CHARS} are accepted)")
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number written with {len(literal)} characters (at most {MAX_NUMBER_CHARS})")
    return float(literal)


def _constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str | bytes, max_depth: int = MAX_DEPTH):
    """``json.loads`` with bounded nesting and number size; ValueError (not RecursionError) otherwise."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} levels deep (at most {max_depth} are accepted)")
    return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
