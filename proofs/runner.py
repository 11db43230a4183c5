"""Run the proof modules, write their certificates, and decide the exit status (``lite-llm prove``).

Each statement is a module of ``lite_llm.proofs`` with ``NAME``, ``TITLE``, ``CLAUSES`` and
``prove() -> Certificate``. The run fails (exit status 1) when any claim's result differs from its
expected result (a spec claim not proved, a paper claim the spec refutes not refuted, or any
``unknown``), when a module raises, or when a certificate cites a clause the spec does not define.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from .certificate import TIMINGS, Certificate, atomic_write, write

STATEMENTS = (
    "seed_injectivity",
    "topk_determinism",
    "tree_sum_padding",
    "softmax_zero_sign",
    "backward_compatibility",
    "active_set_cardinality",
    "bounded_active_compute",
    "corollary",
    "quantization_bounds",
    "budget_selection",
    "canonical_exp_accuracy",
)
DEFAULT_OUT = Path(__file__).resolve().parent / "certificates"


def load(name: str):
    """The proof module of a statement; ValueError naming the known statements if there is none."""
    if name not in STATEMENTS:
        raise ValueError(f"no statement {name!r}; known: {', '.join(STATEMENTS)}")
    return importlib.import_module(f"{__package__}.{name}")


def unknown_clauses(cert: Certificate) -> list[str]:
    from lite_llm.spec.clauses import registry

    return [c for c in cert.clauses if c not in registry()]


def prove_isolated(name: str):
    """Prove one statement in a fresh process: Z3 keeps global state (term ids, caches) that makes one
    query's speed depend on what ran before it; a fresh process makes every certificate independent of
    which other statements ran. Returns the Certificate, or raises RuntimeError with the child's traceback."""
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(name, send))
    child.start()
    send.close()
    try:
        ok, payload = recv.recv()
    except EOFError:
        ok, payload = False, f"the process proving {name} died (exit code {child.exitcode})"
    child.join()
    if not ok:
        raise RuntimeError(payload)
    return payload


def _child(name: str, send) -> None:
    bar = claim_bar(name)
    try:
        send.send((True, load(name).prove()))
    except BaseException:
        send.send((False, traceback.format_exc()))
    finally:
        if bar is not None:
            bar.close()
        send.close()


