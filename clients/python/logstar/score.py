"""Scoring detected atoms against ground truth (generated frames).

A detection and a true column match when they are within ``radius`` px;
matching is one-to-one, closest pairs first (greedy), as the engine's
accuracy measure does. Positions are N×2 arrays (x = column, y = row, px).

Pure functions; thread-safe.
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np


@dataclasses.dataclass(frozen=True)
class Match:
    matched: int
    detected: int
    truth: int

    @property
    def precision(self) -> float:
        return self.matched / self.detected if self.detected else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 0.0

    @property
    def f1(self) -> float:
        total = self.detected + self.truth
        return 2.0 * self.matched / total if total else 1.0


def match(detected: np.ndarray, truth: np.ndarray, radius: float) -> Match:
    """Greedy one-to-one matching within ``radius`` px."""
    det = np.asarray(detected, dtype=np.float64).reshape(-1, 2)
    tru = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    # Candidate pairs through a grid of radius-sized cells: O(N) for the
    # even spacing of atomic columns, where a distance matrix is O(N²).
    cells = defaultdict(list)
    for j, (x, y) in enumerate(tru):
        cells[(math.floor(x / radius), math.floor(y / radius))].append(j)
    pairs = []
    r2 = radius * radius
    for i, (x, y) in enumerate(det):
        cx, cy = math.floor(x / radius), math.floor(y / radius)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in cells.get((cx + dx, cy + dy), ()):
                    d2 = (x - tru[j, 0]) ** 2 + (y - tru[j, 1]) ** 2
                    if d2 <= r2:
                        pairs.append((d2, i, j))
    pairs.sort()
    used_d, used_t = set(), set()
    for _, i, j in pairs:
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    return Match(len(used_d), len(det), len(tru))
