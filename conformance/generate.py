"""``lite-llm vectors generate``: the conformance vectors, computed by the reference (CONF-1.1, CONF-6.1).

Each level's cases are described by a ``gen_<level>`` module as :class:`CaseSpec` objects (inputs
and parameters, chosen to hit a clause); this module runs the reference on each through the same
adapter interface every implementation uses, checks that error cases are rejected with the code
they declare, and writes the case directories. Output is byte-deterministic: ``.npy`` headers are
written by :mod:`tensors`, JSON with a fixed layout, inputs come from :mod:`draw`.
"""
from __future__ import annotations

import importlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lite_llm.spec.config import SPEC_VERSION

from .adapters import Request, rejection_code, to_numpy
from .compare import json_value
from .case import FORMAT, LEVELS, default_vectors_root, parse_case
from .tensors import DTYPES, dtype_name, npy_bytes

# The modules that describe the cases, each with a function cases() -> list[CaseSpec].
GENERATORS = ("gen_ops", "gen_routing", "gen_layer", "gen_model", "gen_loss", "gen_selection", "gen_cache",
              "gen_checkpoint", "gen_generated")
GENERATORS += ("gen_mutants",)             # cases that kill mutants the others let survive (scripts/mutation.py)


@dataclass
class CaseSpec:
    """A case before its expected outputs are computed."""

    id: str                                  # "<level>/<name>"
    description: str
    clauses: list[str]
    operation: str
    params: dict
    inputs: dict                             # name -> np.ndarray, or name -> Path (a directory to copy)
    config: dict | None = None
    error: str | None = None                 # the code an error case must be rejected with
    dtypes: dict = field(default_factory=dict)       # logical dtype overrides (bfloat16)
    tolerance: dict = field(default_factory=dict)    # output name -> Tolerance (absent: exact)
    outputs: dict | None = None              # expected outputs when not computed by running the reference
    margin: dict | None = None               # routing margin record of tolerance cases (CONF-2.4)
    check: object = None                     # optional callable(outputs) -> None asserting the case does its job
    writable: tuple = ()                     # directory inputs the operation writes into (CONF-3.4)
    optional: tuple = ()                     # outputs an implementation may omit (a SHOULD)
    only: bool = False                       # the implementation must return no other outputs
    drop: tuple = ()                         # reference outputs the case does not compare

    @property
    def level(self) -> str:
        return self.id.split("/", 1)[0]


class GeneratorError(RuntimeError):
    """The reference did not behave as a case declares (a generator or reference bug)."""


def reference_outputs(spec: CaseSpec) -> dict | None:
    """Run the reference on a spec as the runner runs an implementation (directory inputs copied,
    writable ones read back, CONF-3.4); None for an error case, after checking its code."""
    from lite_llm.reference.adapter import ReferenceAdapter
    from .runner import snapshot

    with tempfile.TemporaryDirectory(prefix="lite-llm-gen-") as work:
        inputs = {}
        for n, a in spec.inputs.items():
            if isinstance(a, Path):
                inputs[n] = Path(work) / safe_name(n)
                if a.exists():
                    shutil.copytree(a, inputs[n])
            else:
                inputs[n] = a
        dtypes = {n: spec.dtypes.get(n) or dtype_name(a) for n, a in inputs.items() if isinstance(a, np.ndarray)}
        before = {n: snapshot(inputs[n]) for n in spec.writable}
        req = Request(spec.id, spec.operation, spec.config, spec.params, inputs, dtypes)
        try:
            out = ReferenceAdapter().run(req)
        except Exception as e:  # noqa: BLE001
            code = rejection_code(e)
            if spec.error is None or code != spec.error:
                raise GeneratorError(f"{spec.id}: the reference raised {type(e).__name__}: {e}"
                                     f"{'' if spec.error is None else f' (the case declares {spec.error})'}") from e
            if any(snapshot(inputs[n]) != before[n] for n in spec.writable):
                raise GeneratorError(f"{spec.id}: the reference rejected the input but changed a directory") from e
            return None
        if spec.error is not None:
            raise GeneratorError(f"{spec.id}: the reference returned a result, the case declares {spec.error}")
        got = {k: (to_numpy(v) if isinstance(v, np.ndarray) or np.isscalar(v) and isinstance(v, np.generic) else v)
               for k, v in out.items() if k not in spec.drop}
        for n in spec.writable:
            got.update({f"{n}.{k}": v for k, v in snapshot(inputs[n]).items()})
        return got


def checked_expected(spec: CaseSpec, got: dict) -> dict:
    """The expected outputs a spec derives another way (e.g. the binary64 reference, or the routing
    before an expansion), after checking that the reference's own run matches them by the case's
    rules: bit for bit, or within the stated tolerance."""
    from .case import TensorFile
    from .compare import compare_outputs

    arrays = {k: v for k, v in spec.outputs.items() if isinstance(v, np.ndarray)}
    values = {k: json_value(v) for k, v in spec.outputs.items() if not isinstance(v, np.ndarray)}
    specs = {k: TensorFile(k, Path(k), dtype_name(v), v.shape, spec.tolerance.get(k)) for k, v in arrays.items()}
    problems = compare_outputs(arrays, got, specs, values, frozenset(spec.optional))
    if problems:
        raise GeneratorError(f"{spec.id}: the reference's own run does not match the expected outputs: "
                             + "; ".join(problems))
    return {**arrays, **values}


