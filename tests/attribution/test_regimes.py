"""Information regimes: budgets, hidden factors, seeds, and what a method may see."""

import numpy as np
import pytest

from fi_sim.attribution import BudgetExceeded, Regime, RegimeSpec, standard_regimes
from fi_sim.attribution import games
from fi_sim.errors import FiSimError, ValidationError


@pytest.fixture
def y():
    return games.get_game("interface_three_way", n_seeds=4, noise_sd=0.02, rng_seed=1)


def test_budget_counts_distinct_cells_and_repeats_are_free(y):
    regime = Regime(y, budget=2)
    a, b, c = regime.switch_cell(()), regime.switch_cell(("data",)), regime.switch_cell(("base",))
    first = regime.query(a)
    assert regime.query(a) == first and regime.spent == 1
    regime.query(b)
    assert regime.spent == 2 and regime.remaining == 0 and regime.runs_spent == 8
    assert regime.cost_of([a, b, c]) == 1 and not regime.can_afford([c])
    with pytest.raises(BudgetExceeded) as info:
        regime.query(c)
    assert isinstance(info.value, FiSimError)
    assert info.value.budget == 2 and "budget of 2" in str(info.value)
    assert regime.spent == 2 and len(regime.log) == 3


def test_query_is_the_mean_over_the_first_seeds(y):
    regime = Regime(y, n_seeds=2)
    cell = regime.switch_cell(("verifier", "data"))
    expected = y.sel(regime.switch_cell(("verifier", "data"))).values[:2]
    np.testing.assert_allclose(regime.query_seeds(cell), expected)
    assert regime.query(cell) == pytest.approx(expected.mean())
    assert regime.query(cell, n_seeds=1) == pytest.approx(expected[0])
    with pytest.raises(ValidationError):
        regime.query(cell, n_seeds=3)


def test_hidden_factor_is_averaged_and_cannot_be_set(y):
    regime = Regime(y, hidden=["verifier"], name="hidden_verifier")
    assert regime.reported_factors == ("base", "data", "optimizer", "scaffold")
    assert "verifier" not in regime.levels and "verifier" not in regime.baseline
    cell = regime.switch_cell(("data",))
    expected = y.sel(cell).mean("verifier").values
    np.testing.assert_allclose(regime.query_seeds(cell), expected)
    with pytest.raises(ValidationError) as info:
        regime.query({**cell, "verifier": "faithful"})
    assert "not reported" in str(info.value)


def test_mixture_weights_of_a_hidden_factor(y):
    regime = Regime(y, hidden=["verifier"], mixture={"verifier": [0, 0, 1]})
    cell = regime.switch_cell(())
    np.testing.assert_allclose(regime.query_seeds(cell), y.sel(cell).sel(verifier="faithful").values)
    with pytest.raises(ValidationError):
        Regime(y, hidden=["verifier"], mixture={"verifier": [1, 1]})
    with pytest.raises(ValidationError):
        Regime(y, hidden=["verifier"], mixture={"data": [1, 1, 1]})


def test_cells_must_name_every_reported_factor_with_a_known_level(y):
    regime = Regime(y)
    with pytest.raises(ValidationError) as info:
        regime.query({"base": "headroom"})
    assert "missing" in str(info.value)
    with pytest.raises(ValidationError) as info:
        regime.query({**regime.switch_cell(()), "data": "hard"})
    assert "'data'" in str(info.value) and "edge" in str(info.value)


def test_bad_regime_options(y):
    for kwargs, field in [
        ({"budget": 0}, "budget"),
        ({"n_seeds": 9}, "n_seeds"),
        ({"hidden": ["size"]}, "hidden"),
        ({"hidden": list(y.dims[:-1])}, "hidden"),
    ]:
        with pytest.raises(ValidationError) as info:
            Regime(y, **kwargs)
        assert field in info.value.fields


def test_data_factor_falls_back_with_a_note():
    regime = Regime(games.unanimity())
    assert regime.data_factor == "p1" and "not a factor" in regime.data_factor_note
    hidden = Regime(games.interface_surface(), hidden=["data"])
    assert hidden.data_factor == "base" and "hidden" in hidden.data_factor_note


def test_standard_regimes(y):
    specs = standard_regimes(y)
    assert [s.name for s in specs] == ["full", "paper", "budget_20", "hidden_base"]
    paper = specs[1]
    assert paper.budget == 6 and paper.n_seeds == 1
    regime = specs[3].build(y)
    assert regime.hidden == ("base",) and regime.budget is None
    assert isinstance(specs[0], RegimeSpec)


def test_rng_is_seeded():
    y = games.unanimity()
    assert Regime(y, rng_seed=3).rng.integers(1 << 30) == Regime(y, rng_seed=3).rng.integers(1 << 30)


def test_surface_without_seeds_is_one_seed():
    regime = Regime(games.unanimity())
    assert regime.n_seeds == 1
    assert regime.query_seeds(regime.switch_cell(())).shape == (1,)
    assert regime.switching_factors == ("p1", "p2", "p3", "p4", "p5")
    assert len(regime.all_cells()) == 32
