"""Harnesses that hang, crash, print garbage or ignore ``stop`` (CONF-4.6, CONF-4.7, CONF-4.9, CONF-4.10).

Each test runs ``lite-llm conform --impl cmd:FAKE`` as a user does, in a subprocess with its own
TMPDIR, on three cases, and checks that the run ends in bounded time with the right exit status and
report, that the broken case is *errored* and the others still pass (the harness was restarted),
that no process of the harness (nor a child it started) is left, and that no temporary directory
leaks.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = ("routing/op/level-seed", "routing/op/logits-h1-w1", "routing/op/mix64")      # run in this order
BAD = "routing/op/logits-h1-w1"                                                       # the one that misbehaves

FAKE = textwrap.dedent("""\
    import json, os, subprocess, sys, time
    pids, mode, bad = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\\n")
    if mode == "child":                  # a helper process in the harness's group, which must die with it
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(pids, "a") as f:
            f.write(f"{child.pid}\\n")
    if mode == "hang-start":
        time.sleep(600)
    if mode == "die-start":
        sys.exit(3)
    from lite_llm.conformance.implementations import load_adapter
    from lite_llm.conformance.protocol import handle
    ref = load_adapter("reference")
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "start":
            reply = {"ok": True, "implementation": {"name": "fake-" + mode}}
        elif msg["cmd"] == "stop":
            if mode == "ignore-stop":
                continue
            break
        elif msg["case"] == bad or mode == "crash-always":
            if mode in ("hang", "child"):
                time.sleep(600)
            if mode in ("crash", "crash-always"):
                os._exit(7)
            if mode == "garbage":
                print("loading weights... done", flush=True)        # a log line on stdout
            if mode == "errored":
                print(json.dumps({"seq": msg["seq"], "errored": {"message": "out of memory"}}), flush=True)
                continue
            reply = handle(ref, msg)
        else:
            reply = handle(ref, msg)
        print(json.dumps(reply), flush=True)
    if mode == "ignore-stop":
        time.sleep(600)
