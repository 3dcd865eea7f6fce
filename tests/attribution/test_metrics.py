"""Metrics between an estimate and the truth."""

import numpy as np
import pytest

from fi_sim.attribution import metrics
from fi_sim.errors import ValidationError

TRUTH = {"a": 3.0, "b": -1.0, "c": 0.5, "d": 0.0}


def test_normalized_l2_counts_missing_factors_as_zero():
    assert metrics.normalized_l2(TRUTH, TRUTH) == 0.0
    assert metrics.normalized_l2({}, TRUTH) == pytest.approx(1.0)
    estimate = {"a": 3.0, "b": -1.0}  # c and d not named
    assert metrics.normalized_l2(estimate, TRUTH) == pytest.approx(0.5 / np.sqrt(9 + 1 + 0.25))
    assert np.isnan(metrics.normalized_l2({"a": 1.0}, {"a": 0.0}))
    with pytest.raises(ValidationError):
        metrics.normalized_l2({"z": 1.0}, TRUTH)


def test_kendall_tau_on_values_with_ties():
    # hand count: truth a > c > d > b; estimate ties a and c
    estimate = {"a": 1.0, "b": -2.0, "c": 1.0, "d": 0.2}
    # pairs: ab +1, ac tie in e, ad +1, bc +1, bd +1, cd +1 -> concordant 5, untied pairs 5 in e, 6 in t
    assert metrics.kendall_tau(estimate, TRUTH) == pytest.approx(5 / np.sqrt(5 * 6))
    assert metrics.kendall_tau(TRUTH, TRUTH) == pytest.approx(1.0)
    assert metrics.kendall_tau({k: -v for k, v in TRUTH.items()}, TRUTH) == pytest.approx(-1.0)
    # an all-tied estimate (e.g. all zeros) has no ranking at all
    assert np.isnan(metrics.kendall_tau({}, TRUTH))


def test_against_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy is only used to cross-check the rank metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = rng.integers(3, 9)
        truth = {f"f{i}": float(v) for i, v in enumerate(rng.integers(-3, 4, size=n))}
        estimate = {f"f{i}": float(v) for i, v in enumerate(rng.integers(-3, 4, size=n))}
        e, t = list(estimate.values()), list(truth.values())
        if len(set(e)) > 1 and len(set(t)) > 1:
            assert metrics.kendall_tau(estimate, truth) == pytest.approx(stats.kendalltau(e, t).statistic)
            assert metrics.spearman(estimate, truth) == pytest.approx(stats.spearmanr(e, t).statistic)


def test_sign_precision_and_coverage():
    estimate = {"a": 2.0, "b": 0.5, "c": 0.4, "d": 0.0}
    assert metrics.sign_agreement(estimate, TRUTH) == pytest.approx(0.75)  # b has the wrong sign
    assert metrics.precision_at_k(estimate, TRUTH, 1) == 1.0
    assert metrics.precision_at_k(estimate, TRUTH, 2) == 1.0  # top-2 by |value|: {a, b}, as in the truth
    assert metrics.precision_at_k({**estimate, "c": 0.6}, TRUTH, 2) == 0.5  # {a, c} against {a, b}
    assert metrics.precision_at_k({"a": 0.1, "c": 5.0}, TRUTH, 2) == 0.5
    with pytest.raises(ValidationError):
        metrics.precision_at_k(estimate, TRUTH, 0)
    intervals = {"a": (2.5, 3.5), "b": (0.0, 1.0)}
    assert metrics.interval_coverage(intervals, TRUTH) == 0.5
    assert np.isnan(metrics.interval_coverage(None, TRUTH))
    scores = metrics.score(estimate, TRUTH, intervals, top_k=2)
    assert set(scores) == {"nl2", "kendall", "spearman", "sign", "precision_at_k", "coverage"}


def test_precision_counts_ties_with_the_kth_truth():
    truth = {"a": 1.0, "b": 1.0, "c": 0.2}
    assert metrics.precision_at_k({"b": 5.0, "a": 0.0, "c": 0.0}, truth, 1) == 1.0
