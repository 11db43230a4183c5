"""Model-level cases (``model/...``): the forward pass, greedy generation, initialisation and
parameter accounting.

``forward`` takes the configuration, ``tokens`` (T,) or (B, T) and the model's tensors (INIT-2
names; those of tiers outside the TierSet are not given), with ``tierset`` and ``seed``. It returns
``logits``, each layer's router input ``router_input.{l}`` (N, d) and the index arrays of each
layer's routing record ``route.{l}.{tier,group,expert,count,chosen_tiers,chosen_groups}``. Expected
outputs are the reference in binary64 (MODEL-4.6); the token sequences are resampled until every
token's routing margin at every layer reaches the bound of MODEL-4.5 (CONF-2.4), so every conforming
implementation makes the same routing decisions.
"""
from __future__ import annotations

import numpy as np

from lite_llm.spec.config import MAX_GROUPS, config_from_dict

from .case import Tolerance
from .draw import integers
from .gen_layer import MODEL_TOL, model_config
from .generate import CaseSpec, GeneratorError

EPS_R = 1e-4                                                   # MODEL-4.3 (b): router-input tolerance
ROUTER_INPUT_TOL = Tolerance(rtol=EPS_R, atol=0.0, relative_to="row_max")
INDEX = ("tier", "group", "expert", "count", "chosen_tiers", "chosen_groups")
MODEL_TIERS = ((2, 2, 4), (2, 3, 4), (1, 2, 4))
WEIGHT_SEED = 3
MAX_TRIES = 200


def required_margin(hidden_limbs: int) -> float:
    """mu = eps_r + 1.1 / S, S = 127 * 128**(limbs - 1) (MODEL-4.5)."""
    return EPS_R + 1.1 / (127 * 128 ** (hidden_limbs - 1))


def model_weights(cfg: dict, tiers=None, seed: int = WEIGHT_SEED) -> dict[str, np.ndarray]:
    """INIT weights: the dense tensors and those of ``tiers`` (default all)."""
    from lite_llm.reference.weights import init_dense_weights, init_tier_weights

    c = config_from_dict(cfg)
    w = init_dense_weights(c, seed)
    for t in range(c.n_tiers) if tiers is None else tiers:
        w.update(init_tier_weights(c, seed, t))
    return w


def binary64_forward(cfg: dict, w: dict, tokens, tierset, seed):
    """(expected outputs, smallest routing margin) of the binary64 reference (MODEL-4.5, MODEL-4.6).

    Logits and router inputs are stored rounded to binary32: far inside MODEL-4.3's tolerance, and
    the bytes then do not depend on the last bits a platform's BLAS and libm give in binary64.
    """
    from lite_llm.reference.model import forward, forward_routing_margins

    c = config_from_dict(cfg)
    o = forward(c, w, tokens, tierset, seed=seed, dtype=np.float64)
    margin = float(forward_routing_margins(c, w, o).min()) if o.routes and o.routes[0].count.size else np.inf
    out = {"logits": o.logits.astype(np.float32)}
    for layer, (x, r) in enumerate(zip(o.router_inputs, o.routes)):
        out[f"router_input.{layer}"] = x.astype(np.float32)
        out.update({f"route.{layer}.{f}": getattr(r, f) for f in INDEX})
    return out, margin


def margin_record(mu: float, margin: float, tries: int) -> dict | None:
    """The case's margin entry (CONF-2.4); None when no token made a routing decision."""
    if not np.isfinite(margin):
        return None
    return {"router_input_tolerance": EPS_R, "required": mu, "min_margin": margin, "resampled": tries}


def search_tokens(label: str, cfg: dict, w: dict, shape, tierset, seed):
    """Token sequences drawn until every routing margin reaches mu; (tokens, outputs, margin record)."""
    mu = required_margin(cfg["router"]["hidden_limbs"])
    n = int(np.prod(shape))
    for i in range(MAX_TRIES):
        tok = (integers(f"{label}.{i}", n) % np.uint64(cfg["vocab_size"])).astype(np.int64).reshape(shape)
        out, m = binary64_forward(cfg, w, tok, tierset, seed)
        if m >= mu:
            return tok, out, margin_record(mu, m, i)
    raise GeneratorError(f"{label}: no token sequence with routing margins >= {mu} in {MAX_TRIES} tries")


