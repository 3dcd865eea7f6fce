"""Methods under test: each is checked against what it provably estimates on games with known structure."""


import numpy as np
import pytest

from fi_sim.attribution import METHODS, Attribution, MethodNotApplicable, Regime, switch_game
from fi_sim.attribution import games, methods


def close(a: dict, b: dict, tol=1e-10):
    assert set(a) == set(b)
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=tol), k


@pytest.fixture(scope="module")
def unanimity():
    return games.unanimity()


def test_exact_ofat_loo_data_only_on_unanimity(unanimity):
    truth = switch_game(unanimity)
    close(methods.exact_shapley(Regime(unanimity)).scores, truth.shapley())
    close(methods.one_factor_at_a_time(Regime(unanimity)).scores, truth.one_factor_at_a_time())
    close(methods.leave_one_out(Regime(unanimity)).scores, truth.leave_one_out())
    claim = methods.data_only(Regime(unanimity, data_factor="p2"))
    assert claim.scores["p2"] == pytest.approx(truth.gain)
    assert all(v == 0 for k, v in claim.scores.items() if k != "p2")
    interactions = methods.exact_shapley(Regime(unanimity)).interactions
    close(interactions, truth.interactions(2))


def test_full_factorial_main_effects_are_banzhaf_values(unanimity):
    result = methods.fractional_factorial(Regime(unanimity))
    assert result.target == "switch_banzhaf"
    close(result.scores, switch_game(unanimity).banzhaf())
    assert result.details["runs"] == 32 and result.details["resolution"] is None


def test_half_fraction_main_effects_carry_their_aliases():
    # 2^(3-1) with x3 = x1*x2 (I = x1:x2:x3): estimated A = full-factorial effect A + effect BC
    y = games.random_game(3, 2, rng_seed=4)
    regime = Regime(y, budget=4)
    result = methods.fractional_factorial(regime)
    assert result.details["design"] == "2^(3-1)" and result.details["resolution"] == 3
    assert result.details["defining_relation"] == "I = f1:f2:f3"
    assert result.details["aliases"]["f1"] == ["f2:f3"]
    assert "f1" in result.notes and "alias" in result.notes

    values = y.values
    signs = np.array([-1.0, 1.0])

    def effect(*axes):
        s = np.ones((2, 2, 2))
        for a in axes:
            shape = [1, 1, 1]
            shape[a] = 2
            s = s * signs.reshape(shape)
        return 2 * (s * values).mean()

    assert result.scores["f1"] == pytest.approx(effect(0) + effect(1, 2))
    assert result.scores["f2"] == pytest.approx(effect(1) + effect(0, 2))
    assert result.scores["f3"] == pytest.approx(effect(2) + effect(0, 1))
    assert regime.spent == 4


@pytest.mark.parametrize(
    "k,r,resolution,pattern",
    [
        (4, 3, 4, (0, 0, 0, 1)),  # 2^(4-1): I = ABCD
        (5, 3, 3, (0, 0, 2, 1, 0)),  # 2^(5-2) minimum aberration: A3 = 2, A4 = 1
        (6, 4, 4, (0, 0, 0, 3, 0, 0)),  # 2^(6-2) minimum aberration: I = ABCE = BCDF = ADEF
        (7, 3, 3, (0, 0, 7, 7, 0, 0, 1)),  # 2^(7-4): saturated resolution III
        (7, 4, 4, (0, 0, 0, 7, 0, 0, 0)),  # 2^(7-3): resolution IV, seven words of length 4
        (10, 4, 3, None),  # 2^(10-6): too many generator sets to search; highest-order products first
    ],
)
def test_fractional_designs(k, r, resolution, pattern):
    built = methods.fractional_design(k, r)
    design = built["design"]
    assert design.shape == (1 << r, k)
    # orthogonal +-1 columns: every main effect is estimable
    np.testing.assert_allclose(design.T @ design, (1 << r) * np.eye(k))
    lengths = [bin(w).count("1") for w in built["words"]]
    assert min(lengths) == resolution
    if pattern is not None:
        assert tuple(lengths.count(n) for n in range(1, k + 1)) == pattern
    # every defining word multiplies to +1 in every run
    for w in built["words"]:
        cols = [i for i in range(k) if w >> i & 1]
        np.testing.assert_allclose(np.prod(design[:, cols], axis=1), 1.0)


def test_two_factor_did_is_the_exact_shapley_split():
    y = games.random_game(2, 3, rng_seed=9, names=["data", "verifier"])
    result = methods.difference_in_differences(Regime(y))
    close(result.scores, switch_game(y).shapley())
    (pair,) = result.interactions
    assert result.interactions[pair] == pytest.approx(switch_game(y).moebius()[frozenset(["data", "verifier"])])
    assert "two-level restriction" in result.notes


