"""``lite-llm checkpoint``: create, expand, inspect and verify tier-indexed checkpoints (CKPT, EXP chapters)."""
from __future__ import annotations

import json

from lite_llm.commands.inputs import add_allow_large, check_memory, model_bytes, seed_arg
from lite_llm.spec.configs import resolve_config
from lite_llm.spec.config import PLACEMENTS, TierConfig, parse_seed
from lite_llm.spec.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("checkpoint", help="create, expand, inspect and verify checkpoints",
                       description="Tier-indexed checkpoints: a JSON manifest plus one safetensors shard per tier "
                                   "and one dense shard (spec chapters 8 and 9).")
    cmds = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    q = cmds.add_parser("init", help="save a freshly initialised model (INIT chapter) as a new checkpoint")
    q.add_argument("dir", metavar="DIR", help="checkpoint directory to create (must not hold a checkpoint)")
    q.add_argument("--config", required=True, help="config JSON file or bundled name (e.g. tiny)")
    q.add_argument("--seed", type=seed_arg, required=True, help="initialisation seed, an integer or 0x-hex in [0, 2**64)")
    add_allow_large(q)
    q.set_defaults(func=run_init)

    q = cmds.add_parser("expand", help="add a tier, initialised from a seed; existing shards stay byte-identical")
    q.add_argument("dir", metavar="DIR", help="checkpoint directory")
    q.add_argument("--tier", required=True, metavar="NAME:GROUPS:EXPERTS:D_FF[:PLACEMENT]",
                   help=f"the new tier; PLACEMENT is one of {', '.join(PLACEMENTS)} (default HBM)")
    q.add_argument("--seed", type=seed_arg, required=True, help="initialisation seed of the new tier's tensors")
    q.add_argument("--no-verify", action="store_true",
                   help="skip hashing the existing shards first (sizes and headers are still checked)")
    add_allow_large(q)
    q.set_defaults(func=run_expand)

    q = cmds.add_parser("hashes", help="write expert-hashes.json: per-expert SHA-256 blocks for serving from "
                                       "storage (PLACE-4.10), so a server never reads a whole shard to check one expert")
    q.add_argument("dir", metavar="DIR_OR_URL", help="checkpoint directory or fsspec URL")
    q.set_defaults(func=run_hashes)
    q = cmds.add_parser("inspect", help="print the tiers, budgets, placements, sizes and hashes")
    q.add_argument("dir", metavar="DIR", help="checkpoint directory")
    q.add_argument("--json", action="store_true", help="print the manifest as JSON instead of a table")
    q.set_defaults(func=run_inspect)

    q = cmds.add_parser("verify", help="check the manifest and the shards' sizes, headers and SHA-256")
    q.add_argument("dir", metavar="DIR", help="checkpoint directory")
    q.add_argument("--tierset", default=None,
                   help="check only the dense shard and these tiers: all | exclusive:NAME | cumulative:NAME | a,b")
    q.add_argument("--json", action="store_true", help="print the verdict and every problem as one JSON object")
    q.set_defaults(func=run_verify)


def parse_tier(text: str) -> TierConfig:
    """``NAME:GROUPS:EXPERTS:D_FF[:PLACEMENT]`` as a TierConfig (validated when it joins the config)."""
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise ConfigError(f"--tier {text!r} is not NAME:GROUPS:EXPERTS:D_FF[:PLACEMENT]")
    name, *nums = parts[:4]
    try:
        groups, experts, d_ff = (int(x) for x in nums)
    except ValueError:
        raise ConfigError(f"--tier {text!r}: GROUPS, EXPERTS and D_FF must be integers") from None
    return TierConfig(name, groups, experts, d_ff, *parts[4:])


def run_init(args) -> int:
    from lite_llm.reference.checkpoint import save_checkpoint
    from lite_llm.reference.weights import init_model_weights

    cfg = resolve_config(args.config)
    seed = parse_seed(args.seed)
    check_memory(model_bytes(cfg), f"initialising {args.config}", args.allow_large)
    m = save_checkpoint(args.dir, cfg, init_model_weights(cfg, seed))
    print(f"saved checkpoint {args.dir}: {cfg.n_tiers} tiers, {total_parameters(m.raw):,} parameters, seed {seed}")
    return 0


def run_expand(args) -> int:
    from lite_llm.reference.expand import expand_checkpoint

    from lite_llm.reference.checkpoint import read_manifest

    tier = parse_tier(args.tier)
    old = read_manifest(args.dir).cfg
    if tier.name not in {t.name for t in old.tiers}:
        cfg = old.with_tier(tier)                                  # validates the tier (TIER-1.1) before any work
        check_memory(model_bytes(cfg, [cfg.n_tiers - 1]), f"initialising tier {tier.name}", args.allow_large)
    # a name the checkpoint already has is refused by expand_checkpoint itself, with E_CKPT_TIER_EXISTS (EXP-1.6)
    m = expand_checkpoint(args.dir, tier, parse_seed(args.seed), verify=not args.no_verify)
    e = m.tiers[-1]
    print(f"added tier {e['name']} (id {e['id']}, {e['placement']}, budget {e['budget']:,} parameters) "
          f"to {args.dir}: shard {e['file']}; existing shards unchanged")
    return 0


