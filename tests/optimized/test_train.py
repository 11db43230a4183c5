"""Training (spec chapter 12): the training forward equals inference, gradients, the auxiliary loss, the
checkpoint writer's bytes, bit-identical reruns, and expansion under training, properties (a)-(d)."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lite_llm.optimized.aux_loss import aux_loss
from lite_llm.optimized.checkpoint import load_checkpoint, read_manifest
from lite_llm.optimized.model import forward
from lite_llm.optimized.train.checkpoint_writer import save_checkpoint, shard_bytes, shard_hashes
from lite_llm.optimized.train.data import load_corpus, train_batch, val_batches
from lite_llm.optimized.train.forward import aux_loss_st, forward_train, level_cvs_st, quantized_routers
from lite_llm.optimized.train.loop import TrainSettings, train
from lite_llm.reference.checkpoint import save_checkpoint as ref_save
from lite_llm.reference.expand import expand_checkpoint
from lite_llm.reference.weights import init_model_weights
from lite_llm.spec.config import TierConfig, config_from_dict
from lite_llm.spec.errors import CheckpointMismatchError

SMALL = {"d_model": 32, "n_layers": 2, "n_heads": 2, "vocab_size": 256, "max_seq_len": 32,
         "tiers": [{"name": "base", "groups": 2, "experts_per_group": 4, "d_ff": 32}],
         "router": {"k_tier": 1, "k_group": 2, "k_expert": 2, "seed": 3}}
TWO = {**SMALL, "tiers": [{"name": "a", "groups": 2, "experts_per_group": 4, "d_ff": 32},
                          {"name": "b", "groups": 3, "experts_per_group": 2, "d_ff": 16}],
       "router": {"k_tier": 2, "k_group": 2, "k_expert": 2, "seed": 5}}
NEW_TIER = TierConfig("grow", 2, 4, 64)


def cfg_of(d):
    return config_from_dict({"spec_version": "0.1", **d})


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(2 << 20)


def params_of(w, grad=True):
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)).requires_grad_(grad) for k, v in w.items()}


def tokens(seed, shape=(3, 16)):
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------
# The training forward (TRAIN-1.1, TRAIN-1.2, TRAIN-2.2, TRAIN-2.4)

@pytest.mark.parametrize("spec", [SMALL, TWO])
def test_training_forward_equals_inference(spec):
    """TRAIN-1.1, TRAIN-1.2: same routes, gates and probabilities bit for bit, logits within MODEL-4.3."""
    cfg = cfg_of(spec)
    w = init_model_weights(cfg, 1)
    tier_set = tuple(range(cfg.n_tiers))
    for s in range(3):
        tok = tokens(s)
        out = forward_train(cfg, params_of(w), tok, tier_set, cfg.router.seed)
        inf = torch.stack([forward(cfg, w, tok[b], tier_set).logits for b in range(tok.shape[0])])
        ref = forward(cfg, w, tok, tier_set)
        err = float((out.logits.detach() - inf).abs().max() / inf.abs().max())
        assert err <= 1e-5, f"logits differ by {err:.3g} relative"
        for lo, r in zip(out.layers, ref.routes):
            for f in ("tier", "group", "expert", "count", "gate", "tier_probs", "group_probs", "expert_probs"):
                assert torch.equal(getattr(lo.route, f), getattr(r, f)), f
            assert torch.equal(lo.tier_probs.detach(), r.tier_probs)            # straight-through keeps the bits
            assert torch.equal(lo.expert_probs.detach(), r.expert_probs)


def test_surrogate_gate_is_the_gate_function():
    """TRAIN-2.2: the surrogate's value is the gate of HSER-8.2 (to binary64 rounding of the softmax) and its
    gradient is the derivative of r1 r2 r3 over the chosen candidates at the logits (TRAIN-2.1)."""
    cfg = cfg_of(TWO)
    w = init_model_weights(cfg, 2)
    p = params_of(w)
    out = forward_train(cfg, p, tokens(7, (1, 12)), (0, 1), cfg.router.seed)
    for lo in out.layers:
        assert float((lo.gate_surrogate - lo.route.gate.double()).abs().max()) < 1e-6
    # Gradient of one gate w.r.t. the level-3 router rows, against a float64 re-derivation.
    lo, layer = out.layers[0], 0
    x = lo.router_input.double()[0]
    t, g, e = (int(lo.route.tier[0, 0]), int(lo.route.group[0, 0]), int(lo.route.expert[0, 0]))
    name = f"layers.{layer}.tiers.{cfg.tiers[t].name}.router_expert"
    chosen = [int(lo.route.expert[0, k]) for k in range(int(lo.route.count[0]))
              if int(lo.route.tier[0, k]) == t and int(lo.route.group[0, k]) == g]
    W = p[name].detach().double()[g]                                         # (E, d)
    z = W[chosen] @ x
    r3 = torch.softmax(z, 0)
    j = chosen.index(e)
    expect = torch.zeros_like(W)
    for i, c in enumerate(chosen):                                           # d r3_j / d W_c = r3_j (delta - r3_c) x
        expect[c] = r3[j] * ((1.0 if i == j else 0.0) - r3[i]) * x
    from lite_llm.optimized.train.forward import level_tensors, stacked_rows

    p2 = params_of(w)
    qr = quantized_routers(cfg, p2, (0, 1), "cpu")[0]
    _, _, _, gs = level_tensors(cfg, lo.route, qr, lo.router_input, stacked_rows(cfg, p2, 0, (0, 1), "cpu"), (0, 1))
    rows = p2[name]
    gs[0, 0].backward()
    r12 = float(gs[0, 0].detach()) / float(r3[j])
    got = rows.grad.double()[g]
    assert torch.allclose(got, expect * r12, rtol=1e-4, atol=1e-9), float((got - expect * r12).abs().max())


def test_aux_loss_value_and_gradient():
    """TRAIN-3.1: the value is AUX-1's (optimized.aux_loss) to 1e-12; TRAIN-3.2: the gradient is finite and
    reaches the routers; TRAIN-2.4: the surrogate CVs equal AUX-1's to binary32 rounding."""
    cfg = cfg_of(TWO)
    w = init_model_weights(cfg, 3)
    p = params_of(w)
    out = forward_train(cfg, p, tokens(11, (2, 16)), (0, 1), cfg.router.seed)
    val, cvs = aux_loss_st(cfg, out, 0.5)
    want = aux_loss(cfg, out.routes, alpha=0.5)
    assert abs(val.item() - want.total) <= 1e-12 * max(1.0, abs(want.total))
    for lo, c in zip(out.layers, cvs):
        assert torch.allclose(level_cvs_st(cfg, lo).detach(), c, atol=1e-6)
    val.backward()
    g = p["layers.0.tiers.a.router_tier"].grad
    assert g is not None and torch.isfinite(g).all() and float(g.abs().sum()) > 0
    for n, t in p.items():
        if t.grad is not None:
            assert torch.isfinite(t.grad).all(), n
    # One candidate per router (k = 1 everywhere, one tier): value 0 and no NaN gradient (AUX-1.5, TRAIN-3.2).
    one = cfg_of({**SMALL, "tiers": [{"name": "solo", "groups": 1, "experts_per_group": 1, "d_ff": 8}],
                  "router": {"k_tier": 1, "k_group": 1, "k_expert": 1}})
    p1 = params_of(init_model_weights(one, 0))
    o1 = forward_train(one, p1, tokens(1, (1, 8)), (0,), 0)
    v1, _ = aux_loss_st(one, o1, 1.0)
    assert v1.item() == 0.0
    (v1 + o1.logits.sum() * 0).backward()
    assert all(torch.isfinite(t.grad).all() for t in p1.values() if t.grad is not None)