def forward_case(name, description, clauses, cfg, w, shape, tierset=None, seed=0, check=None) -> CaseSpec:
    tierset = list(range(len(cfg["tiers"]))) if tierset is None else tierset
    tok, out, margin = search_tokens(f"model.{name}", cfg, w, shape, tierset, seed)
    tol = {k: (MODEL_TOL if k == "logits" else ROUTER_INPUT_TOL) for k in out if not k.startswith("route.")}
    return CaseSpec(f"model/{name}", description, ["MODEL-2.1", "MODEL-2.2", "MODEL-2.3", "MODEL-2.4", "MODEL-2.7",
                                                   "MODEL-3.1", "MODEL-4.1", "MODEL-4.3", "MODEL-4.5", "MODEL-4.6"]
                    + clauses, "forward", {"tierset": tierset, "seed": seed}, {"tokens": tok, **w}, config=cfg,
                    tolerance=tol, outputs=out, margin=margin, check=check)


def forward_cases() -> list[CaseSpec]:
    out = []
    cfg = model_config(tiers=MODEL_TIERS, k=(2, 2, 1))
    w = model_weights(cfg)
    out.append(forward_case("forward-basic", "A two-layer model, three tiers, one sequence of 8 tokens: logits, "
                            "router inputs and routing decisions of both layers.", ["MODEL-1.1", "MODEL-3.2",
                                                                                    "MODEL-3.3"], cfg, w, (8,)))
    out.append(forward_case("forward-batch", "A batch of three sequences of 5 tokens: sequences are independent, "
                            "positions count from 0 in each.", ["MODEL-2.5", "MODEL-2.6", "MODEL-1.1"], cfg, w, (3, 5)))
    out.append(forward_case("forward-tierset-without-tensors", "TierSet {0, 2}; the tensors of tier 1 are not given "
                            "and must not be required.", ["MODEL-1.3", "TIER-2.6"], cfg, model_weights(cfg, (0, 2)),
                            (6,), tierset=[0, 2]))
    grown = model_config(tiers=MODEL_TIERS + ((2, 2, 4),), k=(2, 2, 1))
    before = forward_case("forward-before-expansion", "", [], cfg, w, (7,))
    gw = model_weights(grown)
    spec = CaseSpec("model/forward-after-expansion",
                    "A fourth tier is appended (INIT under the same seed); under the old TierSet {0, 1, 2} the "
                    "binary64 reference gives the logits and routing of the three-tier model bit for bit.",
                    before.clauses + ["EXP-2.2", "TIER-1.6", "INIT-2.1"], "forward", {"tierset": [0, 1, 2], "seed": 0},
                    {"tokens": before.inputs["tokens"], **gw}, config=grown, tolerance=before.tolerance,
                    outputs=before.outputs, margin=before.margin)
    after, _ = binary64_forward(grown, gw, before.inputs["tokens"], [0, 1, 2], 0)
    for k, v in before.outputs.items():
        if v.tobytes() != after[k].tobytes():
            raise GeneratorError(f"model/forward-after-expansion: {k} changed by the expansion")
    out.append(spec)
    one = model_config(tiers=MODEL_TIERS, k=(1, 1, 1), limbs=(1, 2))
    out.append(forward_case("forward-hidden-limbs-1", "One hidden limb (8-bit router inputs): the margin bound is "
                            f"{required_margin(1):.3g}.", ["HSER-2.3", "MODEL-4.5"], one, model_weights(one), (5,)))
    out.append(norm_eps_case())
    small = model_config(tiers=((1, 2, 2), (2, 1, 2)), k=(1, 1, 1), d=8, layers=1, vocab=8)
    out.append(forward_case("forward-empty", "Zero tokens: logits (0, V) and empty routing records.", ["MODEL-1.1"],
                            small, model_weights(small), (0,)))
    return out


