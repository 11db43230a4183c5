"""The Lite LLM specification (``lite_llm.spec``): normative text, schemas, and the small shared modules.

It imports no implementation. What lives here:

Text and clause ids
  ``chapters/*.md``: the normative chapters (OVW, TIER, HSER, INIT, MODEL, AUX, SEL, PARAM, CKPT,
  EXP, PLACE, CONF, ...), every clause with a stable id such as ``HSER-4.2``;
  ``clauses.registry() / all_clauses() / referenced_ids(text)``: the ids parsed from the chapters
  (``lite-llm spec clauses``).
Schemas
  ``schemas/config.schema.json`` and ``schemas/manifest.schema.json`` (the conformance case and
  protocol schemas sit beside the suite, in ``lite_llm.conformance``).
Shared types and data
  ``config``: ``ModelConfig`` / ``TierConfig`` / ``RouterConfig``, ``config_from_dict``,
  ``load_config``, ``parse_seed`` and the limits (TIER-1, HSER-4.1);
  ``configs``: the bundled configs (``tiny``, ``quadrillion``, ``fidelity-*``) and ``resolve_config``;
  ``tierset``: TierSet resolution (TIER-2, TIER-3), shared so both implementations read one meaning;
  ``tensors``: tensor names and shapes (INIT-2); ``operations``: conformance levels, the operation
  table of CONF-3.2 and the routing record's fields (HSER-9.3); ``adapter``: the in-process adapter
  interface (``Request``, CONF-3); ``errors``: the error classes and their codes (HSER-10.1, CKPT-7);
  ``results``: result types both implementations return; ``jsonio``: bounded JSON reading.
"""