# ------------------------------------------------------------------------------------------------
# The checkpoint writer (TRAIN-4.2, CKPT-2.2, CKPT-3.6)

def test_writer_bytes_equal_reference_writer(tmp_path):
    """TRAIN-4.2: the optimized writer's files are the reference writer's, byte for byte."""
    cfg = cfg_of(TWO)
    w = init_model_weights(cfg, 4)
    ref_save(tmp_path / "ref", cfg, w)
    save_checkpoint(tmp_path / "opt", cfg, {k: torch.from_numpy(np.array(v)) for k, v in w.items()})
    a = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert a == sorted(p.name for p in (tmp_path / "opt").iterdir())
    for name in a:
        assert (tmp_path / "ref" / name).read_bytes() == (tmp_path / "opt" / name).read_bytes(), name
    from safetensors.numpy import save

    t = {k: np.asarray(v) for k, v in list(w.items())[:5]}
    assert shard_bytes(t) == save({k: t[k] for k in sorted(t)})                  # CKPT-2.2: what safetensors writes


def test_writer_refuses_a_moved_frozen_shard(tmp_path):
    """TRAIN-5.2: a frozen shard whose bytes would change is refused before the manifest is written."""
    cfg = cfg_of(TWO)
    w = {k: torch.from_numpy(np.array(v)) for k, v in init_model_weights(cfg, 4).items()}
    raw = save_checkpoint(tmp_path / "a", cfg, w)
    w["layers.0.attn.wq"] = w["layers.0.attn.wq"].clone()
    w["layers.0.attn.wq"][0, 0] += 1e-3
    with pytest.raises(CheckpointMismatchError, match="frozen shard dense"):
        save_checkpoint(tmp_path / "b", cfg, w, frozen=shard_hashes(raw))
    assert not (tmp_path / "b" / "manifest.json").exists()


