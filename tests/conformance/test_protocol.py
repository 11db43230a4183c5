"""The JSON-lines protocol (CONF-4): both ends, every message against the schema, and the runner's
answers to harnesses that misbehave: one request and one reply per line (CONF-4.1), the start
message (CONF-4.2), run messages with byte offsets (CONF-4.3), output files (CONF-4.4), replies
(CONF-4.5), stop (CONF-4.6), protocol violations (CONF-4.7), restarts (CONF-4.9) and what a harness
may rely on (CONF-4.11)."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from lite_llm.conformance.adapters import close_adapter
from lite_llm.conformance.implementations import load_adapter
from lite_llm.conformance.case import load_cases
from lite_llm.conformance.harness import CommandAdapter, ProtocolError
from lite_llm.conformance.runner import run_suite

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "conformance" / "protocol.schema.json").read_text())
SOME = ("routing/op/mix64", "routing/op/quantize-limbs2", "routing/route/hidden-bfloat16", "routing/errors/shape-1d",
        "checkpoint/verify-reports-every-problem", "checkpoint/expand", "checkpoint/expand-errors/name-exists",
        "selection/budget-worked-3", "loss/aux-alpha")


@pytest.fixture(scope="module")
def cases():
    by_id = {c.id: c for c in load_cases()}
    return [by_id[i] for i in SOME]


def harness(tmp_path: Path, body: str) -> str:
    """A harness script: `body` handles one parsed message `msg` and returns the reply (or None)."""
    script = tmp_path / "harness.py"
    script.write_text(textwrap.dedent("""\
        import json, sys
        from lite_llm.conformance.implementations import load_adapter
        from lite_llm.conformance.protocol import handle
        ref = load_adapter("reference")
        def answer(msg):
        """) + textwrap.indent(textwrap.dedent(body), "    ") + textwrap.dedent("""
        for line in sys.stdin:
            msg = json.loads(line)
            if msg["cmd"] == "stop":
                break
            reply = answer(msg)
            if reply is not None:
                print(reply if isinstance(reply, str) else json.dumps(reply), flush=True)
        """))
    return f"cmd:{sys.executable} {script}"


def test_reference_served_over_the_protocol_passes(cases, tmp_path):
    log = tmp_path / "log.jsonl"
    impl = harness(tmp_path, f"""
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps({{"request": msg}}) + "\\n")
            reply = {{"ok": True, "implementation": {{"name": "served"}}}} if msg["cmd"] == "start" else handle(ref, msg)
            f.write(json.dumps({{"reply": reply}}) + "\\n")
        return reply
    """)
    adapter = load_adapter(impl)
    try:
        run = run_suite(adapter, cases, impl=impl)
    finally:
        close_adapter(adapter)
    assert [o.status for o in run.outcomes] == ["pass"] * len(cases), [o.detail for o in run.outcomes]
    requests = replies = 0
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        kind = "request" if "request" in entry else "reply"
        jsonschema.Draft202012Validator({**SCHEMA, "oneOf": [{"$ref": f"#/$defs/{kind}"}]}).validate(entry[kind])
        requests += kind == "request"
        replies += kind == "reply"
    assert requests == replies == len(cases) + 1
    with pytest.raises(jsonschema.ValidationError):             # the schema is not vacuous
        jsonschema.Draft202012Validator({**SCHEMA, "oneOf": [{"$ref": "#/$defs/request"}]}).validate(
            {"cmd": "run", "seq": 1})
    run_msgs = [json.loads(x)["request"] for x in log.read_text().splitlines() if '"request"' in x]
    tensor = run_msgs[1]["inputs"]["x"]
    raw = Path(tensor["path"]).read_bytes()[tensor["offset"]:]
    assert len(raw) == tensor["nbytes"] == 8 * tensor["shape"][0]      # C can fseek/fread it


def test_module_server_answers_start_and_stop(tmp_path):
    adapter = CommandAdapter(f"{sys.executable} -m lite_llm.conformance.protocol reference")
    assert adapter.name == "reference" and "route" in adapter.operations
    adapter.close()
    assert adapter.proc.returncode == 0


@pytest.mark.parametrize("body, status, words", [
    ('return "this is not json" if msg["cmd"] == "run" else {"ok": True}', "error", "not a JSON line"),
    ('return {"seq": msg.get("seq", 0) + 5, "result": {}} if msg["cmd"] == "run" else {"ok": True}', "error",
     "expected"),
    ('return {"seq": msg["seq"], "skipped": {"reason": "no mix64 here"}} if msg["cmd"] == "run" else {"ok": True}',
     "skip", "no mix64 here"),
    ('return {"seq": msg["seq"], "errored": {"message": "out of memory"}} if msg["cmd"] == "run" else {"ok": True}',
     "error", "out of memory"),
    ('return {"seq": msg["seq"], "result": {"error": {"code": "E_SHAPE", "message": "no"}}} if msg["cmd"] == "run" '
     'else {"ok": True}', "fail", "rejected the input with E_SHAPE"),
    ('return {"seq": msg["seq"], "result": {}} if msg["cmd"] == "run" else {"ok": True}', "fail", "is missing"),
    ('open(list(msg["outputs"].values())[0]["path"], "wb").write(b"123") if msg["cmd"] == "run" else None\n'
     'return {"seq": msg["seq"], "result": {}} if msg["cmd"] == "run" else {"ok": True}', "error", "not a whole number"),
    ('sys.exit(0) if msg["cmd"] == "run" else None\nreturn {"ok": True}', "error", "closed its stdout"),
])
def test_misbehaving_harness(body, status, words, cases, tmp_path):
    impl = harness(tmp_path, body)
    adapter = load_adapter(impl)
    try:
        run = run_suite(adapter, cases[:1], impl=impl)
    finally:
        close_adapter(adapter)
    (o,) = run.outcomes
    print(o.status, o.detail)
    assert o.status == status and words in o.detail


def test_an_error_case_passes_only_with_its_code(cases, tmp_path):
    err = [c for c in cases if c.id == "routing/errors/shape-1d"]
    for code, status in (("E_SHAPE", "pass"), ("E_DTYPE", "fail")):
        impl = harness(tmp_path, f'return {{"seq": msg["seq"], "result": {{"error": {{"code": "{code}"}}}}}} '
                                 f'if msg["cmd"] == "run" else {{"ok": True}}')
        adapter = load_adapter(impl)
        try:
            (o,) = run_suite(adapter, err, impl=impl).outcomes
        finally:
            close_adapter(adapter)
        assert o.status == status, o.detail


def test_harness_that_refuses_to_start(tmp_path):
    impl = harness(tmp_path, 'return {"ok": False, "message": "GPU not found"}')
    with pytest.raises(RuntimeError, match="GPU not found"):
        load_adapter(impl)


def test_silent_harness_times_out_and_is_killed_at_stop(cases, tmp_path):
    script = tmp_path / "silent.py"
    script.write_text("import sys, time, json\nprint(json.dumps({'ok': True}), flush=True)\n"
                      "sys.stdin.readline()\ntime.sleep(60)\n")
    adapter = CommandAdapter(f"{sys.executable} {script}", timeout_s=0.5, stop_timeout_s=0.5)
    (o,) = run_suite(adapter, cases[:1]).outcomes
    adapter.close()
    assert o.status == "error" and "no reply within" in o.detail
    assert adapter.proc.returncode is not None


def test_what_a_harness_may_rely_on(tmp_path):
    """CONF-4.11: the request's dtype wins over the .npy header (bfloat16 stored as <u2), bool is one
    byte per element, an error case arrives with ``"outputs": {}``; one process serves every case, and
    after a restart (CONF-4.9) ``seq`` keeps counting and every message still validates."""
    by_id = {c.id: c for c in load_cases()}
    chosen = [by_id[i] for i in ("routing/route/hidden-bfloat16", "routing/errors/dtype-bool", "routing/op/mix64",
                                 "loss/aux-alpha")]
    log = tmp_path / "log.jsonl"
    impl = harness(tmp_path, f"""
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps({{"request": msg}}) + "\\n")
        if msg["cmd"] == "run" and msg["case"] == "routing/op/mix64":
            sys.exit(1)                                    # crash: the runner starts a fresh harness
        return {{"ok": True, "implementation": {{"name": "x"}}}} if msg["cmd"] == "start" else handle(ref, msg)
    """)
    adapter = load_adapter(impl)
    try:
        run = run_suite(adapter, chosen, impl=impl)
    finally:
        close_adapter(adapter)
    assert [o.status for o in run.outcomes] == ["pass", "pass", "error", "pass"], [o.detail for o in run.outcomes]
    assert adapter.starts == 2
    requests = [json.loads(x)["request"] for x in log.read_text().splitlines()]
    validator = jsonschema.Draft202012Validator({**SCHEMA, "oneOf": [{"$ref": "#/$defs/request"}]})
    for r in requests:
        validator.validate(r)
    assert [r["cmd"] for r in requests] == ["start", "run", "run", "run", "start", "run"]
    assert [r["seq"] for r in requests if r["cmd"] == "run"] == [1, 2, 3, 4]
    bf16 = requests[1]["inputs"]["hidden"]
    raw = Path(bf16["path"]).read_bytes()
    assert bf16["dtype"] == "bfloat16" and b"'descr': '<u2'" in raw[:bf16["offset"]]
    assert bf16["nbytes"] == 2 * int(np.prod(bf16["shape"]))
    boolean = requests[2]["inputs"]["hidden"]
    assert boolean["dtype"] == "bool" and boolean["nbytes"] == int(np.prod(boolean["shape"]))
    data = Path(boolean["path"]).read_bytes()[boolean["offset"]:]
    assert set(data) <= {0, 1}
    assert requests[2]["outputs"] == {}                                 # an error case


def test_the_python_server_answers_errored_and_goes_on(tmp_path):
    """CONF-4.9: a failure inside one case is answered ``errored``; the same process serves the next case."""
    adapter = CommandAdapter(f"{sys.executable} -m lite_llm.conformance.protocol reference", timeout_s=30)
    try:
        from lite_llm.spec.adapter import Request

        # an input dtype the server cannot read: handle() fails before the adapter runs
        bad = Request("x", "mix64", None, {}, {"x": np.zeros(3, np.uint64)}, {"x": "no-such-dtype"})
        good = {c.id: c for c in load_cases()}["routing/op/mix64"]
        with pytest.raises(ProtocolError, match="the harness errored: KeyError"):
            adapter.run(bad)
        pid = adapter.proc.pid
        (o,) = run_suite(adapter, [good]).outcomes
        assert o.status == "pass" and adapter.proc.pid == pid and adapter.starts == 1
    finally:
        adapter.close()
