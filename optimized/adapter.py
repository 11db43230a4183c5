"""The optimized implementation's conformance adapter (``--impl optimized``, ``--device cpu`` or ``cuda``;
or ``lite_llm.optimized.adapter:OptimizedAdapter``): the conformance operations mapped onto the torch
implementation. It imports only the spec's adapter interface, never the reference or the suite.

Inputs become torch tensors on the device; outputs come back as NumPy arrays. Only the operations
the optimized package implements are offered (OVW-1.3); the runner skips the others as *not
offered*. Words (seeds, keys) live in int64 tensors with the bits of the uint64 words
(``optimized.seeds``), so they are viewed, never converted, at the boundary.

Not offered, because ``lite_llm.optimized`` does not implement them (use the reference):
TierSet selection and activation statistics (``select_budget``, ``greedy_budget``,
``activation_stats``; chapters SEL, PLACE), parameter accounting (``param_report``; PARAM) and writing checkpoints
(``save_checkpoint``, ``verify_checkpoint``, ``expand_checkpoint``; CKPT, EXP).
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.adapter import Request, record_count, request_config, tier_set_outputs, weight_inputs
from lite_llm.spec.operations import INDEX_FIELDS, RECORD_FIELDS


def _torch():
    import torch

    return torch


class OptimizedAdapter:
    """Runs the operations that ``lite_llm.optimized`` offers on one device."""

    def __init__(self, device: str = "cpu"):
        torch = _torch()
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch sees no CUDA device")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"--device {device!r}: expected cpu or cuda")
        self.device = torch.device(device)
        self.name = f"optimized ({device})"
        self.operations = {m[3:] for m in dir(self) if m.startswith("op_")}

    def run(self, req: Request) -> dict:
        return getattr(self, f"op_{req.operation}")(req)

    # --- helpers -------------------------------------------------------------------------------
    def tensor(self, a: np.ndarray, logical: str | None = None):
        torch = _torch()
        t = torch.from_numpy(np.ascontiguousarray(a))
        if logical == "bfloat16":
            t = t.view(torch.int16).view(torch.bfloat16)
        return t.to(self.device)

    def words(self, a: np.ndarray):
        """uint64 words as the int64 tensor with the same bits."""
        return self.tensor(np.asarray(a, np.uint64).view(np.int64))

    @staticmethod
    def unwords(t) -> np.ndarray:
        return t.cpu().numpy().astype(np.int64).view(np.uint64)

    # --- routing level ---------------------------------------------------------------------------
    def op_route(self, req: Request) -> dict:
        from lite_llm.optimized.router import load_router, route

        cfg = request_config(req)
        weights = {}
        for t, tc in enumerate(cfg.tiers):
            for kind in ("tier", "group", "expert"):
                name = f"router_{kind}.{t}"
                if name in req.inputs:
                    weights[f"layers.0.tiers.{tc.name}.router_{kind}"] = req.inputs[name]
        router = load_router(cfg, weights, 0, self.device)
        h = req.inputs["hidden"]
        h = self.tensor(h, "bfloat16") if req.dtypes.get("hidden") == "bfloat16" else h
        r = route(h, router, req.params["tierset"], req.params.get("seed"))
        return {**{f: getattr(r, f).cpu().numpy() for f in RECORD_FIELDS},
                "tier_set": np.asarray(r.tier_set, np.int32)}

    def op_tier_set(self, req: Request) -> dict:
        # The optimized package resolves TierSets with the shared spec module lite_llm.spec.tierset
        # (router, moe, model: tier_set for names/ids; checkpoint: parse_tier_set for the string forms),
        # so this case runs the code the optimized package runs, the way optimized.checkpoint calls it.
        return tier_set_outputs(req)

    def op_quantize(self, req: Request) -> dict:
        from lite_llm.optimized.quantize import dequant_scale, quantize_rows

        limbs = req.params["limbs"]
        q, absmax = quantize_rows(self.tensor(req.inputs["x"]), limbs)
        return {"q": q.cpu().numpy().astype(np.int64), "absmax": absmax.cpu().numpy(),
                "scale": dequant_scale(absmax, limbs).cpu().numpy()}

    def op_logits(self, req: Request) -> dict:
        from lite_llm.optimized.logits import exact_dot, logits
        from lite_llm.optimized.quantize import dequant_scale, quantize_rows

        lx, lw = req.params["hidden_limbs"], req.params["weight_limbs"]
        qx, ax = quantize_rows(self.tensor(req.inputs["x"]), lx)
        qw, aw = quantize_rows(self.tensor(req.inputs["w"]), lw)
        acc = exact_dot(qx, qw)
        z = logits(acc, dequant_scale(ax, lx), dequant_scale(aw, lw))
        return {"acc": acc.cpu().numpy().astype(np.int64), "z": z.cpu().numpy()}

    def op_mix64(self, req: Request) -> dict:
        from lite_llm.optimized.seeds import mix64

        return {"y": self.unwords(mix64(self.words(req.inputs["x"])))}

    def op_level_seed(self, req: Request) -> dict:
        from lite_llm.optimized.seeds import level_seed

        cols = [req.inputs[n].tolist() for n in ("seed", "level", "tier", "group")]
        return {"level_seed": np.array([level_seed(*row) for row in zip(*cols)], np.uint64)}

    def op_tie_keys(self, req: Request) -> dict:
        from lite_llm.optimized.seeds import tie_keys

        return {"keys": self.unwords(tie_keys(self.words(req.inputs["level_seed"]), req.params["n"]))}

    def op_canonical_exp(self, req: Request) -> dict:
        from lite_llm.optimized.cexp import canonical_exp

        return {"y": canonical_exp(self.tensor(req.inputs["t"])).cpu().numpy()}

    def op_tree_sum(self, req: Request) -> dict:
        from lite_llm.optimized.softmax import tree_sum

        return {"sum": tree_sum(self.tensor(req.inputs["v"])).cpu().numpy()}

    def op_softmax(self, req: Request) -> dict:
        from lite_llm.optimized.softmax import softmax

        return {"p": softmax(self.tensor(req.inputs["z"])).cpu().numpy()}

    def op_top_k(self, req: Request) -> dict:
        from lite_llm.optimized.ranking import top_k
        from lite_llm.optimized.seeds import ordered

        z = self.tensor(req.inputs["z"])
        idx = top_k(z, ordered(self.words(req.inputs["keys"])), req.params["k"])
        return {"index": idx[:, : min(req.params["k"], z.shape[1])].cpu().numpy().astype(np.int32)}

    def op_renormalise(self, req: Request) -> dict:
        from lite_llm.optimized.router import renormalise

        p = self.tensor(req.inputs["p"])
        return {"r": renormalise(p, p == p).cpu().numpy()}

    # --- layer and model levels ----------------------------------------------------------------------
    def weights(self, req: Request) -> dict:
        return {k: self.tensor(v) for k, v in weight_inputs(req).items()}

    def op_moe_layer(self, req: Request) -> dict:
        from lite_llm.optimized.moe import moe_layer

        x = req.inputs["x"]
        x = self.tensor(x) if x.dtype.kind == "f" else x          # other types go as they are, to be rejected
        out, r = moe_layer(request_config(req), self.weights(req), req.params["layer"], x,
                           req.params["tierset"], req.params.get("seed"), device=self.device)
        return {"out": out.cpu().numpy(), **{f"route.{f}": getattr(r, f).cpu().numpy() for f in RECORD_FIELDS},
                "route.tier_set": np.asarray(r.tier_set, np.int32)}

    def op_forward(self, req: Request) -> dict:
        from lite_llm.optimized.model import forward

        o = forward(request_config(req), self.weights(req), req.inputs["tokens"], req.params["tierset"],
                    seed=req.params.get("seed"), device=self.device)
        out = {"logits": o.logits.cpu().numpy()}
        for layer, (x, r) in enumerate(zip(o.router_inputs, o.routes)):
            out[f"router_input.{layer}"] = x.cpu().numpy()
            out.update({f"route.{layer}.{f}": getattr(r, f).cpu().numpy() for f in INDEX_FIELDS})
        return out

    def op_generate(self, req: Request) -> dict:
        from lite_llm.optimized.generate import generate

        new = generate(request_config(req), self.weights(req), req.inputs["prompt"],
                       req.params["max_new_tokens"], req.params["tierset"], req.params.get("seed"), device=self.device)
        return {"tokens": np.asarray(new, np.int64)}

    def op_greedy_token(self, req: Request) -> dict:
        from lite_llm.optimized.generate import greedy_token

        lg = self.tensor(req.inputs["logits"])
        return {"token": np.array([greedy_token(row) for row in lg], np.int64)}

    # --- initialisation (INIT) --------------------------------------------------------------------------
    def op_init_weights(self, req: Request) -> dict:
        from lite_llm.optimized.init import init_model_weights

        return {k: v.cpu().numpy() for k, v in init_model_weights(request_config(req), req.params["seed"],
                                                                  self.device).items()}

    def op_uniform_tensor(self, req: Request) -> dict:
        from lite_llm.optimized.init import uniform_tensor

        p = req.params
        return {"values": uniform_tensor(p["seed"], p["name"], tuple(p["shape"]), p["bound"], self.device).cpu().numpy()}

    def op_generated_expert(self, req: Request) -> dict:
        """One expert's weights and router rows of a generated tier, made on the device (INIT-3.1 .. 3.3)."""
        from lite_llm.optimized.generated import GeneratedSource

        cfg, p = request_config(req), req.params
        src = GeneratedSource(cfg, p["seed"], device=self.device)
        t, layer, g, e = cfg.tier_id(p["tier"]), p["layer"], p["group"], p["expert"]
        for what, v, n in (("layer", layer, cfg.n_layers), ("group", g, cfg.tiers[t].groups),
                           ("expert", e, cfg.tiers[t].experts_per_group)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n:
                raise IndexError(f"{what} {v!r} is outside [0, {n})")
        out = src.read_expert(layer, t, g, e)
        out["router_group"] = src.read_router_rows(layer, t, "router_group", g, 1)[0]
        row = g * cfg.tiers[t].experts_per_group + e
        out["router_expert"] = src.read_router_rows(layer, t, "router_expert", row, 1)[0]
        return {k: v.cpu().numpy() for k, v in out.items()}

    def op_fnv1a64(self, req: Request) -> dict:
        from lite_llm.optimized.init import fnv1a64

        return {"hash": np.array([fnv1a64(n) for n in req.params["names"]], np.uint64)}

    # --- loss level (AUX) -----------------------------------------------------------------------------
    def records(self, req: Request, cfg) -> list:
        """The routing records ``route.{l}.{field}`` of a request as optimized RouteResults on the device."""
        from lite_llm.optimized.router import RouteResult
        from lite_llm.spec.tierset import tier_set

        ids = tier_set(cfg, req.params["tierset"])
        return [RouteResult(**{f: self.tensor(req.inputs[f"route.{l}.{f}"]) for f in RECORD_FIELDS}, tier_set=ids)
                for l in range(record_count(req))]

    def op_aux_loss(self, req: Request) -> dict:
        from lite_llm.optimized.aux_loss import aux_loss

        cfg = request_config(req)
        alpha = {"alpha": req.params["alpha"]} if "alpha" in req.params else {}
        loss = aux_loss(cfg, self.records(req, cfg), **alpha)
        return {"total": np.float64(loss.total), "cv": np.array(loss.cv, np.float64).reshape(-1, 3)}

    # --- selection level: the expert-cache policy (PLACE-4) ----------------------------------------------
    def op_cache_trace(self, req: Request) -> dict:
        """``storage.policy.simulate`` over a trace; malformed traces and parameters are E_SHAPE (PLACE-4.3, 4.4)."""
        from lite_llm.optimized.storage.policy import simulate
        from lite_llm.spec.errors import ShapeError

        g = req.inputs
        offsets, units, sizes = (np.asarray(g[n]) for n in ("offsets", "units", "sizes"))
        problem = _trace_problem(offsets, units, sizes)
        if problem:
            raise ShapeError(problem, clause="PLACE-4.3")
        try:
            return simulate(offsets, units, sizes, req.params["capacity"], req.params.get("half_life"))
        except ValueError as e:
            raise ShapeError(str(e), clause="PLACE-4.4") from None

    # --- checkpoint level (reading) --------------------------------------------------------------------
    def op_load_checkpoint(self, req: Request) -> dict:
        from lite_llm.optimized.checkpoint import load_checkpoint
        from lite_llm.spec.config import config_to_dict

        cfg, w = load_checkpoint(req.inputs["checkpoint"], req.params.get("tierset"),
                                 verify=req.params.get("verify", True), device=self.device)
        return {"config": config_to_dict(cfg), **{k: v.cpu().numpy() for k, v in w.items()}}



def _trace_problem(offsets: np.ndarray, units: np.ndarray, sizes: np.ndarray) -> str:
    """What is wrong with a trace (PLACE-4.3), or ''."""
    for name, a in (("offsets", offsets), ("units", units), ("sizes", sizes)):
        if a.ndim != 1 or (a.size and (a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer))):
            return f"trace field {name!r} must be a 1-d integer array, got {a.dtype} {a.shape}"
    if offsets.size < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != units.size:
        return "trace offsets must start at 0, never decrease and end at the number of requests"
    if np.any(sizes < 1):
        return "unit sizes must be >= 1 byte"
    if units.size and (units.min() < 0 or units.max() >= sizes.size):
        return f"a request names a unit outside [0, {sizes.size})"
    for k in range(offsets.size - 1):
        if np.any(np.diff(units[offsets[k]:offsets[k + 1]]) <= 0):
            return f"step {k}: units must be ascending and distinct"
    return ""