def norm_eps_case() -> CaseSpec:
    """Embedding rows scaled so that the first RMSNorm's mean square is 0.25, 1, 4 or 16 times
    norm_eps: there sqrt(ms + eps) and, say, sqrt(ms) + eps or sqrt(max(ms, eps)) differ by up to
    40%, where on ordinary rows (ms ~ 1) they agree to 1e-5 and pass the tolerance."""
    cfg = model_config(tiers=MODEL_TIERS, k=(2, 2, 1), layers=1)
    w = model_weights(cfg)
    e = w["embed"].astype(np.float64)
    ms = np.mean(e * e, axis=1, keepdims=True)
    ratio = np.array([0.25, 1.0, 4.0, 16.0])[np.arange(e.shape[0]) % 4][:, None]
    w["embed"] = (e * np.sqrt(ratio * cfg["norm_eps"] / ms)).astype(np.float32)
    return forward_case("forward-norm-eps", "Every embedding row is scaled so that its mean square is 0.25, 1, 4 or 16 "
                        "times norm_eps = 1e-5: the first RMSNorm of each token divides by sqrt(ms + eps) with eps "
                        "mattering as much as the data (eps outside the square root, or max(ms, eps), gives values "
                        "up to 40% off).", ["MODEL-2.2"], cfg, w, (8,))


def generate_cases() -> list[CaseSpec]:
    from lite_llm.reference.model import forward, forward_routing_margins

    cfg = model_config(tiers=MODEL_TIERS, k=(2, 2, 1))
    w = model_weights(cfg)
    c = config_from_dict(cfg)
    mu = required_margin(2)
    for i in range(MAX_TRIES):
        seq = (integers(f"model.generate.{i}", 4) % np.uint64(32)).astype(np.int64).tolist()
        prompt, ok, worst = np.array(seq, np.int64), True, np.inf
        for _ in range(5):
            o = forward(c, w, np.array(seq), [0, 1, 2], seed=0, dtype=np.float64)
            last = np.sort(o.logits[-1])
            m = float(forward_routing_margins(c, w, o).min())
            if m < mu or last[-1] - last[-2] <= 2e-4 * np.abs(o.logits).max():
                ok = False
                break
            worst = min(worst, m)
            seq.append(int(np.argmax(o.logits[-1])))
        if ok:
            break
    else:
        raise GeneratorError("model/generate: no prompt with safe margins and logit gaps")
    new = np.array(seq[4:], np.int64)
    return [CaseSpec("model/generate", "Greedy generation of 5 tokens after a 4-token prompt; at every step every "
                     "routing margin reaches the MODEL-4.5 bound and the best logit leads the second by more than "
                     "2e-4 max |logits|.", ["MODEL-5.1", "MODEL-5.2", "MODEL-4.6"], "generate",
                     {"tierset": [0, 1, 2], "seed": 0, "max_new_tokens": 5}, {"prompt": prompt, **w}, config=cfg,
                     outputs={"tokens": new}, margin=margin_record(mu, worst, i))]


def greedy_cases() -> list[CaseSpec]:
    lg = np.array([[1.0, 3.0, 3.0, 2.0], [-0.0, 0.0, -1.0, -2.0], [0.0, -0.0, -1.0, -2.0], [-5.0, -4.0, np.inf, -np.inf],
                   [2.0, 1.0, 2.0, 2.0]], np.float32)
    bad = lg.copy()
    bad[1, 2] = np.nan
    return [CaseSpec("model/greedy-token", "Greedy choice: the largest logit, ties to the lowest id, -0.0 equals "
                     "+0.0.", ["MODEL-5.2"], "greedy_token", {}, {"logits": lg}),
            CaseSpec("model/greedy-token-nan", "A NaN logit is rejected.", ["MODEL-5.2", "MODEL-6.1"], "greedy_token", {},
                     {"logits": bad}, error="E_NONFINITE")]


