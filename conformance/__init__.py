"""The Lite LLM conformance suite (spec chapter 11): frozen vectors and a runner for any implementation.

- ``case``: the case format and its loader; ``tensors``: the ``.npy`` files; ``compare``: bit-exact
  and tolerance comparison; ``runner``: statuses, skips and xfails, unread-file checks;
  ``report``: the table, JSON, JUnit XML, Markdown; ``coverage``: clauses without a case.
- ``adapters``: the in-process adapter protocol and ``--impl``; ``reference_adapter`` and
  ``optimized_adapter``; ``protocol``: the JSON-lines protocol, both ends.
- ``generate`` and ``gen_<level>``: the vectors, computed by the reference; ``draw``: deterministic
  inputs; ``fuzz``: differential testing; ``pytest_plugin``: the cases inside a user's pytest.

``conformance/README.md`` is the guide for writing a harness.
"""
