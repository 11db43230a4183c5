"""The case format (CONF-1.1 .. CONF-1.8): the loader accepts the committed layout and refuses each
kind of malformed case with an error naming the file. Each test copies one committed case into a
temporary vectors tree and breaks one rule."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lite_llm.conformance.case import CaseFormatError, default_vectors_root, load_cases, parse_case
from lite_llm.conformance.tensors import MAGIC, npy_bytes, parse_npy

CASE = "routing/op/canonical-exp-special"


@pytest.fixture
def tree(tmp_path):
    """A vectors tree (``<root>/0.1``) holding one copied case; returns (root, case_dir, case.json dict)."""
    root = tmp_path / "0.1"
    src = default_vectors_root() / CASE
    dst = root / CASE
    shutil.copytree(src, dst)
    return root, dst, json.loads((dst / "case.json").read_text())


def rewrite(case_dir, d):
    (case_dir / "case.json").write_text(json.dumps(d))


def test_the_committed_layout_loads(tree):
    """CONF-1.1, CONF-1.2: vectors/V/LEVEL/NAME/ with case.json and its .npy files."""
    root, case_dir, _ = tree
    cases = load_cases(root)
    assert [c.id for c in cases] == [CASE]
    assert all(p.parent == case_dir for p in cases[0].files())


def test_id_must_be_the_path(tree):
    """CONF-1.3: the id is LEVEL/NAME, the path below the version directory."""
    root, case_dir, d = tree
    rewrite(case_dir, {**d, "id": "routing/op/somewhere-else"})
    with pytest.raises(CaseFormatError, match="does not match its directory"):
        parse_case(case_dir, root)


def test_a_case_without_case_json_is_refused(tree):
    """CONF-1.2: a case is a directory holding case.json."""
    root, case_dir, _ = tree
    (case_dir / "case.json").unlink()
    with pytest.raises(CaseFormatError, match="case.json"):
        parse_case(case_dir, root)


def test_npy_files_are_version_1_little_endian_c_order():
    """CONF-1.4: the writer's bytes: magic, version 1.0, little-endian descr, C order, 64-byte aligned data."""
    raw = npy_bytes(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert raw[:6] == MAGIC and raw[6:8] == bytes([1, 0])
    header = raw[10:10 + int.from_bytes(raw[8:10], "little")].decode("latin1")
    assert "'descr': '<f4'" in header and "'fortran_order': False" in header and "(2, 3)" in header
    arr, offset = parse_npy(raw)
    assert offset % 64 == 0 and arr.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_an_input_is_a_tensor_or_a_directory(tree):
    """CONF-1.6: an input entry needs file/dtype/shape or dir/files."""
    root, case_dir, d = tree
    d["inputs"]["t"] = {"shape": [160]}
    rewrite(case_dir, d)
    with pytest.raises(CaseFormatError, match="inputs"):
        parse_case(case_dir, root)


def test_match_must_follow_the_expectation(tree):
    """CONF-1.7: an exact expectation says match exact; tolerance or error are refused."""
    root, case_dir, d = tree
    rewrite(case_dir, {**d, "match": "tolerance"})
    with pytest.raises(CaseFormatError, match="match is 'tolerance'"):
        parse_case(case_dir, root)


def test_cited_clauses_must_exist(tree):
    """CONF-1.8: every clause a case cites exists in the spec version."""
    root, case_dir, d = tree
    rewrite(case_dir, {**d, "clauses": ["HSER-6.1", "HSER-" + "98.7"]})
    with pytest.raises(CaseFormatError, match="not in spec"):
        parse_case(case_dir, root)
