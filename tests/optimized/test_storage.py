"""Serving from storage (PLACE-4, PLACE-1.3): generation with experts streamed from a checkpoint on
disk is bit for bit the all-in-memory model's, whatever the cache sizes; the caches hold what the
policy says; experts are read by byte range and every block is checked (PLACE-4.10)."""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest
import torch

from lite_llm.optimized.generate import generate
from lite_llm.optimized.model import forward
from lite_llm.optimized.storage.policy import simulate
from lite_llm.optimized.storage.serve import generate_streaming, in_memory, open_streaming
from lite_llm.optimized.storage.sources import CheckpointSource, RetryPolicy, StorageReadError, write_expert_hashes
from lite_llm.optimized.storage.store import parse_bytes
from lite_llm.reference.checkpoint import save_checkpoint
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.errors import CheckpointHashError
from tests.helpers import make_config

PROMPT, NEW = [3, 1, 4], 3
FIELDS = ("tier", "group", "expert", "gate", "count", "tier_probs", "chosen_tiers", "group_probs", "chosen_groups",
          "expert_probs")


@lru_cache(maxsize=None)
def model():
    cfg = make_config(tiers=((2, 3), (3, 2), (1, 4)), k=(2, 1, 2), d=16, n_layers=2, vocab_size=32, max_seq_len=16)
    return cfg, init_model_weights(cfg, 4)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg, w = model()
    path = tmp_path_factory.mktemp("store") / "ck"
    save_checkpoint(path, cfg, w)
    return path


@lru_cache(maxsize=None)
def baseline():
    cfg, w = model()
    tiers = tuple(range(cfg.n_tiers))
    new = generate(cfg, w, PROMPT, NEW, tiers)
    outs = [forward(cfg, w, PROMPT + new[:i], tiers) for i in range(NEW)]
    return new, outs


def assert_identical(out):
    """Tokens, logits and routing records bit for bit the all-in-memory model's (PLACE-1.3)."""
    new, outs = baseline()
    assert out.tokens == new
    for i, o in enumerate(outs):
        assert torch.equal(o.logits.view(torch.int32), out.logits[i].view(torch.int32)), f"logits of step {i}"
        for a, b in zip(o.routes, out.routes[i]):
            for f in FIELDS:
                x, y = getattr(a, f), getattr(b, f)
                assert torch.equal(x.view(torch.int32) if x.is_floating_point() else x,
                                   y.view(torch.int32) if y.is_floating_point() else y), f


def expert_total(cfg):
    return sum(4 * 3 * cfg.d_model * t.d_ff * t.groups * t.experts_per_group for t in cfg.tiers) * cfg.n_layers


@pytest.mark.parametrize("fraction", [None, 0.0, 0.05, 0.25])
def test_generation_from_disk_is_bit_identical_at_every_cache_size(ckpt, fraction):
    """PLACE-1.3, PLACE-1.4, PLACE-4.8: the host cache at 100%, 0%, 5% and 25% of expert bytes."""
    cfg, _ = model()
    cap = None if fraction is None else int(fraction * expert_total(cfg))
    sm = open_streaming(ckpt, cache_host=cap)
    try:
        out = generate_streaming(sm, PROMPT, NEW)
        assert_identical(out)
        m = sm.store.sync_metrics()
        host, disk = m.by_name("host"), m.by_name("disk")
        assert host.hits + host.misses == sum(len(s) for s in sm.store.trace)
        assert disk.bytes_moved >= host.bytes_moved > 0
        if fraction is None:
            assert disk.bytes_moved <= expert_total(cfg)           # every unit read at most once
        # PLACE-4.8: the host cache holds exactly what the policy gives for its capacity
        offs = np.cumsum([0] + [len(s) for s in sm.store.trace])
        want = simulate(offs, [u for s in sm.store.trace for u in s], sm.store.sizes, sm.store.host_cap)
        assert set(sm.store.host) == set(np.flatnonzero(want["resident"][-1]).tolist())
        assert m.as_dict()["classes"][0]["name"] == "host" and "disk" in m.format()
    finally:
        sm.close()


@pytest.mark.parametrize("gpu,host", [(0.05, 0.25), (0.25, 0.05), (0.0, 1.0)])
def test_two_cache_levels_hold_what_the_policy_says(ckpt, gpu, host):
    """PLACE-4.8: the device cache (the CUDA level, here its CPU stand-in) above the host cache, each
    running the policy with its own capacity over the same steps; bits unchanged (PLACE-1.3)."""
    cfg, _ = model()
    total = expert_total(cfg)
    sm = open_streaming(ckpt, cache_gpu=int(gpu * total), cache_host=int(host * total), device_cache=True)
    try:
        assert_identical(generate_streaming(sm, PROMPT, NEW))
        st = sm.store
        offs = np.cumsum([0] + [len(s) for s in st.trace])
        units = [u for s in st.trace for u in s]
        for cache, cap in ((st.gpu, st.gpu_cap), (st.host, st.host_cap)):
            want = simulate(offs, units, st.sizes, cap)["resident"][-1]
            assert set(cache) == set(np.flatnonzero(want).tolist())
        m = st.sync_metrics()
        dev, hst = m.by_name("device"), m.by_name("host")
        assert hst.hits + hst.misses == dev.misses                    # the host serves the device's misses
        assert dev.hits + dev.misses == len(units)
    finally:
        sm.close()


