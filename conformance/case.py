"""The conformance case format and its loader (CONF-1.1 .. CONF-1.9).

A case is a directory ``vectors/<spec version>/<level>/<name>/`` holding ``case.json`` (validated
against ``case.schema.json``) and the ``.npy`` files it names. The case's id is ``<level>/<name>``,
its path below the version directory. ``load_cases`` walks the tree in id order; every file a case
reads goes through a :class:`ReadLog`, so the runner can prove that no vector file went unread
(CONF-5.4).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jsonschema
import numpy as np

from lite_llm.spec.clauses import registry
from lite_llm.spec.config import SPEC_VERSION
from lite_llm.spec.operations import LEVELS  # the one list of levels (CONF-1.5)

from .tensors import DTYPES, read_npy

CASE_FILE = "case.json"
FORMAT = "lite-llm-conformance-case/1"
HERE = Path(__file__).resolve().parent


def default_vectors_root() -> Path:
    """The committed vectors of this spec version: ``conformance/vectors/<spec version>``."""
    return HERE / "vectors" / SPEC_VERSION


class CaseFormatError(ValueError):
    """A case directory does not follow the case format; the message names the file."""


@dataclass(frozen=True)
class Tolerance:
    """|got - want| <= atol + rtol * R elementwise (CONF-2.2)."""

    rtol: float                      # relative part
    atol: float                      # absolute part
    relative_to: str = "element"     # R: |want| ("element"), max |want| ("max"), max |want| of the row ("row_max")


@dataclass(frozen=True)
class TensorFile:
    """A tensor input or expected output: one .npy file of the case."""

    name: str                      # input/output name the operation uses, e.g. "hidden"
    path: Path                     # absolute path of the .npy file
    dtype: str                     # logical dtype (tensors.DTYPES); bfloat16 is stored as uint16
    shape: tuple[int, ...]
    tolerance: Tolerance | None = None   # outputs only: None means bit-exact


@dataclass(frozen=True)
class DirInput:
    """A directory input (a checkpoint); ``files`` lists every file in it, relative to it."""

    name: str
    path: Path
    files: tuple[str, ...]
    writable: bool = False      # the implementation gets a fresh copy to write into (CONF-3.4)


@dataclass
class ReadLog:
    """The vector files the runner has read or handed to an implementation (CONF-5.4)."""

    paths: set[Path] = field(default_factory=set)

    def read_tensor(self, t: TensorFile) -> np.ndarray:
        a = read_npy(t.path)
        self.paths.add(t.path)
        if a.dtype != DTYPES[t.dtype] or a.shape != t.shape:
            raise CaseFormatError(f"{t.path}: holds {a.dtype} {a.shape}, case.json says {t.dtype} {t.shape}")
        return a

    def mark(self, path: Path) -> None:
        self.paths.add(path)


@dataclass(frozen=True)
class Case:
    """One conformance case (CONF-1.2)."""

    id: str                         # stable id, "<level>/<name>"
    description: str
    clauses: tuple[str, ...]        # the spec clauses it checks
    level: str                      # one of LEVELS
    operation: str                  # what the implementation is asked to do (CONF-3.2)
    match: str                      # "exact" | "tolerance" | "error"
    config: dict | None             # model configuration (JSON form), or None
    params: dict                    # scalar parameters of the operation
    inputs: dict                    # name -> TensorFile | DirInput
    outputs: dict                   # name -> TensorFile (empty for error cases)
    values: dict                    # name -> expected JSON value
    optional: frozenset             # names of outputs/values that may be omitted
    only: bool                      # no outputs but the expected ones may be returned
    error: str | None               # the error code an error case must be rejected with
    path: Path                      # the case directory
    raw: dict                       # the parsed case.json

    def files(self) -> list[Path]:
        """Every file of the case: case.json, its inputs (directory inputs file by file), its outputs."""
        out = [self.path / CASE_FILE]
        for v in self.inputs.values():
            out += [v.path / f for f in v.files] if isinstance(v, DirInput) else [v.path]
        out += [t.path for t in self.outputs.values()]
        return out

    def load_inputs(self, log: ReadLog, workdir: Path) -> dict:
        """name -> numpy array for tensor inputs, name -> Path for directory inputs.

        Directory inputs are copied into ``workdir`` (so no implementation can change the vectors);
        one that does not exist in the case (files == []) becomes a path that does not exist yet.
        """
        out = {}
        for name, v in self.inputs.items():
            if isinstance(v, DirInput):
                dest = Path(workdir) / v.path.name
                if v.path.is_dir():
                    shutil.copytree(v.path, dest)
                for f in v.files:
                    log.mark(v.path / f)
                out[name] = dest
            else:
                out[name] = log.read_tensor(v)
        return out

    def load_expected(self, log: ReadLog) -> dict[str, np.ndarray]:
        return {name: log.read_tensor(t) for name, t in self.outputs.items()}

    @property
    def dtypes(self) -> dict[str, str]:
        """Logical dtypes of the tensor inputs (a bfloat16 input arrives as its uint16 bit patterns)."""
        return {n: v.dtype for n, v in self.inputs.items() if isinstance(v, TensorFile)}


@lru_cache(maxsize=None)
def case_schema() -> dict:
    return json.loads((HERE / "case.schema.json").read_text())


@lru_cache(maxsize=None)
def case_validator() -> jsonschema.protocols.Validator:
    schema = case_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def parse_case(case_dir: Path, root: Path) -> Case:
    """Read and check one case directory (CONF-1.1 .. CONF-1.9); CaseFormatError names the file."""
    f = case_dir / CASE_FILE
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CaseFormatError(f"{f}: not readable JSON ({e})") from None
    try:
        case_validator().validate(d)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise CaseFormatError(f"{f}: field {where}: {e.message}") from None
    rel = case_dir.relative_to(root).as_posix()
    if d["id"] != rel:                                                       # CONF-1.3: the id is the path
        raise CaseFormatError(f"{f}: id {d['id']!r} does not match its directory {rel!r}")
    if d["level"] != rel.split("/")[0]:
        raise CaseFormatError(f"{f}: level {d['level']!r} does not match its directory")
    known = registry()
    unknown = [c for c in d["clauses"] if c not in known]                   # CONF-1.8: cited clauses exist
    if unknown:
        raise CaseFormatError(f"{f}: cites clause(s) not in spec {SPEC_VERSION}: {', '.join(unknown)}")
    inputs = {}
    for name, v in d["inputs"].items():                                      # CONF-1.6: a tensor or a directory
        if "dir" in v:
            inputs[name] = DirInput(name, case_dir / v["dir"], tuple(v["files"]), v.get("writable", False))
        else:
            inputs[name] = TensorFile(name, case_dir / v["file"], v["dtype"], tuple(v["shape"]))
    outputs = {}
    error = d["expect"].get("error")
    for name, v in d["expect"].get("outputs", {}).items():
        tol = v.get("tolerance")
        outputs[name] = TensorFile(name, case_dir / v["file"], v["dtype"], tuple(v["shape"]),
                                   Tolerance(tol["rtol"], tol["atol"], tol.get("relative_to", "element")) if tol else None)
    # CONF-1.7: `match` follows from `expect`: error, tolerance when an output has one, else exact
    want_match = "error" if error else ("tolerance" if any(t.tolerance for t in outputs.values()) else "exact")
    if d["match"] != want_match:
        raise CaseFormatError(f"{f}: match is {d['match']!r} but its expectation makes it {want_match!r}")
    exp = d["expect"]
    values = exp.get("values", {})
    clash = sorted(set(values) & set(outputs))
    if clash:
        raise CaseFormatError(f"{f}: {', '.join(clash)} both a tensor output and a value")
    case = Case(d["id"], d["description"], tuple(d["clauses"]), d["level"], d["operation"], d["match"],
                d.get("config"), d["params"], inputs, outputs, values, frozenset(exp.get("optional", ())),
                exp.get("only", False), error, case_dir, d)
    missing = [p for p in case.files() if not p.is_file()]
    if missing:
        raise CaseFormatError(f"{f}: names file(s) that do not exist: {', '.join(str(p) for p in missing)}")
    return case


def load_cases(root: Path | None = None, levels=None) -> list[Case]:
    """Every case below ``root`` (default: the committed vectors), in id order, optionally of some levels."""
    root = Path(root or default_vectors_root()).resolve()
    if not root.is_dir():
        raise CaseFormatError(f"{root}: no vectors directory (run `lite-llm vectors generate`)")
    levels = tuple(levels or LEVELS)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad:
        raise CaseFormatError(f"unknown level(s) {', '.join(bad)}; levels are {', '.join(LEVELS)}")
    dirs = sorted((p.parent for p in root.rglob(CASE_FILE)), key=lambda p: p.relative_to(root).as_posix())
    return [parse_case(p, root) for p in dirs if p.relative_to(root).parts[0] in levels]


def stray_files(root: Path, cases: list[Case], levels=LEVELS) -> list[Path]:
    """Files under the given levels of ``root`` that no case declares (CONF-5.4)."""
    root = Path(root).resolve()
    declared = {p.resolve() for c in cases for p in c.files()}
    found = [p for lv in levels if (root / lv).is_dir() for p in (root / lv).rglob("*") if p.is_file()]
    return sorted(p for p in found if p.resolve() not in declared)
