"""The game algebra on bitmask-indexed arrays, against brute-force definitions."""

import itertools
import math

import numpy as np
import pytest

from fi_sim.attribution import cooperative as coop


def brute_moebius(v, n):
    return np.array([sum((-1) ** (bin(t).count("1") - bin(s).count("1")) * v[s] for s in range(1 << n) if s & t == s) for t in range(1 << n)])


def brute_shapley(v, n):
    # average marginal contribution over all n! orders
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        mask = 0
        for p in order:
            phi[p] += v[mask | 1 << p] - v[mask]
            mask |= 1 << p
    return phi / math.factorial(n)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_transforms_against_brute_force(n):
    v = np.random.default_rng(n).normal(size=1 << n)
    m = coop.moebius_transform(v)
    np.testing.assert_allclose(m, brute_moebius(v, n), atol=1e-12)
    np.testing.assert_allclose(coop.zeta_transform(m), v, atol=1e-12)
    np.testing.assert_allclose(coop.shapley_from_moebius(m), brute_shapley(v, n), atol=1e-12)
    np.testing.assert_allclose(coop.shapley_from_values(v), brute_shapley(v, n), atol=1e-12)
    np.testing.assert_allclose(coop.banzhaf_from_values(v), coop.banzhaf_from_moebius(m), atol=1e-12)
    np.testing.assert_allclose(v @ coop.shapley_weight_matrix(n), brute_shapley(v, n), atol=1e-12)


def test_batches_are_independent_games():
    games = np.random.default_rng(0).normal(size=(4, 3, 8))
    batched = coop.shapley_from_moebius(coop.moebius_transform(games))
    for i in range(4):
        for j in range(3):
            np.testing.assert_allclose(batched[i, j], brute_shapley(games[i, j], 3), atol=1e-12)


def test_interaction_indices_of_a_unanimity_game():
    # u_T for T = {0, 1, 2} among 4 players: SII(S) = 1 / (|T| - |S| + 1) for S subset T, else 0
    n = 4
    m = np.zeros(1 << n)
    m[0b0111] = 1.0
    sii = coop.interaction_index_from_moebius(m, 2)
    for mask in range(1 << n):
        expected = 0.5 if bin(mask).count("1") == 2 and mask & 0b0111 == mask else 0.0
        assert sii[mask] == pytest.approx(expected)
    bii = coop.interaction_index_from_moebius(m, 2, kind="banzhaf")
    assert bii[0b0011] == pytest.approx(0.5)
    # order 1 gives the Shapley and Banzhaf values
    order1 = coop.interaction_index_from_moebius(m, 1)
    np.testing.assert_allclose(order1[[1, 2, 4, 8]], coop.shapley_from_moebius(m))
    with pytest.raises(ValueError):
        coop.interaction_index_from_moebius(m, 5)


def test_game_length_must_be_a_power_of_two():
    with pytest.raises(ValueError):
        coop.moebius_transform(np.zeros(6))
