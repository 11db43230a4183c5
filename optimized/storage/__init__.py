"""Tiered expert storage for serving (spec chapter PLACE, section 10.4): GPU memory, host memory,
local disk and object storage, with the expert-cache policy of PLACE-4.

- ``policy``: the policy (``CachePolicy``, ``simulate``), PLACE-4.4 .. PLACE-4.7.
- ``units``: unit ids and their byte ranges in checkpoint shards (PLACE-4.1, PLACE-4.2).
- ``sources``: checkpoints on disk or behind fsspec URLs, read by byte range with retries and
  per-block SHA-256 checks (PLACE-4.10); ``write_expert_hashes`` writes the block-hash sidecar.
- ``store``: the GPU and host caches, background fetches and prefetch (PLACE-4.8, PLACE-4.9), and
  ``StorageMetrics`` (hits, misses, bytes moved per storage class).
- ``serve``: forward and greedy generation with streamed experts, bit-identical to the all-in-memory
  model (PLACE-1.3).

Only ``policy`` and ``units`` are importable without torch.
"""
