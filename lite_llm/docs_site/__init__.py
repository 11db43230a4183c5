"""The documentation site: pages generated from the spec, the proofs, the conformance results and the benchmarks.

``lite-llm docs build`` (``lite_llm/commands/docs.py``) is the only user of this package:

- :mod:`lite_llm.docs_site.sources` reads what the pages show (clauses, citations, cases, certificates,
  recorded conformance reports, benchmark results) from a repository checkout;
- :mod:`lite_llm.docs_site.pages` turns it into Markdown pages, deterministically (sorted, no timestamps);
- :mod:`lite_llm.docs_site.site` writes them into ``docs/``, checks committed pages for drift, refreshes the
  recorded conformance reports and runs MkDocs;
- :mod:`lite_llm.docs_site.hooks` is the MkDocs hook named in ``mkdocs.yml`` (navigation, benchmark plots,
  the package layout the API reference is read from).

Nothing else imports this package (the CLI is a leaf; this package sits beside it).
"""