def init_cases() -> list[CaseSpec]:
    tiny = model_config(tiers=((1, 2, 4), (2, 1, 3)), d=8, layers=1, vocab=6, k=(1, 1, 1))
    out = [CaseSpec("model/init-weights", "Every tensor of a small model initialised from a seed above 2**53: names, "
                    "shapes, fan-in bounds, norm weights of 1 (dense, router and expert tensors).",
                    ["INIT-1.1", "INIT-1.2", "INIT-1.3", "INIT-1.4", "INIT-2.1", "INIT-2.2", "INIT-2.3", "PARAM-1.2"],
                    "init_weights", {"seed": "0x9e3779b97f4a7c15"}, {}, config=tiny, only=True)]
    rows = [(0, "embed", [3, 4], 1.0), ((1 << 64) - 1, "layers.0.attn.wq", [2, 3], 0.35355339),
            (12345, "layers.7.tiers.tier_x.w_down", [2, 1, 2, 3], 0.57735026), (1, "", [5], 3.0e38)]
    for i, (seed, name, shape, bound) in enumerate(rows):
        out.append(CaseSpec(f"model/uniform-tensor-{i}", f"The INIT stream of tensor {name!r} under seed {seed}, bound "
                            f"{bound}.", ["INIT-1.2", "INIT-1.3"], "uniform_tensor",
                            {"seed": hex(seed) if seed >= 1 << 53 else seed, "name": name, "shape": shape,
                             "bound": float(np.float32(bound))}, {}))
    names = ["", "a", "embed", "layers.0.tiers.tier_1b.router_tier", "é", "tier_ü", "0123456789" * 10]
    out.append(CaseSpec("model/fnv1a64", "64-bit FNV-1a of UTF-8 tensor names (the empty name, non-ASCII names).",
                        ["INIT-1.1"], "fnv1a64", {"names": names}, {}))
    return out


def param_cases() -> list[CaseSpec]:
    from lite_llm.spec.configs import resolve_config
    from lite_llm.spec.config import config_to_dict

    out = []
    quad = config_to_dict(resolve_config("quadrillion"))
    common = ["PARAM-1.1", "PARAM-1.2", "PARAM-2.1", "PARAM-2.2", "PARAM-2.3", "PARAM-3.1", "PARAM-3.2", "PARAM-3.3",
              "PARAM-3.4", "PARAM-4.1"]
    for name, cfg, ts, desc in (
            ("params-quadrillion", quad, None, "the bundled quadrillion model, every tier (the paper's corollary)"),
            ("params-quadrillion-cumulative", quad, "cumulative:tier_1t", "the quadrillion model under "
                                                                           "cumulative:tier_1t"),
            ("params-small-k-exceeds", model_config(tiers=MODEL_TIERS, k=(2, 3, 4)), [0, 2],
             "a small model whose k exceeds G_t and E_t (min(k, G_t) counts)"),
            ("params-beyond-int64", model_config(tiers=((MAX_GROUPS, MAX_GROUPS, MAX_GROUPS), (1, 1, 1)),
                                                 d=131072, layers=4096, k=(2, 2, 2)), None,
             "counts far beyond 2**64 (G_t = E_t = d_ff = 2**31 - 1, d = 2**17, 4096 layers): exact integers")):
        out.append(CaseSpec(f"model/{name}", f"Parameter accounting of {desc}: P_total, budgets, P_active split into "
                            "dense, routers and experts, the worst level-1 choice and the paper's bound.", common,
                            "param_report", {} if ts is None else {"tierset": ts}, {}, config=cfg))
    return out


