"""Training in the optimized implementation (spec chapter TRAIN), and routing records (chapter REC).

``lite_llm.optimized.train`` never imports ``lite_llm.reference``. One file per concept:

  forward.py            the training forward: the inference forward's exact routing (ids and gate values
                        from ``router.route``), gates and probabilities made differentiable by a
                        straight-through surrogate (TRAIN-2), SwiGLU experts in plain torch ops, and the
                        auxiliary loss with its gradient (TRAIN-3)
  checkpoint_writer.py  the CKPT writer: canonical safetensors bytes (CKPT-2.2), deterministic manifest
                        (CKPT-3.6), atomic writes (CKPT-4.1), frozen shards checked byte for byte (TRAIN-5)
  data.py               byte-level tokens of the Python standard library's own sources (no download)
  loop.py               AdamW, evaluation, periodic checkpoints, the loss log, determinism (TRAIN-4, TRAIN-6)
  records.py            the routing-record file (REC chapter): write, read, diff, routing margins
  plots.py              PNG plots (matplotlib): loss across expansion, per-expert load
"""
