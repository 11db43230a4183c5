"""Concurrent writers on one checkpoint, with real processes (CKPT-4.6 .. CKPT-4.8, CKPT-6.4, EXP-1.9).

Every writer is a separate ``lite-llm checkpoint`` process started against one directory. What must
hold whatever the interleaving: every writer that reports success (exit 0) is in the final manifest
(with the tier id it printed), the final checkpoint verifies, and of several ``init`` runs into one
directory exactly one succeeds. The same holds when some writers are killed with SIGKILL at random
moments: a dead holder's lock is released by the kernel, its lock file is ignored (CKPT-6.4) and
taken over by the next writer, and nothing half-written is ever visible.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A ``lite-llm`` process that imports everything first and then sleeps until a common start time, so
# that the writers' critical sections overlap as much as the machine allows.
CLI = """
import sys, time
from lite_llm.cli import main
import lite_llm.commands.checkpoint, lite_llm.reference.expand, lite_llm.reference.checkpoint
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
sys.exit(main(sys.argv[2:]))
"""
ADDED = re.compile(r"added tier (\w+) \(id (\d+),")


def start_all(argvs: list[list[str]], delay: float = 1.5) -> list[subprocess.Popen]:
    """One process per argument list, all released at the same moment ``delay`` seconds from now."""
    go = time.time() + delay
    return [subprocess.Popen([sys.executable, "-c", CLI, repr(go), *argv], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argvs]


def finish(procs) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        so, se = p.communicate(timeout=120)
        out.append((p.returncode, so, se))
    return out


def lite_llm(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, "0", *argv], cwd=ROOT, text=True, capture_output=True)


def init(d: Path, seed: int = 0) -> None:
    r = lite_llm("checkpoint", "init", "--config", "tiny", "--seed", str(seed), str(d))
    assert r.returncode == 0, r.stderr


def manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def assert_every_success_is_committed(d: Path, results, names) -> dict:
    """Exit 0 means the tier is in the final manifest, under the id it printed; the checkpoint verifies."""
    raw = manifest(d)
    ids = {t["name"]: t["id"] for t in raw["tiers"]}
    for (rc, so, se), name in zip(results, names):
        if rc == 0:
            m = ADDED.search(so)
            assert m and m.group(1) == name, so
            assert name in ids, f"{name} reported success ({so.strip()}) but the manifest lacks it: lost update"
            assert ids[name] == int(m.group(2)), f"{name} printed id {m.group(2)}, the manifest says {ids[name]}"
    v = lite_llm("checkpoint", "verify", str(d))
    assert v.returncode == 0, v.stdout + v.stderr
    return raw


def test_concurrent_expansions_lose_no_update(tmp_path):
    """CKPT-4.6, EXP-1.9: eight concurrent expansions of distinct tiers all succeed, each under its own id,
    and every one is in the final manifest (before the lock, 1 to 3 of them survived)."""
    d = tmp_path / "c"
    init(d)
    names = [f"extra{i}" for i in range(8)]
    results = finish(start_all([["checkpoint", "expand", str(d), "--tier", f"{n}:2:2:8", "--seed", str(i)]
                                for i, n in enumerate(names)]))
    raw = assert_every_success_is_committed(d, results, names)
    failed = [(n, rc, se.strip()) for (rc, _, se), n in zip(results, names) if rc != 0]
    assert not failed, f"writers that waited for the lock must succeed: {failed}"
    assert sorted(t["name"] for t in raw["tiers"][3:]) == names
    assert [t["id"] for t in raw["tiers"]] == list(range(11))
    assert not (d / ".lite-llm.lock").exists(), "the last writer removes the lock file (CKPT-4.6)"


def test_concurrent_inits_exactly_one_succeeds(tmp_path):
    """CKPT-4.4, CKPT-4.8: four concurrent inits into one directory: exactly one says it saved, the others
    are refused with E_CKPT_EXISTS, and the checkpoint is the winner's, without a stray file."""
    d = tmp_path / "c"
    seeds = [1, 2, 3, 4]
    results = finish(start_all([["checkpoint", "init", "--config", "tiny", "--seed", str(s), str(d)] for s in seeds]))
    winners = [s for (rc, _, _), s in zip(results, seeds) if rc == 0]
    assert len(winners) == 1, f"{len(winners)} inits reported success: {results}"
    for (rc, so, se), s in zip(results, seeds):
        if rc != 0:
            assert "E_CKPT_EXISTS" in se and "saved checkpoint" not in so, (rc, so, se)
    ref = tmp_path / "ref"
    init(ref, winners[0])
    assert (d / "manifest.json").read_bytes() == (ref / "manifest.json").read_bytes()
    assert sorted(p.name for p in d.iterdir()) == sorted(p.name for p in ref.iterdir())
    v = lite_llm("checkpoint", "verify", str(d))
    assert v.returncode == 0 and "note" not in v.stdout, v.stdout


