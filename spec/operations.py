"""Conformance levels and operations (CONF-1.5, CONF-3.2): the one source every copy is checked against.

The case schema's ``level`` enum and id pattern, the generators, the adapters of both
implementations and the table of CONF-3.2 in the spec text all name these; ``tests/spec`` checks
each copy against this module, the Markdown table included, so none of them can drift.
"""
from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("routing", "layer", "model", "checkpoint", "selection", "loss")   # CONF-1.5, in report order


@dataclass(frozen=True)
class Operation:
    """One row of the CONF-3.2 table; the text fields are the table's cells, verbatim (Markdown)."""

    name: str        # what a request's ``operation`` says, e.g. "route"
    level: str       # the conformance level its cases sit in (one of LEVELS)
    params: str      # the scalar parameters it reads
    inputs: str      # its tensor and directory inputs
    outputs: str     # what it returns


OPERATION_TABLE = (
    Operation('route', 'routing',
              params="`tierset` (a list of names and ids, TIER-2.1), `seed` (HSER-4.1; absent or `null`: the config's)",
              inputs='`hidden` (T, d); `router_tier.{t}` (d), `router_group.{t}` (G_t, d), `router_expert.{t}` (G_t, E_t, d) for every tier id `t`',
              outputs='the routing record of HSER-9.3'),
    Operation('tier_set', 'routing',
              params='`tierset` (list, or `all`, `exclusive:NAME`, `cumulative:NAME`, `a,b,c`)',
              inputs='',
              outputs='`tiers` (n) int32'),
    Operation('quantize', 'routing',
              params='`limbs`',
              inputs='`x` (n, d) float32',
              outputs='`q` int64, `absmax` float32, `scale` float64'),
    Operation('logits', 'routing',
              params='`hidden_limbs`, `weight_limbs`',
              inputs='`x` (T, d), `w` (n, d) float32',
              outputs='`acc` (T, n) int64, `z` (T, n) float64'),
    Operation('mix64', 'routing',
              params='',
              inputs='`x` (n) uint64',
              outputs='`y` (n) uint64'),
    Operation('level_seed', 'routing',
              params='',
              inputs='`seed`, `level`, `tier`, `group` (n) uint64',
              outputs='`level_seed` (n) uint64'),
    Operation('tie_keys', 'routing',
              params='`n`',
              inputs='`level_seed` (B) uint64',
              outputs='`keys` (B, n) uint64'),
    Operation('canonical_exp', 'routing',
              params='',
              inputs='`t` (n) float32',
              outputs='`y` (n) float32'),
    Operation('tree_sum', 'routing',
              params='',
              inputs='`v` (B, n) float32',
              outputs='`sum` (B) float32'),
    Operation('softmax', 'routing',
              params='',
              inputs='`z` (B, n) float64',
              outputs='`p` (B, n) float32'),
    Operation('top_k', 'routing',
              params='`k`',
              inputs='`z` (B, n) float64, `keys` (n) uint64',
              outputs='`index` (B, min(k, n)) int32'),
    Operation('renormalise', 'routing',
              params='',
              inputs='`p` (B, m) float32, all chosen',
              outputs='`r` (B, m) float32'),
    Operation('moe_layer', 'layer',
              params='`layer`, `tierset`, `seed`',
              inputs="`x` (N, d) float32; the layer's tensors of the TierSet's tiers (INIT-2 names)",
              outputs='`out` (N, d), `route.FIELD` (the record)'),
    Operation('forward', 'model',
              params='`tierset`, `seed`',
              inputs='`tokens` (T) or (B, T); the tensors of INIT-2 (none of tiers outside the TierSet)',
              outputs='`logits`, `router_input.{l}` (N, d), `route.{l}.FIELD` for the index fields'),
    Operation('generate', 'model',
              params='`tierset`, `seed`, `max_new_tokens`',
              inputs='`prompt` (T); the tensors',
              outputs='`tokens` (n) int64'),
    Operation('greedy_token', 'model',
              params='',
              inputs='`logits` (B, V)',
              outputs='`token` (B) int64'),
    Operation('init_weights', 'model',
              params='`seed`',
              inputs='',
              outputs='every tensor of INIT-2, by name'),
    Operation('uniform_tensor', 'model',
              params='`seed`, `name`, `shape`, `bound`',
              inputs='',
              outputs='`values` float32'),
    Operation('fnv1a64', 'model',
              params='`names`',
              inputs='',
              outputs='`hash` (n) uint64'),
    Operation('param_report', 'model',
              params='`tierset` (optional)',
              inputs='',
              outputs='the value `report`: every count of PARAM-2 .. PARAM-4'),
    Operation('generated_expert', 'model',
              params='`seed`, `tier` (name or id), `layer`, `group`, `expert`',
              inputs='',
              outputs='`w_gate`, `w_up` (d_ff_t, d), `w_down` (d, d_ff_t), `router_group` (d), `router_expert` (d) float32'),
    Operation('aux_loss', 'loss',
              params='`tierset`, `alpha` (optional)',
              inputs='`route.{l}.FIELD` (every field of HSER-9.3)',
              outputs='`total` float64, `cv` (L, 3) float64 (optional)'),
    Operation('select_budget', 'selection',
              params='',
              inputs='`utility`, `latency`, `memory` (M) float64, `tau`, `mu` () float64',
              outputs='the value `tiers`'),
    Operation('greedy_budget', 'selection',
              params='',
              inputs='as `select_budget`',
              outputs='the value `tiers`'),
    Operation('activation_stats', 'selection',
              params='`tierset`',
              inputs='`route.{i}.FIELD`',
              outputs='`chosen`, `size_bytes` (M) int64, `frequency`, `mean_prob`, `priority` (M) float64, the values `prefetch_order` and `prefetch_order_mean_prob` (optional)'),
    Operation('cache_trace', 'selection',
              params='`capacity`, `half_life` (optional)',
              inputs='`offsets` (S + 1), `units` (n), `sizes` (U) int64',
              outputs='`hit`, `admitted` (n) bool, `resident` (S, U) bool, `counts` (U) int64'),
    Operation('save_checkpoint', 'checkpoint',
              params='',
              inputs='the directory `checkpoint` (writable); the tensors',
              outputs='the directory, read back (CONF-3.4)'),
    Operation('load_checkpoint', 'checkpoint',
              params='`tierset`, `verify`',
              inputs='the directory `checkpoint`',
              outputs='every loaded tensor (and no other), the value `config`'),
    Operation('verify_checkpoint', 'checkpoint',
              params='`tierset`',
              inputs='the directory `checkpoint`',
              outputs='the values `ok`, `problems` (`[file, code]` pairs), `orphans`'),
    Operation('expand_checkpoint', 'checkpoint',
              params='`tier`, `seed`',
              inputs='the directory `checkpoint` (writable)',
              outputs='the directory, read back'),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in OPERATION_TABLE}

RECORD_FIELDS = ("tier", "group", "expert", "gate", "count", "tier_probs", "chosen_tiers", "group_probs",
                 "chosen_groups", "expert_probs")      # the arrays of a routing record (HSER-9.3) besides tier_set
INDEX_FIELDS = ("tier", "group", "expert", "count", "chosen_tiers", "chosen_groups")   # its integer fields
DATA_INPUTS = ("x", "tokens", "prompt", "logits")      # tensor inputs that are data; every other one is a weight
