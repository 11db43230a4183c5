"""``lite-llm train``: train a Lite LLM on the Python standard library's sources, byte-level (TRAIN chapter).

From scratch (``--config``, weights from INIT under ``--weights-seed``) or from a checkpoint (``--init``);
with ``--train-tiers NEW`` only that tier's router heads and experts are trained (expansion, TRAIN-5)
and every other shard is written back byte for byte. Writes under ``--out``: ``log.jsonl`` (every step
and validation), checkpoints ``step-NNNNNN/`` and ``final/``, ``run.json``, ``loss.png`` and ``load.png``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from lite_llm.spec.configs import resolve_config
from lite_llm.spec.errors import ConfigError, LiteLLMError
from lite_llm.commands.inputs import non_negative_int, positive_int, seed_arg
from lite_llm.commands.tierset_arg import resolve_tier_set


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train on the Python standard library's sources (byte tokens); expand-and-train",
                       description="Train a Lite LLM with AdamW on next-byte prediction over the Python standard "
                                   "library's own .py files (no download), with the auxiliary load-balancing loss. "
                                   "Routing stays the exact router's; gates and router weights get a straight-"
                                   "through gradient (spec chapter 12). --train-tiers trains only the named tiers "
                                   "(after `lite-llm checkpoint expand`): every other shard stays byte-identical.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", default=None, help="config JSON file or bundled name (default tiny)")
    src.add_argument("--init", metavar="CKPT", default=None, help="start from this checkpoint (config included)")
    p.add_argument("--weights-seed", type=seed_arg, default=0, help="INIT seed of a from-scratch run (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (logs, checkpoints, plots)")
    p.add_argument("--steps", type=positive_int, default=200, help="optimizer steps (default 200)")
    p.add_argument("--batch", type=positive_int, default=8, help="sequences per step (default 8)")
    p.add_argument("--seq", type=positive_int, default=64, help="tokens per sequence, at most max_seq_len (default 64)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up steps (default 20)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--tierset", default="all", help="TierSet of the training forward: all | cumulative:NAME | a,b")
    p.add_argument("--train-tiers", default=None, metavar="NAMES",
                   help="train only these tiers (comma-separated names), e.g. the tier `checkpoint expand` added")
    p.add_argument("--aux-alpha", type=float, default=0.01, help="weight of the auxiliary loss (AUX-1.4; 0: off)")
    p.add_argument("--seed", type=seed_arg, default=0, help="data-order seed (default 0)")
    p.add_argument("--eval-every", type=positive_int, default=50, help="steps between validations (default 50)")
    p.add_argument("--eval-seqs", type=int, default=64, help="validation sequences (default 64)")
    p.add_argument("--save-every", type=non_negative_int, default=0, help="steps between periodic checkpoints (default: final only)")
    p.add_argument("--corpus-bytes", type=int, default=32 << 20, help="bytes of source text to read (default 32 MiB)")
    p.add_argument("--no-plots", action="store_true", help="do not write loss.png and load.png")
    p.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    p.set_defaults(func=run)


def check_args(args, cfg) -> None:
    for name in ("steps", "batch", "seq", "eval_seqs", "eval_every"):
        if getattr(args, name) < 1:
            raise LiteLLMError(f"--{name.replace('_', '-')} must be at least 1", clause="TRAIN-4.1")
    if args.seq > cfg.max_seq_len:
        raise LiteLLMError(f"--seq {args.seq} exceeds the config's max_seq_len={cfg.max_seq_len}", clause="MODEL-1.1")
    if args.save_every < 0 or args.aux_alpha < 0:
        raise LiteLLMError("--save-every and --aux-alpha must be non-negative", clause="TRAIN-4.1")
    if cfg.vocab_size < 256:
        raise ConfigError(f"byte-level training needs vocab_size >= 256, the config has {cfg.vocab_size}")


def run(args) -> int:
    from lite_llm.optimized.train.data import load_corpus
    from lite_llm.optimized.train.loop import TrainSettings, train

    source_hashes = None
    if args.init:
        from lite_llm.optimized.checkpoint import load_checkpoint, read_manifest
        from lite_llm.optimized.train.checkpoint_writer import shard_hashes

        raw, cfg = read_manifest(Path(args.init))
        _, init = load_checkpoint(args.init)                                    # every tier, hashes checked
        source_hashes = shard_hashes(raw)
    else:
        from lite_llm.reference.weights import init_model_weights

        cfg = resolve_config(args.config or "tiny")
        init = init_model_weights(cfg, args.weights_seed)
    check_args(args, cfg)
    tier_set = resolve_tier_set(cfg, args.tierset)
    train_tiers = None
    eval_sets = ()
    if args.train_tiers:
        train_tiers = tuple(sorted(cfg.tier_id(n.strip()) for n in args.train_tiers.split(",") if n.strip()))
        if not args.init:
            raise LiteLLMError("--train-tiers needs --init CKPT (the checkpoint the tier was added to)",
                               clause="TRAIN-5.1")
        missing = [cfg.tiers[t].name for t in train_tiers if t not in tier_set]
        if missing:
            raise LiteLLMError(f"--train-tiers {','.join(missing)} not in the training TierSet", clause="TRAIN-5.1")
        old = tuple(t for t in tier_set if t not in train_tiers)
        if old:
            eval_sets = (old,)                                                    # TRAIN-5.3 (c)
    s = TrainSettings(steps=args.steps, batch=args.batch, seq=args.seq, lr=args.lr, warmup=args.warmup,
                      aux_alpha=args.aux_alpha, seed=args.seed, eval_every=args.eval_every,
                      eval_seqs=args.eval_seqs, save_every=args.save_every, device=args.device, tier_set=tier_set,
                      train_tiers=train_tiers, eval_tier_sets=eval_sets)
    corpus = load_corpus(args.corpus_bytes)
    names = [t.name for t in cfg.tiers]
    bar = None
    if not args.json and sys.stdout.isatty():
        from tqdm import tqdm

        bar = tqdm(total=args.steps, unit="step", dynamic_ncols=True)

    def on_event(e):
        if args.json:
            return
        if e["kind"] == "start":
            print(f"training {e['trainable_parameters']:,} parameters ({e['trainable']} tensors) on {corpus.files} "
                  f"stdlib files ({e['train_bytes']:,} train / {e['val_bytes']:,} val bytes), device {args.device}")
        elif e["kind"] == "eval":
            ts = ",".join(names[t] for t in e["tier_set"])
            line = (f"step {e['step']:>6}: val {e['val_loss']:.4f} nats/byte ({e['val_bpb']:.3f} bits) TierSet {{{ts}}}; "
                    f"AUX CV {'/'.join(f'{v:.3f}' for v in e['aux_cv'])}; load CV "
                    f"{'/'.join(f'{v:.3f}' for v in e['load_cv'])}")
            (bar.write if bar else print)(line)
        elif e["kind"] == "checkpoint":
            (bar.write if bar else print)(f"step {e['step']:>6}: checkpoint {e['dir']}")

    try:
        res = train(cfg, init, corpus, s, args.out, source_hashes=source_hashes, progress=bar, on_event=on_event)
    finally:
        if bar is not None:
            bar.close()
    plots = []
    if not args.no_plots:
        from lite_llm.optimized.train.plots import load_plot, loss_plot, read_log

        runs = []
        if args.init and (Path(args.init).parent / "log.jsonl").is_file():      # the run before the expansion
            runs.append(("before", read_log(Path(args.init).parent / "log.jsonl")))
        runs.append(("this run" if runs else "train", res.history))
        plots.append(loss_plot(runs, Path(args.out) / "loss.png", names))
        plots.append(load_plot([(f"aux alpha {args.aux_alpha}", res.last_eval)], Path(args.out) / "load.png"))
    ev = res.last_eval
    summary = {"final": res.final, "checkpoints": res.checkpoints, "seconds": round(res.seconds, 2),
               "val_loss": ev.get("val_loss"), "aux_cv": ev.get("aux_cv"), "load_cv": ev.get("load_cv"),
               "evals": [h for h in res.history if h["kind"] == "eval" and h["step"] == args.steps],
               "log": str(Path(args.out) / "log.jsonl"), "plots": plots}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"done in {res.seconds:.1f} s: final checkpoint {res.final}; log {summary['log']}"
              + (f"; plots {', '.join(plots)}" if plots else ""))
    return 0
