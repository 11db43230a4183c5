"""One-off probe of the GPU stack's arithmetic (run on the device machine): which of the spec's
assumptions (OVW-2.1 .. OVW-2.3) hold there. Prints a report; writes it to $OUT/probe.json."""
import json, os, sys, time
import numpy as np
import torch
import triton
import triton.language as tl

rep = {"torch": torch.__version__, "triton": triton.__version__, "python": sys.version.split()[0]}
dev = torch.device("cuda")
rep["gpu"] = torch.cuda.get_device_name(0)
rep["capability"] = list(torch.cuda.get_device_capability(0))


@triton.jit
def arith(x_ptr, y_ptr, o_mul, o_div, o_divrn, o_fma, o_rne, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    x = tl.load(x_ptr + i, mask=m)
    y = tl.load(y_ptr + i, mask=m)
    tl.store(o_mul + i, x * y, mask=m)
    tl.store(o_div + i, x / y, mask=m)
    tl.store(o_divrn + i, tl.div_rn(x, y), mask=m)
    tl.store(o_fma + i, x * y + x, mask=m)
    big = 12582912.0  # 1.5 * 2**23
    tl.store(o_rne + i, (x * 100.0 + big) - big, mask=m)


def run_arith(fusion):
    g = torch.Generator().manual_seed(0)
    n = 1 << 20
    x = (torch.randn(n, generator=g) * 3).float()
    y = (torch.randn(n, generator=g) * 3).float()
    x[:16] = torch.tensor([1e-38, 2e-38, 1.4e-45, 3e-39] * 4)
    y[:16] = torch.tensor([0.01, 0.5, 1.0, 0.25] * 4)
    xd, yd = x.to(dev), y.to(dev)
    outs = [torch.empty_like(xd) for _ in range(5)]
    arith[(n // 1024,)](xd, yd, *outs, n, BLOCK=1024, enable_fp_fusion=fusion)
    o = [t.cpu().numpy() for t in outs]
    xn, yn = x.numpy(), y.numpy()
    f = np.float32
    res = {
        "mul_exact": bool((o[0].view(np.uint32) == (xn * yn).view(np.uint32)).all()),
        "subnormal_mul": [float(v) for v in o[0][:4]],
        "div_exact": bool((o[1].view(np.uint32) == (xn / yn).view(np.uint32)).all()),
        "div_rn_exact": bool((o[2].view(np.uint32) == (xn / yn).view(np.uint32)).all()),
        "xy_plus_x_matches_unfused": bool((o[3].view(np.uint32) == ((xn * yn) + xn).view(np.uint32)).all()),
        "rne_trick_exact": bool((o[4] == np.rint(xn * f(100))).all()),
    }
    return res


rep["triton_fusion_on"] = run_arith(True)
rep["triton_fusion_off"] = run_arith(False)


@triton.jit
def i8dot(a_ptr, b_ptr, c_ptr, K: tl.constexpr):
    r = tl.arange(0, 64)
    k = tl.arange(0, 128)
    acc = tl.zeros((64, 64), dtype=tl.int32)
    for k0 in range(0, K, 128):
        A = tl.load(a_ptr + r[:, None] * K + (k0 + k)[None, :])
        B = tl.load(b_ptr + (k0 + k)[:, None] * 64 + r[None, :])
        acc += tl.dot(A, B, out_dtype=tl.int32)
    tl.store(c_ptr + r[:, None] * 64 + r[None, :], acc)


a = torch.randint(-127, 128, (64, 4096), dtype=torch.int8)
b = torch.randint(-127, 128, (4096, 64), dtype=torch.int8)
c = torch.empty(64, 64, dtype=torch.int32, device=dev)
i8dot[(1,)](a.to(dev), b.to(dev), c, K=4096)
rep["triton_int8_dot_exact"] = bool((c.cpu().long() == a.long() @ b.long()).all())

# torch._int_mm
try:
    A = torch.randint(-127, 128, (16384, 4096), dtype=torch.int8, device=dev)
    B = torch.randint(-127, 128, (4096, 64), dtype=torch.int8, device=dev)
    C = torch._int_mm(A, B)
    ref = (A[:64].cpu().long() @ B.cpu().long())
    rep["int_mm_exact"] = bool((C[:64].cpu().long() == ref).all())
except Exception as e:
    rep["int_mm_exact"] = f"error: {e}"
# float64 matmul of integer values
Ad = A[:512].double(); Bd = B.double()
rep["dgemm_int_exact"] = bool(((Ad @ Bd).cpu().long() == A[:512].cpu().long() @ B.cpu().long()).all())
rep["has_grouped_mm"] = hasattr(torch, "_grouped_mm")
if hasattr(torch, "_grouped_mm"):
    try:
        E, m, k, nn = 8, 256, 512, 256
        x = torch.randn(E * m, k, device=dev, dtype=torch.bfloat16)
        w = torch.randn(E, k, nn, device=dev, dtype=torch.bfloat16)
        offs = torch.arange(m, E * m + 1, m, device=dev, dtype=torch.int32)
        y = torch._grouped_mm(x, w, offs=offs)
        refy = torch.cat([x[i * m:(i + 1) * m] @ w[i] for i in range(E)])
        rep["grouped_mm"] = {"ok": True, "max_abs_diff": float((y.float() - refy.float()).abs().max())}
    except Exception as e:
        rep["grouped_mm"] = f"error: {e}"
# torch elementwise subnormal + topk tie order
z = torch.zeros(4, 64, device=dev)
rep["topk_ties_cuda"] = torch.topk(z, 4).indices[0].tolist()
rep["topk_ties_cpu"] = torch.topk(z.cpu(), 4).indices[0].tolist()
t = torch.tensor([1e-38], device=dev) * 0.01
rep["torch_cuda_subnormal_mul"] = float(t.item())
# bandwidth and bf16 matmul rate
x = torch.empty(1 << 30, dtype=torch.uint8, device=dev); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
s, e = torch.cuda.Event(True), torch.cuda.Event(True)
s.record()
for _ in range(10): y.copy_(x)
e.record(); torch.cuda.synchronize()
rep["copy_TBps"] = 2 * (1 << 30) * 10 / (s.elapsed_time(e) / 1e3) / 1e12
a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
s.record()
for _ in range(10): a @ b
e.record(); torch.cuda.synchronize()
rep["bf16_TFLOPs"] = 2 * 8192 ** 3 * 10 / (s.elapsed_time(e) / 1e3) / 1e12
print(json.dumps(rep, indent=1))
out = os.environ.get("OUT")
if out:
    json.dump(rep, open(os.path.join(out, "probe.json"), "w"), indent=1)
