"""The certificate a proof module produces: one statement, its claims, and how each was settled.

A *statement* (one module of ``lite_llm.proofs``) is made of *claims*. Each claim is one formula given
to one method (a solver query, a SymPy identity, an exhaustive computation) and carries

- ``expected``: what the spec asserts (``proved``), or ``counterexample`` for a claim of the white
  paper that the spec refutes; and
- ``result``: what the method returned: ``proved``, ``counterexample`` (with the model) or ``unknown``.

A certificate passes when every claim's result is its expected result; ``lite-llm prove`` fails
otherwise. A solver query asks for a model of the premises and the *negated* goal: ``unsat`` proves
the claim (provided the premises alone are satisfiable), a model is a counterexample, anything else
is ``unknown``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROVED, COUNTEREXAMPLE, UNKNOWN = "proved", "counterexample", "unknown"
RESULTS = (PROVED, COUNTEREXAMPLE, UNKNOWN)
FORMAT_VERSION = 2         # 2: timings moved out of the certificate (TIMINGS file), so it is deterministic
TIMINGS = "timings.json"   # per-run timings, next to the certificates; not committed, never compared
Z3_TIMEOUT_MS = 120_000       # a query that runs longer is reported as unknown


@dataclass
class Claim:
    """One formula, settled by one method."""

    name: str                  # short id within the certificate, e.g. "paper_xor_collides"
    statement: str             # the claim in words
    source: str                # who asserts it: "spec", "paper", or "reference" (the reference's method)
    expected: str              # proved | counterexample: what the spec says the method must return
    result: str                # proved | counterexample | unknown: what it returned
    method: str                # how: solver and theory, SymPy, or exhaustive enumeration
    solver_form: str           # the formula as given to the method (SMT-LIB 2, SymPy, or the computation)
    time_s: float              # wall time of this claim
    model: dict | None = None  # for a counterexample: variable -> readable value
    details: dict = field(default_factory=dict)   # measured facts (e.g. worst error and where)

    @property
    def ok(self) -> bool:
        return self.result == self.expected

    def __post_init__(self) -> None:
        for hook in CLAIM_HOOKS:
            hook(self)


CLAIM_HOOKS: list = []        # callables told of every settled claim (the progress bar of `lite-llm prove`)


@dataclass
class Certificate:
    """The record of one statement: what it says, which clauses it covers, and every claim's result."""

    name: str                  # file stem, e.g. "seed_injectivity"; cited by the spec
    title: str                 # one line
    statement: str             # the whole statement in words
    clauses: list[str]         # spec clause ids the statement covers (must exist in the registry)
    paper: str                 # the white-paper section it checks, or "" for a spec-only invariant
    claims: list[Claim]
    notes: list[str] = field(default_factory=list)   # informative remarks, limits of the proof
    method: str = ""                                 # how the statement is proved: the plan, in words
    solvers: dict = field(default_factory=dict)      # tool -> version, filled in by ``finish``
    time_s: float = 0.0
    run_info: dict = field(default_factory=dict)     # facts of this run that vary between runs or machines
                                                     # (e.g. worker processes); kept apart like the timings

    @property
    def ok(self) -> bool:
        return bool(self.claims) and all(c.ok for c in self.claims)

    def to_json(self) -> dict:
        """The certificate's content, without timings or run facts: the same bits on every run (the
        timings go to ``timings.json``, see ``timings``)."""
        d = asdict(self)
        del d["time_s"], d["run_info"]
        d = {"format": FORMAT_VERSION, "status": "pass" if self.ok else "fail", **d}
        for c, cd in zip(self.claims, d["claims"]):
            del cd["time_s"]
            cd["as_expected"] = c.ok
        return d

    def timings(self) -> dict:
        """What varies between runs: the total time, each claim's time, and the run facts."""
        return {"time_s": self.time_s, "claims": {c.name: c.time_s for c in self.claims}, **self.run_info}


