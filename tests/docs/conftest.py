"""The site built from a copy of the tree with planted additions (see :func:`tests.docs.common.plant`)."""
from __future__ import annotations

import pytest

from tests.docs.common import copy_tree, lite_llm, need_docs_packages, plant


@pytest.fixture(scope="session")
def planted_site(tmp_path_factory):
    """(root, site, process): a copy of the tree with the planted additions, built by ``lite-llm docs build``."""
    need_docs_packages()
    root = copy_tree(tmp_path_factory.mktemp("planted") / "repo")
    plant(root)
    site = root / "site"
    proc = lite_llm("docs", "build", "--no-run", "--site-dir", str(site), cwd=root)
    return root, site, proc
