"""The reference's conformance adapter (``--impl reference``, or ``lite_llm.reference.adapter:ReferenceAdapter``).

Each conformance operation (CONF-3.2, :mod:`lite_llm.spec.operations`) mapped onto the NumPy
reference, one method per operation named ``op_<operation>``. It lives beside the implementation and
imports only the spec's adapter interface (:mod:`lite_llm.spec.adapter`), never the conformance
suite; the runner finds it by the same ``module:attr`` path as any other implementation's adapter.
This is also the worked example of an in-process adapter.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lite_llm.spec.adapter import (Request, bfloat16_to_float32, record_count, request_config, tier_set_outputs,
                                   weight_inputs)
from lite_llm.spec.operations import INDEX_FIELDS, RECORD_FIELDS


def record_outputs(r, prefix: str = "") -> dict:
    """A routing record as outputs: the arrays of HSER-9.3, tier_set included (int32)."""
    return {**{f"{prefix}{f}": getattr(r, f) for f in RECORD_FIELDS},
            f"{prefix}tier_set": np.asarray(r.tier_set, np.int32)}


def hidden_input(req: Request, name: str = "hidden") -> np.ndarray:
    """A hidden-state input as the reference takes it; bfloat16 bit patterns become binary32 exactly."""
    a = req.inputs[name]
    return bfloat16_to_float32(a) if req.dtypes.get(name) == "bfloat16" else a


def router_inputs(req: Request, n_tiers: int, prefix: str = ""):
    """RouterWeights from the inputs ``router_tier.{t}``, ``router_group.{t}``, ``router_expert.{t}``.

    A missing tensor is passed on as None, which the reference rejects with E_WEIGHTS (HSER-1.4).
    """
    from lite_llm.reference.router_weights import RouterWeights

    def get(kind, t):
        return req.inputs.get(f"{prefix}router_{kind}.{t}")

    return RouterWeights(tuple(get("tier", t) for t in range(n_tiers)), tuple(get("group", t) for t in range(n_tiers)),
                         tuple(get("expert", t) for t in range(n_tiers)))


class ReferenceAdapter:
    """Runs every operation with ``lite_llm.reference`` (the executable meaning of the spec)."""

    name = "reference"

    @property
    def operations(self) -> set[str]:
        return {m[3:] for m in dir(self) if m.startswith("op_")}

    def run(self, req: Request) -> dict:
        with np.errstate(over="ignore", invalid="ignore"):     # IEEE overflow to inf is part of some cases
            return getattr(self, f"op_{req.operation}")(req)

    # --- routing level: the router (HSER-7 .. HSER-9) -----------------------------------------
    def op_route(self, req: Request) -> dict:
        from lite_llm.reference.router import route
        from lite_llm.reference.router_weights import quantize_router
        cfg = request_config(req)
        qr = quantize_router(cfg, router_inputs(req, cfg.n_tiers))
        r = route(hidden_input(req), qr, req.params["tierset"], req.params.get("seed"))    # HSER-4.1 default
        return record_outputs(r)

    def op_tier_set(self, req: Request) -> dict:
        return tier_set_outputs(req)

    # --- routing level: the pieces (operation cases) -------------------------------------------
    def op_quantize(self, req: Request) -> dict:
        from lite_llm.reference.quantize import dequant_scale, quantize_rows

        limbs = req.params["limbs"]
        q, absmax = quantize_rows(req.inputs["x"], limbs)
        return {"q": q, "absmax": absmax, "scale": dequant_scale(absmax, limbs)}

    def op_logits(self, req: Request) -> dict:
        from lite_llm.reference.logits import exact_dot, logits
        from lite_llm.reference.quantize import dequant_scale, quantize_rows

        lx, lw = req.params["hidden_limbs"], req.params["weight_limbs"]
        qx, ax = quantize_rows(req.inputs["x"], lx)
        qw, aw = quantize_rows(req.inputs["w"], lw)
        acc = exact_dot(qx, qw)
        return {"acc": acc, "z": logits(acc, dequant_scale(ax, lx), dequant_scale(aw, lw))}

    def op_mix64(self, req: Request) -> dict:
        from lite_llm.reference.seeds import mix64_array

        return {"y": mix64_array(req.inputs["x"])}

    def op_level_seed(self, req: Request) -> dict:
        from lite_llm.reference.seeds import level_seed

        cols = [req.inputs[n].tolist() for n in ("seed", "level", "tier", "group")]
        return {"level_seed": np.array([level_seed(*row) for row in zip(*cols)], np.uint64)}

    def op_tie_keys(self, req: Request) -> dict:
        from lite_llm.reference.seeds import tie_keys

        n = req.params["n"]
        return {"keys": np.stack([tie_keys(int(s), n) for s in req.inputs["level_seed"]]).reshape(-1, n)}

    def op_canonical_exp(self, req: Request) -> dict:
        from lite_llm.reference.cexp import canonical_exp

        return {"y": canonical_exp(req.inputs["t"])}

    def op_tree_sum(self, req: Request) -> dict:
        from lite_llm.reference.softmax import tree_sum

        return {"sum": tree_sum(req.inputs["v"])}

    def op_softmax(self, req: Request) -> dict:
        from lite_llm.reference.softmax import softmax

        return {"p": softmax(req.inputs["z"])}

    def op_top_k(self, req: Request) -> dict:
        from lite_llm.reference.ranking import top_k

        return {"index": top_k(req.inputs["z"], req.inputs["keys"], req.params["k"]).astype(np.int32)}

    def op_renormalise(self, req: Request) -> dict:
        from lite_llm.reference.router import renormalise

        p = req.inputs["p"]
        return {"r": renormalise(p, np.ones(p.shape, bool))}

    # --- layer and model levels (MODEL, INIT, PARAM) ----------------------------------------------
    def op_moe_layer(self, req: Request) -> dict:
        from lite_llm.reference.moe import moe_layer

        cfg = request_config(req)
        out, r = moe_layer(cfg, weight_inputs(req), req.params["layer"], req.inputs["x"], req.params["tierset"],
                           req.params["seed"])
        return {"out": out, **record_outputs(r, "route.")}

    def op_forward(self, req: Request) -> dict:
        from lite_llm.reference.model import forward

        cfg = request_config(req)
        o = forward(cfg, weight_inputs(req), req.inputs["tokens"], req.params["tierset"], seed=req.params["seed"])
        out = {"logits": o.logits}
        for layer, (x, r) in enumerate(zip(o.router_inputs, o.routes)):
            out[f"router_input.{layer}"] = x
            out.update({f"route.{layer}.{f}": getattr(r, f) for f in INDEX_FIELDS})
        return out

    def op_generate(self, req: Request) -> dict:
        from lite_llm.reference.generate import generate

        cfg = request_config(req)
        new = generate(cfg, weight_inputs(req), req.inputs["prompt"], req.params["max_new_tokens"],
                       req.params["tierset"], req.params["seed"])
        return {"tokens": np.asarray(new, np.int64)}

    def op_greedy_token(self, req: Request) -> dict:
        from lite_llm.reference.generate import greedy_token

        return {"token": np.array([greedy_token(row) for row in req.inputs["logits"]], np.int64)}

    def op_init_weights(self, req: Request) -> dict:
        from lite_llm.reference.weights import init_model_weights
        from lite_llm.spec.config import parse_seed

        return init_model_weights(request_config(req), parse_seed(req.params["seed"]))

    def op_uniform_tensor(self, req: Request) -> dict:
        from lite_llm.reference.init import uniform_tensor
        from lite_llm.spec.config import parse_seed

        p = req.params
        return {"values": uniform_tensor(parse_seed(p["seed"]), p["name"], tuple(p["shape"]), np.float32(p["bound"]))}

    def op_generated_expert(self, req: Request) -> dict:
        """One expert's weights and router rows of a generated tier (INIT-3.1 .. INIT-3.3)."""
        from lite_llm.reference.generated import generated_expert, router_rows
        from lite_llm.spec.config import parse_seed

        cfg, p = request_config(req), req.params
        seed, t, layer, g, e = parse_seed(p["seed"]), cfg.tier_id(p["tier"]), p["layer"], p["group"], p["expert"]
        out = generated_expert(cfg, seed, layer, t, g, e)
        out["router_group"] = router_rows(cfg, seed, layer, t, "router_group", [g])[0]
        out["router_expert"] = router_rows(cfg, seed, layer, t, "router_expert",
                                           [g * cfg.tiers[t].experts_per_group + e])[0]
        return out

    def op_fnv1a64(self, req: Request) -> dict:
        from lite_llm.reference.init import fnv1a64

        return {"hash": np.array([fnv1a64(n) for n in req.params["names"]], np.uint64)}

    def op_param_report(self, req: Request) -> dict:
        from lite_llm.reference.params import param_report

        from lite_llm.spec.tierset import parse_tier_set

        cfg = request_config(req)
        ts = req.params.get("tierset")
        r = param_report(cfg, parse_tier_set(cfg, ts) if isinstance(ts, str) else ts)
        return {"report": {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.to_dict().items()}}

    # --- loss and selection levels (AUX, SEL, PLACE) -----------------------------------------------
    def op_aux_loss(self, req: Request) -> dict:
        from lite_llm.reference.aux_loss import aux_loss

        cfg = request_config(req)
        loss = aux_loss(cfg, records(req, cfg), **({"alpha": req.params["alpha"]} if "alpha" in req.params else {}))
        return {"total": np.float64(loss.total), "cv": np.array(loss.cv, np.float64).reshape(-1, 3)}

    def op_activation_stats(self, req: Request) -> dict:
        from lite_llm.reference.placement import activation_stats, prefetch_order

        cfg = request_config(req)
        s = activation_stats(cfg, records(req, cfg), req.params["tierset"])
        col = lambda f, dt: np.array([getattr(a, f) for a in s.per_tier], dt)  # noqa: E731
        return {"chosen": col("chosen", np.int64), "frequency": col("frequency", np.float64),
                "mean_prob": col("mean_prob", np.float64), "size_bytes": col("size_bytes", np.int64),
                "priority": col("priority", np.float64), "prefetch_order": list(prefetch_order(s)),
                "prefetch_order_mean_prob": list(prefetch_order(s, "probability"))}

    def op_cache_trace(self, req: Request) -> dict:
        """The expert-cache policy over a trace (PLACE-4.3 .. PLACE-4.7)."""
        from lite_llm.reference.cache_policy import check_trace, simulate

        g = req.inputs
        run = simulate(check_trace(g["offsets"], g["units"], g["sizes"]), req.params["capacity"],
                       req.params.get("half_life"))
        return {"hit": run.hit, "admitted": run.admitted, "resident": run.resident, "counts": run.counts}

    def op_select_budget(self, req: Request) -> dict:
        from lite_llm.reference.selection import select_budget, select_for_config

        u, c, m, tau, mu = budget_inputs(req)
        if req.config is not None:
            return {"tiers": list(select_for_config(request_config(req), u, c, m, tau, mu))}
        return {"tiers": list(select_budget(u, c, m, tau, mu))}

    def op_greedy_budget(self, req: Request) -> dict:
        from lite_llm.reference.selection import greedy_budget

        return {"tiers": list(greedy_budget(*budget_inputs(req)))}

    # --- checkpoint level (CKPT, EXP) ---------------------------------------------------------------
    def op_save_checkpoint(self, req: Request) -> dict:
        from lite_llm.reference.checkpoint import save_checkpoint

        save_checkpoint(req.inputs["checkpoint"], request_config(req), weight_inputs(req))
        return {}

    def op_load_checkpoint(self, req: Request) -> dict:
        from lite_llm.reference.checkpoint import load_checkpoint
        from lite_llm.spec.config import config_to_dict

        cfg, w = load_checkpoint(req.inputs["checkpoint"], req.params.get("tierset"),
                                 verify=req.params.get("verify", True))
        return {"config": config_to_dict(cfg), **{k: np.array(v) for k, v in w.items()}}

    def op_verify_checkpoint(self, req: Request) -> dict:
        from lite_llm.reference.checkpoint import verify_checkpoint

        r = verify_checkpoint(req.inputs["checkpoint"], req.params.get("tierset"))
        return {"ok": r.ok, "problems": sorted([Path(p.file).name, p.code] for p in r.problems),
                "orphans": sorted(r.orphans)}

    def op_expand_checkpoint(self, req: Request) -> dict:
        from lite_llm.reference.expand import expand_checkpoint
        from lite_llm.spec.config import TierConfig
        from lite_llm.spec.errors import ConfigError

        try:
            tier = TierConfig(**req.params["tier"])
        except TypeError as e:
            raise ConfigError(f"new tier {req.params['tier']!r}: {e}") from None
        expand_checkpoint(req.inputs["checkpoint"], tier, req.params["seed"], verify=req.params.get("verify", True))
        return {}


def records(req: Request, cfg) -> list:
    """The routing records ``route.{i}.{field}`` of a request (HSER-9.3), i = 0, 1, ..."""
    from lite_llm.reference.router import RouteResult
    from lite_llm.spec.tierset import tier_set

    ids = tier_set(cfg, req.params["tierset"])
    return [RouteResult(**{f: req.inputs[f"route.{i}.{f}"] for f in RECORD_FIELDS}, tier_set=ids)
            for i in range(record_count(req))]


def budget_inputs(req: Request):
    """utility, latency, memory (sequences of binary64) and tau, mu (0-d) of a selection request."""
    g = req.inputs
    return (g["utility"].tolist(), g["latency"].tolist(), g["memory"].tolist(), float(g["tau"]), float(g["mu"]))
