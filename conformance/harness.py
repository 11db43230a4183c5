"""The runner's end of the JSON-lines protocol (CONF-4.1 .. CONF-4.7, CONF-4.9 .. CONF-4.11): ``--impl cmd:COMMAND``.

``CommandAdapter`` starts the harness, sends ``start``, one ``run`` per case and ``stop``, and turns
each reply into outputs or a rejection. Tensors travel as files: each input names a ``.npy`` file
with the dtype, the shape and the byte ``offset`` and ``nbytes`` of its raw little-endian data, so a
C harness can ``fseek``/``fread`` without parsing the header; each output names a path to write raw
bytes (or a ``.npy`` file) to. The harness's end, for Python adapters, is :mod:`.protocol`.

Faults (CONF-4.9, CONF-4.10): the harness runs in its own process group. A case that gets no reply
within ``timeout_s``, a reply that breaks the protocol, or a harness that exits makes that case
*errored*; the whole process group is killed and a fresh harness is started (``start`` again,
within ``start_timeout_s``) for the next case. After ``max_failures`` such failures in a row the
adapter stops restarting and every later case is errored at once. ``close()`` (and, as a last
resort, an ``atexit`` hook) kills the group and removes the temporary directory, so no process and
no ``lite-llm-harness-*`` directory outlives the run.
"""
from __future__ import annotations

import atexit
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
REPLY_TIMEOUT_S = 60.0        # CONF-4.7: silence this long on one case errors it (``--timeout``)
START_TIMEOUT_S = 60.0        # CONF-4.9: the start reply must come this soon (``--start-timeout``)
STOP_TIMEOUT_S = 10.0         # CONF-4.6: a harness still running this long after ``stop`` is killed
MAX_FAILURES = 3              # CONF-4.9: consecutive harness failures before the runner gives up


class ProtocolError(RuntimeError):
    """The harness broke the protocol (no reply, a bad reply, it exited); the case is *errored*."""


class HarnessStartError(RuntimeError):
    """The harness could not be started: it refused, crashed, or gave no start reply in time."""


_LIVE: set = set()                 # adapters not closed yet (strong references: a forgotten one is still killed)


@atexit.register
def _kill_all() -> None:
    """The last resort of CONF-4.10: no harness process and no temporary directory outlives the runner."""
    for adapter in list(_LIVE):
        adapter.kill()
        shutil.rmtree(adapter.tmp, ignore_errors=True)
        _LIVE.discard(adapter)


def tensor_descriptor(path: Path, dtype: str) -> dict:
    """The run message's description of a .npy input: dtype, shape, data offset and size (CONF-4.3)."""
    arr, offset = parse_npy(Path(path).read_bytes(), str(path))
    return {"path": str(Path(path).resolve()), "dtype": dtype, "shape": list(arr.shape), "offset": offset,
            "nbytes": int(arr.nbytes)}


class _Process:
    """One run of the harness command, in its own process group, with its stdout read by a thread."""

    def __init__(self, command: str):
        self.proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        self.stderr_tail: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _pump(self) -> None:
        try:
            for line in self.proc.stdout:
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        self.lines.put(None)

    def _drain_stderr(self) -> None:
        try:
            for line in self.proc.stderr:
                self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-20:]
        except (OSError, ValueError):
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (the shell, the harness and anything it started)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:       # pragma: no cover - SIGKILL is not ignorable
            pass
        try:
            self.proc.stdin.close()                 # stdout/stderr end at EOF in their reader threads
        except (OSError, ValueError):
            pass

    def stop(self, grace_s: float) -> None:
        """Send ``stop`` (no reply is expected), close stdin, wait ``grace_s`` seconds, then kill the group."""
        if self.alive():
            try:
                self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            finally:
                self.kill()                         # also on Ctrl-C while waiting
        self.kill()                                 # whatever the harness left behind in its group