def tool_versions() -> dict:
    """Versions of the tools a certificate may rely on."""
    import platform

    import numpy
    import sympy
    import z3

    return {"z3": z3.get_version_string(), "sympy": sympy.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def finish(cert: Certificate, started: float) -> Certificate:
    """Stamp the tool versions and the total time of a certificate."""
    cert.solvers = tool_versions()
    cert.time_s = round(time.perf_counter() - started, 3)
    return cert


# ----------------------------------------------------------------------------------------------
# Z3 claims
# ----------------------------------------------------------------------------------------------

def z3_value(v) -> object:
    """A readable Python value of a Z3 model value (bit-vector, integer, real, bool, float)."""
    import z3

    if z3.is_bv_value(v):
        n = v.as_long()
        return f"0x{n:0{(v.size() + 3) // 4}x} ({n})" if v.size() > 16 else n
    if z3.is_int_value(v):
        return v.as_long()
    if z3.is_rational_value(v):
        return str(v.as_fraction())
    if z3.is_algebraic_value(v):
        return v.approx(20).as_decimal(20)
    if z3.is_true(v) or z3.is_false(v):
        return z3.is_true(v)
    if z3.is_fp_value(v):
        return fp_readable(v)
    return str(v)


def fp_bits(v) -> int:
    """The IEEE bit pattern of a Z3 floating-point value (NaN as the quiet NaN of its format)."""
    ebits, sbits = v.ebits(), v.sbits()
    if v.isNaN():
        return ((1 << ebits) - 1) << (sbits - 1) | 1 << (sbits - 2)
    if v.isInf():
        return (int(v.isNegative()) << (ebits + sbits - 1)) | ((1 << ebits) - 1) << (sbits - 1)
    return (int(v.sign()) << (ebits + sbits - 1)) | (v.exponent_as_long(True) << (sbits - 1)) | v.significand_as_long()


def fp_readable(v) -> str:
    """A Z3 binary32/binary64 value as ``decimal (hex bits)``, e.g. ``-0.0 (0x80000000)``."""
    import struct

    bits, width = fp_bits(v), v.ebits() + v.sbits()
    if width == 32:
        return f"{struct.unpack('<f', struct.pack('<I', bits))[0]!r} (0x{bits:08x})"
    if width == 64:
        return f"{struct.unpack('<d', struct.pack('<Q', bits))[0]!r} (0x{bits:016x})"
    return f"0x{bits:x}"


def z3_claim(name: str, statement: str, premises: list, goal, *, expected: str = PROVED, source: str = "spec",
             method: str = "", show=None, timeout_ms: int = Z3_TIMEOUT_MS, details: dict | None = None,
             keep_form: bool = True) -> Claim:
    """Settle "premises imply goal" by asking Z3 for a model of ``premises and not goal``.

    ``unsat`` proves the claim, a model is a counterexample (``show``, a list of terms or a dict
    label -> term, picks the values that make up the readable model; default: every constant), anything
    else is ``unknown``. A proof counts only if the premises alone are satisfiable: a claim proved from
    contradictory premises is vacuous and is reported ``unknown``. ``keep_form=False`` skips printing
    the query (for callers that run many similar queries and show one).
    """
    import z3

    s = z3.Solver()
    s.set(timeout=timeout_ms)
    s.add(*premises)
    s.add(z3.Not(goal))
    form = s.sexpr() if keep_form else ""        # callers that run many similar queries keep one form
    details = dict(details or {})
    t0 = time.perf_counter()
    r = s.check()
    model = None
    if r == z3.unsat:
        result = PROVED
        vac = z3.Solver()
        vac.set(timeout=timeout_ms)
        vac.add(*premises)
        rv = vac.check()
        details["premises_satisfiable"] = True if rv == z3.sat else (False if rv == z3.unsat else "unknown")
        if rv != z3.sat:
            result = UNKNOWN
            details["reason"] = "vacuous: the premises alone are unsatisfiable" if rv == z3.unsat else \
                f"could not show the premises satisfiable: {vac.reason_unknown()}"
    elif r == z3.sat:
        result = COUNTEREXAMPLE
        m = s.model()
        if show is None:
            model = {str(d.name()): z3_value(m[d]) for d in sorted(m.decls(), key=lambda d: str(d.name()))
                     if d.arity() == 0}
        else:
            items = show.items() if isinstance(show, dict) else ((str(t), t) for t in show)
            model = {label: z3_value(m.eval(t, model_completion=True)) for label, t in items}
    else:
        result = UNKNOWN
        details["reason"] = s.reason_unknown()
    dt = time.perf_counter() - t0
    return Claim(name, statement, source, expected, result,
                 method or "Z3: the premises and the negated goal are unsatisfiable", form, round(dt, 6),
                 model, details)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def atomic_write(path: Path, text: str) -> None:
    """Write a file so that a crash leaves either the old or the new content, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)             # mkstemp makes 0600; a certificate is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write(cert: Certificate, out: Path) -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.md`` into ``out``, and the certificate's timings into ``timings.json``."""
    out = Path(out)
    j, m = out / f"{cert.name}.json", out / f"{cert.name}.md"
    atomic_write(j, json.dumps(cert.to_json(), indent=2) + "\n")
    atomic_write(m, markdown(cert))
    write_timings(cert, out)
    return j, m


def write_timings(cert: Certificate, out: Path) -> Path:
    """Merge one certificate's timings into ``out/timings.json`` (name -> timings), sorted by name."""
    path = Path(out) / TIMINGS
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(table, dict):
            table = {}
    except (OSError, ValueError):
        table = {}
    table[cert.name] = cert.timings()
    atomic_write(path, json.dumps(dict(sorted(table.items())), indent=2) + "\n")
    return path


MD_FORM_LINES = 80     # longer solver forms are cut in the Markdown page (the JSON holds all of it)


def cell(v) -> str:
    """A value as a Markdown table cell: code-formatted, with the table's separator escaped."""
    return "`" + str(v).replace("|", "\\|") + "`"


def markdown(cert: Certificate) -> str:
    """The human-readable page of a certificate."""
    L = [f"# {cert.name}: {cert.title}", ""]
    L += [f"**Status: {'PASS' if cert.ok else 'FAIL'}** (every claim gave its expected result: "
          f"{'yes' if cert.ok else 'no'}). Timings are in `{TIMINGS}` of the run, not here.", ""]
    L += [cert.statement, ""]
    L += ["- Spec clauses: " + ", ".join(f"`{c}`" for c in cert.clauses)]
    if cert.paper:
        L += [f"- White paper: {cert.paper}"]
    L += ["- Tools: " + ", ".join(f"{k} {v}" for k, v in cert.solvers.items()), ""]
    if cert.method:
        L += ["## How it is proved", "", cert.method.strip(), ""]
    L += ["## Claims", "", "| claim | asserted by | expected | result |", "| --- | --- | --- | --- |"]
    for c in cert.claims:
        mark = "" if c.ok else " **(differs)**"
        L += [f"| `{c.name}` | {c.source} | {c.expected} | {c.result}{mark} |"]
    L += [""]
    for c in cert.claims:
        L += [f"### `{c.name}`", "", c.statement, "", f"- Asserted by: {c.source}; expected: **{c.expected}**;"
              f" result: **{c.result}**.", f"- Method: {c.method}"]
        if c.model:
            L += ["", "Counterexample:" if c.result == COUNTEREXAMPLE else "Model:", "",
                  "| name | value |", "| --- | --- |"]
            L += [f"| {cell(k)} | {cell(v)} |" for k, v in c.model.items()]
        if c.details:
            L += ["", "Details:", ""]
            L += [f"- {k}: `{v}`" if not isinstance(v, str) or "\n" not in v else f"- {k}:\n\n```\n{v}\n```"
                  for k, v in c.details.items()]
        lines = c.solver_form.strip().splitlines()
        shown = lines[:MD_FORM_LINES]
        if len(lines) > MD_FORM_LINES:
            shown.append(f"; ... {len(lines) - MD_FORM_LINES} more lines in {cert.name}.json")
        L += ["", "<details><summary>Solver form</summary>", "", "```", *shown, "```", "", "</details>", ""]
    if cert.notes:
        L += ["## Notes", ""] + [f"- {n}" for n in cert.notes] + [""]
    return "\n".join(L)
