"""The runner's rules (CONF-2, CONF-3, CONF-5) on small synthetic cases: bit-exact (CONF-2.1) and
tolerance (CONF-2.2) comparison, JSON values, statuses (CONF-5.1), adapters' rejections, skips and
errors (CONF-3.3), directory inputs left unchanged by a rejection (CONF-3.4), skips and xfails files
(CONF-5.3), unread and stray vector files (CONF-5.4)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from lite_llm.conformance.case import CaseFormatError, Tolerance, TensorFile, load_cases
from lite_llm.conformance.compare import compare_outputs, compare_tensor, first_difference
from lite_llm.conformance.generate import CaseSpec, write_case
from lite_llm.reference.adapter import ReferenceAdapter
from lite_llm.conformance.runner import read_id_list, run_suite
from lite_llm.spec.errors import ShapeError

F32 = np.float32


def spec(a, tol=None):
    return TensorFile("y", None, str(a.dtype), a.shape, tol)


def test_exact_comparison_is_bitwise():
    want = np.array([0.0, 1.0, np.nan], F32)
    assert compare_tensor("y", want, want.copy(), spec(want)) is None           # NaN equals its own bits
    got = want.copy()
    got[0] = -0.0
    msg = compare_tensor("y", want, got, spec(want))
    assert "1 of 3 elements differ; first at index [0]: got -0.0 (0x80000000), expected 0.0 (0x00000000)" in msg
    assert "dtype float64" in compare_tensor("y", want, want.astype(np.float64), spec(want))
    assert "shape (2,)" in compare_tensor("y", want, want[:2], spec(want))


@pytest.mark.parametrize("relative_to, got, ok", [
    ("element", [1.0001, 100.0, 0.0], True), ("element", [1.0, 100.02, 0.0], False),
    ("max", [1.009, 100.0, 0.009], True), ("max", [1.0, 100.0, 0.011], False),
    ("row_max", [1.0, 100.0, 1.5e-4], True)])
def test_tolerance_kinds(relative_to, got, ok):
    want = np.array([1.0, 100.0, 0.0])
    tol = Tolerance(1e-4, 0.0, relative_to)
    msg = compare_tensor("y", want, np.array(got), spec(want, tol))
    assert (msg is None) == ok, msg
    assert compare_tensor("y", want, np.array([np.nan, 100.0, 0.0]), spec(want, Tolerance(1, 1))) is not None


def test_json_values_compare_exactly():
    assert first_difference({"a": [1, 2.5], "b": True}, {"b": True, "a": [1, 2.5]}) is None
    assert first_difference([1, 2], [1, 3]) == "[1]: got 2, expected 3"
    assert first_difference(1, True) is not None and first_difference(3, 3.0) is None
    assert "missing" in first_difference({}, {"x": 1})
    problems = compare_outputs({}, {"tiers": (0, 2), "extra": 1}, {}, {"tiers": [0, 2]}, only=True)
    assert problems == ["returned 1 output(s) the case does not expect: extra"]


@pytest.fixture()
def vectors(tmp_path):
    """Three small routing cases: an exact op, an error case, a case with a tolerance."""
    root = tmp_path / "0.1"
    x = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, -0.0]], F32)
    write_case(root, CaseSpec("routing/t/quantize", "q", ["HSER-2.3"], "quantize", {"limbs": 2}, {"x": x}))
    write_case(root, CaseSpec("routing/t/softmax", "p", ["HSER-6.6"], "softmax", {},
                              {"z": np.array([[0.0, -1.0, -2.0]])}, tolerance={"p": Tolerance(1e-6, 0)}))
    cfg = {"spec_version": "0.1", "d_model": 2, "n_heads": 1, "tiers": [{"name": "a", "groups": 1,
           "experts_per_group": 1, "d_ff": 1}], "router": {"k_tier": 1, "k_group": 1, "k_expert": 1}}
    w = {"router_tier.0": np.ones(2, F32), "router_group.0": np.ones((1, 2), F32),
         "router_expert.0": np.ones((1, 1, 2), F32)}
    write_case(root, CaseSpec("routing/t/bad-shape", "e", ["HSER-1.1"], "route", {"tierset": [0], "seed": 0},
                              {"hidden": np.zeros(2, F32), **w}, config=cfg, error="E_SHAPE"))
    return root


class Wrapped:
    """The reference, with a hook to change what it does."""

    def __init__(self, hook=None, operations=None):
        self.ref, self.hook = ReferenceAdapter(), hook
        if operations is not None:
            self.operations = operations

    def run(self, req):
        out = self.ref.run(req)
        return self.hook(req, out) if self.hook else out


def statuses(run):
    return {o.case_id.split("/")[-1]: o.status for o in run.outcomes}


def test_statuses_skips_and_xfails(vectors, tmp_path):
    cases = load_cases(vectors)
    assert statuses(run_suite(Wrapped(), cases, root=vectors)) == {"bad-shape": "pass", "quantize": "pass",
                                                                    "softmax": "pass"}
    skips = tmp_path / "skips.txt"
    skips.write_text("# known gaps\nrouting/t/soft*   no softmax yet\n")
    xfails = tmp_path / "xfails.txt"
    xfails.write_text("routing/t/quantize  rounding bug #12\nrouting/t/bad-shape  validation missing\n")

    def break_quantize(req, out):
        if req.operation == "quantize":
            out["q"] = out["q"] + 1
        return out

    run = run_suite(Wrapped(break_quantize), cases, skips=read_id_list(skips), xfails=read_id_list(xfails))
    assert statuses(run) == {"softmax": "skip", "quantize": "xfail", "bad-shape": "xpass"}
    assert not run.ok                                             # an xpass fails the run: remove the entry
    bad = tmp_path / "bad.txt"
    bad.write_text("routing/t/quantize\n")
    with pytest.raises(ValueError, match="no reason"):
        read_id_list(bad)


def test_not_offered_operations_are_skipped_and_errors_reported(vectors):
    cases = load_cases(vectors)
    run = run_suite(Wrapped(operations={"quantize"}), cases)
    assert statuses(run) == {"quantize": "pass", "softmax": "skip", "bad-shape": "skip"}

    def crash(req, out):
        raise KeyError("oops")

    def reject(req, out):
        raise ShapeError("no")

    def skip(req, out):
        raise NotImplementedError("later")

    assert set(statuses(run_suite(Wrapped(crash), cases)).values()) == {"error", "pass"}   # the error case rejects first
    assert statuses(run_suite(Wrapped(reject), cases))["quantize"] == "fail"
    assert statuses(run_suite(Wrapped(skip), cases))["softmax"] == "skip"


def test_tolerance_case_accepts_small_differences(vectors):
    cases = [c for c in load_cases(vectors) if c.id.endswith("softmax")]

    def nudge(req, out):
        out["p"] = (out["p"] * F32(1 + 2 ** -22)).astype(F32)
        return out

    def push(req, out):
        out["p"] = (out["p"] * F32(1.001)).astype(F32)
        return out

    assert statuses(run_suite(Wrapped(nudge), cases)) == {"softmax": "pass"}
    assert statuses(run_suite(Wrapped(push), cases)) == {"softmax": "fail"}


def test_stray_and_unread_files_fail_the_run(vectors, monkeypatch):
    (vectors / "routing" / "t" / "quantize" / "forgotten.npy").write_bytes(b"x")
    cases = load_cases(vectors)
    run = run_suite(Wrapped(), cases, root=vectors)
    assert [p.split("/")[-1] for p in run.stray] == ["forgotten.npy"] and not run.ok
    assert run.unread == []
    # a runner that forgets to read an expected output (the bug the check exists for) is caught
    from lite_llm.conformance.case import Case

    def forgetful(self, log):
        return {k: log.read_tensor(t) for k, t in self.outputs.items() if k != "scale"}

    monkeypatch.setattr(Case, "load_expected", forgetful)
    run = run_suite(Wrapped(), cases)
    assert [p.split("/")[-1] for p in run.unread] == ["out.scale.npy"] and not run.ok


def test_broken_cases_are_refused_at_load(vectors):
    (vectors / "routing" / "t" / "quantize" / "out.q.npy").unlink()
    with pytest.raises(CaseFormatError, match="do not exist"):
        load_cases(vectors)
    shutil.rmtree(vectors / "routing" / "t" / "quantize")
    case = vectors / "routing" / "t" / "softmax" / "case.json"
    missing = "HSER-" + "99.9"                 # built at run time, so this file cites no missing clause
    case.write_text(case.read_text().replace('"HSER-6.6"', f'"{missing}"'))
    with pytest.raises(CaseFormatError, match="not in spec"):
        load_cases(vectors)
    case.write_text(case.read_text().replace(f'"{missing}"', '"HSER-6.6"').replace('"match": "tolerance"',
                                                                                   '"match": "exact"'))
    with pytest.raises(CaseFormatError, match="match is"):
        load_cases(vectors)


def test_rejection_that_changes_a_writable_directory_fails(tmp_path):
    """CONF-2.3: an implementation that writes half an expansion, then rejects, fails the case."""
    case = {c.id: c for c in load_cases(levels=["checkpoint"])}["checkpoint/expand-errors/name-exists"]

    class HalfWrite(ReferenceAdapter):
        def op_expand_checkpoint(self, req):
            (req.inputs["checkpoint"] / "tier-tier_b.0000000000000000.safetensors").write_bytes(b"partial")
            return super().op_expand_checkpoint(req)

    (o,) = run_suite(HalfWrite(), [case]).outcomes
    assert o.status == "fail" and "changed directory checkpoint" in o.detail
    (o,) = run_suite(ReferenceAdapter(), [case]).outcomes
    assert o.status == "pass"


def test_rerun_command_reruns_exactly(tmp_path):
    """CONF-5.8: the rerun command repeats --impl, --device, a non-default --vectors and the harness options."""
    from lite_llm.conformance.case import default_vectors_root
    from lite_llm.conformance.runner import rerun_command

    assert rerun_command("reference", None, "loss/aux-alpha") == \
        "lite-llm conform --impl reference --case loss/aux-alpha"
    assert rerun_command("optimized", "cuda", "a/b", default_vectors_root()) == \
        "lite-llm conform --impl optimized --device cuda --case a/b"
    assert rerun_command("reference", "cuda", "a/b") == "lite-llm conform --impl reference --case a/b"
    assert rerun_command("cmd:./h --serve", None, "a/b", tmp_path / "v w", ("--timeout", "5")) == \
        f"lite-llm conform --impl 'cmd:./h --serve' --vectors '{tmp_path / 'v w'}' --timeout 5 --case a/b"


def test_a_run_where_everything_was_skipped_ran_nothing(vectors):
    """CONF-5.7: ``ran`` counts the cases that reached the implementation; skips do not count."""
    cases = load_cases(vectors)
    run = run_suite(ReferenceAdapter(), cases, skips={"*": "not today"})
    assert run.ok and run.ran == 0
    run = run_suite(ReferenceAdapter(), cases[:1])
    assert run.ran == 1