class CommandAdapter:
    """An implementation in another process, speaking JSON lines on stdin/stdout (CONF-4)."""

    def __init__(self, command: str, timeout_s: float = REPLY_TIMEOUT_S, stop_timeout_s: float = STOP_TIMEOUT_S,
                 start_timeout_s: float = START_TIMEOUT_S, max_failures: int = MAX_FAILURES):
        self.command = command
        self.timeout_s = timeout_s                  # CONF-4.7: silence this long on one request is a failure
        self.start_timeout_s = start_timeout_s      # CONF-4.9: the start reply must come within this
        self.stop_timeout_s = stop_timeout_s        # CONF-4.6: a harness that does not exit is killed
        self.max_failures = max_failures            # CONF-4.9: give up after this many failures in a row
        self.seq = 0
        self.starts = 0                             # how many processes were started (1 + restarts)
        self.failures = 0                           # harness failures in a row (reset by a good reply)
        self.last_failure = ""
        self.current: _Process | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="lite-llm-harness-"))
        _LIVE.add(self)
        try:
            info = self._start()
        except BaseException:
            self.close()
            raise
        self.name = str(info.get("name") or command)
        if info.get("operations") is not None:
            self.operations = set(info["operations"])

    # -- the process -------------------------------------------------------------------------------

    @property
    def proc(self) -> subprocess.Popen | None:
        """The current harness process (the last one, once it ended)."""
        return self.current.proc if self.current else None

    @property
    def stderr_tail(self) -> list[str]:
        return self.current.stderr_tail if self.current else []

    def _start(self) -> dict:
        """Start a fresh harness process and exchange ``start`` (CONF-4.2); its ``implementation`` info."""
        if self.current is not None:
            self.current.kill()
        self.current = _Process(self.command)
        self.starts += 1
        try:
            reply = self._ask({"cmd": "start", "protocol": PROTOCOL, "spec_version": SPEC_VERSION},
                              self.start_timeout_s)
        except ProtocolError as e:
            self.current.kill()
            raise HarnessStartError(f"harness {self.command!r} did not start: {e}") from None
        if not reply.get("ok"):
            self.current.kill()
            raise HarnessStartError(f"harness {self.command!r} refused to start: {reply.get('message', reply)}"
                                    f"{self._tail()}")
        return reply.get("implementation") or {}

    def kill(self) -> None:
        if self.current is not None:
            self.current.kill()

    def _ask(self, msg: dict, timeout_s: float) -> dict:
        cur = self.current
        try:
            cur.proc.stdin.write(json.dumps(msg) + "\n")
            cur.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise ProtocolError(f"the harness exited (status {cur.proc.poll()}){self._tail()}") from None
        try:
            line = cur.lines.get(timeout=timeout_s)
        except queue.Empty:
            cur.kill()
            raise ProtocolError(f"no reply within {timeout_s:g} s (the harness was killed){self._tail()}") from None
        except BaseException:                       # Ctrl-C while waiting: never leave the harness behind
            cur.kill()
            raise
        if line is None:
            try:
                cur.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            raise ProtocolError(f"the harness closed its stdout (status {cur.proc.poll()}){self._tail()}")
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            raise ProtocolError(f"reply is not a JSON line: {line[:200]!r}") from None
        if not isinstance(reply, dict):
            raise ProtocolError(f"reply is not a JSON object: {line[:200]!r}")
        return reply

    def _tail(self) -> str:
        return ("; stderr: " + " | ".join(self.stderr_tail[-5:])) if self.stderr_tail else ""

    # -- one case ----------------------------------------------------------------------------------

    def run(self, req: Request) -> dict:
        """One case (CONF-4.3); a broken harness is killed and, for the next case, restarted (CONF-4.9)."""
        if self.failures >= self.max_failures:
            raise ProtocolError(f"not run: the harness failed {self.failures} times in a row, the runner gave up "
                                f"restarting it (last: {self.last_failure})")
        if self.current is None or not self.current.alive():
            try:
                self._start()
            except HarnessStartError as e:
                self._failed(str(e))
                raise ProtocolError(f"restarting the harness failed: {e}") from None
        self.seq += 1
        out_dir = self.tmp / str(self.seq)
        out_dir.mkdir()
        try:
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
            msg = {"cmd": "run", "seq": self.seq, "case": req.case_id, "operation": req.operation,
                   "config": req.config, "params": req.params, "inputs": inputs, "outputs": outputs,
                   "out_dir": str(out_dir)}
            try:
                reply = self._ask(msg, self.timeout_s)
                if reply.get("seq") != self.seq:
                    raise ProtocolError(f"reply for seq {reply.get('seq')!r}, expected {self.seq}: "
                                        f"{str(reply)[:200]}")
            except ProtocolError as e:
                # The stream can no longer be trusted (a timeout, a stray line, an exit): kill the
                # harness; the next case starts a fresh one (CONF-4.9).
                self.current.kill()
                self._failed(str(e))
                raise
            self.failures = 0                       # a well-formed reply, even ``errored``: the harness goes on
            return self._result(reply, outputs)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def _failed(self, why: str) -> None:
        self.failures += 1
        self.last_failure = why

    def _result(self, reply: dict, requested: dict) -> dict:
        """The outputs of a reply (CONF-4.5): a result, a rejection, skipped or errored."""
        if "skipped" in reply:
            raise NotImplementedError((reply["skipped"] or {}).get("reason", ""))
        if "errored" in reply:                      # a well-formed reply: the same process serves the next case
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
        """``stop`` the harness (CONF-4.6), kill what is left of its process group, remove the temporary files."""
        try:
            if self.current is not None:
                self.current.stop(self.stop_timeout_s)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            _LIVE.discard(self)

