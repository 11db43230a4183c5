"""One source for each list: levels, operations, tensor names and shapes (issue: layout, item 4).

``lite_llm.spec.operations`` and ``lite_llm.spec.tensors`` hold the lists as data; every other copy
(the spec's Markdown tables and clauses, the case schema, the committed vectors, the adapters of
both implementations) is checked against them here, so none can drift.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from lite_llm.conformance.case import HERE as CONFORMANCE_DIR, default_vectors_root
from lite_llm.reference.adapter import ReferenceAdapter
from lite_llm.spec.clauses import registry
from lite_llm.spec.config import ModelConfig, RouterConfig, TierConfig
from lite_llm.spec.operations import LEVELS, OPERATION_TABLE, OPERATIONS
from lite_llm.spec.tensors import DENSE_LAYER_KINDS, TIER_KINDS, dense_shapes, tier_layer_shapes

ROOT = Path(__file__).resolve().parents[2]


def conf_table_rows() -> list[tuple[str, ...]]:
    text = (ROOT / "spec" / "chapters" / "11-conformance.md").read_text()
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("| `"):
            rows.append(tuple(c.strip() for c in line[1:-1].split("|")))
    return rows


def test_conf_3_2_table_is_the_operation_table():
    want = [(f"`{op.name}`", op.level, op.params, op.inputs, op.outputs) for op in OPERATION_TABLE]
    assert conf_table_rows() == want


def test_case_schema_levels_are_the_levels():
    schema = json.loads((CONFORMANCE_DIR / "case.schema.json").read_text())
    assert tuple(schema["properties"]["level"]["enum"]) == LEVELS
    pattern = schema["properties"]["id"]["pattern"]
    alternatives = re.match(r"\^\(([a-z|]+)\)/", pattern).group(1).split("|")
    assert tuple(alternatives) == LEVELS


def test_conf_1_5_names_the_levels_in_order():
    text = registry()["CONF-1.5"].text
    named = [w for w in re.findall(r"`([a-z]+)`", text) if w not in ("level", "operation")]
    assert tuple(named) == LEVELS


def test_every_committed_case_uses_a_listed_operation_at_its_level():
    seen = set()
    for case in sorted(default_vectors_root().rglob("case.json")):
        c = json.loads(case.read_text())
        assert c["operation"] in OPERATIONS, f"{c['id']}: operation {c['operation']!r} is not in CONF-3.2"
        assert c["level"] == OPERATIONS[c["operation"]].level, f"{c['id']}: level {c['level']}"
        assert c["id"].split("/")[0] == c["level"]
        seen.add(c["operation"])
    assert seen == set(OPERATIONS), f"operations with no case: {sorted(set(OPERATIONS) - seen)}"


def test_adapters_offer_only_listed_operations():
    """OVW-1.3: an implementation states the operations it offers; only listed ones."""
    assert ReferenceAdapter().operations == set(OPERATIONS)       # the reference offers every operation
    try:
        from lite_llm.optimized.adapter import OptimizedAdapter
    except ModuleNotFoundError:                                     # torch not installed
        return
    assert OptimizedAdapter("cpu").operations <= set(OPERATIONS)


def symbolic_config() -> tuple[ModelConfig, dict[int, str]]:
    """A config whose sizes are distinct primes, so a shape can be written back in the spec's symbols."""
    cfg = ModelConfig(d_model=1018, n_layers=1, n_heads=2, vocab_size=1031,
                      tiers=(TierConfig("t", 1039, 1049, 1051),), router=RouterConfig())
    return cfg, {1018: "d", 1031: "vocab_size", 1039: "G_t", 1049: "E_t", 1051: "d_ff_t"}


def written(shape, symbols) -> str:
    return "(" + ", ".join(symbols[n] for n in shape) + ("," if len(shape) == 1 else "") + ")"


def test_init_clauses_name_every_tensor_with_its_shape():
    """INIT-2.1 .. INIT-2.3 and TIER-1.4 (every group of tier t holds E_t experts: the (G_t, E_t, ...) shapes)."""
    cfg, sym = symbolic_config()
    text = " ".join(registry()[c].text for c in ("INIT-2.1", "INIT-2.2", "INIT-2.3"))
    for name, shape in {**dense_shapes(cfg), **tier_layer_shapes(cfg, 0, 0)}.items():
        kind = name.split(".")[-1]
        assert f".{kind}`" in text or f"`{kind}`" in text, f"{name}: not named in INIT-2"
        assert f"`{written(shape, sym)}`" in text, f"{name}: shape {written(shape, sym)} not in INIT-2"
    assert {k.split(".")[-1] for k in DENSE_LAYER_KINDS} | set(TIER_KINDS) <= set(re.findall(r"[a-z_]+", text))
