"""``lite-llm routes``: record, diff and summarise routing records (spec chapter REC).

  record   routes of a checkpoint on some tokens or hidden states, from the serving forward (optimized or
           reference), the training forward (any device), greedy generation, or a user's hidden states
  diff     first differing (token, layer), counts per level, differences downstream of an earlier one,
           and with --margins the routing margin (MODEL-4.5) of every other difference
  load     per-level load CV and per-expert load of records; --png plots them side by side
"""
from __future__ import annotations

import json
from pathlib import Path

from lite_llm import exit_codes
from lite_llm.spec.config import parse_seed
from lite_llm.spec.errors import LiteLLMError
from lite_llm.commands.inputs import seed_arg
from lite_llm.commands.tierset_arg import HELP as TIERSET_HELP, resolve_tier_set

SOURCES = ("serve", "reference", "train", "generate", "hidden")


def add_parser(sub) -> None:
    p = sub.add_parser("routes", help="record, diff and summarise routing records (per-token, per-layer routes)",
                       description="Routing records (spec chapter 13): a safetensors file of per-layer, per-token "
                                   "routes (tier, group, expert ids and gates) with the config hash, TierSet and "
                                   "seed. Any engine can export its routes to it and diff them against these.")
    cmds = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    q = cmds.add_parser("record", help="record the routes of a checkpoint")
    q.add_argument("--checkpoint", required=True, metavar="DIR")
    q.add_argument("--out", required=True, metavar="FILE", help="record file to write (.routes)")
    q.add_argument("--source", choices=SOURCES, default="serve",
                   help="serve: optimized inference forward; reference: NumPy reference forward; train: the "
                        "training forward (no grad) on --device; generate: greedy generation from --prompt; "
                        "hidden: route --hidden FILE.npy through --layer's router")
    q.add_argument("--device", default="cpu")
    q.add_argument("--tierset", default="all", help=TIERSET_HELP)
    q.add_argument("--seed", type=seed_arg, default=None, help="routing seed (default: the config's)")
    q.add_argument("--tokens", default="val", help="val | train (stdlib byte windows) | FILE.npy of (B, T) ids")
    q.add_argument("--n-seqs", type=int, default=16, help="sequences of --tokens val/train (default 16)")
    q.add_argument("--seq", type=int, default=64, help="tokens per sequence (default 64)")
    q.add_argument("--batch", type=int, default=8, help="sequences per forward (default 8)")
    q.add_argument("--prompt", default=None, help="generate: comma-separated token ids")
    q.add_argument("--max-new", type=int, default=8, help="generate: new tokens (default 8)")
    q.add_argument("--hidden", default=None, metavar="FILE.npy", help="hidden: (N, d) router inputs")
    q.add_argument("--layer", type=int, default=0, help="hidden: the layer whose router to use (default 0)")
    q.set_defaults(func=run_record)

    q = cmds.add_parser("diff", help="compare two records token for token")
    q.add_argument("a", metavar="A")
    q.add_argument("b", metavar="B")
    q.add_argument("--margins", metavar="CKPT", default=None,
                   help="for every difference not downstream of another, the routing margin (MODEL-4.5) of each "
                        "record's route under the router input the serving forward (optimized, CPU) computes "
                        "from this checkpoint")
    q.add_argument("--limit", type=int, default=20, help="differences to list (default 20)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_diff)

    q = cmds.add_parser("load", help="per-level load CV and per-expert load of records")
    q.add_argument("records", nargs="+", metavar="REC")
    q.add_argument("--labels", default=None, help="comma-separated labels of the records")
    q.add_argument("--png", default=None, help="write a per-expert load plot here")
    q.add_argument("--layer", type=int, default=0, help="layer to plot (default 0)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=run_load)


# ----------------------------------------------------------------------------------------------
# Recording

def token_batches(args, cfg):
    import numpy as np
    import torch

    if args.tokens in ("val", "train"):
        from lite_llm.optimized.train.data import load_corpus, train_batch, val_batches

        if args.seq > cfg.max_seq_len:
            raise LiteLLMError(f"--seq {args.seq} exceeds max_seq_len={cfg.max_seq_len}", clause="MODEL-1.1")
        c = load_corpus()
        if args.tokens == "val":
            return [b[:, :-1] for b in val_batches(c, args.n_seqs, args.batch, args.seq)]
        rows = torch.cat([train_batch(c, 0, i, 1, args.seq) for i in range(args.n_seqs)])[:, :-1]
        return list(rows.split(args.batch))
    arr = np.load(args.tokens)
    if arr.ndim == 1:
        arr = arr[None]
    t = torch.from_numpy(arr.astype(np.int64))
    return list(t.split(args.batch))


def record_serve(cfg, weights, batches, tier_set, seed, builder, device="cpu"):
    """Routes of the optimized inference forward (``model.forward``), batch by batch."""
    from lite_llm.optimized.model import forward, load_model

    m = load_model(cfg, weights, tier_set, device)
    for b in batches:
        builder.add(forward(cfg, m, b, tier_set, seed=seed).routes, b)


def record_reference(cfg, weights, batches, tier_set, seed, builder):
    import numpy as np

    from lite_llm.reference.model import forward

    w = {k: np.asarray(v.cpu().numpy() if hasattr(v, "cpu") else v) for k, v in weights.items()}
    for b in batches:
        builder.add(forward(cfg, w, b.numpy(), tier_set, seed=seed).routes, b)


def record_train(cfg, weights, batches, tier_set, seed, builder, device="cpu"):
    """Routes of the training forward (TRAIN-1.2) on ``device``, without gradients."""
    import torch

    from lite_llm.optimized.train.forward import forward_train, quantized_routers

    dev = torch.device(device)
    params = {k: v.to(dev) for k, v in weights.items()}
    routers = quantized_routers(cfg, params, tier_set, dev)
    with torch.no_grad():
        for b in batches:
            out = forward_train(cfg, params, b.to(dev), tier_set, seed, routers)
            builder.add(out.routes, b)


def run_record(args) -> int:
    import numpy as np
    import torch

    from lite_llm.optimized.checkpoint import load_checkpoint, read_manifest
    from lite_llm.optimized.train.records import RecordBuilder, write_record

    _, full = read_manifest(Path(args.checkpoint))
    tier_set = resolve_tier_set(full, args.tierset)
    cfg, weights = load_checkpoint(args.checkpoint, tier_set)
    seed = cfg.router.seed if args.seed is None else args.seed
    impl = {"reference": "lite_llm.reference"}.get(args.source, "lite_llm.optimized")
    kind = {"reference": "serve"}.get(args.source, args.source)
    dev = args.device if args.source in ("train", "serve") else "cpu"
    source = {"kind": kind, "implementation": impl, "device": dev, "checkpoint": str(args.checkpoint)}
    b = RecordBuilder(cfg, tier_set, seed, source)
    if args.source == "hidden":
        if args.hidden is None:
            raise LiteLLMError("--source hidden needs --hidden FILE.npy", clause="REC-1.2")
        from lite_llm.optimized.router import load_router, route

        h = torch.from_numpy(np.load(args.hidden))
        qr = load_router(cfg, {k: v for k, v in weights.items()} | zero_router_rows(cfg, args.layer, tier_set),
                         args.layer)
        b.layers = (args.layer,)
        b.add([route(h, qr, tier_set, seed)])
    elif args.source == "generate":
        from lite_llm.commands.generate import parse_prompt
        from lite_llm.optimized.generate import generate
        from lite_llm.optimized.model import forward

        if args.prompt is None:
            raise LiteLLMError("--source generate needs --prompt", clause="MODEL-5.3")
        prompt = parse_prompt(args.prompt)
        new = generate(cfg, weights, prompt, args.max_new, tier_set, seed=seed)
        seq = torch.tensor([(prompt + new)[:-1] if new else prompt])              # every token that went through
        b.add(forward(cfg, weights, seq, tier_set, seed=seed).routes, seq)
    else:
        batches = token_batches(args, cfg)
        if args.source == "serve":
            record_serve(cfg, weights, batches, tier_set, seed, b, dev)
        elif args.source == "reference":
            record_reference(cfg, weights, batches, tier_set, seed, b)
        else:
            record_train(cfg, weights, batches, tier_set, seed, b, dev)
    rec = b.build()
    write_record(args.out, rec)
    L, N, K = rec.tier.shape
    print(f"recorded {N} tokens x {L} layers ({L * N:,} routes, K={K}) from {args.source} on {dev} to {args.out}")
    return 0


def zero_router_rows(cfg, layer, tier_set):
    """Zero router rows for tiers outside the TierSet: never read by routing (TIER-2.6)."""
    import torch

    out = {}
    d = cfg.d_model
    for t, tc in enumerate(cfg.tiers):
        if t in tier_set:
            continue
        p = f"layers.{layer}.tiers.{tc.name}"
        out[f"{p}.router_tier"] = torch.zeros(d)
        out[f"{p}.router_group"] = torch.zeros(tc.groups, d)
        out[f"{p}.router_expert"] = torch.zeros(tc.groups, tc.experts_per_group, d)
    return out


# ----------------------------------------------------------------------------------------------
# Diff and load

def margins_on_cpu(cfg, weights, rec_a, rec_b, primary) -> list[dict]:
    """Margins (MODEL-4.5) of the listed (token, layer) differences under the serving forward's router
    input on the CPU of both records' routes, recomputed sequence by sequence."""
    import numpy as np
    import torch

    from lite_llm.optimized.model import forward, load_model
    from lite_llm.optimized.train.forward import quantized_routers
    from lite_llm.optimized.train.records import token_margin

    if rec_a.tokens is None:
        raise LiteLLMError("--margins needs records that carry their token ids", clause="REC-2.3")
    tier_set = tuple(rec_a.meta["tier_set"])
    seed = parse_seed(rec_a.meta["seed"])
    m = load_model(cfg, weights, tier_set)
    qrs = quantized_routers(cfg, weights, tier_set, "cpu")
    T = rec_a.tokens.shape[1]
    out = []
    cache = {}
    for n, layer in primary:
        s = int(n) // T
        if s not in cache:
            cache[s] = forward(cfg, m, torch.from_numpy(rec_a.tokens[s].astype(np.int64)), tier_set, seed=seed)
        li = int(np.nonzero(rec_a.layers == layer)[0][0])
        x = cache[s].router_inputs[layer][int(n) % T]
        ms = [token_margin(qrs[layer], x, r.tier[li, n], r.group[li, n], r.expert[li, n], int(r.count[li, n]),
                           tier_set) for r in (rec_a, rec_b)]
        out.append({"token": int(n), "layer": int(layer), "margin_a": ms[0], "margin_b": ms[1]})
    return out


def run_diff(args) -> int:
    from lite_llm.optimized.train.records import diff_records, read_record

    a, b = read_record(args.a), read_record(args.b)
    d = diff_records(a, b)
    summary = d.summary()
    if args.margins and len(d.primary):
        from lite_llm.optimized.checkpoint import load_checkpoint

        cfg, weights = load_checkpoint(args.margins, tuple(a.meta["tier_set"]))
        summary["margins"] = margins_on_cpu(cfg, weights, a, b, d.primary[: max(args.limit, 0) or len(d.primary)])
    if args.json:
        summary["primary_list"] = d.primary[: args.limit].tolist()
        print(json.dumps(summary))
    else:
        for n in d.notes:
            print(f"note: {n}")
        print(f"{summary['pairs']:,} (token, layer) pairs; {summary['differing']:,} differ "
              f"(rate {summary['rate']:.3g}); per level (first differing slot) 1: {summary['per_level']['1']}, "
              f"2: {summary['per_level']['2']}, 3: {summary['per_level']['3']}")
        if d.first is not None:
            print(f"first difference: token {d.first[0]}, layer {d.first[1]}; {len(d.primary)} not downstream of "
                  f"another, {d.downstream} downstream (a later layer at or after a differing position)")
        print(f"equal routes with different gate bits: {d.gates_differing:,} (max |dgate| {d.gate_max_abs:.3g})")
        for i, (n, layer) in enumerate(d.primary[: args.limit]):
            extra = ""
            if "margins" in summary and i < len(summary["margins"]):
                mm = summary["margins"][i]
                extra = f" margin A {mm['margin_a']:.3g}, B {mm['margin_b']:.3g}"
            print(f"  token {int(n)} layer {int(layer)}{extra}")
    return exit_codes.OK if d.differing == 0 else exit_codes.FAILED


def run_load(args) -> int:
    from lite_llm.optimized.train.records import read_record, record_load

    labels = args.labels.split(",") if args.labels else [Path(r).name for r in args.records]
    if len(labels) != len(args.records):
        raise LiteLLMError(f"{len(labels)} labels for {len(args.records)} records", clause="REC-1.2")
    loads = [(lab, record_load(read_record(r))) for lab, r in zip(labels, args.records)]
    if args.png:
        from lite_llm.optimized.train.plots import load_plot

        load_plot(loads, args.png, args.layer)
    if args.json:
        print(json.dumps({lab: st for lab, st in loads}))
    else:
        for lab, st in loads:
            cv = st["load_cv"]
            print(f"{lab}: load CV per level {cv[0]:.4f} / {cv[1]:.4f} / {cv[2]:.4f} (mean over layers)")
        if args.png:
            print(f"plot: {args.png}")
    return 0
