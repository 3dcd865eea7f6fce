"""Seed bootstrap: joint resampling of seed indices, fixed rng seed, agreement of the vectorised paths."""

import warnings

import numpy as np
import pytest
import xarray as xr

from fi_sim.attribution import MissingSeedsWarning, seed_uncertainty, shapley_effects, sobol_indices, switch_game
from fi_sim.attribution import games


def noisy(n_seeds=5, noise=0.01):
    return games.get_game("interface_pairwise", n_seeds=n_seeds, noise_sd=noise, rng_seed=3)


def test_switch_game_uncertainty_matches_the_generic_bootstrap():
    y = noisy()
    game = switch_game(y)
    fast = game.uncertainty(n_boot=60, rng_seed=5)
    slow = seed_uncertainty(y, lambda yb: switch_game(yb).shapley(), n_boot=60, rng_seed=5)
    np.testing.assert_allclose(fast.shapley_se.values, slow.se.values, atol=1e-12)
    np.testing.assert_allclose(fast.shapley_ci_low.values, slow.ci_low.values, atol=1e-12)
    np.testing.assert_allclose(fast.shapley.values, slow.estimate.values, atol=1e-12)
    assert list(slow.factor.values) == list(game.factors)
    assert (fast.shapley_ci_low <= fast.shapley).all() and (fast.shapley <= fast.shapley_ci_high).all()


def test_bootstrap_is_reproducible_and_depends_on_the_seed():
    y = noisy()
    a = seed_uncertainty(y, shapley_effects, n_boot=30, rng_seed=1)
    b = seed_uncertainty(y, shapley_effects, n_boot=30, rng_seed=1)
    c = seed_uncertainty(y, shapley_effects, n_boot=30, rng_seed=2)
    xr.testing.assert_identical(a, b)
    assert not np.allclose(a.se.values, c.se.values)
    assert a.attrs["rng_seed"] == 1 and a.attrs["n_valid"] == 30


def test_standard_error_scales_with_noise_and_vanishes_without_it():
    small = switch_game(noisy(noise=0.01)).uncertainty(n_boot=80).shapley_se.values
    large = switch_game(noisy(noise=0.04)).uncertainty(n_boot=80).shapley_se.values
    np.testing.assert_allclose(large / small, 4.0, rtol=1e-9)  # same draws, same noise pattern, 4x scale
    silent = switch_game(noisy(noise=0.0)).uncertainty(n_boot=20)
    np.testing.assert_allclose(silent.shapley_se.values, 0.0, atol=1e-15)


def test_dataset_statistics_and_cell_mean_se():
    y = noisy(n_seeds=8)
    out = seed_uncertainty(y, sobol_indices, n_boot=25)
    assert {"first", "first_se", "first_ci_low", "total_ci_high"} <= set(out.data_vars)
    # the SE of one cell's mean is about sd / sqrt(n) (bootstrap: times sqrt((n - 1) / n))
    cell = dict(base="headroom", verifier="faithful", data="edge", optimizer="grpo", scaffold="scratchpad")
    one = seed_uncertainty(y, lambda yb: float(yb.sel(cell).mean("seed")), n_boot=600)
    values = y.sel(cell).values
    expected = values.std(ddof=0) / np.sqrt(len(values))
    assert one.se.item() == pytest.approx(expected, rel=0.15)


def test_failed_seeds_drop_replicates_that_lose_a_cell():
    y = noisy(n_seeds=3).copy()
    y[0, 0, 0, 0, 0, 1:] = np.nan  # this cell only has seed 0
    with pytest.warns(MissingSeedsWarning):
        out = seed_uncertainty(y, lambda yb: switch_game(yb).gain, n_boot=50, rng_seed=0)
    indices = np.random.default_rng(0).integers(0, 3, size=(50, 3))
    assert out.attrs["n_valid"] == int((indices == 0).any(axis=1).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingSeedsWarning)
        fast = switch_game(y).uncertainty(n_boot=50, rng_seed=0)
    assert fast.attrs["n_valid"] == out.attrs["n_valid"]


def test_one_seed_or_none_gives_nan():
    out = seed_uncertainty(games.unanimity(), shapley_effects)
    assert np.isnan(out.se.values).all() and out.attrs["n_valid"] == 0
    assert np.isnan(switch_game(noisy(n_seeds=1)).uncertainty().shapley_se.values).all()


def test_fanova_variances_get_standard_errors():
    from fi_sim.attribution import fanova_variances

    out = seed_uncertainty(noisy(n_seeds=4, noise=0.02), fanova_variances, n_boot=20)
    assert out.se.dims == ("term",) and "order" in out.coords
    assert (out.se > 0).all() and (out.ci_low <= out.ci_high).all()