# ------------------------------------------------------------------------------------------------
# Runs (TRAIN-4.4, TRAIN-5.1 .. TRAIN-5.3, TRAIN-6.1)

def small_settings(**kw):
    base = dict(steps=6, batch=4, seq=16, lr=1e-2, warmup=2, eval_every=3, eval_seqs=8, seed=1)
    base.update(kw)
    return TrainSettings(**base)


def test_reruns_are_bit_identical(tmp_path, corpus):
    """TRAIN-6.1: same settings and seed on one device give byte-identical checkpoints; another seed does not."""
    cfg = cfg_of(TWO)
    w = init_model_weights(cfg, 0)
    runs = [train(cfg, w, corpus, small_settings(steps=4, seed=s), tmp_path / f"r{i}") for i, s in enumerate((1, 1, 2))]
    files = [{p.name: p.read_bytes() for p in Path(r.final).iterdir()} for r in runs]
    assert files[0] == files[1]
    assert files[0]["manifest.json"] != files[2]["manifest.json"]
    logs = [[h for h in r.history if h["kind"] == "train"] for r in runs[:2]]
    assert [h["loss"] for h in logs[0]] == [h["loss"] for h in logs[1]]
    assert runs[0].history[0]["env"]["deterministic_algorithms"] is True       # TRAIN-6.2


def test_training_lowers_the_loss(tmp_path, corpus):
    cfg = cfg_of(SMALL)
    r = train(cfg, init_model_weights(cfg, 0), corpus, small_settings(steps=12), tmp_path / "r")
    ev = [h for h in r.history if h["kind"] == "eval"]
    assert ev[-1]["val_loss"] < ev[0]["val_loss"] - 0.5
    cfg2, _ = load_checkpoint(r.final)                                         # a valid checkpoint (TRAIN-4.2)
    assert cfg2 == cfg