def test_sidecar_hashes_and_memory_source(ckpt):
    """PLACE-4.10: with the sidecar no shard is read whole at open; a memory source gives the same bits.
    CKPT-6.5: verification does not call the sidecar an orphan."""
    from lite_llm.reference.checkpoint import verify_checkpoint

    cfg, w = model()
    write_expert_hashes(ckpt)
    rep = verify_checkpoint(ckpt)
    assert rep.ok and "expert-hashes.json" not in rep.orphans
    src = CheckpointSource(ckpt)
    tier_bytes = sum(e["bytes"] for e in src.raw["tiers"])
    assert src.hash_source == "sidecar" and src.counters.bytes < tier_bytes / 2
    sm = open_streaming(ckpt, cache_host=int(0.1 * expert_total(cfg)))
    try:
        assert sm.store.metrics.hash_source == "sidecar"
        assert_identical(generate_streaming(sm, PROMPT, NEW))
    finally:
        sm.close()
    sm = in_memory(cfg, w, cache_host=0, prefetch=False)
    try:
        assert_identical(generate_streaming(sm, PROMPT, NEW))
    finally:
        sm.close()
    (ckpt / "expert-hashes.json").unlink()


def test_an_expert_is_read_by_byte_range(ckpt):
    """PLACE-4.10: one expert costs its three slices (plus nothing else), and they are the weights."""
    cfg, w = model()
    src = CheckpointSource(ckpt)
    before = src.counters.bytes
    unit = src.units.unit(1, 1, 2, 1)
    blocks = src.read_unit(unit)
    assert src.counters.bytes - before == src.units.size(unit) == sum(len(b) for b in blocks)
    name = f"layers.1.tiers.{cfg.tiers[1].name}"
    for b, k in zip(blocks, ("w_gate", "w_up", "w_down")):
        assert np.frombuffer(b, "<f4").tobytes() == np.ascontiguousarray(w[f"{name}.{k}"][2, 1]).tobytes()
    src.close()


def test_a_corrupt_expert_fails_naming_tier_expert_and_file(tmp_path):
    """PLACE-4.10: a block whose bytes do not match its hash is retried, then refused; never used."""
    cfg, w = model()
    save_checkpoint(tmp_path / "ck", cfg, w)
    write_expert_hashes(tmp_path / "ck")                    # hashes of the good bytes
    src = CheckpointSource(tmp_path / "ck", retry=RetryPolicy(attempts=2, backoff=0.001))
    unit = src.units.unit(0, 2, 0, 3)
    h = src.headers[2]
    _, b, end = h.tensors[f"layers.0.tiers.{cfg.tiers[2].name}.w_up"]
    pos = h.data_start + b + 3 * (end - b) // 4 + 5
    path = tmp_path / "ck" / src.raw["tiers"][2]["file"]
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))
    src.readers[2].close()
    with pytest.raises(CheckpointHashError) as e:
        src.read_unit(unit)
    msg = str(e.value)
    assert "tier tier_2" in msg and "g=0, e=3" in msg and path.name in msg and "disk storage" in msg
    src.read_unit(src.units.unit(0, 2, 0, 2))               # its neighbour is intact
    # without the sidecar the open-time pass notices the shard's SHA-256 (CKPT-5.5)
    (tmp_path / "ck" / "expert-hashes.json").unlink()
    with pytest.raises(CheckpointHashError):
        CheckpointSource(tmp_path / "ck")


def test_a_failing_reader_is_retried_then_named(ckpt, monkeypatch):
    """PLACE-4.10: transient errors are retried with backoff; persistent ones name class, tier, expert, file."""
    src = CheckpointSource(ckpt, retry=RetryPolicy(attempts=3, backoff=0.001))
    reader = src.readers[0]
    real = reader.read
    fails = {"n": 2}

    def flaky(start, length):
        if fails["n"] > 0:
            fails["n"] -= 1
            raise OSError("injected I/O error")
        return real(start, length)

    monkeypatch.setattr(reader, "read", flaky)
    src.read_unit(src.units.unit(0, 0, 1, 1))
    assert src.counters.retries == 2
    fails["n"] = 99
    with pytest.raises(StorageReadError, match=r"disk storage: tier tier_0 layer 0 expert \(g=1, e=2\).*3 attempt"):
        src.read_unit(src.units.unit(0, 0, 1, 2))


def test_sizes_parse():
    assert parse_bytes("2GiB") == 2 << 30 and parse_bytes("512MiB") == 512 << 20 and parse_bytes("1000") == 1000
    assert parse_bytes("1.5k") == 1500
    for bad in ("lots", "-1", "5XB"):
        with pytest.raises(ValueError):
            parse_bytes(bad)


