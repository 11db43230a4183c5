"""The committed vectors: they load and validate, stay small, cover the issue's list, keep their
routing margins, and regenerating them reproduces every byte (what `lite-llm vectors check` does in CI)."""
from __future__ import annotations

from pathlib import Path

import pytest

from lite_llm.commands.vectors import compare_trees
from lite_llm.conformance.case import LEVELS, default_vectors_root, load_cases
from lite_llm.conformance.generate import generate
from lite_llm.spec.errors import ERROR_CODES

ROOT = default_vectors_root()


@pytest.fixture(scope="module")
def cases():
    return load_cases()


def test_regenerating_reproduces_every_byte(tmp_path):
    fresh = tmp_path / ROOT.name
    generate(fresh, LEVELS)
    problems = compare_trees(ROOT, fresh, LEVELS)
    assert problems == [], "\n".join(problems[:20])


def test_the_check_notices_a_changed_byte(tmp_path):
    import shutil

    copy = tmp_path / "committed"
    shutil.copytree(ROOT / "routing" / "op" / "mix64", copy / "routing" / "op" / "mix64")
    fresh = tmp_path / "fresh"
    shutil.copytree(copy, fresh)
    f = fresh / "routing" / "op" / "mix64" / "out.y.npy"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 1
    f.write_bytes(bytes(raw))
    (problem,) = compare_trees(copy, fresh, ["routing"])
    assert problem.startswith("differs: routing/op/mix64/out.y.npy (1 element(s); first at [31]")


def test_vectors_stay_small(cases):
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    print(f"{len(cases)} cases, {size / 1e6:.2f} MB")
    assert size < 3_500_000


def test_every_error_code_has_a_case(cases):
    codes = {c.error for c in cases if c.error}
    # E_CHECKPOINT: an I/O error, not an input; E_CKPT_CONFLICT: another writer's commit during this one
    # (CKPT-4.7), which one call cannot arrange: tests/reference/test_checkpoint_concurrency.py checks it
    unused = sorted(set(ERROR_CODES) - codes - {"E_CHECKPOINT", "E_CKPT_CONFLICT"})
    assert unused == [], unused


def test_the_issue_list_is_covered(cases):
    ids = {c.id for c in cases}
    for want in ("routing/route/ties-every-level", "routing/route/zero-hidden", "routing/route/extreme-magnitudes",
                 "routing/route/one-tier-tierset", "routing/errors/tierset-empty", "routing/route/k-exceeds-every-level",
                 "routing/route/tierset-excluded-tier", "routing/route/seed-0xffffffffffffffff",
                 "routing/route/limbs-h1-w1", "routing/route/limbs-h1-w2", "routing/route/limbs-h2-w1",
                 "routing/route/limbs-h2-w2", "routing/route/expansion-superset", "checkpoint/load-expanded-old-tierset",
                 "selection/budget-worked-1", "loss/aux-two-layers", "layer/moe-basic", "model/forward-basic",
                 "routing/op/canonical-exp-special", "routing/op/tree-sum-n3", "routing/op/quantize-limbs1",
                 "routing/op/logits-h2-w2", "routing/op/level-seed", "routing/op/softmax-special",
                 "routing/op/top-k-ties-k3"):
        assert want in ids, want
    assert sum(c.id.startswith("routing/route/seed-") for c in cases) >= 10
    hidden = [c for c in cases if c.id == "routing/route/extreme-magnitudes"][0]
    import numpy as np

    from lite_llm.conformance.case import ReadLog

    h = hidden.load_inputs(ReadLog(), Path("."))["hidden"]
    assert np.abs(h).max() >= 3e38 and ((h != 0) & (np.abs(h) < np.finfo(np.float32).tiny)).any()


def test_model_cases_keep_their_routing_margins(cases):
    """CONF-2.4, MODEL-4.6: every forward/generate case records a routing margin above the bound it needs."""
    model = [c for c in cases if c.operation in ("forward", "generate")]
    margins = [c.raw["margin"] for c in model if "margin" in c.raw]
    assert len(margins) >= 6
    for m in margins:
        assert m["min_margin"] >= m["required"] > m["router_input_tolerance"]
    tol = [c for c in cases if c.match == "tolerance"]
    assert {c.level for c in tol} >= {"layer", "model", "loss"}


def test_the_generator_refuses_a_case_the_reference_does_not_reject(tmp_path):
    """CONF-6.1: an error case whose declared code the reference does not raise is never written."""
    import numpy as np

    from lite_llm.conformance.generate import CaseSpec, GeneratorError, write_case

    t = np.array([-1.0, -0.5, 0.0], np.float32)
    spec = CaseSpec("routing/op/planted-wrong-error", "a valid input declared as rejected", ["HSER-6.1"],
                    "canonical_exp", {}, {"t": t}, error="E_SHAPE")
    with pytest.raises(GeneratorError, match="returned a result"):
        write_case(tmp_path, spec)
    assert not (tmp_path / "routing" / "op" / "planted-wrong-error").exists()


def test_generator_inputs_come_from_the_seeded_streams(monkeypatch):
    """CONF-6.1: the generator's draws are INIT-1.2 streams named by a label, never a library RNG: with
    NumPy's random module made to fail, every draw still works and equals the labelled stream."""
    import numpy as np

    from lite_llm.conformance import draw
    from lite_llm.reference.init import uniform_tensor

    def no_rng(*a, **k):
        raise AssertionError("the generator used numpy.random")

    for name in ("default_rng", "random", "rand", "randn", "normal", "uniform", "integers", "seed"):
        monkeypatch.setattr(np.random, name, no_rng, raising=False)
    a = draw.uniform("planted-label", (4, 5))
    want = uniform_tensor(draw.GEN_SEED, "planted-label", (4, 5), np.float32(1.0))
    assert np.array_equal(a.view(np.uint32), want.view(np.uint32))
    assert not np.array_equal(a, draw.uniform("another-label", (4, 5)))
    draw.gauss("g", (3, 4)), draw.heavy("h", (3, 4)), draw.integers("i", 5)
