"""Cache units and their bytes in a checkpoint (PLACE-4.1, PLACE-4.2; CKPT-1.2, CKPT-2.1).

A unit is one expert (g, e) of tier t in layer l: id ``l U_L + o_t + g E_t + e`` (U_L the experts of
one layer over every tier of T_max, o_t those of the tiers before t). Its weights are the slices
``[g, e]`` of the three tier tensors ``w_gate`` (G, E, F, d), ``w_up`` (G, E, F, d) and ``w_down``
(G, E, d, F): row-major storage (CKPT-1.3) makes each slice one contiguous run of ``4 F d`` bytes at
``begin + (g E + e) 4 F d`` of the tensor's data, so an expert is three positioned reads.
Router matrices are units ``L U_L + l M + t`` in the spec; this runtime pins them (PLACE-4.2).
"""
from __future__ import annotations

from dataclasses import dataclass

from lite_llm.spec.config import ModelConfig

EXPERT_KINDS = ("w_gate", "w_up", "w_down")


@dataclass(frozen=True)
class UnitInfo:
    unit: int
    layer: int
    tier: int
    group: int
    expert: int
    d_ff: int

    def label(self, cfg: ModelConfig) -> str:
        return (f"tier {cfg.tiers[self.tier].name} layer {self.layer} expert (g={self.group}, e={self.expert})")


class UnitMap:
    """Unit ids <-> (layer, tier, group, expert) for one configuration (PLACE-4.1)."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.offsets = []
        o = 0
        for t in cfg.tiers:
            self.offsets.append(o)
            o += t.groups * t.experts_per_group
        self.per_layer = o                                            # U_L
        self.n_experts = cfg.n_layers * o

    def unit(self, layer: int, tier: int, group: int, expert: int) -> int:
        return layer * self.per_layer + self.offsets[tier] + group * self.cfg.tiers[tier].experts_per_group + expert

    def info(self, unit: int) -> UnitInfo:
        layer, r = divmod(unit, self.per_layer)
        tier = max(t for t in range(self.cfg.n_tiers) if self.offsets[t] <= r)
        tc = self.cfg.tiers[tier]
        g, e = divmod(r - self.offsets[tier], tc.experts_per_group)
        return UnitInfo(unit, layer, tier, g, e, tc.d_ff)

    def layer_units(self, layer: int, tiers) -> list[int]:
        """Every expert unit of ``layer`` in the given tiers, ascending."""
        out = []
        for t in sorted(tiers):
            tc = self.cfg.tiers[t]
            base = layer * self.per_layer + self.offsets[t]
            out += range(base, base + tc.groups * tc.experts_per_group)
        return out

    def size(self, unit: int) -> int:
        """Bytes of an expert unit: 4 * 3 d d_ff_t (PLACE-4.1)."""
        return 4 * 3 * self.cfg.d_model * self.info(unit).d_ff

    def sizes(self) -> list[int]:
        per = []
        for t in self.cfg.tiers:
            per += [4 * 3 * self.cfg.d_model * t.d_ff] * (t.groups * t.experts_per_group)
        return per * self.cfg.n_layers

    def step_units(self, layer: int, tier, group, expert, count, rows=None) -> list[int]:
        """Ascending distinct units of a record's active slots (PLACE-4.2); arrays (T, K) / (T,) on the CPU."""
        out = set()
        T = len(count)
        for n in (range(T) if rows is None else rows):
            for k in range(int(count[n])):
                out.add(self.unit(layer, int(tier[n][k]), int(group[n][k]), int(expert[n][k])))
        return sorted(out)
