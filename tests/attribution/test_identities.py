"""Identities that must hold on any surface: property tests on random games of 2 to 8 factors, 2 to 4 levels."""

import itertools
import math

import numpy as np
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fi_sim.attribution import cooperative as coop
from fi_sim.attribution import fanova, fanova_variances, shapley_effects, sobol_closed, sobol_indices, switch_game

TOL = 1e-10


@st.composite
def random_surfaces(draw, max_factors=8):
    n = draw(st.integers(2, max_factors))
    # keep the grid small enough for a quick test: at most ~6,600 cells
    cap = 4 if n <= 4 else (3 if n <= 6 else 2)
    sizes = draw(st.lists(st.integers(2, cap), min_size=n, max_size=n))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    names = [f"factor_{i}" for i in range(n)]
    y = xr.DataArray(rng.normal(size=sizes) * scale, dims=names, coords={d: [f"l{j}" for j in range(s)] for d, s in zip(names, sizes)})
    baseline = {d: f"l{rng.integers(s)}" for d, s in zip(names, sizes)}
    target = {d: f"l{rng.integers(s)}" for d, s in zip(names, sizes)}
    return y, baseline, target, scale


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(random_surfaces())
def test_switch_game_identities(case):
    y, baseline, target, scale = case
    game = switch_game(y, baseline, target)
    m = game.moebius()
    tol = TOL * scale
    # the Moebius coefficients rebuild the game: v(S) = sum_{T subset S} m(T)
    for size in range(len(game.factors) + 1):
        for coalition in itertools.islice(itertools.combinations(game.factors, size), 5):
            rebuilt = sum(v for t, v in m.items() if t <= set(coalition))
            assert abs(rebuilt - game.value(coalition)) <= tol
    shapley, banzhaf, ofat, loo = game.shapley(), game.banzhaf(), game.one_factor_at_a_time(), game.leave_one_out()
    for i in game.factors:
        containing = {t: v for t, v in m.items() if i in t}
        assert abs(ofat[i] - m[frozenset([i])]) <= tol  # one-factor-at-a-time = singleton Moebius term
        assert abs(shapley[i] - sum(v / len(t) for t, v in containing.items())) <= tol
        assert abs(loo[i] - sum(containing.values())) <= tol  # leave-one-out = sum over T containing i
        assert abs(banzhaf[i] - sum(v / 2 ** (len(t) - 1) for t, v in containing.items())) <= tol
        if baseline[i] == target[i]:  # null player
            assert abs(shapley[i]) <= tol and abs(banzhaf[i]) <= tol
    assert abs(sum(shapley.values()) - game.gain) <= tol  # efficiency
    # Shapley values from the permutation-weight definition agree with the Moebius route
    from_values = coop.shapley_from_values(game.values)
    np.testing.assert_allclose(from_values, [shapley[f] for f in game.factors], atol=tol)
    # order-2 SII: sum over T containing {i, j} of m(T) / (|T| - 1)
    for pair, value in game.interactions(2).items():
        assert abs(value - sum(v / (len(t) - 1) for t, v in m.items() if pair <= t)) <= tol


@SETTINGS
@given(random_surfaces(max_factors=6))
def test_fanova_terms_sum_to_y_are_centred_and_orthogonal(case):
    y, _, _, scale = case
    terms = fanova(y)
    assert len(terms) == 2 ** y.ndim
    np.testing.assert_allclose(terms.reconstruct().values, y.values, atol=TOL * scale)
    for names, effect in terms.items():
        for d in names:  # centred along each of its own factors
            assert np.abs(effect.mean(d).values).max() <= TOL * scale
    keys = [k for k in terms if k]
    rng = np.random.default_rng(len(keys))
    pairs = list(itertools.combinations(keys, 2))
    for index in rng.choice(len(pairs), size=min(len(pairs), 40), replace=False):
        a, b = pairs[index]
        inner = (terms[a] * terms[b]).transpose(*[d for d in y.dims if d in set(a) | set(b)])
        # the mean over the full grid of f_A * f_B is the mean over A u B (the grid is a product)
        assert abs(float(inner.mean())) <= TOL * scale**2
    assert math.isclose(float(terms.variances.sum()), float(y.var()), rel_tol=1e-9)


@SETTINGS
@given(random_surfaces())
def test_sobol_and_shapley_effect_identities(case):
    y, _, _, scale = case
    sobol = sobol_indices(y)
    assert (sobol["first"].values <= sobol["total"].values + 1e-12).all()
    assert (sobol["first"].values >= -1e-12).all() and (sobol["total"].values <= 1 + 1e-12).all()
    effects = shapley_effects(y)
    total = float(y.var())
    assert abs(float(effects.sum()) - total) <= 1e-9 * total
    # first <= Shapley effect / V <= total
    assert (sobol["first"].values <= effects.values / total + 1e-12).all()
    assert (effects.values / total <= sobol["total"].values + 1e-12).all()
    variances = fanova_variances(y)
    assert abs(float(variances.sum()) - total) <= 1e-9 * total
    subset = list(y.dims[: max(1, y.ndim // 2)])
    expected = sum(v for term, v in zip(variances.term.values, variances.values) if set(term.split(":")) <= set(subset)) / total
    assert abs(sobol_closed(y, subset) - expected) <= 1e-10
