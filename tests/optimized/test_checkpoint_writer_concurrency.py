"""The optimized (training) checkpoint writer under concurrency, with real processes: CKPT-4.6 (writer lock,
removed on release), CKPT-4.8 (of several saves into one directory exactly one succeeds, the others
E_CKPT_EXISTS), TRAIN-4.2 (its checkpoints are chapter 8's, so they verify)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SAVE = textwrap.dedent("""
    import sys, time
    from lite_llm.optimized.init import init_model_weights
    from lite_llm.optimized.train.checkpoint_writer import save_checkpoint
    from lite_llm.spec.configs import resolve_config
    from lite_llm.spec.errors import CheckpointError
    cfg = resolve_config("tiny")
    w = init_model_weights(cfg, int(sys.argv[2]))
    while time.time() < float(sys.argv[3]):          # start together
        time.sleep(0.005)
    try:
        save_checkpoint(sys.argv[1], cfg, w)
        print("saved")
    except CheckpointError as e:
        print(e.code)
""")


def test_concurrent_saves_into_one_directory_exactly_one_wins(tmp_path):
    import time

    from lite_llm.reference.checkpoint import LOCK, verify_checkpoint

    target = tmp_path / "ck"
    start = time.time() + 4.0
    procs = [subprocess.Popen([sys.executable, "-c", SAVE, str(target), str(seed), str(start)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in range(4)]
    outs = [p.communicate(timeout=240) for p in procs]
    results = [o.strip().splitlines()[-1] if o.strip() else e[-500:] for o, e in outs]
    print(results)
    assert sorted(results) == ["E_CKPT_EXISTS"] * 3 + ["saved"], results
    assert verify_checkpoint(target).ok
    assert not (target / LOCK).exists()                          # removed by its holder (CKPT-4.6)
    files = sorted(p.name for p in target.iterdir())
    assert len(files) == 1 + 1 + 3                               # manifest, dense and 3 tier shards: no orphan
