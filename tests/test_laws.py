"""Scaling laws of post-training (fi_sim.laws): exact recovery from noise-free curves, recovery within tolerance
from noisy ones, the peaks, best-of-n's KL, Student-t intervals over seeds that cover the truth, and bad input
refused with the argument named."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fi_sim.laws import FORMS, Fit, bon_kl, curve_points, fit, fit_seeds
from fi_sim.laws import _t975, _t975_fallback

D = np.linspace(0.0, 6.0, 25)
H = np.linspace(0.05, 1.5, 25)


def gao_bon(d, alpha, beta):
    return d * (alpha - beta * d)


def gao_rl(d, alpha, beta):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d == 0, 0.0, d * (alpha - beta * np.log(np.where(d == 0, 1.0, d))))


def cui(h, a, b):
    return -a * np.exp(h) + b


TRUTH = {
    "gao_bon": (D, gao_bon, {"alpha": 1.3, "beta": 0.2}),
    "gao_rl": (D, gao_rl, {"alpha": 0.9, "beta": 0.45}),
    "cui_entropy": (H, cui, {"a": 0.3, "b": 0.95}),
}


@pytest.mark.parametrize("form", FORMS)
def test_exact_recovery_from_noise_free_points(form):
    x, law, coef = TRUTH[form]
    result = fit(form, x, law(x, *coef.values()))
    assert result.form == form
    assert result.n == x.size
    assert set(result.coef) == set(coef)
    for name, value in coef.items():
        assert result.coef[name] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert abs(result.r2 - 1.0) < 1e-9
    np.testing.assert_allclose(result.predict(x), law(x, *coef.values()), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_recovery_within_tolerance_from_noisy_points(form):
    x, law, coef = TRUTH[form]
    rng = np.random.default_rng(0)
    xs = np.tile(x, 8)
    y = law(xs, *coef.values()) + rng.normal(0.0, 0.02, xs.size)
    result = fit(form, xs, y)
    for name, value in coef.items():
        assert result.coef[name] == pytest.approx(value, rel=0.05), name
    assert 0.9 < result.r2 < 1.0


def test_non_finite_pairs_are_dropped_and_inputs_flattened():
    x, law, coef = TRUTH["gao_bon"]
    y = law(x, *coef.values()) + np.random.default_rng(1).normal(0.0, 0.05, x.size)
    clean = fit("gao_bon", x, y)
    xs = np.concatenate([x, [np.nan, 1.0, np.inf]])
    ys = np.concatenate([y, [1.0, np.nan, 2.0]])
    dirty = fit("gao_bon", xs.reshape(4, 7), ys)
    assert dirty.n == clean.n == x.size
    assert dirty.coef == pytest.approx(clean.coef, rel=1e-12)
    assert dirty.r2 == pytest.approx(clean.r2, rel=1e-12)


def test_points_at_zero_kl_count_as_zero_gain_in_both_gao_forms():
    d = np.array([0.0, 0.0, 0.5, 1.0, 2.0])
    for form, law, coef in (("gao_bon", gao_bon, (1.0, 0.3)), ("gao_rl", gao_rl, (1.0, 0.3))):
        result = fit(form, d, law(d, *coef))
        assert result.predict(np.array([0.0]))[0] == 0.0
        assert np.isfinite(result.predict(d)).all()
        assert (result.coef["alpha"], result.coef["beta"]) == pytest.approx(coef, rel=1e-9)


def test_r2_of_a_no_intercept_fit_can_be_negative():
    # Both curves pass through the origin, so the three points at d = 0 alone leave SS_res >= 300 against
    # SS_tot = 120 about the mean: worse than the constant mean whatever alpha and beta.
    d = np.array([0.0, 0.0, 0.0, 1.0, 2.0])
    y = np.array([10.0, 10.0, 10.0, 0.0, 0.0])
    assert fit("gao_bon", d, y).r2 < 0
    assert fit("gao_rl", d, y).r2 < 0


@settings(max_examples=60, deadline=None)
@given(alpha=st.floats(0.01, 10.0), beta=st.floats(0.01, 10.0))
def test_bon_peak_is_alpha_over_two_beta_and_the_maximum_of_the_fitted_curve(alpha, beta):
    d_star = alpha / (2 * beta)
    d = np.linspace(0.0, 3 * d_star, 31)
    result = fit("gao_bon", d, gao_bon(d, alpha, beta))
    peak = result.peak()
    assert peak is not None
    assert peak[0] == pytest.approx(d_star, rel=1e-6)
    assert peak[1] == pytest.approx(alpha**2 / (4 * beta), rel=1e-6)
    grid = np.linspace(0.0, 3 * d_star, 1001)
    at_peak = result.predict(np.array([peak[0]]))[0]
    assert at_peak == pytest.approx(peak[1], rel=1e-9)
    assert at_peak >= result.predict(grid).max() - 1e-12 * max(1.0, abs(at_peak))


def test_rl_peak_is_where_the_derivative_vanishes():
    alpha, beta = 0.9, 0.45
    result = fit("gao_rl", D, gao_rl(D, alpha, beta))
    peak = result.peak()
    assert peak is not None
    d_star, r_star = peak
    assert d_star == pytest.approx(math.exp(alpha / beta - 1), rel=1e-9)
    assert r_star == pytest.approx(gao_rl(np.array(d_star), alpha, beta), rel=1e-9)
    grid = np.linspace(1e-6, 4 * d_star, 4001)
    assert r_star >= result.predict(grid).max() - 1e-12
    assert abs(grid[np.argmax(result.predict(grid))] - d_star) < 2 * (grid[1] - grid[0])


def test_no_peak_without_positive_beta_or_for_the_entropy_law():
    assert Fit("gao_bon", {"alpha": 1.0, "beta": 0.0}, 1.0, 3).peak() is None
    assert Fit("gao_bon", {"alpha": 1.0, "beta": -0.5}, 1.0, 3).peak() is None
    assert Fit("gao_bon", {"alpha": -1.0, "beta": 0.5}, 1.0, 3).peak() is None
    assert Fit("gao_rl", {"alpha": 1.0, "beta": -0.1}, 1.0, 3).peak() is None
    assert Fit("gao_rl", {"alpha": 1.0, "beta": 0.1}, 1.0, 3).peak() is not None
    assert fit("cui_entropy", H, cui(H, 0.3, 0.95)).peak() is None


def test_bon_kl_closed_form():
    assert bon_kl(1) == 0.0
    assert bon_kl(2) == pytest.approx(math.log(2) - 0.5, rel=1e-12)
    n = np.arange(1, 2001)
    kl = bon_kl(n)
    assert kl.shape == n.shape
    assert np.all(np.diff(kl) > 0)
    np.testing.assert_allclose(kl, np.log(n) - (n - 1) / n, rtol=1e-12)
    with pytest.raises(ValueError, match="n"):
        bon_kl(0.5)


def test_curve_points_clip_kl_and_subtract_the_base_per_run():
    kl = np.array([[0.0, 1.0, 4.0, -1e-3], [0.25, 9.0, np.nan, 16.0]])
    true = np.array([[0.5, 0.6, 0.7, 0.55], [0.2, 0.3, 0.4, 0.5]])
    d, gain = curve_points(kl, true, 0.5)
    np.testing.assert_array_equal(d[0], [0.0, 1.0, 2.0, 0.0])
    assert d[1, 1] == 3.0 and np.isnan(d[1, 2])
    np.testing.assert_allclose(gain, true - 0.5)
    _, per_run = curve_points(kl, true, np.array([0.5, 0.2]))
    np.testing.assert_allclose(per_run[:, 0], [0.0, 0.0])
    np.testing.assert_allclose(per_run[1], [0.0, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="true_curve"):
        curve_points(kl, true[:, :3], 0.5)


def noisy_seeds(form, seeds, sigma, rng):
    x, law, coef = TRUTH[form]
    y = law(x, *coef.values())[None, :] + rng.normal(0.0, sigma, (seeds, x.size))
    return x, y, coef


@pytest.mark.parametrize("form", FORMS)
def test_t_interval_over_seeds_covers_the_true_coefficients(form):
    x, y, coef = noisy_seeds(form, 6, 0.05, np.random.default_rng(7))
    fits = fit_seeds(form, np.broadcast_to(x, y.shape), y)
    assert len(fits.per_seed) == 6
    assert fits.pooled.n == y.size
    for name, value in coef.items():
        mean, lo, hi = fits.interval(name)
        assert lo < value < hi, (name, lo, value, hi)
        assert mean == pytest.approx(np.mean([f.coef[name] for f in fits.per_seed]), rel=1e-12)
        assert hi - lo > 0
    mean, lo, hi = fits.r2_interval()
    assert lo < mean < hi <= 1.0 + (hi - mean)
    assert mean == pytest.approx(np.mean([f.r2 for f in fits.per_seed]), rel=1e-12)


def test_t_interval_coverage_is_near_95_percent():
    # Over many replicates of 4 seeds, a 95% t-interval covers alpha about 95% of the time (a z-interval with
    # 3 degrees of freedom would cover ~86%, an sd-without-sqrt(k) one ~100%).
    rng = np.random.default_rng(11)
    replicates = 300
    covered = 0
    for _ in range(replicates):
        x, y, coef = noisy_seeds("gao_bon", 4, 0.3, rng)
        _, lo, hi = fit_seeds("gao_bon", x, y).interval("alpha")
        covered += lo < coef["alpha"] < hi
    assert 0.90 <= covered / replicates <= 0.99


def test_interval_with_one_seed_has_no_bounds_and_unknown_name_is_refused():
    x, y, _ = noisy_seeds("gao_rl", 1, 0.05, np.random.default_rng(3))
    fits = fit_seeds("gao_rl", x, y)
    mean, lo, hi = fits.interval("alpha")
    assert mean == fits.per_seed[0].coef["alpha"]
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="name.*'a'.*alpha, beta"):
        fits.interval("a")


def test_t_quantile_fallback_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in range(1, 301):
        expected = float(scipy_stats.t.ppf(0.975, df))
        assert _t975_fallback(df) == pytest.approx(expected, abs=1e-5), df
        assert _t975(df) == pytest.approx(expected, rel=1e-12)


def test_too_few_points_names_the_argument():
    with pytest.raises(ValueError, match=r"x: got '2 finite \(x, y\) points'.*at least 3"):
        fit("gao_bon", [0.5, 1.0], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"x: got '2 finite"):
        fit("cui_entropy", [0.5, 1.0, np.nan], [0.1, 0.2, 0.3])


def test_unknown_form_names_the_argument_and_the_allowed_forms():
    with pytest.raises(ValueError, match="form: got 'gao_ppo'.*gao_bon, gao_rl, cui_entropy"):
        fit("gao_ppo", D, D)
    with pytest.raises(ValueError, match="form: got 'kaplan'"):
        fit_seeds("kaplan", D[None, :], D[None, :])


def test_other_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="y: got '3 values'"):
        fit("gao_bon", [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="x: got -0.5"):
        fit("gao_rl", [-0.5, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="x: got 'degenerate points'"):
        fit("gao_bon", [0.0, 1.0, 1.0, 1.0], [0.0, 0.5, 0.6, 0.4])
    with pytest.raises(ValueError, match="y: got 'shape \\(5,\\)'.*2-D"):
        fit_seeds("gao_bon", D[:5], D[:5])
    with pytest.raises(ValueError, match=r"x\[1\]"):
        fit_seeds("gao_bon", np.array([[0.1, 0.2, 0.3], [0.1, np.nan, 0.3]]), np.ones((2, 3)))
