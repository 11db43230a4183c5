"""The training loop (TRAIN-3.1, TRAIN-4.1 .. TRAIN-4.4, TRAIN-5.1, TRAIN-5.2, TRAIN-6.1): AdamW on next-byte cross-entropy plus the auxiliary loss,
evaluation, a JSON-lines loss log and periodic checkpoints.

    for step in 1 .. steps:
        tok = train_batch(seed, step)                           (B, T + 1) bytes, drawn on the host
        routers = quantized_routers(current weights)            exact routing of the current weights
        out = forward_train(tok[:, :-1])
        loss = cross_entropy(out.logits, tok[:, 1:]) + L_aux    (TRAIN-3)
        loss.backward(); clip; AdamW step on the trainable tensors only (TRAIN-5.1)

What is trained: every tensor the TierSet reads (dense and the TierSet's tiers), or, with
``train_tiers``, only those tiers' router heads and experts (expansion, TRAIN-5). The others are not
handed to the optimizer and are written back from the source bits; the writer refuses a frozen shard
whose bytes would change (TRAIN-5.2).
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lite_llm.spec.config import ModelConfig
from lite_llm.spec.errors import CheckpointExistsError
from lite_llm.spec.tensors import dense_shapes, tier_shapes

from .checkpoint_writer import save_checkpoint
from .data import Corpus, train_batch, val_batches
from ..model import ieee_float32
from .forward import aux_loss_st, forward_train, quantized_routers
from .records import load_stats


@dataclass
class TrainSettings:
    """One run's settings; each field's trade-off in a line."""

    steps: int = 200              # optimizer steps; the tiny config learns byte statistics in ~200
    batch: int = 8                # sequences per step; more = smoother loss, slower step
    seq: int = 64                 # tokens per sequence (<= max_seq_len); attention cost grows as seq**2
    lr: float = 3e-3              # peak AdamW learning rate; tiny models tolerate a large one
    warmup: int = 20              # linear warm-up steps, then cosine decay to lr * min_lr_ratio
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1     # AdamW decay on matrices only (norms and level-1 rows are vectors)
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0             # global gradient-norm clip
    aux_alpha: float = 0.01       # AUX-1.4's alpha; 0 switches the balancing loss off
    seed: int = 0                 # data order (which windows each step sees); routing seed is the config's
    eval_every: int = 50          # steps between validations (and at the last step)
    eval_seqs: int = 64           # validation windows
    save_every: int = 0           # steps between periodic checkpoints (0: only the final one)
    device: str = "cpu"
    tier_set: tuple[int, ...] = ()            # TierSet of the training forward (empty: every tier)
    train_tiers: tuple[int, ...] | None = None  # None: train everything the TierSet reads
    eval_tier_sets: tuple[tuple[int, ...], ...] = ()   # extra TierSets to validate under (e.g. the old one)
    backend: str = "auto"
    max_seconds: float = 0.0      # stop early (then validate and save) once training took this long; 0: never
    save_final: bool = True       # False: write no checkpoint at all (timing probes)


@dataclass
class TrainResult:
    out_dir: str
    final: str                              # the final checkpoint's directory
    checkpoints: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    last_eval: dict = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0                          # steps taken (fewer than asked when max_seconds stopped the run)


def set_deterministic(device: torch.device) -> dict:
    """What bit-identical reruns need from torch on one device (TRAIN-6.1); returns what was set."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # must precede the first cuBLAS call
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False     # speed only: nothing here reads unwritten memory
    torch.backends.cudnn.benchmark = False
    return {"deterministic_algorithms": True, "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "num_threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()}


def tensor_stem(cfg: ModelConfig, name: str) -> str:
    for t in cfg.tiers:
        if name.startswith("layers.") and f".tiers.{t.name}." in name:
            return f"tier-{t.name}"
    return "dense"


