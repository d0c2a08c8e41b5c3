"""Small numpy statistics shared by training and evaluation."""

from __future__ import annotations

import itertools

import numpy as np

AXIS_SPAN = 3.0  # along-axis sweeps run from -AXIS_SPAN to +AXIS_SPAN in z (glsr-eval, the log)


def rank(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), like scipy's rankdata."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation; NaN pairs are dropped; 0.0 when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        return 0.0
    rx, ry = rank(x[keep]), rank(y[keep])
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def token_accuracy(predicted: np.ndarray, target: np.ndarray, hold: int) -> tuple[float, float]:
    """(accuracy on all steps, accuracy on steps whose target is not hold)."""
    correct = predicted == target
    nonhold = target != hold
    return float(correct.mean()), float(correct[nonhold].mean()) if nonhold.any() else 0.0


EVENT_BANDS = (0.375, 0.5625, 0.75)  # events (onsets and rests) per step: the band edges


def nonhold_by_events(predicted: np.ndarray, target: np.ndarray, hold: int) -> dict[str, dict]:
    """Non-hold accuracy of (N, L) windows grouped by how many events (non-hold steps) each
    holds: 12, 18 and 24 of 32 steps are the edges (busy fiddle runs hold 24 or more).
    ``{"12-17": {"windows": n, "nonhold": accuracy}, ...}``; empty bands are left out."""
    length = target.shape[1]
    edges = [0, *(round(band * length) for band in EVENT_BANDS), length + 1]
    events = (target != hold).sum(axis=1)
    bands = {}
    for low, high in itertools.pairwise(edges):
        rows = (events >= low) & (events < high)
        if rows.any():
            _, nonhold = token_accuracy(predicted[rows], target[rows], hold)
            bands[f"{low}-{high - 1}"] = {"windows": int(rows.sum()), "nonhold": nonhold}
    return bands


def mean_row_spearman(axis: np.ndarray, values: np.ndarray) -> float:
    """Mean over rows of values (P, S) of the Spearman between ``axis`` (S,) and the row."""
    return float(np.mean([spearman(axis, row) for row in values]))
