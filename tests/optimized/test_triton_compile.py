"""Every Triton kernel compiles for sm_90 (H100) with the installed Triton, without a GPU, and the
generated PTX holds no fused multiply-add, no flush-to-zero and no approximate division or
exponential: OVW-2.1, OVW-2.2 as far as the compiler's output can show them."""
from __future__ import annotations

import os

import pytest

triton = pytest.importorskip("triton")

if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("kernels are interpreted in this process; nothing to compile", allow_module_level=True)


def compile_cases():
    from tests.optimized.triton_aot_cases import router_cases

    cases = list(router_cases())
    try:
        from tests.optimized.triton_aot_cases import moe_cases
        cases += list(moe_cases())
    except ImportError:
        pass
    return cases


CASES = compile_cases()


@pytest.mark.parametrize("i", range(len(CASES)))
def test_kernel_compiles_for_sm90_without_fma_or_ftz(i):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel, types, constexprs, options = CASES[i]
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
