"""The Lite LLM conformance suite (spec chapter 11): frozen vectors and a runner for any implementation.

- ``case``: the case format and its loader; ``tensors``: the ``.npy`` files; ``compare``: bit-exact
  and tolerance comparison; ``runner``: statuses, skips and xfails, unread-file checks;
  ``report``: the table, JSON, JUnit XML, Markdown; ``coverage``: clauses without a case.
- ``adapters``: the suite's side of the adapter interface (``lite_llm.spec.adapter`` defines it;
  each implementation's adapter lives beside it: ``lite_llm.reference.adapter``,
  ``lite_llm.optimized.adapter``); ``implementations``: the ``--impl`` forms; ``harness``: the
  runner's end of the JSON-lines protocol (``cmd:``); ``protocol``: the harness's end, for Python.
- ``generate`` and ``gen_<level>``: the vectors, computed by the reference; ``draw``: deterministic
  inputs; ``fuzz``: differential testing; ``pytest_plugin``: the cases inside a user's pytest.

``conformance/README.md`` is the guide for writing a harness.
"""