def test_regressions_are_exact_when_the_model_is_right():
    pairwise = games.interface_surface("pairwise")
    close(methods.pairwise_regression(Regime(pairwise)).scores, switch_game(pairwise).shapley())
    additive = games.interface_surface("additive")
    close(methods.additive_regression(Regime(additive)).scores, switch_game(additive).shapley())
    # with a three-way interaction neither is exact
    three_way = games.interface_surface("three_way")
    estimate = methods.pairwise_regression(Regime(three_way)).scores
    truth = switch_game(three_way).shapley()
    assert max(abs(estimate[k] - truth[k]) for k in truth) > 0.01


def test_regression_on_a_budget_uses_an_identifiable_random_subset():
    y = games.get_game("interface_pairwise", n_seeds=3, noise_sd=0.01)
    regime = Regime(y, budget=12, rng_seed=2)
    result = methods.additive_regression(regime)
    assert regime.spent == 12 and result.details["cells"] == 12 and result.details["parameters"] == 8
    assert set(result.intervals) == set(regime.switching_factors)
    small = Regime(y, budget=6, rng_seed=2)  # fewer cells than the 8 parameters of the full grid
    result = methods.additive_regression(small)
    assert result.details["two_level"] and "two-level restriction" in result.notes
    with pytest.raises(MethodNotApplicable, match="parameters"):
        methods.pairwise_regression(Regime(y, budget=10))


def test_shapley_sampling_respects_the_budget_and_converges():
    y = games.interface_surface("three_way")
    truth = switch_game(y).shapley()
    regime = Regime(y, budget=14, rng_seed=0)
    result = methods.shapley_sampling(regime)
    assert regime.spent <= 14
    assert sum(result.scores.values()) == pytest.approx(switch_game(y).gain)  # every permutation is efficient
    rich = methods.shapley_sampling(Regime(y, rng_seed=0), n_permutations=400)
    error = np.linalg.norm([rich.scores[k] - truth[k] for k in truth]) / np.linalg.norm(list(truth.values()))
    assert error < 0.05
    assert all(lo <= rich.scores[k] <= hi for k, (lo, hi) in rich.intervals.items())
    again = methods.shapley_sampling(Regime(y, rng_seed=0), n_permutations=400)
    assert again.scores == rich.scores
    with pytest.raises(MethodNotApplicable):
        methods.shapley_sampling(Regime(y, budget=3))


def test_budget_too_small_is_not_applicable(unanimity):
    for name in ("exact_shapley", "ofat", "leave_one_out", "fractional_factorial"):
        with pytest.raises(MethodNotApplicable, match="budget"):
            METHODS[name](Regime(unanimity, budget=3))
    with pytest.raises(MethodNotApplicable):
        methods.difference_in_differences(Regime(unanimity, budget=3))


def test_hidden_factors_are_never_named():
    y = games.get_game("interface_three_way", n_seeds=2, noise_sd=0.01)
    for name, method in METHODS.items():
        regime = Regime(y, hidden=["verifier"])
        result = method(regime)
        assert isinstance(result, Attribution)
        assert set(result.scores) == set(regime.reported_factors), name
        assert "verifier" not in (result.intervals or {})


def test_intervals_come_from_seeds():
    y = games.get_game("interface_three_way", n_seeds=4, noise_sd=0.01, rng_seed=0)
    result = methods.one_factor_at_a_time(Regime(y))
    per_seed = y.sel(Regime(y).switch_cell(("data",))) - y.sel(Regime(y).switch_cell(()))
    centre = float(per_seed.mean())
    half = methods.t_quantile_975(3) * float(per_seed.std(ddof=1)) / 2.0
    lo, hi = result.intervals["data"]
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert methods.one_factor_at_a_time(Regime(y, n_seeds=1)).intervals is None


def test_t_quantiles():
    scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is only needed to cross-check the t table")
    for df in (1, 2, 5, 17, 30, 31, 60, 500):
        assert methods.t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=2e-3)


def test_null_players_score_zero():
    y = games.random_game(3, 3, rng_seed=1)
    baseline = {"f1": "L0", "f2": "L0", "f3": "L1"}
    target = {"f1": "L2", "f2": "L1", "f3": "L1"}
    truth = switch_game(y, baseline, target).shapley()
    for name, method in METHODS.items():
        result = method(Regime(y, baseline=baseline, target=target, data_factor="f1"))
        assert result.scores["f3"] == 0.0, name
    close(methods.exact_shapley(Regime(y, baseline=baseline, target=target)).scores, truth)
