"""The NumPy reference implementation of Lite LLM (``lite_llm.reference``): the executable meaning of the spec.

Written for clarity, never for speed; it imports only ``lite_llm.spec``. Every function cites the
clause it implements. The conformance vectors are generated from it. Entry points, by chapter:

Router (HSER)
  ``router_weights.init_router_weights(cfg, seed, layer=0) -> RouterWeights`` (INIT-2.1);
  ``router_weights.quantize_router(cfg, weights) -> QuantizedRouter`` (HSER-1.4, HSER-2.6);
  ``router.route(h, qrouter, tiers, seed=None) -> RouteResult``: h (T, d); the record's fields are
  those of HSER-9.3 (``tier``, ``group``, ``expert``, ``gate``, ``count``, ... ``expert_probs``).
  Pieces: ``validate`` (HSER-1), ``quantize.quantize_rows / dequant_scale / split_limbs`` (HSER-2),
  ``logits.exact_dot / logits`` (HSER-3), ``seeds.mix64 / level_word / level_seed / tie_keys``
  (HSER-4), ``ranking.rank / top_k`` (HSER-5), ``cexp.canonical_exp`` and
  ``softmax.tree_sum / softmax`` (HSER-6), ``router.renormalise / active_set`` (HSER-8, HSER-9).
  ``fidelity.fidelity`` measures agreement with a float64 router (HSER-2.7).
Model (MODEL), binary32
  ``weights.init_model_weights(cfg, seed)`` and ``init.uniform_tensor / fnv1a64`` (INIT);
  ``model.forward(cfg, weights, tokens, tiers, seed=None) -> ModelOutput``; ``moe.moe_layer`` and
  ``moe.moe_combine`` (MODEL-3); ``norm.rms_norm``, ``attention.self_attention``, ``rope``,
  ``experts.swiglu`` (MODEL-2, MODEL-3.2); ``generate.generate / greedy_token`` (MODEL-5);
  ``model.forward_routing_margins`` (MODEL-4.5).
Losses, selection, accounting, placement
  ``aux_loss.aux_loss(cfg, routes, alpha)`` (AUX); ``selection.select_budget`` (the exact optimum,
  SEL-2) and ``selection.greedy_budget`` (SEL-3); ``params.param_report`` (PARAM);
  ``placement.activation_stats / prefetch_order`` (PLACE).
Checkpoints (CKPT, EXP)
  ``checkpoint.save_checkpoint / load_checkpoint / read_manifest / verify_checkpoint``;
  ``expand.expand_checkpoint(path, tier, seed)``.
Conformance
  ``adapter.ReferenceAdapter``: every conformance operation (CONF-3.2) on this implementation;
  the suite reaches it as ``--impl reference`` = ``lite_llm.reference.adapter:ReferenceAdapter``.
"""
