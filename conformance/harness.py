"""The runner's end of the JSON-lines protocol (CONF-4.1 .. CONF-4.7): ``--impl cmd:COMMAND``.

``CommandAdapter`` starts the harness, sends ``start``, one ``run`` per case and ``stop``, and turns
each reply into outputs or a rejection. Tensors travel as files: each input names a ``.npy`` file
with the dtype, the shape and the byte ``offset`` and ``nbytes`` of its raw little-endian data, so a
C harness can ``fseek``/``fread`` without parsing the header; each output names a path to write raw
bytes (or a ``.npy`` file) to. The harness's end, for Python adapters, is :mod:`.protocol`.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from lite_llm.spec.adapter import Request
from lite_llm.spec.config import SPEC_VERSION

from .adapters import Rejection
from .tensors import DTYPES, dtype_name, npy_bytes, parse_npy, read_output

PROTOCOL = 1
REPLY_TIMEOUT_S = 120.0       # a harness that stays silent this long on one case is declared broken


class ProtocolError(RuntimeError):
    """The harness broke the protocol (no reply, a bad reply, it exited); the case is *errored*."""


def tensor_descriptor(path: Path, dtype: str) -> dict:
    """The run message's description of a .npy input: dtype, shape, data offset and size (CONF-4.3)."""
    arr, offset = parse_npy(Path(path).read_bytes(), str(path))
    return {"path": str(Path(path).resolve()), "dtype": dtype, "shape": list(arr.shape), "offset": offset,
            "nbytes": int(arr.nbytes)}


class CommandAdapter:
    """An implementation in another process, speaking JSON lines on stdin/stdout (CONF-4)."""

    def __init__(self, command: str, timeout_s: float = REPLY_TIMEOUT_S, stop_timeout_s: float = 10.0):
        self.command = command
        self.timeout_s = timeout_s                  # CONF-4.7: silence this long on one request is a failure
        self.stop_timeout_s = stop_timeout_s        # CONF-4.6: a harness that does not exit is killed
        self.seq = 0
        self.stderr_tail: list[str] = []
        self.proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.tmp = Path(tempfile.mkdtemp(prefix="lite-llm-harness-"))
        reply = self._ask({"cmd": "start", "protocol": PROTOCOL, "spec_version": SPEC_VERSION})
        if not reply.get("ok"):
            self.close()
            raise RuntimeError(f"harness {command!r} refused to start: {reply.get('message', reply)}")
        info = reply.get("implementation") or {}
        self.name = str(info.get("name") or command)
        if info.get("operations") is not None:
            self.operations = set(info["operations"])

    @staticmethod
    def _pump(stream, q) -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-20:]

    def _ask(self, msg: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ProtocolError(f"the harness exited (status {self.proc.poll()}){self._tail()}") from None
        try:
            line = self.lines.get(timeout=self.timeout_s)
        except queue.Empty:
            raise ProtocolError(f"no reply within {self.timeout_s:.0f} s{self._tail()}") from None
        if line is None:
            raise ProtocolError(f"the harness closed its stdout (status {self.proc.poll()}){self._tail()}")
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            raise ProtocolError(f"reply is not a JSON line: {line[:200]!r}") from None
        if not isinstance(reply, dict):
            raise ProtocolError(f"reply is not a JSON object: {line[:200]!r}")
        return reply

    def _tail(self) -> str:
        return ("; stderr: " + " | ".join(self.stderr_tail[-5:])) if self.stderr_tail else ""

    def run(self, req: Request) -> dict:
        self.seq += 1
        out_dir = self.tmp / str(self.seq)
        out_dir.mkdir()
        inputs = {}
        for name, v in req.inputs.items():
            if isinstance(v, Path):
                inputs[name] = {"dir": str(v)}
                continue
            dtype = req.dtypes.get(name) or dtype_name(np.asarray(v))
            src = req.files.get(name)
            if src is None:                                     # an in-memory input (fuzz): write it out
                src = out_dir / f"in.{name}.npy"
                src.write_bytes(npy_bytes(np.asarray(v)))
            inputs[name] = tensor_descriptor(src, dtype)
        outputs = {n: {"path": str(out_dir / f"{n}.bin"), "dtype": dt, "shape": list(shape)}
                   for n, (dt, shape) in req.outputs.items()}
        msg = {"cmd": "run", "seq": self.seq, "case": req.case_id, "operation": req.operation, "config": req.config,
               "params": req.params, "inputs": inputs, "outputs": outputs, "out_dir": str(out_dir)}
        reply = self._ask(msg)
        try:
            return self._result(reply, outputs)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def _result(self, reply: dict, requested: dict) -> dict:
        if reply.get("seq") != self.seq:
            raise ProtocolError(f"reply for seq {reply.get('seq')!r}, expected {self.seq}: {str(reply)[:200]}")
        if "skipped" in reply:
            raise NotImplementedError((reply["skipped"] or {}).get("reason", ""))
        if "errored" in reply:
            raise ProtocolError(f"the harness errored: {(reply['errored'] or {}).get('message', '')}")
        res = reply.get("result")
        if not isinstance(res, dict):
            raise ProtocolError(f"a reply needs result, skipped or errored: {str(reply)[:200]}")
        if "error" in res:
            err = res["error"] or {}
            if not isinstance(err.get("code"), str):
                raise ProtocolError(f"an error result needs a code: {str(reply)[:200]}")
            raise Rejection(err["code"], str(err.get("message", "")))
        got: dict = dict(res.get("values") or {})
        described = {**requested, **{k: ({"path": v} if isinstance(v, str) else v)
                                     for k, v in (res.get("outputs") or {}).items()}}
        for name, d in described.items():
            spec = {**requested.get(name, {}), **d}
            path = Path(spec["path"])
            if not path.is_file():
                continue                                    # not written: reported as missing by the runner
            dtype = spec.get("dtype") or "float32"
            if dtype not in DTYPES:
                raise ProtocolError(f"output {name}: unknown dtype {dtype!r}")
            try:
                got[name] = read_output(path, dtype, spec.get("shape"))
            except ValueError as e:
                raise ProtocolError(f"output {name}: {e}") from None
        return got

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
                self.proc.wait(timeout=self.stop_timeout_s)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


