"""Object storage for real (PLACE-4.10): a checkpoint served by an HTTP server with range requests on
loopback, with injected latency, 5xx answers, truncated bodies, reset connections and corrupt bytes,
and by an S3-compatible server (moto's server mode, through s3fs). Reads are retried; persistent
failures name the storage class, tier, expert and URL; generation stays bit-identical (PLACE-1.3)."""
from __future__ import annotations

import collections
import http.server
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

from lite_llm.optimized.storage.serve import generate_streaming, open_streaming  # noqa: E402
from lite_llm.optimized.storage.sources import CheckpointSource, RetryPolicy, StorageReadError  # noqa: E402
from lite_llm.reference.checkpoint import save_checkpoint  # noqa: E402
from lite_llm.spec.errors import CheckpointHashError  # noqa: E402
from tests.optimized.test_storage import NEW, PROMPT, assert_identical, expert_total, model  # noqa: E402

FAST = RetryPolicy(attempts=4, backoff=0.01)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET with ``Range: bytes=a-b`` (206) and HEAD; a range GET pops one fault from server.faults."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _file(self) -> Path | None:
        p = (self.server.root / self.path.lstrip("/")).resolve()
        return p if p.is_file() and self.server.root in p.parents else None

    def do_HEAD(self):
        p = self._file()
        if p is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(p.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        p = self._file()
        if p is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = p.read_bytes()
        rng = self.headers.get("Range")
        status, body = 200, data
        if rng:
            a, b = rng.split("=")[1].split("-")
            a, b = int(a), (int(b) if b else len(data) - 1)
            status, body = 206, data[a:b + 1]
            fault = self.server.faults.popleft() if self.server.faults else None
            self.server.served.append(fault)
            if fault == "latency":
                time.sleep(0.05)
            elif fault == "hang":                    # a peer that goes silent (bounded, so the test ends)
                time.sleep(3.0)
            elif fault == "5xx":
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            elif fault == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            elif fault == "corrupt":
                body = bytes([body[0] ^ 1]) + body[1:]
            elif fault == "truncate":
                self.send_response(206)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {a}-{a + len(body) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_ckpt(tmp_path_factory):
    cfg, w = model()
    root = tmp_path_factory.mktemp("http")
    save_checkpoint(root / "ck", cfg, w)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.daemon_threads = True
    srv.root = root.resolve()
    srv.faults = collections.deque()
    srv.served = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/ck"
    srv.shutdown()
    srv.server_close()


def test_generation_over_http_is_bit_identical(http_ckpt):
    """PLACE-1.3 over HTTP range requests, host cache at 10% of expert bytes."""
    srv, url = http_ckpt
    cfg, _ = model()
    sm = open_streaming(url, cache_host=int(0.1 * expert_total(cfg)), retry=FAST)
    try:
        assert sm.store.source.storage_class == "object"
        assert_identical(generate_streaming(sm, PROMPT, NEW))
        assert sm.store.sync_metrics().by_name("object").bytes_moved > 0
    finally:
        sm.close()


@pytest.mark.parametrize("faults", [["latency"], ["5xx", "5xx"], ["truncate"], ["reset"], ["corrupt"],
                                    ["5xx", "reset", "truncate"]])
def test_transient_faults_are_retried(http_ckpt, faults):
    """PLACE-4.10: latency, 5xx, truncated bodies, resets and corrupt bytes: retried, then the right bytes."""
    srv, url = http_ckpt
    src = CheckpointSource(url, retry=FAST)
    unit = src.units.unit(1, 2, 0, 1)
    good = src.read_unit(unit)
    srv.faults.extend(faults)
    assert src.read_unit(unit) == good
    assert not srv.faults
    # a reset of a reused keep-alive connection may be retried inside aiohttp itself, so it is not counted
    assert sum(f not in ("latency", "reset") for f in faults) <= src.counters.retries <= len(faults)


@pytest.mark.parametrize("fault,error", [("5xx", StorageReadError), ("reset", StorageReadError),
                                         ("corrupt", CheckpointHashError)])
def test_persistent_faults_fail_naming_tier_expert_and_url(http_ckpt, fault, error):
    srv, url = http_ckpt
    src = CheckpointSource(url, retry=RetryPolicy(attempts=3, backoff=0.001))
    srv.faults.extend([fault] * 12)              # aiohttp may retry a reset itself: enough for every try
    with pytest.raises(error) as e:
        src.read_unit(src.units.unit(0, 1, 2, 1))
    srv.faults.clear()
    msg = str(e.value)
    assert "object storage" in msg and "tier tier_1 layer 0 expert (g=2, e=1)" in msg
    assert url in msg and "3 attempt" in msg


def test_a_hung_peer_fails_the_read_in_bounded_time(http_ckpt):
    """PLACE-4.10: a server that stops answering costs read_timeout per try, then the read fails naming the
    expert and the URL; nothing waits for aiohttp's five-minute default."""
    srv, url = http_ckpt
    src = CheckpointSource(url, retry=RetryPolicy(attempts=2, backoff=0.001, read_timeout=0.5))
    srv.faults.extend(["hang"] * 4)
    t0 = time.monotonic()
    with pytest.raises(StorageReadError) as e:
        src.read_unit(src.units.unit(0, 1, 2, 1))
    took = time.monotonic() - t0
    srv.faults.clear()
    assert took < 2.5, took                       # two tries of 0.5 s, not the 3 s the peer sleeps, twice
    assert url in str(e.value) and "2 attempt" in str(e.value) and "Timeout" in str(e.value)


def test_missing_checkpoint_url_is_named(http_ckpt):
    srv, url = http_ckpt
    from lite_llm.spec.errors import CheckpointMissingError
    with pytest.raises(CheckpointMissingError, match="manifest"):
        CheckpointSource(url + "-nothing", retry=FAST)


def test_s3_server_serves_the_checkpoint(tmp_path):
    """A real S3-compatible server (moto) on loopback, reached through s3fs: bit-identical generation."""
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    cfg, w = model()
    save_checkpoint(tmp_path / "ck", cfg, w)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                                                         "region_name": "us-east-1"},
                "skip_instance_cache": True}
        boto3 = pytest.importorskip("boto3")
        boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="ckpts")
        fs = s3fs.S3FileSystem(**opts)
        for f in (tmp_path / "ck").iterdir():
            fs.put_file(str(f), f"ckpts/ck/{f.name}")
        sm = open_streaming("s3://ckpts/ck", cache_host=int(0.05 * expert_total(cfg)), storage_options=opts,
                            retry=FAST)
        try:
            assert_identical(generate_streaming(sm, PROMPT, NEW))
            m = sm.store.sync_metrics()
            assert m.by_name("object").bytes_moved > 0 and m.by_name("host").misses > 0
        finally:
            sm.close()
    finally:
        server.stop()


def test_cli_generate_from_a_url(http_ckpt, capsys):
    """``lite-llm generate --checkpoint http://...``: the streaming path is chosen for a URL (PLACE-1.3)."""
    from lite_llm.cli import main
    from tests.optimized.test_storage import baseline

    srv, url = http_ckpt
    assert main(["generate", "--prompt", ",".join(map(str, PROMPT)), "--max-new", str(NEW), "--checkpoint", url,
                 "--cache-host", "10%"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == ",".join(map(str, baseline()[0])) and "object" in out.err
    assert main(["generate", "--prompt", "1", "--checkpoint", url + "-missing"]) == 2
