"""PNG plots of training runs and routes (matplotlib, the Agg backend: no display needed).

``loss_plot(runs, path)``: training cross-entropy (smoothed) and validation loss per TierSet against
the global step, runs placed one after another, a dashed line at each expansion.
``load_plot(loads, path)``: per-expert load (share of a tier's level-3 slots), one panel per labelled
load (e.g. with and without the auxiliary loss), with the per-level load CVs in the title.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def loss_plot(runs: list[tuple[str, list[dict]]], path, names=None) -> str:
    """``runs``: (label, log records) in order; a later run continues the step axis of the earlier."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    offset = 0
    for i, (label, recs) in enumerate(runs):
        tr = [(r["step"], r["ce"]) for r in recs if r.get("kind") == "train"]
        if tr:
            s, v = np.array(tr).T
            k = max(1, len(v) // 50)
            sm = np.convolve(v, np.ones(k) / k, mode="valid")
            ax.plot(s[k - 1:] + offset, sm, lw=1, alpha=0.6, label=f"{label}: train CE")
        ev = {}
        for r in recs:
            if r.get("kind") == "eval":
                key = ",".join(names[t] if names else str(t) for t in r["tier_set"])
                ev.setdefault(key, []).append((r["step"] + offset, r["val_loss"]))
        for key, pts in ev.items():
            s, v = np.array(pts).T
            ax.plot(s, v, marker="o", ms=3, label=f"{label}: val, TierSet {{{key}}}")
        if i > 0:
            ax.axvline(offset, ls="--", c="gray")
            ax.text(offset, ax.get_ylim()[1], " expansion", va="top", fontsize=8, color="gray")
        last = max([r["step"] for r in recs if "step" in r] or [0])
        offset += last
    ax.set_xlabel("step")
    ax.set_ylabel("nats per byte")
    ax.set_title("Loss across expansion")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def load_plot(loads: list[tuple[str, dict]], path, layer: int = 0) -> str:
    """``loads``: (label, {"load": per-layer {tier name: counts per expert}, "load_cv": [cv1, cv2, cv3]})."""
    plt = _plt()
    fig, axes = plt.subplots(len(loads), 1, figsize=(9, 2.6 * len(loads)), squeeze=False)
    for ax, (label, st) in zip(axes[:, 0], loads):
        per_tier = st["load"][min(layer, len(st["load"]) - 1)]
        x0 = 0
        for name, counts in per_tier.items():
            c = np.asarray(counts, np.float64)
            share = c / c.sum() if c.sum() else c
            ax.bar(np.arange(x0, x0 + c.size), share, width=0.9, label=name)
            x0 += c.size + 1
        cv = st["load_cv"]
        ax.set_title(f"{label}: layer {layer}; load CV per level {cv[0]:.3f} / {cv[1]:.3f} / {cv[2]:.3f}", fontsize=9)
        ax.set_ylabel("share of tier's slots")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("expert (group-major within each tier)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
