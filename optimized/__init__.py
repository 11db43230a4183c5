"""The optimized PyTorch implementation of Lite LLM (``lite_llm.optimized``): CPU and CUDA, Triton
kernels on CUDA. Written from the spec text; it never imports ``lite_llm.reference``. Routing, the
MoE combine, the embedding lookup and the greedy choice are bit-exact with the spec (and so with the
reference) on every device; the floating-point parts of the model meet MODEL-4.3.

Operations offered (OVW-1.3) and their entry points:

Router (HSER chapter)
  ``router.load_router(cfg, weights, layer=0, device="cpu") -> QuantizedRouter``
      ``weights``: the flat checkpoint dict name -> array/tensor (``layers.{l}.tiers.{NAME}.router_tier``
      (d,), ``.router_group`` (G, d), ``.router_expert`` (G, E, d), INIT-2.1); quantized once (HSER-2.6);
      E_WEIGHTS for a missing, misshapen, non-binary32 or non-finite tensor (HSER-1.4).
  ``router.route(h, qrouter, tiers, seed=None, backend="auto") -> RouteResult``
      h (T, d) float16/bfloat16/float32/float64, torch or numpy; ``tiers`` names or ids; backend
      "auto" = Triton kernels on CUDA, torch elsewhere; "torch" or "triton" to force one. The Triton
      kernels take 1 or 2 limbs per side: with ``hidden_limbs = 3`` (TIER-1.5) "auto" runs the exact
      torch path on CUDA too (same bits; cost in HSER-2.7's note) and "triton" raises ValueError; the
      CUDA-graph paths of ``decode`` call the kernels directly and do not take 3 limbs. The record
      has the HSER-9.3 fields as torch tensors (``tier``, ``group``, ``expert``, ``gate``, ``count``,
      ``tier_probs``, ``chosen_tiers``, ``group_probs``, ``chosen_groups``, ``expert_probs``) and
      ``tier_set``; ``.to_numpy()`` gives them as a dict of numpy arrays.
  ``triton.route_flat(h, rows, key_ranks, k) -> FlatResult(probs, chosen)``: one exact level
      over every row of a ``router.QuantizedRows`` (a flat MoE router), one fused kernel (CUDA).
Pieces (each bit-exact with its clause; tensors on any device)
  ``validate.hidden_as_float32`` (HSER-1), ``quantize.quantize_rows / dequant_scale / split_limbs``
  (HSER-2), ``logits.exact_dot / logits`` (HSER-3), ``seeds.mix64 / level_seed / tie_keys / ordered``
  (HSER-4; 64-bit words live in int64 tensors with the same bits, ``ordered`` makes signed order the
  unsigned order), ``ranking.top_k`` (HSER-5; keys in ``ordered`` form), ``cexp.canonical_exp``,
  ``softmax.tree_sum / softmax`` (HSER-6), ``router.renormalise`` and ``router.active_set`` (HSER-8,
  HSER-9).
Model (MODEL chapter), binary32
  ``moe.moe_layer(cfg, weights, layer, x, tiers, seed=None) -> (out (N, d), RouteResult)``;
  ``moe.combine(gate, count, y)`` (MODEL-3.3, exact); ``model.load_model(cfg, weights, tiers, device)``
  and ``model.forward(cfg, weights_or_model, tokens, tiers, seed=None, device="cpu", aux_alpha=0.01)
  -> ModelOutput`` (logits, routes, router_inputs, moe_outputs, aux_loss); ``generate.generate(cfg,
  weights, prompt, n, tiers, seed=None)`` and ``generate.greedy_token(logits)`` (MODEL-5).
Auxiliary load-balancing loss (AUX chapter), forward value in binary64
  ``aux_loss.aux_loss(cfg, routes, alpha=0.01) -> AuxLoss`` (``total``, ``alpha``, ``cv``: per layer
  (CV_1, CV_2, CV_3); ``per_layer``; ``float(loss)``) from the layers' ``RouteResult`` records of one
  batch, on their device; ``aux_loss.layer_cvs(cfg, route)`` one layer's CVs; ``aux_loss.cv(p, valid)``
  (AUX-1.1). Within AUX-1.1's ``1e-9 * max(1, |L_aux|)`` of the spec's value, not bit-exact.
Checkpoints (CKPT chapter, reading)
  ``checkpoint.load_checkpoint(path, tiers=None, verify=True, device="cpu") -> (cfg, tensors)``:
  opens only the manifest, the dense shard and the TierSet's shards, with the CKPT-5.4 checks.
CUDA kernels: the package ``triton`` (``lite_llm.optimized.triton``; its docstring indexes the
kernels): ``triton.quantize``, ``triton.softmax_topk``, ``triton.bucketing``, ``triton.assemble`` and
``triton.route`` (quantize + level 1 fused, bucketed levels 2 and 3, gates and active set) and
``triton.moe`` (grouped GEMMs for the SwiGLU experts, exact combine). The record types both backends
return (``RouteResult``, ``LevelOutputs``) are in ``router_types``, re-exported by ``router``.
Initialisation (INIT), bit-exact on every device
  ``init.uniform_tensor(seed, name, shape, bound, device)``, ``init.uniform_range(seed, name, start, n,
  bound, device)`` (any slice of a tensor's stream, for weights generated on demand),
  ``init.init_model_weights(cfg, seed, device)``, ``init.fnv1a64``, ``init.fan_in_bound``.
Serving
  ``decode``: ``KVCache``, ``Decoder`` (prefill + cached decode, MODEL-5.4), ``GraphRouter`` and
  ``GraphMoE`` (a CUDA graph per size bucket, no host sync on the hot path), ``StepGraph``;
  ``storage``: tiered expert storage (PLACE-4): GPU / host caches under the PLACE-4 policy, experts
  read by byte range from disk or any fsspec URL, every block hash-checked; ``generated``: tiers whose
  weights are produced on demand from the INIT stream.
Training (TRAIN) and routing records (REC)
  ``train``: the training forward (exact routes, straight-through gates), AdamW loop, checkpoint
  writer, routing-record files.
Conformance: ``adapter.OptimizedAdapter(device)`` (``--impl optimized``).
Not offered: TierSet selection and activation statistics (SEL, PLACE), parameter accounting (PARAM), writing, verifying and expanding checkpoints, and the AUX-2
comparison losses; use ``lite_llm.reference`` for those.
"""