def error_cases() -> list[CaseSpec]:
    cfg = model_config(tiers=((1, 2, 4),), k=(1, 1, 1), d=8, layers=1, vocab=8, seq=6)
    w = model_weights(cfg)
    tok = np.array([1, 2, 3], np.int64)
    out = []

    def err(name, desc, clauses, code, tokens=tok, w=w, tierset=(0,), seed=0):
        out.append(CaseSpec(f"model/errors/{name}", desc, clauses + ["MODEL-6.1", "MODEL-1.2"], "forward",
                            {"tierset": list(tierset), "seed": seed}, {"tokens": tokens, **w}, config=cfg, error=code))

    err("tokens-float", "Token ids of type float64, although integral.", ["MODEL-1.1"], "E_TOKEN",
        tokens=tok.astype(np.float64))
    err("tokens-bool", "Token ids of type bool.", ["MODEL-1.1"], "E_TOKEN", tokens=np.array([True, False]))
    err("tokens-rank3", "Token ids of shape (1, 1, 3).", ["MODEL-1.1"], "E_TOKEN", tokens=tok.reshape(1, 1, 3))
    err("tokens-too-long", "7 tokens for max_seq_len 6.", ["MODEL-1.1"], "E_TOKEN", tokens=np.arange(7) % 8)
    err("tokens-out-of-range", "Token id 8 for vocab_size 8.", ["MODEL-1.1"], "E_TOKEN", tokens=np.array([1, 8]))
    err("tokens-negative", "Token id -1.", ["MODEL-1.1"], "E_TOKEN", tokens=np.array([[0, 1], [-1, 2]], np.int32))
    for name, edit, why in (("missing-embed", lambda d: d.pop("embed"), "embed is missing"),
                            ("lm-head-shape", lambda d: d.__setitem__("lm_head", d["lm_head"][:, :7].copy()),
                             "lm_head has the wrong shape"),
                            ("final-norm-float64", lambda d: d.__setitem__("final_norm", d["final_norm"].astype(np.float64)),
                             "final_norm is binary64"),
                            ("wq-nan", lambda d: d["layers.0.attn.wq"].__setitem__((2, 2), np.nan), "a NaN in attn.wq"),
                            ("expert-missing", lambda d: d.pop("layers.0.tiers.tier_0.w_up"), "w_up of tier_0 is missing")):
        ww = {k: v.copy() for k, v in w.items()}
        edit(ww)
        err(f"weights-{name}", f"Invalid weights: {why}.", ["MODEL-1.3"], "E_WEIGHTS", w=ww)
    ww = dict(w)
    ww.pop("embed")
    err("order-seed-first", "Bad seed, unknown tier, bad tokens and a missing tensor: the seed is reported.",
        ["HSER-4.1"], "E_SEED", tokens=tok.astype(np.float32), w=ww, tierset=(3,), seed="0x")
    err("order-tierset-before-tokens", "Empty TierSet, bad tokens, a missing tensor: the TierSet is reported.",
        ["TIER-2.3"], "E_EMPTY_TIERSET", tokens=tok.astype(np.float32), w=ww, tierset=())
    err("order-tokens-before-weights", "Bad tokens and a missing tensor: the tokens are reported.", ["MODEL-1.1"],
        "E_TOKEN", tokens=np.array([9]), w=ww)

    def gen_err(name, desc, prompt, n):
        out.append(CaseSpec(f"model/errors/generate-{name}", desc, ["MODEL-5.3", "MODEL-6.1"], "generate",
                            {"tierset": [0], "seed": 0, "max_new_tokens": n}, {"prompt": prompt, **w}, config=cfg,
                            error="E_TOKEN"))

    gen_err("empty-prompt", "An empty prompt.", np.zeros(0, np.int64), 2)
    gen_err("batch-prompt", "A prompt of shape (2, 2): one sequence is required.", tok[:2].reshape(1, 2).repeat(2, 0), 1)
    gen_err("negative-count", "max_new_tokens = -1.", tok, -1)
    gen_err("fraction-count", "max_new_tokens = 1.5.", tok, 1.5)
    gen_err("too-long", "3 prompt tokens + 4 new ones exceed max_seq_len 6.", tok, 4)
    return out


def cases() -> list[CaseSpec]:
    return forward_cases() + generate_cases() + greedy_cases() + init_cases() + param_cases() + error_cases()
