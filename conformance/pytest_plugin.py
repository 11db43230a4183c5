"""A pytest plugin: the conformance cases as tests of a user's own pytest run (CONF-6.3).

    pytest --lite-llm-impl=mypkg.harness:Adapter                 # a Python adapter (CONF-3.1)
    pytest --lite-llm-impl="cmd:./my-harness" --lite-llm-levels=routing
    pytest --lite-llm-impl=optimized --lite-llm-device=cuda --lite-llm-only

An installed ``lite-llm`` registers it through the ``pytest11`` entry point ``lite_llm``; from a
source tree that is not installed, load it with ``-p lite_llm.conformance.pytest_plugin``. Without
``--lite-llm-impl`` it adds nothing. Each case
becomes one test ``lite-llm::IMPL::CASE_ID``; a skips file marks tests skipped and an xfails file
marks them ``xfail(strict=True)``, with the reasons of the files.
"""
from __future__ import annotations

import pytest

from .case import ReadLog


def pytest_addoption(parser) -> None:
    g = parser.getgroup("lite-llm", "Lite LLM conformance")
    g.addoption("--lite-llm-impl", action="append", default=[], metavar="IMPL",
                help="run the conformance cases against IMPL: reference, optimized, module:attr or cmd:COMMAND")
    g.addoption("--lite-llm-device", default="cpu", help="device of --lite-llm-impl=optimized (cpu or cuda)")
    g.addoption("--lite-llm-levels", default="", metavar="L1,L2", help="only these levels")
    g.addoption("--lite-llm-case", action="append", default=[], metavar="GLOB", help="only case ids matching GLOB")
    g.addoption("--lite-llm-skips", default=None, metavar="FILE", help="skips file: 'ID-or-glob  reason' lines")
    g.addoption("--lite-llm-xfails", default=None, metavar="FILE", help="xfails file: 'ID-or-glob  reason' lines")
    g.addoption("--lite-llm-vectors", default=None, metavar="DIR", help="vectors directory (default: committed)")
    g.addoption("--lite-llm-timeout", type=float, default=None, metavar="SECONDS",
                help="a cmd: harness silent this long on one case is killed and restarted (default 60)")
    g.addoption("--lite-llm-start-timeout", type=float, default=None, metavar="SECONDS",
                help="a cmd: harness must answer 'start' within SECONDS (default 60)")
    g.addoption("--lite-llm-only", action="store_true", help="run only the conformance cases, none of the "
                                                             "collected tests")


class ConformanceSuite(pytest.Collector):
    """The collector of one implementation's cases."""

    def __init__(self, *, impl: str, cases, **kw):
        super().__init__(**kw)
        self.impl, self.cases = impl, cases

    def collect(self):
        return [CaseItem.from_parent(self, name=c.id, case=c) for c in self.cases]


class CaseItem(pytest.Item):
    """One conformance case against one implementation."""

    def __init__(self, *, case, **kw):
        super().__init__(**kw)
        self.case = case

    def adapter(self):
        cache = self.config._lite_llm_adapters
        impl = self.parent.impl
        if impl not in cache:
            from .runner import open_adapter

            cache[impl] = open_adapter(impl, self.config.getoption("lite_llm_device"),
                                       timeout_s=self.config.getoption("lite_llm_timeout"),
                                       start_timeout_s=self.config.getoption("lite_llm_start_timeout"))
        return cache[impl]

    def runtest(self) -> None:
        from .adapters import offers
        from .runner import run_case

        adapter = self.adapter()
        if not offers(adapter, self.case.operation):
            pytest.skip(f"operation {self.case.operation!r} not offered by the implementation")
        status, detail = run_case(adapter, self.case, ReadLog())
        if status == "skip":
            pytest.skip(detail)
        if status in ("fail", "error"):
            raise CaseFailure(f"[{', '.join(self.case.clauses)}] {detail}")

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CaseFailure):
            from .runner import rerun_command

            rerun = rerun_command(self.parent.impl, self.config.getoption("lite_llm_device"), self.case.id,
                                  self.config.getoption("lite_llm_vectors"))
            return f"{self.case.id}: {excinfo.value}\n{self.case.description}\nrerun: {rerun}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.case.path / "case.json", 0, f"lite-llm conformance {self.case.id}"


class CaseFailure(AssertionError):
    """A case that did not pass: the message says where the outputs differ."""


def pytest_collection_modifyitems(session, config, items) -> None:
    impls = config.getoption("lite_llm_impl")
    if not impls:
        return
    from .case import LEVELS, default_vectors_root, load_cases
    from .runner import listed, read_id_list

    levels = [s.strip() for s in config.getoption("lite_llm_levels").split(",") if s.strip()] or list(LEVELS)
    cases = load_cases(config.getoption("lite_llm_vectors") or default_vectors_root(), levels)
    globs = {g: "" for g in config.getoption("lite_llm_case")}
    if globs:
        cases = [c for c in cases if listed(c.id, globs) is not None]
    skips = read_id_list(config.getoption("lite_llm_skips"))
    xfails = read_id_list(config.getoption("lite_llm_xfails"))
    config._lite_llm_adapters = {}
    if config.getoption("lite_llm_only"):
        items.clear()
    for impl in impls:
        suite = ConformanceSuite.from_parent(session, name=f"lite-llm::{impl}", impl=impl, cases=cases)
        for item in suite.collect():
            reason = listed(item.case.id, skips)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"skips file: {reason}"))
            reason = listed(item.case.id, xfails)
            if reason is not None:
                item.add_marker(pytest.mark.xfail(reason=f"xfails file: {reason}", strict=True))
            items.append(item)


def pytest_sessionfinish(session) -> None:
    from .adapters import close_adapter

    for adapter in getattr(session.config, "_lite_llm_adapters", {}).values():
        close_adapter(adapter)
