"""The registry of analytic games."""

import numpy as np
import pytest

from fi_sim.attribution import games
from fi_sim.errors import ValidationError


def test_every_listed_game_builds():
    for name in games.GAMES:
        y = games.get_game(name)
        assert y.attrs["game"] == name and y.ndim >= 2
        assert np.isfinite(y.values).all()


def test_unknown_game_lists_the_allowed_names():
    with pytest.raises(ValidationError) as info:
        games.get_game("rosenbrock")
    assert "ishigami" in str(info.value) and "interface_three_way" in str(info.value)
    with pytest.raises(ValidationError) as info:
        games.get_game("ishigami", colour="red")
    assert "colour" in str(info.value)


def test_seeds_and_noise():
    y = games.get_game("unanimity", n_seeds=5, noise_sd=0.1, rng_seed=2)
    assert y.dims[-1] == "seed" and y.sizes["seed"] == 5
    assert y.attrs["baseline"]["p1"] == "off"
    assert 0.05 < float((y - games.unanimity()).std()) < 0.15
    again = games.get_game("unanimity", n_seeds=5, noise_sd=0.1, rng_seed=2)
    np.testing.assert_array_equal(y.values, again.values)
    with pytest.raises(ValidationError):
        games.get_game("unanimity", n_seeds=0)
    with pytest.raises(ValidationError):
        games.get_game("unanimity", n_seeds=2, noise_sd=-1.0)


def test_game_options():
    assert games.get_game("ishigami", levels=5).shape == (5, 5, 5)
    assert games.get_game("sobol_g", levels=3, a=(0.0, 1.0)).shape == (3, 3)
    assert games.get_game("random", n_factors=3, levels=[2, 3, 4]).shape == (2, 3, 4)
    with pytest.raises(ValidationError):
        games.interface_surface("quadratic")
    with pytest.raises(ValidationError):
        games.unanimity({("a", "b"): 1.0}, players=["a"])


def test_ishigami_function_values():
    assert games.ishigami_function(np.array([0.0, 0.0, 0.0])) == 0.0
    x = np.array([np.pi / 2, np.pi / 2, 1.0])
    assert games.ishigami_function(x) == pytest.approx(1 + 7 + 0.1)
