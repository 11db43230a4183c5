"""Result types the implementations share: plain data, no arithmetic beyond a convenience sum."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuxLoss:
    """L_aux with its breakdown (AUX-1.4). ``float(loss)`` is the total."""

    total: float                                  # alpha * sum of every CV below
    alpha: float                                  # the weight alpha (AUX-1.4), default 0.01
    cv: tuple[tuple[float, float, float], ...]    # per layer: (CV_1, CV_2, CV_3), not scaled by alpha

    @property
    def per_layer(self) -> tuple[float, ...]:
        """alpha * (CV_1 + CV_2 + CV_3) of each layer."""
        return tuple(self.alpha * (a + b + c) for a, b, c in self.cv)

    def __float__(self) -> float:
        return self.total