def trainable_names(cfg: ModelConfig, tier_set, train_tiers) -> list[str]:
    """TRAIN-5.1: with ``train_tiers`` only those tiers' tensors (router heads and experts of every
    layer); otherwise the dense tensors and those of the TierSet's tiers."""
    if train_tiers is not None:
        names = []
        for t in train_tiers:
            names += list(tier_shapes(cfg, t))
        return names
    names = list(dense_shapes(cfg))
    for t in tier_set:
        names += list(tier_shapes(cfg, t))
    return names


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy in nats from log_softmax and gather: ``F.cross_entropy`` calls NLLLoss,
    which has no deterministic CUDA kernel and raises under deterministic algorithms (TRAIN-6.1)."""
    logp = torch.log_softmax(logits.reshape(-1, logits.shape[-1]).float(), dim=-1)
    nll = -logp.gather(1, targets.reshape(-1, 1))[:, 0]
    return nll.sum() if reduction == "sum" else nll.mean()


def lr_at(s: TrainSettings, step: int) -> float:
    if step <= s.warmup:
        return s.lr * step / max(1, s.warmup)
    frac = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


@torch.no_grad()
def evaluate(cfg: ModelConfig, params: dict, batches, tier_set, seed: int, device, backend="auto") -> dict:
    """Mean validation cross-entropy (nats per byte), the AUX CVs per level and the hard load per level
    (the CV of the counts of chosen candidates, TRAIN-4.4), averaged over the layers."""
    routers = quantized_routers(cfg, params, tier_set, device)
    tot, n, cvs, routes_all = 0.0, 0, [], []
    for b in batches:
        b = b.to(device)
        out = forward_train(cfg, params, b[:, :-1], tier_set, seed, routers, backend)
        ce = cross_entropy(out.logits, b[:, 1:], reduction="sum")
        tot += float(ce)
        n += b[:, 1:].numel()
        _, c = aux_loss_st(cfg, out, 0.0)
        cvs.append(c.cpu().numpy())
        routes_all.append(out.routes)
    stats = load_stats(cfg, routes_all, tier_set)
    cv = np.mean(np.stack(cvs), axis=0)                                     # (L, 3), mean over batches
    return {"val_loss": tot / max(1, n), "val_bpb": tot / max(1, n) / math.log(2), "tier_set": list(tier_set),
            "aux_cv": cv.mean(axis=0).tolist(), "load_cv": stats["load_cv"], "load": stats["load"]}


def train(cfg: ModelConfig, init: dict, corpus: Corpus, s: TrainSettings, out_dir, *,
          source_hashes: dict[str, str] | None = None, progress=None, on_event=None) -> TrainResult:
    """Train from ``init`` (name -> binary32 array or tensor: every tensor of ``cfg``) and write
    checkpoints under ``out_dir`` (``step-NNNNNN/`` every ``save_every`` steps, ``final/`` at the end)
    and the loss log ``out_dir/log.jsonl``.

    ``source_hashes``: shard stem -> SHA-256 of the checkpoint ``init`` came from; every shard without a
    trainable tensor must be written back with exactly these bytes (TRAIN-5.2). ``progress``: a tqdm-like
    bar or None. ``on_event(dict)``: called with every log record.
    """
    t_start = time.time()
    device = torch.device(s.device)
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    env = set_deterministic(device)
    try:
        return _train(cfg, init, corpus, s, out_dir, device, env, source_hashes, progress, on_event, t_start)
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])        # the caller's settings back
        torch.utils.deterministic.fill_uninitialized_memory = fill


def _train(cfg, init, corpus, s, out_dir, device, env, source_hashes, progress, on_event, t_start) -> TrainResult:
    out = Path(out_dir)
    if (out / "final" / "manifest.json").exists():                            # CKPT-4.4, before any work
        raise CheckpointExistsError("already holds a final checkpoint; train into another --out", path=out / "final")
    out.mkdir(parents=True, exist_ok=True)
    tier_set = tuple(s.tier_set) or tuple(range(cfg.n_tiers))
    train_names = set(trainable_names(cfg, tier_set, s.train_tiers))
    params = {}
    for n, a in init.items():
        t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a, dtype=np.float32))
        t = t.detach().to(device=device, dtype=torch.float32).clone()
        params[n] = t.requires_grad_(n in train_names)
    decay = [params[n] for n in sorted(train_names) if params[n].dim() >= 2]
    no_decay = [params[n] for n in sorted(train_names) if params[n].dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=s.lr, betas=s.betas, eps=1e-8)
    stems_trained = {tensor_stem(cfg, n) for n in train_names}
    frozen = {k: v for k, v in (source_hashes or {}).items() if k not in stems_trained}
    routing_seed = cfg.router.seed
    val = val_batches(corpus, s.eval_seqs, s.batch, s.seq)
    eval_sets = [tier_set] + [tuple(t) for t in s.eval_tier_sets if tuple(t) != tier_set]
    res = TrainResult(str(out), "")
    log = open(out / "log.jsonl", "w", encoding="utf-8")

    def emit(rec: dict):
        log.write(json.dumps(rec) + "\n")
        log.flush()
        res.history.append(rec)
        if on_event:
            on_event(rec)

    def run_eval(step):
        for ts in eval_sets:
            ev = evaluate(cfg, params, val, ts, routing_seed, device, s.backend)
            rec = {"kind": "eval", "step": step, **{k: v for k, v in ev.items() if k != "load"}}
            emit(rec)
            if ts == tier_set:
                res.last_eval = {**ev}

    def save(step, name):
        tensors = {n: p.detach() for n, p in params.items()}
        save_checkpoint(out / name, cfg, tensors, frozen=frozen)                  # TRAIN-5.2
        res.checkpoints.append(str(out / name))
        emit({"kind": "checkpoint", "step": step, "dir": str(out / name)})

    emit({"kind": "start", "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
          "corpus_sha256": corpus.digest, "corpus_files": corpus.files, "train_bytes": int(corpus.train.size),
          "val_bytes": int(corpus.val.size), "trainable": len(train_names),
          "trainable_parameters": int(sum(params[n].numel() for n in train_names)), "env": env})
    try:
        run_eval(0)
        routers = None
        t_loop = time.time()
        step = 0
        for step in range(1, s.steps + 1):
            t0 = time.time()
            for g in opt.param_groups:
                g["lr"] = lr_at(s, step)
            tok = train_batch(corpus, s.seed, step, s.batch, s.seq).to(device)
            routers = quantized_routers(cfg, params, tier_set, device, routers)
            o = forward_train(cfg, params, tok[:, :-1], tier_set, routing_seed, routers, s.backend)
            ce = cross_entropy(o.logits, tok[:, 1:])
            aux, _ = aux_loss_st(cfg, o, s.aux_alpha)
            loss = ce + aux.to(ce.dtype)
            opt.zero_grad(set_to_none=True)
            with ieee_float32():                                                 # no TF32 in the backward either
                loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_([params[n] for n in sorted(train_names)], s.clip)
            opt.step()
            rec = {"kind": "train", "step": step, "loss": loss.item(), "ce": ce.item(), "aux": aux.item(),
                   "lr": opt.param_groups[0]["lr"], "grad_norm": float(gnorm), "seconds": time.time() - t0}
            emit(rec)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{rec['ce']:.3f}", aux=f"{rec['aux']:.4f}")
            stop = bool(s.max_seconds) and time.time() - t_loop > s.max_seconds
            if step % max(1, s.eval_every) == 0 or step == s.steps or stop:
                run_eval(step)
            if s.save_every and step % s.save_every == 0 and step != s.steps and not stop:
                save(step, f"step-{step:06d}")
            if stop:
                emit({"kind": "stopped", "step": step, "reason": f"max_seconds={s.max_seconds}"})
                break
        res.steps = step
        if s.save_final:
            save(step, "final")
    finally:
        log.close()
    res.final = str(out / "final")
    res.seconds = time.time() - t_start
    (out / "run.json").write_text(json.dumps({"final": res.final, "checkpoints": res.checkpoints,
                                              "last_eval": {k: v for k, v in res.last_eval.items()},
                                              "seconds": res.seconds}, indent=2) + "\n")
    return res
