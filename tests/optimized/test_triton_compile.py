"""Every Triton kernel compiles for sm_90 (H100) with the installed Triton, without a GPU, and the
generated PTX holds no fused multiply-add, no flush-to-zero and no approximate division or
exponential: OVW-2.1, OVW-2.2 as far as the compiler's output can show them.

The cases are in ``triton_aot_cases``. The guard is complete: every module of
``lite_llm.optimized.triton`` must import (a failure fails, it is not skipped), every kernel in it
must have a case, and every other @triton.jit function must be called from a kernel (so it is
compiled as part of one). Only a missing Triton skips.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import textwrap
import traceback

import pytest

triton = pytest.importorskip("triton")

from triton.runtime.jit import KernelInterface  # noqa: E402 (after the skip)

PACKAGE = "lite_llm.optimized.triton"
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def import_package() -> tuple[dict, dict]:
    """Every module of the package imported: ({name: module}, {name: traceback of a failed import})."""
    modules, errors = {}, {}
    try:
        pkg = importlib.import_module(PACKAGE)
    except Exception:
        return modules, {PACKAGE: traceback.format_exc()}
    modules[PACKAGE] = pkg
    for info in pkgutil.walk_packages(pkg.__path__, PACKAGE + "."):
        try:
            modules[info.name] = importlib.import_module(info.name)
        except Exception:
            errors[info.name] = traceback.format_exc()
    return modules, errors


def jit_functions(modules: dict) -> dict:
    """name -> @triton.jit function, each defined in one of ``modules`` (imported names not counted twice)."""
    found = {}
    for mod_name, mod in modules.items():
        for name, obj in vars(mod).items():
            if isinstance(obj, KernelInterface) and getattr(obj.fn, "__module__", None) == mod_name:
                found[f"{mod_name}.{name}"] = obj
    return found


def is_kernel(fn) -> bool:
    """A launched kernel (``_..._kernel``), not a helper inlined into kernels."""
    return fn.fn.__name__.endswith("_kernel")


def called_jit(fn) -> set:
    """The @triton.jit functions that ``fn``'s body calls by name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn.fn)))
    names = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    g = fn.fn.__globals__
    return {id(g[n]) for n in names if isinstance(g.get(n), KernelInterface)}


def load_cases():
    try:
        from tests.optimized.triton_aot_cases import aot_cases
        return aot_cases(), None
    except Exception:
        return [], traceback.format_exc()


MODULES, IMPORT_ERRORS = import_package()
CASES, CASES_ERROR = load_cases()


def test_every_kernel_module_imports():
    assert not IMPORT_ERRORS, "modules of the Triton package failed to import:\n" + "\n".join(
        f"{name}:\n{tb}" for name, tb in IMPORT_ERRORS.items())
    assert CASES_ERROR is None, f"the compile cases failed to load:\n{CASES_ERROR}"
    for short in ("primitives", "quantize", "softmax_topk", "bucketing", "assemble", "route", "moe"):
        assert f"{PACKAGE}.{short}" in MODULES, f"module {short} not found in {PACKAGE}"


def test_every_kernel_has_a_compile_case():
    jit = jit_functions(MODULES)
    kernels = {name: f for name, f in jit.items() if is_kernel(f)}
    assert kernels, f"no kernels found in {PACKAGE}"
    covered = {id(c[0]) for c in CASES}
    missing = sorted(name for name, f in kernels.items() if id(f) not in covered)
    assert not missing, f"kernels without a compile case (add them to triton_aot_cases.py): {missing}"
    # Helpers are compiled inside the kernels that call them: each must be reachable from a kernel.
    by_id = {id(f): f for f in jit.values()}
    reached, todo = set(), [id(f) for f in kernels.values()]
    while todo:
        i = todo.pop()
        if i not in reached:
            reached.add(i)
            todo += [j for j in called_jit(by_id[i]) if j in by_id]
    unreached = sorted(name for name, f in jit.items() if id(f) not in reached)
    assert not unreached, f"@triton.jit helpers no kernel calls (so never compiled by this test): {unreached}"


@pytest.mark.skipif(INTERPRET, reason="kernels are interpreted in this process; nothing to compile")
@pytest.mark.parametrize("i", range(len(CASES)))
def test_kernel_compiles_for_sm90_without_fma_or_ftz(i):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel, types, constexprs, options = CASES[i]
    named = set(types) | set(constexprs)
    assert named == set(kernel.arg_names), f"names in the case xor the kernel: {sorted(named ^ set(kernel.arg_names))}"
    sig = {a: types.get(a, "constexpr") for a in kernel.arg_names}
    compiled = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs),
                              target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": False, **options})
    ptx = compiled.asm["ptx"]
    exact = getattr(kernel, "exact_arithmetic", True)
    print(kernel.fn.__name__, {k: v for k, v in constexprs.items()}, f"{len(ptx)} bytes of PTX")
    assert ".ftz" not in ptx, "flush-to-zero would lose subnormals (OVW-2.1)"
    if exact:
        assert "fma." not in ptx, "a fused multiply-add (OVW-2.2)"
        assert ".approx" not in ptx and "div.full" not in ptx, "an approximate division or exp (OVW-2.2)"