def test_manifest_damage_is_refused_before_serving(tmp_path):
    """CKPT-3.1 through the storage source: a broken manifest is E_CKPT_SCHEMA."""
    cfg, w = model()
    save_checkpoint(tmp_path / "ck", cfg, w)
    m = json.loads((tmp_path / "ck" / "manifest.json").read_text())
    m["schema_version"] = 9
    (tmp_path / "ck" / "manifest.json").write_text(json.dumps(m))
    from lite_llm.spec.errors import CheckpointSchemaError
    with pytest.raises(CheckpointSchemaError):
        CheckpointSource(tmp_path / "ck")


def test_cli_generate_streams_and_reports_metrics(ckpt, tmp_path, capsys):
    """``lite-llm generate --cache-host 5% --trace``: the reference's tokens, metrics on stderr, a trace file
    the policy reads back (PLACE-4.3)."""
    from lite_llm.cli import main
    from lite_llm.reference.cache_policy import load_trace

    base = ["generate", "--prompt", "3,1,4", "--max-new", "3", "--checkpoint", str(ckpt)]
    assert main(base) == 0
    want = capsys.readouterr().out.strip()
    assert main(base + ["--cache-host", "5%", "--trace", str(tmp_path / "t.npz")]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == want and "host" in out.err and "disk" in out.err
    tr = load_trace(tmp_path / "t.npz")
    assert tr.steps == 3 * model()[0].n_layers and tr.meta["source"] == "lite-llm generate"
    assert main(base + ["--impl", "optimized", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert ",".join(map(str, d["generated"])) == want and d["metrics"]["classes"][0]["name"] == "host"
    assert main(base + ["--cache-host", "lots"]) == 2


def test_bench_storage_quick_json_and_plot(tmp_path, capsys):
    """``lite-llm bench storage --quick --json``: every policy at every size; the spec's policy at or
    above LRU (PLACE-4.11); Belady an upper bound of all; a PNG plot."""
    pytest.importorskip("matplotlib")
    from lite_llm.benchmarks.bench_storage import run_belady, run_lfu, run_lru, run_spec, zipf_trace
    from lite_llm.cli import main

    assert main(["bench", "storage", "--quick", "--json", "--no-decode", "--plot", str(tmp_path / "p.png"),
                 "--save-traces", str(tmp_path / "tr")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["traces"]) == {"model", "zipf-1.1", "zipf-0.8"} and (tmp_path / "p.png").stat().st_size > 0
    for tr in res["traces"].values():
        assert [r["fraction"] for r in tr["rows"]] == [0.01, 0.02, 0.05, 0.1, 0.25, 0.5]
        for r in tr["rows"]:
            assert r["spec"] >= r["LRU"] and r["Belady"] >= max(r["spec"], r["LRU"], r["LFU"]) - 1e-12
    tr = zipf_trace(2, 8, 2, 60, 1.0)
    cap = int(tr.sizes.sum()) // 4
    assert 0 <= run_lru(tr, cap) <= run_belady(tr, cap) and run_spec(tr, cap) <= run_belady(tr, cap)
    assert run_lfu(tr, int(tr.sizes.sum())) == run_belady(tr, int(tr.sizes.sum()))     # everything fits
    assert main(["bench", "storage", "--quick", "--no-decode", "--trace", str(tmp_path / "tr" / "model.npz")]) == 0
    assert "trace model" in capsys.readouterr().out
    assert main(["bench", "storage", "--quick", "--trace", str(tmp_path / "missing.npz")]) == 2


def test_storage_refuses_every_damaged_checkpoint_with_the_loaders_code():
    """CKPT-5.4, PLACE-4.10: serving from storage refuses each damaged checkpoint of the committed vectors
    (checkpoint/load-errors/*) with the code the case expects, as the loader does; before they shared the
    header checks, the storage path called a header dtype of I8, U32 or I32 E_CKPT_HEADER instead of E_CKPT_MISMATCH."""
    import json

    from lite_llm.conformance.case import default_vectors_root
    from lite_llm.optimized.checkpoint import load_checkpoint

    def code(f):
        try:
            f()
        except Exception as e:  # noqa: BLE001 - the code is what is compared
            return getattr(e, "code", type(e).__name__)
        return None

    def serve(ck, p):
        src = CheckpointSource(ck, p.get("tierset"), verify=p.get("verify", True))
        try:
            src.dense()
        finally:
            src.close()

    seen = 0
    for d in sorted((default_vectors_root() / "checkpoint" / "load-errors").iterdir()):
        case = json.loads((d / "case.json").read_text())
        if case["operation"] != "load_checkpoint":
            continue
        ck, p, want = d / case["inputs"]["checkpoint"]["dir"], case["params"], case["expect"].get("error")
        loader = code(lambda: load_checkpoint(ck, p.get("tierset"), verify=p.get("verify", True)))
        storage = code(lambda: serve(ck, p))
        assert loader == storage == want, f"{d.name}: case {want}, loader {loader}, storage {storage}"
        seen += 1
    assert seen >= 25
