"""Exact quantities equal the closed forms of the analytic games (to 1e-8 wherever the comparison is exact)."""

import itertools

import numpy as np
import pytest

from fi_sim.attribution import fanova_variances, shapley_effects, sobol_closed, sobol_indices, switch_game
from fi_sim.attribution import games

TOL = 1e-8


def check_global_truth(y, truth):
    variances = fanova_variances(y)
    for term, value in truth["variance_terms"].items():
        assert variances.sel(term=":".join(term)).item() == pytest.approx(value, abs=TOL, rel=TOL)
    sobol = sobol_indices(y)
    assert sobol.attrs["total_variance"] == pytest.approx(truth["total_variance"], rel=TOL)
    for name in truth["first"]:
        assert sobol["first"].sel(factor=name).item() == pytest.approx(truth["first"][name], abs=TOL)
        assert sobol["total"].sel(factor=name).item() == pytest.approx(truth["total"][name], abs=TOL)
    effects = shapley_effects(y)
    for name, value in truth["shapley_effects"].items():
        assert effects.sel(factor=name).item() == pytest.approx(value, abs=TOL, rel=TOL)


@pytest.mark.parametrize("levels", [4, 7, 12])
def test_ishigami_grid_equals_closed_form(levels):
    check_global_truth(games.ishigami(levels), games.ishigami_truth(levels=levels))


def test_ishigami_continuous_closed_form_matches_the_literature():
    # Published values for a = 7, b = 0.1 (e.g. Saltelli et al. 2008; SALib's test suite)
    truth = games.ishigami_truth()
    assert truth["first"]["x1"] == pytest.approx(0.3139, abs=1e-4)
    assert truth["first"]["x2"] == pytest.approx(0.4424, abs=1e-4)
    assert truth["first"]["x3"] == pytest.approx(0.0, abs=1e-12)
    assert truth["total"]["x1"] == pytest.approx(0.5576, abs=1e-4)
    assert truth["total"]["x2"] == pytest.approx(0.4424, abs=1e-4)
    assert truth["total"]["x3"] == pytest.approx(0.2437, abs=1e-4)
    assert truth["total_variance"] == pytest.approx(13.8446, abs=1e-3)


def test_ishigami_grid_tends_to_the_continuous_truth():
    continuous = games.ishigami_truth()
    errors = [max(abs(games.ishigami_truth(levels=m)["total"][k] - continuous["total"][k]) for k in continuous["total"]) for m in (16, 64, 256)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3
    # and the exact computation on a fine grid agrees with the continuous indices to grid accuracy
    sobol = sobol_indices(games.ishigami(48))
    for k in continuous["first"]:
        assert sobol["first"].sel(factor=k).item() == pytest.approx(continuous["first"][k], abs=5e-3)


@pytest.mark.parametrize("levels,a", [(4, games.DEFAULT_SOBOL_G_A), (5, (0.0, 0.5, 3.0)), (6, (1.0, 2.0, 0.0, 9.0, 99.0))])
def test_sobol_g_grid_equals_closed_form(levels, a):
    check_global_truth(games.sobol_g(levels, a), games.sobol_g_truth(a, levels=levels))


def test_sobol_g_continuous_closed_form():
    a = np.array(games.DEFAULT_SOBOL_G_A)
    v = 1.0 / (3.0 * (1.0 + a) ** 2)
    total = np.prod(1 + v) - 1
    truth = games.sobol_g_truth(a)
    for i, name in enumerate(["x1", "x2", "x3", "x4"]):
        assert truth["first"][name] == pytest.approx(v[i] / total, rel=1e-12)
        assert truth["total"][name] == pytest.approx(v[i] * np.prod(1 + np.delete(v, i)) / total, rel=1e-12)
    # even grids reproduce the continuous mean of each factor exactly (mu = 1)
    fine = games.sobol_g_truth(a, levels=400)
    assert fine["total_variance"] == pytest.approx(truth["total_variance"], rel=1e-4)


def test_sum_of_unanimity_switch_game_equals_closed_form():
    y = games.unanimity()
    truth = games.unanimity_truth()
    game = switch_game(y)
    moebius = game.moebius()
    assert set(moebius) == set(truth["moebius"])
    for coalition, value in truth["moebius"].items():
        assert moebius[coalition] == pytest.approx(value, abs=TOL)
    for name in truth["shapley"]:
        assert game.shapley()[name] == pytest.approx(truth["shapley"][name], abs=TOL)
        assert game.banzhaf()[name] == pytest.approx(truth["banzhaf"][name], abs=TOL)
    for pair, value in truth["interactions"].items():
        assert game.interactions(2)[pair] == pytest.approx(value, abs=TOL)
    assert game.gain == pytest.approx(truth["gain"], abs=TOL)


def test_sum_of_unanimity_fanova_equals_closed_form():
    coefficients = {("a",): 2.0, ("a", "b"): -1.0, ("b", "c", "d"): 3.0, ("c",): 0.5, (): 1.0}
    check_global_truth(games.unanimity(coefficients), games.unanimity_truth(coefficients))


def test_planted_interface_surfaces_have_their_planted_moebius_coefficients():
    for structure in games.INTERFACE_STRUCTURES:
        y = games.interface_surface(structure)
        planted = games.planted_truth(y)
        moebius = switch_game(y).moebius()
        for coalition, value in moebius.items():
            expected = games.INTERFACE_BASELINE_ACCURACY if not coalition else planted.get(coalition, 0.0)
            assert value == pytest.approx(expected, abs=1e-12), (structure, coalition)


def test_closed_sobol_index_of_subsets():
    y = games.sobol_g(4, (0.0, 1.0, 2.0))
    truth = games.sobol_g_truth((0.0, 1.0, 2.0), levels=4)
    for size in (1, 2, 3):
        for subset in itertools.combinations(["x1", "x2", "x3"], size):
            expected = sum(v for t, v in truth["variance_terms"].items() if set(t) <= set(subset)) / truth["total_variance"]
            assert sobol_closed(y, subset) == pytest.approx(expected, abs=TOL)
