"""Metrics between an attribution and the truth, over *all* factors of the surface.

A factor the method did not name (hidden in its regime, or simply not scored) counts as an estimate of 0,
so that hiding a factor that matters hurts. All metrics take dicts factor -> value:

* :func:`normalized_l2`: ||estimate - truth|| / ||truth|| (NaN when the truth is all zero);
* :func:`kendall_tau`: Kendall's tau-b computed from the values themselves (pairwise signs of differences,
  ties counted as ties), not from argsort orders, which would break ties arbitrarily;
* :func:`spearman`: Pearson correlation of average ranks (ties share their mean rank);
* :func:`sign_agreement`: share of factors whose estimate has the sign of the truth (values within a
  tolerance of 0 count as 0);
* :func:`precision_at_k`: share of the method's top-k factors by |value| that are among the true top-k
  (factors tied with the true k-th count as top-k);
* :func:`interval_coverage`: share of the method's intervals that contain the true value (NaN if none).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from fi_sim.errors import invalid


def _aligned(estimate: Mapping[str, float], truth: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(estimate) - set(truth))
    if unknown:
        raise invalid("estimate", unknown, f"factors of the truth {sorted(truth)}")
    names = list(truth)
    return np.array([float(estimate.get(n, 0.0)) for n in names]), np.array([float(truth[n]) for n in names])


def normalized_l2(estimate: Mapping[str, float], truth: Mapping[str, float]) -> float:
    e, t = _aligned(estimate, truth)
    norm = np.linalg.norm(t)
    return float(np.linalg.norm(e - t) / norm) if norm > 0 else float("nan")


def _pair_signs(values: np.ndarray, tolerance: float) -> np.ndarray:
    diff = values[:, None] - values[None, :]
    signs = np.sign(diff)
    signs[np.abs(diff) <= tolerance] = 0.0
    upper = np.triu_indices(len(values), k=1)
    return signs[upper]


def _tolerance(values: np.ndarray) -> float:
    return 1e-12 * max(1.0, float(np.abs(values).max(initial=0.0)))


def kendall_tau(estimate: Mapping[str, float], truth: Mapping[str, float]) -> float:
    """Kendall's tau-b on the values: (concordant - discordant) / sqrt(pairs untied in e * pairs untied in t)."""
    e, t = _aligned(estimate, truth)
    se, st = _pair_signs(e, _tolerance(e)), _pair_signs(t, _tolerance(t))
    denominator = math.sqrt(float(np.count_nonzero(se)) * float(np.count_nonzero(st)))
    return float((se * st).sum() / denominator) if denominator > 0 else float("nan")


def _average_ranks(values: np.ndarray, tolerance: float) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start + 1
        while stop < len(values) and sorted_values[stop] - sorted_values[start] <= tolerance:
            stop += 1
        ranks[order[start:stop]] = (start + stop - 1) / 2.0 + 1.0
        start = stop
    return ranks


def spearman(estimate: Mapping[str, float], truth: Mapping[str, float]) -> float:
    e, t = _aligned(estimate, truth)
    re, rt = _average_ranks(e, _tolerance(e)), _average_ranks(t, _tolerance(t))
    re, rt = re - re.mean(), rt - rt.mean()
    denominator = math.sqrt(float((re**2).sum() * (rt**2).sum()))
    return float((re * rt).sum() / denominator) if denominator > 0 else float("nan")


def sign_agreement(estimate: Mapping[str, float], truth: Mapping[str, float], tolerance: float | None = None) -> float:
    e, t = _aligned(estimate, truth)
    tol = 1e-9 * max(float(np.abs(t).max(initial=0.0)), 1e-300) if tolerance is None else tolerance
    se = np.where(np.abs(e) <= tol, 0.0, np.sign(e))
    st = np.where(np.abs(t) <= tol, 0.0, np.sign(t))
    return float((se == st).mean())


def precision_at_k(estimate: Mapping[str, float], truth: Mapping[str, float], k: int = 2) -> float:
    e, t = _aligned(estimate, truth)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(t):
        raise invalid("k", k, f"an integer between 1 and {len(t)} (the number of factors)")
    # The method's top k: stable order, so ties go to the factor listed first.
    top_estimate = set(np.argsort(-np.abs(e), kind="stable")[:k])
    kth = np.sort(np.abs(t))[::-1][k - 1]
    top_truth = set(np.flatnonzero(np.abs(t) >= kth - _tolerance(t)))
    return len(top_estimate & top_truth) / k


def interval_coverage(intervals: Mapping[str, Sequence[float]] | None, truth: Mapping[str, float]) -> float:
    if not intervals:
        return float("nan")
    hits = [low - 1e-12 <= truth[name] <= high + 1e-12 for name, (low, high) in intervals.items() if name in truth]
    return float(np.mean(hits)) if hits else float("nan")


def score(estimate: Mapping[str, float], truth: Mapping[str, float], intervals=None, *, top_k: int = 2) -> dict[str, float]:
    """All metrics at once, as a dict (the leaderboard's columns)."""
    k = min(top_k, len(truth))
    return {
        "nl2": normalized_l2(estimate, truth),
        "kendall": kendall_tau(estimate, truth),
        "spearman": spearman(estimate, truth),
        "sign": sign_agreement(estimate, truth),
        "precision_at_k": precision_at_k(estimate, truth, k),
        "coverage": interval_coverage(intervals, truth),
    }
