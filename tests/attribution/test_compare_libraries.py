"""Cross-checks with the field's libraries (the optional extra: pip install "fi_sim[compare]").

* shapiq's ExactComputer: Moebius coefficients, Shapley and Banzhaf values and the order-2 Shapley
  interaction index of switching games, and Shapley effects (Shapley values of the variance game), on random
  surfaces of 2 to 8 factors with 2 to 4 levels. These comparisons are exact (1e-10).
* SALib and scipy.stats.sobol_indices estimate Sobol indices by sampling, so the comparisons are
  statistical. SALib has no categorical factors; two honest comparisons are made: (1) continuous Ishigami
  through SALib's Saltelli / Sobol' sampling against the continuous closed form; (2) a categorical grid game
  presented to SALib / scipy as a function of uniform inputs on [0, 1], each input binned into the factor's
  levels (u -> level floor(u * m)). Every level then has probability 1/m, so the binned function's Sobol
  indices *are* the discrete indices of the grid under its uniform design, which the lab computes exactly.

Each test is skipped, with the reason, when its library is not installed.
"""

import itertools

import numpy as np
import pytest
import xarray as xr

from fi_sim.attribution import shapley_effects, sobol_indices, switch_game
from fi_sim.attribution import games

CASES = [  # (levels per factor, rng seed): 2 to 8 factors, 2 to 4 levels
    ([4, 2], 0),
    ([3, 3, 2], 1),
    ([2, 4, 3, 2], 2),
    ([2, 3, 4, 2, 3], 3),
    ([2, 2, 3, 2, 2, 2], 4),
    ([2, 3, 2, 2, 2, 2, 2], 6),
    ([2] * 8, 5),
]


def random_case(levels, seed):
    rng = np.random.default_rng(seed)
    y = games.random_game(len(levels), levels, rng_seed=seed)
    baseline = {d: f"L{rng.integers(s)}" for d, s in zip(y.dims, levels)}
    target = {d: f"L{(int(baseline[d][1:]) + 1 + rng.integers(s - 1)) % s}" for d, s in zip(y.dims, levels)}
    return y, baseline, target


def shapiq_value(values, coalition):
    return float(values.values[values.interaction_lookup[tuple(coalition)]])


@pytest.mark.parametrize("levels,seed", CASES)
def test_switch_game_against_shapiq(levels, seed):
    shapiq = pytest.importorskip("shapiq", reason="shapiq is part of the optional 'compare' extra")
    y, baseline, target = random_case(levels, seed)
    names = list(y.dims)
    base_index = [list(y[d].values).index(baseline[d]) for d in names]
    top_index = [list(y[d].values).index(target[d]) for d in names]

    def game(coalitions):  # read straight from the grid, independently of the lab's switch_game
        cells = np.where(coalitions, top_index, base_index)
        return y.values[tuple(cells.T)]

    exact = shapiq.ExactComputer(game, n_players=len(names))
    ours = switch_game(y, baseline, target)
    moebius, sv, bv, sii = exact("Moebius"), exact("SV"), exact("BV"), exact("SII", order=2)
    for size in range(len(names) + 1):
        for players in itertools.combinations(range(len(names)), size):
            key = frozenset(names[p] for p in players)
            assert ours.moebius()[key] == pytest.approx(shapiq_value(moebius, players), abs=1e-10)
    for p, name in enumerate(names):
        assert ours.shapley()[name] == pytest.approx(shapiq_value(sv, (p,)), abs=1e-10)
        assert ours.banzhaf()[name] == pytest.approx(shapiq_value(bv, (p,)), abs=1e-10)
    for i, j in itertools.combinations(range(len(names)), 2):
        assert ours.interactions(2)[frozenset((names[i], names[j]))] == pytest.approx(shapiq_value(sii, (i, j)), abs=1e-10)


@pytest.mark.parametrize("levels,seed", CASES[:5])
def test_shapley_effects_against_shapiq(levels, seed):
    shapiq = pytest.importorskip("shapiq", reason="shapiq is part of the optional 'compare' extra")
    y, _, _ = random_case(levels, seed)
    values = y.values

    def variance_game(coalitions):  # Var E[Y | X_S], computed directly for each coalition
        out = []
        for row in coalitions:
            outside = tuple(np.flatnonzero(~row))
            out.append(values.mean(axis=outside).var() if outside else values.var())
        return np.array(out)

    exact = shapiq.ExactComputer(variance_game, n_players=y.ndim)
    sv = exact("SV")
    ours = shapley_effects(y)
    for p, name in enumerate(y.dims):
        assert ours.sel(factor=name).item() == pytest.approx(shapiq_value(sv, (p,)), abs=1e-10)


def test_continuous_ishigami_against_salib():
    pytest.importorskip("SALib", reason="SALib is part of the optional 'compare' extra")
    from SALib.analyze import sobol as salib_analyze
    from SALib.sample import sobol as salib_sample

    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-np.pi, np.pi]] * 3}
    x = salib_sample.sample(problem, 2**13, calc_second_order=False, seed=1)
    estimate = salib_analyze.analyze(problem, games.ishigami_function(x), calc_second_order=False, num_resamples=10, seed=1)
    truth = games.ishigami_truth()
    for i, name in enumerate(problem["names"]):
        assert estimate["S1"][i] == pytest.approx(truth["first"][name], abs=0.03)
        assert estimate["ST"][i] == pytest.approx(truth["total"][name], abs=0.03)


def binned(y: xr.DataArray):
    """The grid as a function of uniform inputs u in [0, 1]^d: factor i takes level floor(u_i * m_i)."""
    sizes = np.array(y.shape)

    def f(u):  # u: (n, d)
        index = np.minimum((np.asarray(u) * sizes).astype(int), sizes - 1)
        return y.values[tuple(index.T)]

    return f


def test_binned_sobol_g_grid_against_salib():
    pytest.importorskip("SALib", reason="SALib is part of the optional 'compare' extra")
    from SALib.analyze import sobol as salib_analyze
    from SALib.sample import sobol as salib_sample

    y = games.sobol_g(levels=3, a=(0.0, 1.0, 4.5, 9.0))
    problem = {"num_vars": 4, "names": list(y.dims), "bounds": [[0.0, 1.0]] * 4}
    x = salib_sample.sample(problem, 2**13, calc_second_order=False, seed=2)
    estimate = salib_analyze.analyze(problem, binned(y)(x), calc_second_order=False, num_resamples=10, seed=2)
    exact = sobol_indices(y)
    np.testing.assert_allclose(estimate["S1"], exact["first"].values, atol=0.03)
    np.testing.assert_allclose(estimate["ST"], exact["total"].values, atol=0.03)


def test_binned_interface_surface_against_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy is part of the optional 'compare' extra")
    if not hasattr(stats, "sobol_indices"):
        pytest.skip("scipy.stats.sobol_indices needs scipy >= 1.11")
    y = games.interface_surface("three_way")
    f = binned(y)
    result = stats.sobol_indices(
        func=lambda u: f(u.T),  # scipy passes inputs as (d, n)
        n=2**13,
        dists=[stats.uniform(0, 1)] * y.ndim,
        rng=np.random.default_rng(3),
    )
    exact = sobol_indices(y)
    np.testing.assert_allclose(result.first_order, exact["first"].values, atol=0.03)
    np.testing.assert_allclose(result.total_order, exact["total"].values, atol=0.03)