def allowed_orphan(name: str, tiers: list[str]) -> bool:
    """What a killed or refused writer may leave: its temporary files (CKPT-4.1) and uncommitted shards."""
    return any(name.startswith((f".tier-{t}.", f"tier-{t}.")) for t in tiers) or name.startswith(".manifest.json.")


def test_killed_writers_lose_nothing_and_leave_nothing_half_written(tmp_path):
    """CKPT-4.6, CKPT-4.7, CKPT-6.4, EXP-1.4, EXP-1.9: eight concurrent expansions, three of them killed with
    SIGKILL, in two rounds: two the moment their shard file appears (inside the critical section, holding
    the lock), one at a random moment. Every success is in the final manifest under its printed id, every
    writer that was not killed succeeds (a dead holder never blocks the others), the checkpoint verifies
    with nothing but the victims' own orphans, and the next expansion takes over any stale lock file."""
    from lite_llm.reference.checkpoint import LOCK, read_manifest, verify_checkpoint

    rng = random.Random(20261202)
    killed_holding = 0
    for rnd in range(2):
        d = tmp_path / f"c{rnd}"
        init(d)
        names = [f"r{rnd}x{i}" for i in range(8)]
        delay = 1.5
        go = time.time() + delay
        procs = start_all([["checkpoint", "expand", str(d), "--tier", f"{n}:2:2:8", "--seed", str(i)]
                           for i, n in enumerate(names)], delay)
        victims = rng.sample(range(8), 3)
        in_act, timed, kill_at = victims[:2], victims[2], go + rng.uniform(0.0, 0.5)
        deadline = time.time() + 90
        while any(p.poll() is None for p in procs) and time.time() < deadline:
            files = os.listdir(d)
            for v in in_act:
                if procs[v].poll() is None and any(f.startswith((f".tier-{names[v]}.", f"tier-{names[v]}."))
                                                   for f in files):
                    os.kill(procs[v].pid, signal.SIGKILL)
            if time.time() >= kill_at and procs[timed].poll() is None:
                os.kill(procs[timed].pid, signal.SIGKILL)
            time.sleep(0.001)
        results = finish(procs)
        raw = assert_every_success_is_committed(d, results, names)
        survivors = [(names[i], rc, se.strip()) for i, (rc, _, se) in enumerate(results) if i not in victims]
        assert all(rc == 0 for _, rc, _ in survivors), survivors
        for i, (rc, _, _) in enumerate(results):
            assert rc == 0 or (i in victims and rc == -signal.SIGKILL), (names[i], rc)
        rep = verify_checkpoint(d)
        assert rep.ok, rep.problems
        assert all(allowed_orphan(o, [names[v] for v in victims]) for o in rep.orphans), rep.orphans
        committed = [t["name"] for t in raw["tiers"][3:]]
        killed_holding += sum(results[v][0] == -signal.SIGKILL and names[v] not in committed
                              and any(allowed_orphan(o, [names[v]]) for o in rep.orphans) for v in in_act)
        assert [t["id"] for t in raw["tiers"]] == list(range(3 + len(committed)))
        m = read_manifest(d)                    # the manifest is whole: it parses, validates and matches its config
        assert m.cfg.n_tiers == 3 + len(committed)
        r = lite_llm("checkpoint", "expand", str(d), "--tier", "after:2:2:8", "--seed", "9")
        assert r.returncode == 0 and f"(id {3 + len(committed)}," in r.stdout, r.stdout + r.stderr
        assert not (d / LOCK).exists()
    assert killed_holding >= 1, "no writer was killed inside its critical section: the test exercised too little"