def run_hashes(args) -> int:
    try:
        from lite_llm.optimized.storage.sources import write_expert_hashes
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] == "torch":
            raise ModuleNotFoundError("No module named 'torch'", name="torch") from None
        raise
    where = write_expert_hashes(args.dir)
    print(f"wrote {where}: the block hashes of every tier's experts and router rows (PLACE-4.10)")
    return 0


def total_parameters(raw: dict) -> int:
    return raw["dense"]["parameters"] + sum(t["budget"] for t in raw["tiers"])


def run_inspect(args) -> int:
    import sys

    from lite_llm.reference.checkpoint import read_manifest, verify_checkpoint

    m = read_manifest(args.dir)
    rep = verify_checkpoint(args.dir)                         # a damaged checkpoint is never shown without a warning
    if not rep.ok:
        first = rep.problems[0]
        print(f"warning: checkpoint {args.dir} is NOT valid ({len(rep.problems)} problem(s), first: {first.file}: "
              f"{first.code} {first.message}); run 'lite-llm checkpoint verify {args.dir}'", file=sys.stderr)
    if args.json:
        print(json.dumps(m.raw, sort_keys=True, indent=2))
        return 0 if rep.ok else 1
    c, r = m.cfg, m.cfg.router
    print(f"checkpoint {args.dir} ({m.raw['format']}, schema {m.raw['schema_version']}, spec {m.raw['spec_version']})")
    print(f"model: d_model {c.d_model}, {c.n_layers} layers, {c.n_heads} heads, vocab {c.vocab_size}; "
          f"router k = ({r.k_tier}, {r.k_group}, {r.k_expert}), limbs {r.hidden_limbs}+{r.weight_limbs}, "
          f"routing seed {r.seed}")
    rows = [("id", "tier", "placement", "groups x experts", "d_ff", "budget (params)", "bytes", "sha256", "file")]
    d = m.dense
    rows.append(("-", "dense", "-", "-", "-", f"{d['parameters']:,}", f"{d['bytes']:,}", d["sha256"][:16], d["file"]))
    for e, t in zip(m.tiers, c.tiers):
        rows.append((str(e["id"]), e["name"], e["placement"], f"{t.groups} x {t.experts_per_group}", str(t.d_ff),
                     f"{e['budget']:,}", f"{e['bytes']:,}", e["sha256"][:16], e["file"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {0, 4, 5, 6}
    for row in rows:
        print("  " + "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip())
    nbytes = d["bytes"] + sum(e["bytes"] for e in m.tiers)
    print(f"total: {total_parameters(m.raw):,} parameters ({d['parameters']:,} dense + "
          f"{sum(e['budget'] for e in m.tiers):,} in {c.n_tiers} tiers), {nbytes:,} bytes of shards")
    return 0 if rep.ok else 1


def run_verify(args) -> int:
    from lite_llm.reference.checkpoint import verify_checkpoint

    rep = verify_checkpoint(args.dir, args.tierset)
    if args.json:
        problems = ([rep.manifest_problem] if rep.manifest_problem is not None else []) + \
                   [s.problem for s in rep.shards if s.problem is not None]
        print(json.dumps({"checkpoint": str(args.dir), "tierset": args.tierset, "ok": rep.ok,
                          "problems": [{"file": str(p.file), "code": p.code, "clause": p.clause, "message": p.message}
                                       for p in problems],
                          "shards": [{"file": str(s.file), "label": s.label, "ok": s.problem is None}
                                     for s in rep.shards], "orphans": sorted(rep.orphans)}))
        return 0 if rep.ok else 1

    def fail(p):
        print(f"FAIL  {p.file}: {p.code} [{p.clause}] {p.message}")

    if rep.manifest_problem is not None:
        fail(rep.manifest_problem)
    for s in rep.shards:
        if s.problem is None:
            print(f"ok    {s.file} ({s.label}): size, SHA-256, header and tensors match the manifest")
        else:
            fail(s.problem)
    for name in rep.orphans:
        print(f"note  {name}: not named by the manifest (orphan of an interrupted write, or a foreign file); "
              f"harmless (CKPT-6.3)")
    scope = "every tier" if args.tierset is None else f"TierSet {args.tierset}"
    if rep.ok:
        print(f"checkpoint {args.dir} is valid for {scope}")
        return 0
    print(f"checkpoint {args.dir} is NOT valid for {scope}: {len(rep.problems)} problem(s)")
    return 1
