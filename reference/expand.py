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
"""
from __future__ import annotations

import os

from lite_llm.spec.config import TierConfig, config_to_dict, parse_seed
from lite_llm.spec.errors import CheckpointTierExistsError

from .checkpoint import MANIFEST, Manifest, manifest_bytes, open_shard, read_manifest, tier_entry, write_file_atomic, write_shard
from .weights import init_tier_weights


def expand_checkpoint(path: str | os.PathLike, tier: TierConfig, seed, *, verify: bool = True) -> Manifest:
    """Add ``tier`` to the checkpoint at ``path``, initialised under ``seed``; return the new manifest.

    Refused before any file is written: a bad seed (E_SEED, EXP-1.1), a tier name the checkpoint
    already has (E_CKPT_TIER_EXISTS, EXP-1.6), an invalid tier (E_CONFIG), a damaged checkpoint
    (the code of the failing check, EXP-1.5; ``verify=False`` skips the hashes, never the sizes and
    headers). Interrupted at any point, the previous checkpoint stays valid (EXP-1.4).
    """
    seed = parse_seed(seed)
    m = read_manifest(path)                                                     # EXP-1.5: CKPT-3
    if any(t.name == tier.name for t in m.cfg.tiers):
        raise CheckpointTierExistsError(f"already has a tier named {tier.name!r}; tier names are unique "
                                        f"(TIER-1.1)", path=m.directory / MANIFEST)
    new_cfg = m.cfg.with_tier(tier)             # E_CONFIG; TIER-1.6: appended; EXP-1.7: its own placement
    for label, entry in m.shards():                                             # EXP-1.5: every existing shard
        open_shard(m.directory, label, entry, hash_it=verify)
    new_id = m.cfg.n_tiers
    shard = write_shard(m.directory, f"tier-{tier.name}", init_tier_weights(new_cfg, seed, new_id))   # EXP-1.2
    raw = {**m.raw, "config": config_to_dict(new_cfg),                          # EXP-1.3: old entries as read
           "tiers": [*m.tiers, tier_entry(new_cfg, new_id, shard)]}
    write_file_atomic(m.directory / MANIFEST, manifest_bytes(raw))              # EXP-1.4: the commit
    return Manifest(m.directory, raw, new_cfg)
