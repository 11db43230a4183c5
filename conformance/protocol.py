"""The harness's end of the JSON-lines protocol (CONF-4.8): serve any in-process adapter.

``python -m lite_llm.conformance.protocol reference`` (or ``optimized``, ``module:attr``) speaks the
protocol on stdin/stdout; it is a template for a harness written in Python and lets the tests drive
the reference through ``cmd:``. The runner's end (``--impl cmd:COMMAND``) is :mod:`.harness`.

What a harness can rely on (CONF-4.11): the request's ``dtype`` is how to read an input's bytes (it
wins over the ``.npy`` header: ``bfloat16`` is stored as ``<u2``); ``bool`` is one byte, 0 or 1; an
error case comes with ``"outputs": {}``; ``stop`` gets no reply. The runner may kill the process
and start a new one between any two cases (CONF-4.9), so nothing here keeps state across cases, and
a failure inside one case is answered ``errored`` rather than ending the process.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from lite_llm.spec.adapter import Request

from .adapters import rejection_code, to_numpy
from .tensors import DTYPES, dtype_name, npy_bytes


# ---------------------------------------------------------------------------------------------
# The harness end: serve any in-process adapter over the protocol.

def read_input(d: dict):
    """A run message's input as the in-process adapter wants it: an array (from the raw bytes at
    offset, as a C harness reads them) or a directory Path."""
    if "dir" in d:
        return Path(d["dir"])
    with open(d["path"], "rb") as f:
        f.seek(d["offset"])
        raw = f.read(d["nbytes"])
    return np.frombuffer(raw, dtype=DTYPES[d["dtype"]]).reshape(d["shape"]).copy()


def handle(adapter, msg: dict) -> dict:
    """The reply to one run message."""
    inputs = {n: read_input(d) for n, d in msg["inputs"].items()}
    dtypes = {n: d["dtype"] for n, d in msg["inputs"].items() if "dtype" in d}
    outs = {n: (d["dtype"], tuple(d.get("shape") or ())) for n, d in msg["outputs"].items()}
    req = Request(msg["case"], msg["operation"], msg["config"], msg["params"], inputs, dtypes, outs)
    ops = getattr(adapter, "operations", None)
    if ops is not None and msg["operation"] not in ops:
        return {"seq": msg["seq"], "skipped": {"reason": f"operation {msg['operation']} not offered"}}
    try:
        got = adapter.run(req)
    except NotImplementedError as e:
        return {"seq": msg["seq"], "skipped": {"reason": str(e)}}
    except Exception as e:  # noqa: BLE001
        code = rejection_code(e)
        if code is None:
            return {"seq": msg["seq"], "errored": {"message": f"{type(e).__name__}: {e}"}}
        return {"seq": msg["seq"], "result": {"error": {"code": code, "message": str(e)}}}
    values, extra = {}, {}
    for name, v in got.items():
        if name in msg["outputs"]:
            Path(msg["outputs"][name]["path"]).write_bytes(npy_bytes(to_numpy(v)))
        elif isinstance(v, (np.ndarray,)) or hasattr(v, "detach"):
            path = Path(msg["out_dir"]) / f"{name}.npy"
            a = to_numpy(v)
            path.write_bytes(npy_bytes(a))
            extra[name] = {"path": str(path), "dtype": dtype_name(a), "shape": list(a.shape)}
        else:
            from .compare import json_value

            values[name] = json_value(v)
    return {"seq": msg["seq"], "result": {"outputs": extra, "values": values}}


def serve(adapter, stdin=None, stdout=None) -> None:
    """Answer the protocol's messages on stdin/stdout until ``stop`` or end of input."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    for line in stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg.get("cmd") == "start":
            ops = getattr(adapter, "operations", None)
            info = {"name": str(getattr(adapter, "name", type(adapter).__name__)), "language": "python"}
            if ops is not None:
                info["operations"] = sorted(ops)
            reply = {"ok": True, "implementation": info}
        elif msg.get("cmd") == "stop":
            return                                  # no reply to stop (CONF-4.6)
        else:
            try:
                reply = handle(adapter, msg)
            except Exception as e:  # noqa: BLE001 - a bad input file, say: errored, and serve the next case
                reply = {"seq": msg.get("seq"), "errored": {"message": f"{type(e).__name__}: {e}"}}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def main(argv=None) -> int:
    import argparse

    from .implementations import load_adapter

    p = argparse.ArgumentParser(prog="python -m lite_llm.conformance.protocol",
                                description="Serve an in-process adapter over the conformance JSON-lines protocol.")
    p.add_argument("impl", help="reference | optimized | module:attr")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    serve(load_adapter(a.impl, a.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