def test_expand_then_train_the_new_tier(tmp_path, corpus):
    """TRAIN-5.1 .. TRAIN-5.3: (a) old shards byte-identical, (b) routes and logits under the old TierSet
    bit-identical, (c) validation loss under the cumulative TierSet below the old TierSet's."""
    cfg = cfg_of(SMALL)
    base = train(cfg, init_model_weights(cfg, 0), corpus, small_settings(steps=10), tmp_path / "base")
    expand_checkpoint(base.final, NEW_TIER, 9)
    raw0, cfg1 = read_manifest(Path(base.final))
    _, init = load_checkpoint(base.final)
    s = small_settings(steps=16, train_tiers=(1,), eval_tier_sets=((0,),), seed=2)
    run = train(cfg1, init, corpus, s, tmp_path / "grow", source_hashes=shard_hashes(raw0))
    raw1, _ = read_manifest(Path(run.final))
    # (a) every existing shard is byte-identical, under the same name; the new tier's changed.
    for e0, e1 in zip([raw0["dense"]] + raw0["tiers"][:1], [raw1["dense"]] + raw1["tiers"][:1]):
        assert e0 == e1
        assert (Path(base.final) / e0["file"]).read_bytes() == (Path(run.final) / e1["file"]).read_bytes()
    assert raw1["tiers"][1]["sha256"] != raw0["tiers"][1]["sha256"]
    # (b) routes and logits under the old TierSet are bit-identical before and after.
    tok = val_batches(corpus, 4, 4, 16)[0][:, :-1]
    before = forward(cfg, load_checkpoint(base.final, (0,))[1], tok, (0,))
    after = forward(cfg1, load_checkpoint(run.final, (0,))[1], tok, (0,))
    assert torch.equal(before.logits, after.logits)
    for r0, r1 in zip(before.routes, after.routes):
        for f in ("tier", "group", "expert", "count", "gate", "tier_probs", "group_probs", "expert_probs"):
            assert torch.equal(getattr(r0, f), getattr(r1, f)), f
    # (c) the cumulative TierSet improves on the old one.
    last = {tuple(h["tier_set"]): h["val_loss"] for h in run.history if h["kind"] == "eval" and h["step"] == s.steps}
    print("val loss at the last step by TierSet:", last)
    assert last[(0, 1)] < last[(0,)], last
    # TRAIN-5.1: nothing but the new tier was handed to the optimizer.
    assert run.history[0]["trainable"] == 6 * cfg1.n_layers


def test_aux_loss_balances_the_load(tmp_path, corpus):
    """(d) TRAIN-3.1, TRAIN-4.4: with the auxiliary loss the AUX CVs are lower than without."""
    cfg = cfg_of(TWO)
    w = init_model_weights(cfg, 5)
    res = {a: train(cfg, w, corpus, small_settings(steps=10, aux_alpha=a, lr=2e-2), tmp_path / f"a{a}")
           for a in (0.0, 1.0)}
    cv = {a: sum(r.last_eval["aux_cv"]) for a, r in res.items()}
    print("sum of AUX CVs by alpha:", cv, {a: r.last_eval["load_cv"] for a, r in res.items()})
    assert cv[1.0] < cv[0.0], cv
    for r in res.values():
        assert len(r.last_eval["load_cv"]) == 3 and all(v >= 0 for v in r.last_eval["load_cv"])
        assert set(r.last_eval["load"][0]) == {"a", "b"}


def test_batches_are_a_function_of_seed_and_step(corpus):
    """TRAIN-4.3: batches come from (seed, step) on the host."""
    assert torch.equal(train_batch(corpus, 1, 5, 4, 16), train_batch(corpus, 1, 5, 4, 16))
    assert not torch.equal(train_batch(corpus, 1, 5, 4, 16), train_batch(corpus, 1, 6, 4, 16))
    assert hashlib.sha256(corpus.train.tobytes()).hexdigest() != corpus.digest
    assert math.isclose(corpus.val.size / (corpus.train.size + corpus.val.size), 0.1, abs_tol=0.08)


def test_training_package_never_imports_the_reference():
    """The optimized implementation is written from the spec: no import of lite_llm.reference."""
    import ast

    for p in (Path(__file__).resolve().parents[2] / "optimized" / "train").glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any("reference" in n for n in names), f"{p.name} imports {names}"