HOLDER = """
import sys, time
from pathlib import Path
from lite_llm.reference.checkpoint import writer_lock
d = Path(sys.argv[1])
with writer_lock(d):
    (d / ".tier-half.0123.tmp").write_bytes(b"half a shard")     # a write in progress
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holder_releases_the_lock(tmp_path):
    """CKPT-4.6, CKPT-6.4: an expansion waits while another process holds the lock; when the holder is
    killed with SIGKILL, the kernel drops its lock, the waiting expansion proceeds and succeeds, and the
    holder's lock file and temporary file are notes at most, never problems."""
    from lite_llm.reference.checkpoint import LOCK, verify_checkpoint

    d = tmp_path / "c"
    init(d)
    before = (d / "manifest.json").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(d)], cwd=ROOT, text=True, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert (d / LOCK).exists()
        rep = verify_checkpoint(d)                          # CKPT-4.6: readers need no lock
        assert rep.ok and rep.orphans == (".tier-half.0123.tmp",), rep.orphans    # CKPT-6.4: the lock is no orphan
        waiter = start_all([["checkpoint", "expand", str(d), "--tier", "late:2:2:8", "--seed", "3"]], 0.0)[0]
        time.sleep(2.0)
        assert waiter.poll() is None, "the expansion did not wait for the lock"
        assert (d / "manifest.json").read_bytes() == before
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        (rc, so, se), = finish([waiter])
        assert rc == 0 and "added tier late (id 3," in so, so + se
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    rep = verify_checkpoint(d)
    assert rep.ok and rep.orphans == (".tier-half.0123.tmp",), rep.orphans
    assert not (d / LOCK).exists(), "the next writer takes the dead holder's lock file over and removes it"


# ---------------------------------------------------------------------------------------------
# The same rules through the API, in one process (the lock is per open file, so threads contend too)

def small(tmp_path, name="c"):
    from tests.helpers import save_small_checkpoint

    return save_small_checkpoint(tmp_path / name, 11)


def test_generation_is_the_manifest_sha256(tmp_path):
    """CKPT-4.7: the generation is the SHA-256 of the manifest file's bytes, as read and as written."""
    import hashlib

    from lite_llm.reference.checkpoint import read_manifest, save_checkpoint
    from lite_llm.reference.expand import expand_checkpoint
    from lite_llm.reference.weights import init_model_weights
    from tests.helpers import small_checkpoint_config

    cfg = small_checkpoint_config()
    m = save_checkpoint(tmp_path / "c", cfg, init_model_weights(cfg, 11))
    digest = hashlib.sha256((tmp_path / "c" / "manifest.json").read_bytes()).hexdigest()
    assert m.generation == read_manifest(tmp_path / "c").generation == digest
    from lite_llm.spec.config import TierConfig

    m2 = expand_checkpoint(tmp_path / "c", TierConfig("more", 2, 2, 4), 1, base=m)
    assert m2.generation == read_manifest(tmp_path / "c").generation != digest


def test_stale_base_is_refused_with_a_conflict_and_writes_nothing(tmp_path):
    """EXP-1.9, CKPT-4.7: an expansion planned against an older generation is refused with E_CKPT_CONFLICT
    before any file is written; planned against the current one, or with no base, it succeeds."""
    import pytest

    from lite_llm.reference.checkpoint import read_manifest
    from lite_llm.reference.expand import expand_checkpoint
    from lite_llm.spec.config import TierConfig
    from lite_llm.spec.errors import CheckpointConflictError

    d, _, _ = small(tmp_path)
    planned = read_manifest(d)
    expand_checkpoint(d, TierConfig("first", 2, 2, 4), 1)          # someone else's expansion lands first
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with pytest.raises(CheckpointConflictError) as e:
        expand_checkpoint(d, TierConfig("second", 2, 2, 4), 2, base=planned)
    assert e.value.code == "E_CKPT_CONFLICT" and e.value.clause == "CKPT-4.7"
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    with pytest.raises(CheckpointConflictError):
        expand_checkpoint(d, TierConfig("second", 2, 2, 4), 2, base=planned.generation)
    m = expand_checkpoint(d, TierConfig("second", 2, 2, 4), 2, base=read_manifest(d).generation)
    assert [t["name"] for t in m.tiers][-2:] == ["first", "second"] and m.tiers[-1]["id"] == 4