def case_json(spec: CaseSpec, inputs: dict, outputs: dict, values: dict) -> dict:
    d = {
        "format": FORMAT,
        "spec_version": SPEC_VERSION,
        "id": spec.id,
        "description": spec.description,
        "clauses": list(dict.fromkeys(spec.clauses)),
        "level": spec.level,
        "operation": spec.operation,
        "match": "error" if spec.error else ("tolerance" if spec.tolerance else "exact"),
    }
    if spec.config is not None:
        d["config"] = spec.config
    d["params"] = spec.params
    d["inputs"] = inputs
    if spec.error:
        d["expect"] = {"error": spec.error}
    else:
        d["expect"] = {"outputs": outputs}
        if values:
            d["expect"]["values"] = values
        if spec.optional:
            d["expect"]["optional"] = list(spec.optional)
        if spec.only:
            d["expect"]["only"] = True
    if spec.margin is not None:
        d["margin"] = spec.margin
    return d


def dump_json(obj, indent: str = "") -> str:
    """JSON with one key per line and short lists of scalars on one line (stable, diff-friendly)."""
    inner = indent + "  "
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(k)}: {dump_json(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and obj and not all(isinstance(v, (int, float, str, bool)) or v is None for v in obj):
        return "[\n" + ",\n".join(inner + dump_json(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, ensure_ascii=True)


def safe_name(name: str) -> str:
    return name.replace("/", "_")


def write_case(root: Path, spec: CaseSpec) -> None:
    """Compute (or check) the expected outputs and write the case directory."""
    if spec.level not in LEVELS:
        raise GeneratorError(f"{spec.id}: unknown level {spec.level!r}")
    got = reference_outputs(spec)
    if spec.outputs is not None and got is not None:
        got = checked_expected(spec, got)
    if got is not None and spec.check is not None:
        spec.check(got)
    out_dir = root / spec.id
    out_dir.mkdir(parents=True)
    inputs = {}
    for name, a in spec.inputs.items():
        if isinstance(a, Path):
            files = []
            if a.exists():
                shutil.copytree(a, out_dir / safe_name(name))
                files = sorted(p.relative_to(out_dir / safe_name(name)).as_posix()
                               for p in (out_dir / safe_name(name)).rglob("*") if p.is_file())
            inputs[name] = {"dir": safe_name(name), "files": files}
            if name in spec.writable:
                inputs[name]["writable"] = True
            continue
        f = f"in.{safe_name(name)}.npy"
        (out_dir / f).write_bytes(npy_bytes(a))
        dt = spec.dtypes.get(name) or dtype_name(a)
        if DTYPES[dt] != a.dtype:
            raise GeneratorError(f"{spec.id}: input {name} is {a.dtype}, declared {dt}")
        inputs[name] = {"file": f, "dtype": dt, "shape": list(a.shape)}
    outputs, values = {}, {}
    for name, a in (got or {}).items():
        if not isinstance(a, np.ndarray):
            values[name] = json_value(a)
            continue
        f = f"out.{safe_name(name)}.npy"
        (out_dir / f).write_bytes(npy_bytes(a))
        entry = {"file": f, "dtype": dtype_name(a), "shape": list(a.shape)}
        tol = spec.tolerance.get(name)
        if tol is not None:
            entry["tolerance"] = {"rtol": tol.rtol, "atol": tol.atol}
            if tol.relative_to != "element":
                entry["tolerance"]["relative_to"] = tol.relative_to
        outputs[name] = entry
    text = dump_json(case_json(spec, inputs, outputs, values)) + "\n"
    (out_dir / "case.json").write_text(text, encoding="utf-8")
    parse_case(out_dir, root)                    # the written case must load: schema, clauses, files


def all_specs(levels=LEVELS) -> list[CaseSpec]:
    """Every CaseSpec of the given levels."""
    specs: list[CaseSpec] = []
    for mod_name in GENERATORS:
        mod = importlib.import_module(f"{__package__}.{mod_name}")
        specs += [s for s in mod.cases() if s.level in levels]
    ids = [s.id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise GeneratorError(f"case ids generated twice: {', '.join(dup)}")
    return specs


def generate(root: Path | None = None, levels=LEVELS, progress=None) -> list[str]:
    """Write every case of ``levels`` under ``root`` (default: the committed vectors), replacing them.

    The cases are written into a sibling temporary directory first; the old level directories are
    replaced only when every case was generated, so a failure leaves the previous vectors intact.
    """
    root = Path(root or default_vectors_root())
    tmp = root.parent / f".{root.name}.generating"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        written = []
        for spec in all_specs(levels):
            write_case(tmp, spec)
            written.append(spec.id)
            if progress:
                progress(spec.id)
        root.mkdir(parents=True, exist_ok=True)
        for lv in levels:
            if (root / lv).exists():
                shutil.rmtree(root / lv)
            if (tmp / lv).exists():
                (tmp / lv).rename(root / lv)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