def claim_bar(name: str):
    """A progress bar of the claims settled while proving ``name``, on a terminal only (stderr)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    from .certificate import CLAIM_HOOKS

    bar = tqdm(desc=f"  {name}", unit=" claims", leave=False, file=sys.stderr)
    CLAIM_HOOKS.append(lambda claim: (bar.set_postfix_str(claim.name[:40]), bar.update(1)))
    return bar


def run(statements, out: Path | None = DEFAULT_OUT, log=print, isolate: bool = True) -> tuple[list[Certificate], int]:
    """Prove each statement, write its certificate into ``out`` (None: write nothing).

    ``statements`` are names from STATEMENTS (proved in a fresh process each when ``isolate``) or
    module-like objects with ``NAME`` and ``prove()`` (proved in this process). Returns the
    certificates and the exit status: 0 when every claim gave its expected result, else 1.
    """
    certs, failed = [], []
    t_all = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(statements, desc="prove", unit=" statement", disable=not sys.stderr.isatty(), file=sys.stderr)
    for st in bar:
        name = st if isinstance(st, str) else getattr(st, "NAME", getattr(st, "__name__", "?"))
        try:
            if isinstance(st, str):
                cert = prove_isolated(st) if isolate else load(st).prove()
            else:
                cert = st.prove()
        except Exception as e:
            log(f"{name}: ERROR\n{e if isinstance(e, RuntimeError) else traceback.format_exc()}")
            failed.append(name)
            continue
        bad_ids = unknown_clauses(cert)
        if out is not None:
            write(cert, Path(out))
        certs.append(cert)
        mark = "pass" if cert.ok and not bad_ids else "FAIL"
        log(f"{cert.name:<24} {mark}  {cert.time_s:8.2f} s  {len(cert.claims)} claims")
        for c in cert.claims:
            flag = "" if c.ok else f"   <-- expected {c.expected}"
            log(f"    {c.name:<46} {c.result:<15} {c.time_s:9.4f} s{flag}")
        if bad_ids:
            log(f"    cites clauses the spec does not define: {', '.join(bad_ids)}")
        if not cert.ok or bad_ids:
            failed.append(cert.name)
    if out is not None and certs:
        write_index(Path(out))
    total = time.perf_counter() - t_all
    log(f"{len(certs)} certificates, {sum(len(c.claims) for c in certs)} claims in {total:.1f} s; "
        + (f"FAILED: {', '.join(failed)}" if failed else "every claim gave its expected result"))
    return certs, 1 if failed else 0


def write_index(out: Path) -> Path:
    """``README.md`` of the certificate folder: one row per certificate found there."""
    rows = []
    for p in sorted(out.glob("*.json")):
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(d, dict) or "claims" not in d:
            continue
        n_ok = sum(c.get("as_expected", False) for c in d["claims"])
        rows.append(f"| [{d['name']}]({d['name']}.md) | {d['title']} | {', '.join(d['clauses'])} | "
                    f"{d['status']} | {n_ok}/{len(d['claims'])} |")
    text = "\n".join([
        "# Proof certificates", "",
        "Generated by `lite-llm prove`; do not edit. Each certificate lists its claims, the result each",
        "method gave (`proved`, `counterexample` with the model, or `unknown`) and the result the spec",
        "expects (`counterexample` for a claim of the white paper that the spec refutes).", "",
        f"The certificates hold no timings, so a run gives the same bytes every time and `lite-llm prove "
        f"--check` compares them with the committed ones; each run writes its timings to `{TIMINGS}` (not "
        "committed).", "",
        "| certificate | statement | clauses | status | claims as expected |",
        "| --- | --- | --- | --- | --- |", *rows, ""])
    path = out / "README.md"
    atomic_write(path, text)
    return path


# ----------------------------------------------------------------------------------------------
# lite-llm prove --check: regenerate and compare with the committed certificates
# ----------------------------------------------------------------------------------------------

def compared_files(names) -> list[str]:
    """The files --check compares for these statements: NAME.json, NAME.md each, and the index."""
    return [f"{n}{ext}" for n in names for ext in (".json", ".md")] + ["README.md"]


def check(statements, committed: Path = DEFAULT_OUT, log=print) -> tuple[list[str], int]:
    """Prove ``statements`` into a temporary folder and compare the certificates, byte for byte, with those
    in ``committed`` (timings are not part of a certificate; they go to ``timings.json``, not compared).

    The temporary folder starts as a copy of the committed certificates, so the index (README.md) is
    regenerated from the same set. Returns the differing file names (a missing committed file counts as
    differing) and the exit status: 1 when a file differs or a claim fails, else 0.
    """
    import difflib
    import shutil
    import tempfile

    committed = Path(committed)
    names = [st if isinstance(st, str) else st.NAME for st in statements]
    with tempfile.TemporaryDirectory(prefix="lite-llm-prove-check-") as tmp:
        fresh = Path(tmp)
        for p in sorted(committed.glob("*.json")) + sorted(committed.glob("*.md")):
            if p.name != TIMINGS:
                shutil.copyfile(p, fresh / p.name)
        _, status = run(statements, fresh, log=log)
        differ = []
        for f in compared_files(names):
            old, new = committed / f, fresh / f
            a = old.read_bytes() if old.is_file() else None
            b = new.read_bytes() if new.is_file() else None
            if a == b:
                continue
            differ.append(f)
            if a is None:
                log(f"  {f}: not committed in {committed}")
                continue
            if b is None:
                log(f"  {f}: not produced by this run")
                continue
            diff = list(difflib.unified_diff(a.decode("utf-8", "replace").splitlines(),
                                             b.decode("utf-8", "replace").splitlines(),
                                             f"committed/{f}", f"fresh/{f}", n=0, lineterm=""))
            shown = diff[:24] + ([f"  ... {len(diff) - 24} more diff lines"] if len(diff) > 24 else [])
            log("\n".join("    " + line[:200] for line in shown))
    if differ:
        log(f"lite-llm prove --check: {len(differ)} file(s) differ from the committed certificates in {committed}: "
            f"{', '.join(differ)} (regenerate with `lite-llm prove` and commit them)")
    else:
        log(f"lite-llm prove --check: every certificate ({len(compared_files(names))} files) is byte-identical "
            f"to the committed one")
    return differ, 1 if differ or status else 0
