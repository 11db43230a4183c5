"""Running the conformance cases against one implementation (CONF-5.1 .. CONF-5.8).

``run_suite`` takes an adapter (adapters.py), the cases, and the skips and xfails lists; it returns
one :class:`Outcome` per case and the read-log checks. Statuses:

- ``pass``  the outputs match (exact or within tolerance), or the input was rejected with the
  expected code;
- ``fail``  a mismatch, a wrong or missing rejection;
- ``error`` the harness broke (an exception without an error code, a protocol violation);
- ``skip``  listed in the skips file, an operation the implementation does not offer, or the
  harness answered *skipped*;
- ``xfail`` / ``xpass``  listed in the xfails file and failed / passed anyway.

The run passes when no case ends ``fail``, ``error`` or ``xpass`` and no vector file was left unread;
a run in which every selected case was skipped ran nothing (CONF-5.7). ``open_adapter`` resolves an
``--impl`` value with the runner's timeouts for ``cmd:`` harnesses (CONF-4.9); ``rerun_command``
writes the command that reruns exactly one case (CONF-5.8).
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import shlex
import tempfile
import time
from contextlib import nullcontext
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .adapters import Request, adapter_name, offers, rejection_code, to_numpy
from .case import Case, DirInput, ReadLog, stray_files
from .compare import compare_outputs

FAILING = ("fail", "error", "xpass")


@dataclass
class Outcome:
    """The result of one case for one implementation."""

    case_id: str
    level: str
    operation: str
    clauses: tuple[str, ...]
    status: str                # pass | fail | error | skip | xfail | xpass
    detail: str = ""           # why it failed / was skipped; empty on pass
    seconds: float = 0.0
    rerun: str = ""            # a command that reruns just this case


@dataclass
class SuiteRun:
    """All outcomes of one implementation, plus the checks on the vector files (CONF-5.4)."""

    impl: str                                   # the --impl value (and device), as the user wrote it
    name: str                                   # the adapter's own name
    outcomes: list[Outcome] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)    # files of cases that ran but were never read
    stray: list[str] = field(default_factory=list)     # files under the vectors that no case declares

    @property
    def ok(self) -> bool:
        return not any(o.status in FAILING for o in self.outcomes) and not self.unread and not self.stray

    @property
    def ran(self) -> int:
        """How many cases reached the implementation and were not skipped (CONF-5.7: none is NOTHING_RAN)."""
        return sum(o.status != "skip" for o in self.outcomes)

    def counts(self, level: str | None = None) -> dict[str, int]:
        out = dict.fromkeys(("pass", "fail", "error", "skip", "xfail", "xpass"), 0)
        for o in self.outcomes:
            if level is None or o.level == level:
                out[o.status] += 1
        return out


def read_id_list(path: str | Path | None) -> dict[str, str]:
    """A skips or xfails file: one ``ID-or-glob  reason`` per line; ``#`` starts a comment (CONF-5.3)."""
    if not path:
        return {}
    out = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pattern, _, reason = line.partition(" ")
        reason = reason.strip()
        if not reason:
            raise ValueError(f"{path}:{n}: {pattern!r} has no reason; write 'ID  reason'")
        out[pattern] = reason
    return out


def listed(case_id: str, patterns: dict[str, str]) -> str | None:
    for pat, reason in patterns.items():
        if fnmatch.fnmatchcase(case_id, pat):
            return reason
    return None


def rerun_command(impl: str, device: str | None, case_id: str, vectors: str | Path | None = None,
                  extra: tuple[str, ...] = ()) -> str:
    """A command that reruns exactly one case (CONF-5.6, CONF-5.8): the same ``--impl``, ``--device``
    and, when they are not the defaults, ``--vectors`` and the harness options in ``extra``."""
    from .case import default_vectors_root

    parts = ["lite-llm", "conform", "--impl", impl]
    if device and impl == "optimized":
        parts += ["--device", device]
    if vectors is not None and Path(vectors).resolve() != default_vectors_root().resolve():
        parts += ["--vectors", str(vectors)]
    parts += list(extra)
    parts += ["--case", case_id]
    return " ".join(shlex.quote(x) for x in parts)


def open_adapter(impl: str, device: str | None = None, *, timeout_s: float | None = None,
                 start_timeout_s: float | None = None, stop_timeout_s: float | None = None):
    """The adapter of an ``--impl`` value; a ``cmd:`` harness gets the runner's timeouts (CONF-4.9)."""
    from .implementations import load_adapter

    if impl.startswith("cmd:") and impl[4:].strip():
        from .harness import CommandAdapter, REPLY_TIMEOUT_S, START_TIMEOUT_S, STOP_TIMEOUT_S

        timeout_s = REPLY_TIMEOUT_S if timeout_s is None else timeout_s
        return CommandAdapter(impl[4:].strip(), timeout_s=timeout_s,
                              start_timeout_s=START_TIMEOUT_S if start_timeout_s is None else start_timeout_s,
                              stop_timeout_s=min(STOP_TIMEOUT_S, timeout_s) if stop_timeout_s is None
                              else stop_timeout_s)
    return load_adapter(impl, device or "cpu")


