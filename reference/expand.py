"""The tier expansion operator (paper section 7; spec chapter EXP).

``expand_checkpoint(path, tier, seed)`` appends a tier to a checkpoint: it freezes everything that
exists (no existing shard is written, EXP-1.3), initialises the new tier's router heads and experts
from (seed, tensor name) alone (EXP-1.2, INIT-1), writes the new tier's shard and then the new
manifest, the commit point (EXP-1.4, CKPT-4.2). Training the new tier is out of scope (EXP-1.8).

Backward compatibility (EXP-2.1, EXP-2.2) is a consequence, tested rather than computed here: the
old shards and their manifest entries are carried byte for byte, and the new tier is appended, so
ids, level seeds and tie keys of the old tiers do not move and routing under an old TierSet never
reads the new tier (TIER-2.6). Modes that resolve against T_max (Max, budget) do see the new tier
(EXP-2.4).

Concurrent expansions (EXP-1.9) run one after another under the checkpoint's writer lock (CKPT-4.6):
each reads the manifest, checks it and computes its tier id under the lock, and commits under the
generation check (CKPT-4.7), so every expansion that returns is in the manifest with the id it returns.
"""
from __future__ import annotations

import os
from pathlib import Path

from lite_llm.spec.config import TierConfig, config_to_dict, parse_seed
from lite_llm.spec.errors import CheckpointConflictError, CheckpointTierExistsError

from .checkpoint import MANIFEST, Manifest, commit_manifest, open_shard, read_manifest, tier_entry, writer_lock, write_shard
from .weights import init_tier_weights


def expand_checkpoint(path: str | os.PathLike, tier: TierConfig, seed, *, verify: bool = True,
                      base: str | Manifest | None = None) -> Manifest:
    """Add ``tier`` to the checkpoint at ``path``, initialised under ``seed``; return the new manifest.

    Refused before any file is written: a bad seed (E_SEED, EXP-1.1), a tier name the checkpoint
    already has (E_CKPT_TIER_EXISTS, EXP-1.6), an invalid tier (E_CONFIG), a damaged checkpoint
    (the code of the failing check, EXP-1.5; ``verify=False`` skips the hashes, never the sizes and
    headers). Interrupted at any point, the previous checkpoint stays valid (EXP-1.4).

    Everything from reading the manifest to the commit happens under the writer lock (CKPT-4.6,
    EXP-1.9): a concurrent expansion waits, then applies to the checkpoint this one committed, so the
    new tier's id is computed from the manifest as it is under the lock. ``base``, the generation
    (CKPT-4.7) of the checkpoint the caller planned against (or that checkpoint's ``Manifest``), makes
    the operator refuse with E_CKPT_CONFLICT, before writing anything, if the manifest has changed
    since; without it the tier is appended to whatever checkpoint is current. A commit that the
    generation check finds overtaken by a writer that ignores the lock raises E_CKPT_CONFLICT too:
    this returns only when the returned manifest is the one on disk.
    """
    seed = parse_seed(seed)
    planned = base.generation if isinstance(base, Manifest) else base
    read_manifest(path)                         # E_CKPT_MISSING etc. before the lock file is created
    with writer_lock(Path(path)):                                          # EXP-1.9, CKPT-4.6
        m = read_manifest(path)                                                 # EXP-1.5: CKPT-3, under the lock
        if planned is not None and m.generation != planned:                     # EXP-1.9: the caller's plan
            raise CheckpointConflictError(f"the checkpoint changed since the caller read it (generation "
                                          f"{planned[:16]}, now {m.generation[:16]}); nothing was written",
                                          path=m.directory / MANIFEST)
        if any(t.name == tier.name for t in m.cfg.tiers):
            raise CheckpointTierExistsError(f"already has a tier named {tier.name!r}; tier names are unique "
                                            f"(TIER-1.1)", path=m.directory / MANIFEST)
        new_cfg = m.cfg.with_tier(tier)         # E_CONFIG; TIER-1.6: appended; EXP-1.7: its own placement
        for label, entry in m.shards():                                         # EXP-1.5: every existing shard
            open_shard(m.directory, label, entry, hash_it=verify)
        new_id = m.cfg.n_tiers                                                  # EXP-1.9: from this manifest
        shard = write_shard(m.directory, f"tier-{tier.name}", init_tier_weights(new_cfg, seed, new_id))   # EXP-1.2
        raw = {**m.raw, "config": config_to_dict(new_cfg),                      # EXP-1.3: old entries as read
               "tiers": [*m.tiers, tier_entry(new_cfg, new_id, shard)]}
        generation = commit_manifest(m.directory, raw, m.generation)            # EXP-1.4, CKPT-4.7: the commit
    return Manifest(m.directory, raw, new_cfg, generation)
