"""The usual, non-deterministic MoE pieces the benchmarks compare against: a float router (matmul + topk +
softmax of the chosen logits, Mixtral style), an argsort permutation, ``torch._grouped_mm`` SwiGLU experts and
an ``index_add_`` or un-permute combine. Their outputs can differ from run to run and with the batch size."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------
# the usual MoE layer (float router, permutation, _grouped_mm, index_add_)

def usual_router(x, w_router, k):
    """Float router: logits, top-k, softmax of the chosen logits (Mixtral style); (T, k) ids, gates."""
    logits = x @ w_router.T
    top, ids = torch.topk(logits, k, dim=1)
    return ids, torch.softmax(top.float(), dim=1)


def usual_experts(x, ids, gates, wgu_t, wd_t, combine: str):
    """argsort permutation, _grouped_mm gate/up, SwiGLU, _grouped_mm down, combine."""
    T, k = ids.shape
    f = wd_t.shape[1]
    flat = ids.reshape(-1)
    order = torch.argsort(flat)
    counts = torch.zeros(wgu_t.shape[0], dtype=torch.int64, device=x.device).scatter_add_(0, flat, torch.ones_like(flat))
    offs = torch.cumsum(counts, 0).to(torch.int32)                  # no host sync (bincount syncs on CUDA)
    tok = order // k
    h = torch._grouped_mm(x[tok], wgu_t, offs=offs)
    y = torch._grouped_mm(F.silu(h[:, :f]) * h[:, f:], wd_t, offs=offs)               # (P, d) sorted slots
    if combine == "index_add":
        out = torch.zeros((T, x.shape[1]), dtype=torch.float32, device=x.device)
        out.index_add_(0, tok, y.float() * gates.reshape(-1)[order, None])
        return out.to(x.dtype)
    ys = torch.empty_like(y)
    ys[order] = y
    return torch.bmm(gates.to(y.dtype)[:, None, :], ys.view(T, k, -1))[:, 0]            # un-permute + weighted sum


def usual_layer(combine):
    return lambda x, w_router, k, wgu_t, wd_t: usual_experts(x, *usual_router(x, w_router, k), wgu_t, wd_t, combine)