""")


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a container's init may not reap at once)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def conform(tmp_path: Path, mode: str, *extra: str, cases=CASES, wait=True):
    """Run ``lite-llm conform`` on a fake harness; (process or result, pids file, TMPDIR, report path)."""
    fake = tmp_path / "fake.py"
    fake.write_text(FAKE)
    pids = tmp_path / "pids.txt"
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    report = tmp_path / "report.json"
    impl = f"cmd:{sys.executable} {fake} {pids} {mode} {BAD}"
    args = [sys.executable, "-m", "lite_llm.cli", "conform", "--impl", impl, "--json", str(report),
            *(x for c in cases for x in ("--case", c)), *extra]
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    if not wait:
        # SIGINT back to its default in the child: a test run started in the background (`cmd &`) inherits SIGINT
        # ignored, and Python then installs no KeyboardInterrupt handler; a user's Ctrl-C always has one.
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)), pids, tmp, \
            report
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120), pids, tmp, report


def statuses(report: Path) -> dict[str, str]:
    (run,) = json.loads(report.read_text())["runs"]
    return {c["id"]: c["status"] for c in run["cases"]}


def details(report: Path) -> dict[str, str]:
    (run,) = json.loads(report.read_text())["runs"]
    return {c["id"]: c["detail"] for c in run["cases"]}


def assert_nothing_left(pids: Path, tmp: Path, started: int | None = None) -> None:
    ids = [int(x) for x in pids.read_text().split()] if pids.exists() else []
    if started is not None:
        assert len(ids) == started, ids
    deadline = time.monotonic() + 3              # SIGKILL is immediate; allow the kernel a moment to reap
    while any(alive(p) for p in ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in ids if alive(p)] == [], "a harness process outlived lite-llm conform"
    assert sorted(p.name for p in tmp.iterdir()) == [], "a temporary directory outlived lite-llm conform"


@pytest.mark.parametrize("mode, words", [
    ("hang", "no reply within 2 s"),                     # CONF-4.9: killed after --timeout, restarted
    ("crash", "closed its stdout"),                     # a crash mid-run: restarted
    ("garbage", "not a JSON line"),                     # a log line on stdout: the stream is resynchronised
])
def test_a_broken_case_is_errored_and_the_harness_restarted(tmp_path, mode, words):
    t0 = time.monotonic()
    res, pids, tmp, report = conform(tmp_path, mode, "--timeout", "2")
    took = time.monotonic() - t0
    assert res.returncode == 1, res.stderr
    assert took < 20, f"{mode}: {took:.1f} s"
    assert statuses(report) == {CASES[0]: "pass", BAD: "error", CASES[2]: "pass"}
    assert words in details(report)[BAD]
    rerun = json.loads(report.read_text())["runs"][0]["cases"][1]["rerun"]
    assert "--timeout 2" in rerun and rerun.endswith(f"--case {BAD}")          # CONF-5.8: reruns exactly
    assert_nothing_left(pids, tmp, started=2)


def test_an_errored_reply_keeps_the_same_process(tmp_path):
    """CONF-4.5, CONF-4.9: ``errored`` is a well-formed reply: the case errors, the harness serves the next one."""
    res, pids, tmp, report = conform(tmp_path, "errored", "--timeout", "5")
    assert res.returncode == 1, res.stderr
    assert statuses(report) == {CASES[0]: "pass", BAD: "error", CASES[2]: "pass"}
    assert "out of memory" in details(report)[BAD]
    assert_nothing_left(pids, tmp, started=1)


def test_a_harness_that_always_crashes_is_given_up_on(tmp_path):
    cases = ("routing/op/level-seed", "routing/op/logits-h1-w1", "routing/op/logits-h1-w2", "routing/op/logits-h2-w1",
             "routing/op/mix64")
    t0 = time.monotonic()
    res, pids, tmp, report = conform(tmp_path, "crash-always", "--timeout", "2", cases=cases)
    assert res.returncode == 1 and time.monotonic() - t0 < 20
    st, det = statuses(report), details(report)
    assert set(st.values()) == {"error"}
    assert "gave up" in det["routing/op/mix64"] and "gave up" in det["routing/op/logits-h2-w1"]
    assert_nothing_left(pids, tmp, started=3)                        # the first start and two restarts


def test_a_child_of_a_hanging_harness_is_killed_with_it(tmp_path):
    res, pids, tmp, report = conform(tmp_path, "child", "--timeout", "2")
    assert res.returncode == 1, res.stderr
    assert statuses(report)[BAD] == "error"
    assert_nothing_left(pids, tmp, started=4)                        # two harnesses, each with a child


@pytest.mark.parametrize("mode, words", [("hang-start", "no reply within 2 s"), ("die-start", "closed its stdout")])
def test_a_harness_that_does_not_start_is_rejected_without_leaks(tmp_path, mode, words):
    t0 = time.monotonic()
    res, pids, tmp, report = conform(tmp_path, mode, "--start-timeout", "2")
    assert res.returncode == 2 and time.monotonic() - t0 < 15
    (line,) = res.stderr.strip().splitlines()                       # one line, no traceback
    assert "did not start" in line and words in line
    assert not report.exists()
    assert_nothing_left(pids, tmp, started=1)


def test_a_harness_that_ignores_stop_is_killed(tmp_path):
    """CONF-4.6: after ``stop`` and the end of its input, a harness gets min(10 s, --timeout) to exit."""
    t0 = time.monotonic()
    res, pids, tmp, report = conform(tmp_path, "ignore-stop", "--timeout", "2")
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 15
    assert set(statuses(report).values()) == {"pass"}
    assert_nothing_left(pids, tmp, started=1)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_interrupting_conform_kills_the_harness(tmp_path, sig, status):
    """CONF-4.10: Ctrl-C (or SIGTERM) while a harness hangs: conform ends at once and leaves nothing behind."""
    proc, pids, tmp, _ = conform(tmp_path, "child", "--timeout", "60", wait=False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not pids.exists() or len(pids.read_text().split()) < 2):
        time.sleep(0.05)
    time.sleep(1.0)                                                   # the harness is now hanging on a case
    t0 = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status, err
    assert time.monotonic() - t0 < 5
    assert "Traceback" not in err
    assert_nothing_left(pids, tmp, started=2)