def test_a_writer_that_ignores_the_lock_causes_a_conflict_not_a_lost_update(tmp_path, monkeypatch):
    """CKPT-4.7: a manifest committed behind the lock's back between this writer's read and its commit
    makes it fail with E_CKPT_CONFLICT: the other manifest stays, the new shard is an orphan, no success."""
    import pytest

    from lite_llm.reference import expand as ex
    from lite_llm.reference.checkpoint import manifest_bytes, read_manifest, verify_checkpoint
    from lite_llm.spec.config import TierConfig
    from lite_llm.spec.errors import CheckpointConflictError

    d, _, _ = small(tmp_path)
    rogue = tmp_path / "rogue"
    import shutil

    shutil.copytree(d, rogue)
    ex.expand_checkpoint(rogue, TierConfig("rogue", 2, 2, 4), 7)
    real = ex.write_shard

    def write_then_overtaken(directory, stem, tensors):
        entry = real(directory, stem, tensors)
        for p in rogue.iterdir():                               # the rogue writer's shard and commit, unlocked
            if p.name != "manifest.json":
                shutil.copy(p, d / p.name)
        (d / "manifest.json").write_bytes((rogue / "manifest.json").read_bytes())
        return entry

    monkeypatch.setattr(ex, "write_shard", write_then_overtaken)
    with pytest.raises(CheckpointConflictError) as e:
        ex.expand_checkpoint(d, TierConfig("mine", 2, 2, 4), 8)
    assert "nothing was committed" in str(e.value)
    m = read_manifest(d)
    assert [t["name"] for t in m.tiers][-1] == "rogue"
    rep = verify_checkpoint(d)
    assert rep.ok and len(rep.orphans) == 1 and rep.orphans[0].startswith("tier-mine."), rep.orphans


def test_a_manifest_replaced_right_after_the_commit_is_a_conflict(tmp_path, monkeypatch):
    """CKPT-4.7: the read-back after the commit: a writer never reports success for a manifest that is no
    longer on disk when it reports."""
    import pytest

    from lite_llm.reference import checkpoint as ck
    from lite_llm.reference.expand import expand_checkpoint
    from lite_llm.spec.config import TierConfig
    from lite_llm.spec.errors import CheckpointConflictError

    d, _, _ = small(tmp_path)
    other = (d / "manifest.json").read_bytes()
    real = ck.write_file_atomic

    def commit_then_clobbered(path, data):
        real(path, data)
        if path.name == "manifest.json":
            path.write_bytes(other)                             # an unlocked writer's rename lands right after
    monkeypatch.setattr(ck, "write_file_atomic", commit_then_clobbered)
    with pytest.raises(CheckpointConflictError) as e:
        expand_checkpoint(d, TierConfig("mine", 2, 2, 4), 8)
    assert "this write is lost" in str(e.value)


def test_the_lock_serialises_writers_within_one_process_too(tmp_path):
    """CKPT-4.6, CKPT-4.8: while the writer lock is held, two saves into the directory (two threads) wait;
    once it is released, exactly one saves and the other is refused with E_CKPT_EXISTS."""
    import threading

    from lite_llm.reference.checkpoint import LOCK, save_checkpoint, verify_checkpoint, writer_lock
    from lite_llm.reference.weights import init_model_weights
    from lite_llm.spec.errors import CheckpointExistsError
    from tests.helpers import small_checkpoint_config

    cfg = small_checkpoint_config()
    d = tmp_path / "c"
    d.mkdir()
    outcome = []

    def save(seed):
        try:
            save_checkpoint(d, cfg, init_model_weights(cfg, seed))
            outcome.append("saved")
        except CheckpointExistsError as e:
            outcome.append(e.code)

    with writer_lock(d):
        threads = [threading.Thread(target=save, args=(s,)) for s in (3, 4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert all(t.is_alive() for t in threads) and outcome == [] and not (d / "manifest.json").exists()
    for t in threads:
        t.join(timeout=30)
    assert outcome == ["saved", "E_CKPT_EXISTS"]
    rep = verify_checkpoint(d)
    assert rep.ok and rep.orphans == () and not (d / LOCK).exists()