def snapshot(directory: Path) -> dict:
    """What a writable directory holds after a call (CONF-3.4): file names, SHA-256 of non-JSON files,
    parsed JSON files. Names starting with '.' (temporary files) are left out."""
    files = sorted(p.relative_to(directory).as_posix() for p in Path(directory).rglob("*")
                   if p.is_file() and not p.name.startswith(".")) if Path(directory).is_dir() else []
    sha, js = {}, {}
    for f in files:
        raw = (Path(directory) / f).read_bytes()
        if f.endswith(".json"):
            try:
                js[f] = json.loads(raw)
            except ValueError:
                sha[f] = hashlib.sha256(raw).hexdigest()
        else:
            sha[f] = hashlib.sha256(raw).hexdigest()
    return {"files": files, "sha256": sha, "json": js}


def run_case(adapter, case: Case, log: ReadLog) -> tuple[str, str]:
    """(status, detail) of one case, before skips and xfails are applied."""
    log.mark(case.path / "case.json")
    has_dirs = any(isinstance(v, DirInput) for v in case.inputs.values())
    with (tempfile.TemporaryDirectory(prefix="lite-llm-conform-") if has_dirs else nullcontext("")) as work:
        inputs = case.load_inputs(log, Path(work))
        writable = {n: inputs[n] for n, v in case.inputs.items() if isinstance(v, DirInput) and v.writable}
        before = {n: snapshot(p) for n, p in writable.items()}
        req = Request(case.id, case.operation, case.config, case.params, inputs, case.dtypes,
                      {n: (t.dtype, t.shape) for n, t in case.outputs.items()},
                      {n: v.path for n, v in case.inputs.items() if not isinstance(v, DirInput)})
        expected = case.load_expected(log)
        try:
            got = adapter.run(req)
        except NotImplementedError as e:
            return "skip", f"the implementation skipped it: {e}" if str(e) else "the implementation skipped it"
        except Exception as e:  # noqa: BLE001 - every failure of a harness is reported, never raised
            code = rejection_code(e)
            if code is None:
                tb = traceback.format_exception_only(type(e), e)[-1].strip()
                return "error", f"the implementation raised {tb}"
            if case.error is None:
                return "fail", f"rejected the input with {code} ({e}), expected a result"
            if code != case.error:
                return "fail", f"rejected with {code}, expected {case.error} ({e})"
            changed = [n for n, p in writable.items() if snapshot(p) != before[n]]
            if changed:
                return "fail", f"rejected with {code} as expected, but changed directory {', '.join(changed)}"
            return "pass", ""
        if case.error is not None:
            return "fail", f"returned a result, expected rejection with {case.error}"
        if got is None or not hasattr(got, "items"):
            return "error", f"run() returned {type(got).__name__}, expected a mapping name -> array"
        try:
            got = {k: (v if k in case.values else to_numpy(v)) for k, v in got.items()}
        except Exception as e:  # noqa: BLE001
            return "error", f"an output is not an array: {e}"
        for n, p in writable.items():
            snap = snapshot(p)
            got.update({f"{n}.{k}": v for k, v in snap.items() if f"{n}.{k}" in case.values})
        problems = compare_outputs(expected, got, case.outputs, case.values, case.optional, case.only)
        return ("fail", "; ".join(problems)) if problems else ("pass", "")


def run_suite(adapter, cases: list[Case], *, impl: str = "", device: str | None = None,
              skips: dict[str, str] | None = None, xfails: dict[str, str] | None = None,
              root: Path | None = None, all_cases: list[Case] | None = None, levels=None, progress=None,
              starting=None, vectors: str | Path | None = None, rerun_extra: tuple[str, ...] = ()) -> SuiteRun:
    """Run ``cases`` against ``adapter``.

    With ``root``, files under the levels of ``all_cases`` (default ``cases``) that no case declares
    are reported as stray (CONF-5.4); pass every loaded case of those levels when ``cases`` is a subset.
    ``starting(case)`` is called before a case runs and ``progress(outcome)`` after it ends (the
    progress bar); ``vectors`` and ``rerun_extra`` go into each case's rerun command (CONF-5.8).
    """
    skips, xfails = skips or {}, xfails or {}
    run = SuiteRun(impl or adapter_name(adapter), adapter_name(adapter))
    log = ReadLog()
    ran: list[Case] = []
    for case in cases:
        if starting:
            starting(case)
        t0 = time.perf_counter()
        reason = listed(case.id, skips)
        if reason is not None:
            status, detail = "skip", f"skips file: {reason}"
        elif not offers(adapter, case.operation):
            status, detail = "skip", f"operation {case.operation!r} not offered by the implementation"
        else:
            status, detail = run_case(adapter, case, log)
            ran.append(case)
            xr = listed(case.id, xfails)
            if xr is not None and status in ("fail", "error"):
                status, detail = "xfail", f"{detail} [xfails file: {xr}]"
            elif xr is not None and status == "pass":
                status, detail = "xpass", f"passed but the xfails file says: {xr} (remove it from the file)"
        if status in ("fail", "error") and case.clauses:
            detail = f"[{', '.join(case.clauses)}] {detail}"
        o = Outcome(case.id, case.level, case.operation, case.clauses, status, detail,
                    time.perf_counter() - t0, rerun_command(impl or "reference", device, case.id, vectors, rerun_extra))
        run.outcomes.append(o)
        if progress:
            progress(o)
    run.unread = sorted(str(p) for c in ran for p in c.files() if p not in log.paths)
    if root is not None:
        every = all_cases if all_cases is not None else cases
        run.stray = [str(p) for p in stray_files(root, every, levels or sorted({c.level for c in every}))]
    return run
