"""Routing records (spec chapter 13) and the ``lite-llm train`` / ``lite-llm routes`` commands end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lite_llm.cli import main
from lite_llm.optimized.model import forward
from lite_llm.optimized.train.forward import quantized_routers
from lite_llm.optimized.train.records import (Record, RecordBuilder, RecordError, config_sha256, diff_records,
                                              read_record, token_margin, write_record)
from lite_llm.reference.moe import routing_margins
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.clauses import all_clauses, referenced_ids
from lite_llm.spec.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
CFG = {"spec_version": "0.1", "d_model": 32, "n_layers": 2, "n_heads": 2, "vocab_size": 256, "max_seq_len": 32,
       "tiers": [{"name": "a", "groups": 2, "experts_per_group": 4, "d_ff": 16},
                 {"name": "b", "groups": 3, "experts_per_group": 2, "d_ff": 16}],
       "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "seed": 7}}


@pytest.fixture(scope="module")
def model():
    cfg = config_from_dict(CFG)
    return cfg, init_model_weights(cfg, 3)


def record_of(cfg, w, tok, source="serve"):
    b = RecordBuilder(cfg, (0, 1), cfg.router.seed, {"kind": source, "implementation": "lite_llm.optimized"})
    b.add(forward(cfg, w, tok, (0, 1)).routes, tok)
    return b.build()


def test_record_roundtrip_and_schema(tmp_path, model):
    """REC-1.1, REC-1.2, REC-1.3, REC-1.4: arrays, metadata, config hash; the same routes give the same bytes."""
    cfg, w = model
    tok = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    rec = record_of(cfg, w, tok)
    write_record(tmp_path / "a.routes", rec)
    write_record(tmp_path / "b.routes", record_of(cfg, w, tok))
    assert (tmp_path / "a.routes").read_bytes() == (tmp_path / "b.routes").read_bytes()      # REC-1.3: no time stamp
    back = read_record(tmp_path / "a.routes")
    assert back.tier.shape == (2, 16, 4) and back.tier.dtype == np.int32 and back.gate.dtype == np.float32
    assert back.meta["config_sha256"] == config_sha256(cfg) and back.meta["batch_shape"] == [2, 8]
    assert back.meta["tier_set"] == [0, 1] and back.meta["seed"] == 7
    text = json.dumps(CFG | {"spec_version": "0.1"}, sort_keys=True, separators=(",", ":"))
    assert len(config_sha256(cfg)) == 64 and config_sha256(cfg) != text
    np.testing.assert_array_equal(back.tokens, tok.numpy())


def test_reader_rejects_bad_files(tmp_path, model):
    """REC-1.5: not safetensors, wrong version, wrong shape: E_RECORD naming the file."""
    from safetensors.numpy import save

    cfg, w = model
    (tmp_path / "junk").write_bytes(b"not a record")
    with pytest.raises(RecordError, match="junk"):
        read_record(tmp_path / "junk")
    rec = record_of(cfg, w, torch.zeros((1, 4), dtype=torch.int64))
    write_record(tmp_path / "ok.routes", rec)
    meta = dict(rec.meta, version=2)
    arrays = {k: getattr(rec, k) for k in ("tier", "group", "expert", "gate", "count", "layers")}
    (tmp_path / "v2").write_bytes(save(arrays, metadata={"format": "lite-llm-routes", "record": json.dumps(meta)}))
    with pytest.raises(RecordError, match="version 2"):
        read_record(tmp_path / "v2")
    arrays["count"] = arrays["count"][:, :2].copy()
    (tmp_path / "shape").write_bytes(save(arrays, metadata={"format": "lite-llm-routes",
                                                            "record": json.dumps(rec.meta)}))
    with pytest.raises(RecordError, match="array count"):
        read_record(tmp_path / "shape")


def test_diff_first_difference_levels_and_downstream(model):
    """REC-2.1, REC-2.2, REC-2.3 on planted differences."""
    cfg, w = model
    tok = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(1))
    a = record_of(cfg, w, tok)
    assert diff_records(a, record_of(cfg, w, tok)).differing == 0
    b = Record(a.tier.copy(), a.group.copy(), a.expert.copy(), a.gate.copy(), a.count.copy(), a.layers, dict(a.meta),
               a.tokens)
    n = 8 + 3                                                    # sequence 1, position 3
    b.expert[0, n, 0] = (b.expert[0, n, 0] + 1) % 2              # level 3 at layer 0
    b.tier[1, 8 + 5, 0] = 1 - b.tier[1, 8 + 5, 0]                # level 1 at layer 1, downstream of (1, 3, 0)
    b.group[1, 2, 0] = (b.group[1, 2, 0] + 1) % 2                # level 2 at layer 1, sequence 0: not downstream
    b.gate[0, 0, 0] = np.nextafter(b.gate[0, 0, 0], np.float32(2))
    d = diff_records(a, b)
    assert d.differing == 3 and d.first == (2, 1)
    assert d.per_level == {"1": 1, "2": 1, "3": 1}
    assert d.downstream == 1 and d.primary.tolist() == [[2, 1], [11, 0]]
    assert d.gates_differing == 1 and d.gate_max_abs > 0
    c = Record(a.tier[:1], a.group[:1], a.expert[:1], a.gate[:1], a.count[:1], a.layers[:1], a.meta, a.tokens)
    with pytest.raises(RecordError):
        diff_records(a, c)


def test_margin_agrees_with_the_reference(model):
    """MODEL-4.5 via ``token_margin`` equals the reference's ``routing_margins`` (REC-2.3's check)."""
    cfg, w = model
    tok = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(2))
    out = forward(cfg, w, tok, (0, 1))
    qr = quantized_routers(cfg, {k: torch.from_numpy(np.array(v)) for k, v in w.items()}, (0, 1), "cpu")
    for layer in range(cfg.n_layers):
        r = out.routes[layer]
        x = out.router_inputs[layer]
        ours = [token_margin(qr[layer], x[n], r.tier[n].numpy(), r.group[n].numpy(), r.expert[n].numpy(),
                             int(r.count[n]), (0, 1)) for n in range(x.shape[0])]
        ref_rec = type("R", (), {k: v for k, v in r.to_numpy().items()})()
        ref_rec.tier_set = (0, 1)
        ref = routing_margins(cfg, w, layer, x.numpy(), ref_rec)
        np.testing.assert_allclose(ours, ref, rtol=1e-9)


def test_external_engine_export_and_diff(tmp_path, model):
    """REC-3.1: a file written with plain safetensors + json (no lite_llm code) diffs against ours."""
    from safetensors.numpy import save

    cfg, w = model
    tok = torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(3))
    ours = record_of(cfg, w, tok)
    write_record(tmp_path / "ours.routes", ours)
    meta = {"format": "lite-llm-routes", "version": 1, "config_sha256": ours.meta["config_sha256"], "config": CFG,
            "tier_set": [0, 1], "seed": 7, "source": {"kind": "external", "implementation": "my-engine"},
            "n_layers": 2, "n_tokens": 8, "k_slots": 4, "batch_shape": [1, 8]}
    arrays = {"tier": ours.tier.copy(), "group": ours.group.copy(), "expert": ours.expert.copy(),
              "gate": ours.gate.copy(), "count": ours.count.copy(), "layers": np.arange(2, dtype=np.int32),
              "tokens": tok.numpy().astype(np.int32)}
    arrays["expert"][1, 6, 1] = (arrays["expert"][1, 6, 1] + 1) % 2
    (tmp_path / "theirs.routes").write_bytes(save(arrays, metadata={"format": "lite-llm-routes",
                                                                    "record": json.dumps(meta)}))
    d = diff_records(read_record(tmp_path / "theirs.routes"), read_record(tmp_path / "ours.routes"))
    assert d.differing == 1 and d.first == (6, 1) and d.per_level["3"] == 1


def test_cli_train_expand_train_record_diff(tmp_path, capsys):
    """The README's path: train, expand, train the new tier, record routes from three sources, diff them."""
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(CFG))
    base, grow = tmp_path / "base", tmp_path / "grow"
    common = ["--batch", "2", "--seq", "16", "--eval-every", "2", "--eval-seqs", "4", "--corpus-bytes", str(1 << 20)]
    assert main(["train", "--config", str(cfg_file), "--out", str(base), "--steps", "3", "--json"] + common) == 0
    s = json.loads(capsys.readouterr().out)
    assert Path(s["final"], "manifest.json").is_file() and Path(base, "loss.png").is_file()
    assert main(["checkpoint", "expand", str(base / "final"), "--tier", "c:2:2:16", "--seed", "1"]) == 0
    assert main(["train", "--init", str(base / "final"), "--train-tiers", "c", "--out", str(grow), "--steps", "3",
                 "--save-every", "2"] + common) == 0
    out = capsys.readouterr().out
    assert "TierSet {a,b,c}" in out and "TierSet {a,b}" in out and (grow / "step-000002" / "manifest.json").is_file()
    ck = str(grow / "final")
    rec = ["routes", "record", "--checkpoint", ck, "--n-seqs", "2", "--seq", "16"]
    assert main(rec + ["--out", str(tmp_path / "s.routes")]) == 0
    assert main(rec + ["--out", str(tmp_path / "t.routes"), "--source", "train"]) == 0
    assert main(rec + ["--out", str(tmp_path / "r.routes"), "--source", "reference"]) == 0
    assert main(["routes", "diff", str(tmp_path / "s.routes"), str(tmp_path / "t.routes")]) == 0
    assert main(["routes", "diff", str(tmp_path / "s.routes"), str(tmp_path / "r.routes"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["differing"] == 0
    np.save(tmp_path / "h.npy", np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32))
    assert main(["routes", "record", "--checkpoint", ck, "--source", "hidden", "--hidden", str(tmp_path / "h.npy"),
                 "--layer", "1", "--out", str(tmp_path / "h.routes")]) == 0
    assert read_record(tmp_path / "h.routes").layers.tolist() == [1]
    assert main(["routes", "record", "--checkpoint", ck, "--source", "generate", "--prompt", "1,2,3", "--max-new", "2",
                 "--out", str(tmp_path / "g.routes")]) == 0
    assert main(["routes", "load", str(tmp_path / "s.routes"), str(tmp_path / "t.routes"), "--labels", "x,y",
                 "--png", str(tmp_path / "load.png")]) == 0
    assert (tmp_path / "load.png").stat().st_size > 1000
    # A differing record: exit 1 (a verdict), and a wrong --train-tiers: exit 2 (rejected).
    r = read_record(tmp_path / "s.routes")
    r.expert[0, 0, 0] = 1 - r.expert[0, 0, 0]
    write_record(tmp_path / "x.routes", r)
    assert main(["routes", "diff", str(tmp_path / "s.routes"), str(tmp_path / "x.routes"), "--margins", ck]) == 1
    assert main(["train", "--config", str(cfg_file), "--train-tiers", "a", "--out", str(tmp_path / "z")] + common) == 2


def test_every_clause_of_chapters_12_and_13_is_cited():
    """Every TRAIN and REC clause is cited by a test; every normative one by the code too."""
    mine = [c for c in all_clauses() if c.chapter in ("12-training.md", "13-routing-records.md")]
    assert len(mine) > 20
    read = lambda ps: set().union(*(referenced_ids(p.read_text()) for p in ps))          # noqa: E731
    tests = read([ROOT / "tests/optimized/test_train.py", Path(__file__)])
    code = read(list((ROOT / "optimized/train").glob("*.py")) + [ROOT / "lite_llm/commands/train.py",
                                                                 ROOT / "lite_llm/commands/routes.py"])
    # Informative clauses cited here: TRAIN-1.3, TRAIN-2.3, TRAIN-3.3, TRAIN-4.1, TRAIN-4.3, TRAIN-5.3,
    # TRAIN-6.2, REC-2.4 (the GPU run, scripts/gpu_train_check.py), REC-3.1.
    assert [c.id for c in mine if c.id not in tests] == []
    assert [c.id for c in mine if c.normative and c.id not in code] == []
