"""Run the proof modules, write their certificates, and decide the exit status (``lite-llm prove``).

Each statement is a module of ``lite_llm.proofs`` with ``NAME``, ``TITLE``, ``CLAUSES`` and
``prove() -> Certificate``. The run fails (exit status 1) when any claim's result differs from its
expected result (a spec claim not proved, a paper claim the spec refutes not refuted, or any
``unknown``), when a module raises, or when a certificate cites a clause the spec does not define.
"""
from __future__ import annotations

import importlib
import json
import time
import traceback
from pathlib import Path

from .certificate import Certificate, atomic_write, write

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
    try:
        send.send((True, load(name).prove()))
    except BaseException:
        send.send((False, traceback.format_exc()))
    finally:
        send.close()


def run(statements, out: Path | None = DEFAULT_OUT, log=print, isolate: bool = True) -> tuple[list[Certificate], int]:
    """Prove each statement, write its certificate into ``out`` (None: write nothing).

    ``statements`` are names from STATEMENTS (proved in a fresh process each when ``isolate``) or
    module-like objects with ``NAME`` and ``prove()`` (proved in this process). Returns the
    certificates and the exit status: 0 when every claim gave its expected result, else 1.
    """
    certs, failed = [], []
    t_all = time.perf_counter()
    for st in statements:
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
                    f"{d['status']} | {n_ok}/{len(d['claims'])} | {d['time_s']:.2f} |")
    text = "\n".join([
        "# Proof certificates", "",
        "Generated by `lite-llm prove`; do not edit. Each certificate lists its claims, the result each",
        "method gave (`proved`, `counterexample` with the model, or `unknown`) and the result the spec",
        "expects (`counterexample` for a claim of the white paper that the spec refutes).", "",
        "| certificate | statement | clauses | status | claims as expected | time (s) |",
        "| --- | --- | --- | --- | --- | --- |", *rows, ""])
    path = out / "README.md"
    atomic_write(path, text)
    return path
