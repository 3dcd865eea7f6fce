"""A hand-computed 2x2x2 example: the numbers below were worked out on paper, not by the code under test.

Factors A (a1, a2), B (b1, b2), C (c1, c2); outcomes

    cell (A, B, C):  111  211  121  221  112  212  122  222
    Y:                10   14   12   20   11   15   13   25

Grand mean 120 / 8 = 15. Classical 2^k effects (effect = contrast / 2^(k-1)):

* A = mean(a2) - mean(a1) = (14+20+15+25)/4 - (10+12+11+13)/4 = 18.5 - 11.5 = 7
* B = (12+20+13+25)/4 - (10+14+11+15)/4 = 17.5 - 12.5 = 5
* C = (11+15+13+25)/4 - (10+14+12+20)/4 = 16 - 14 = 2
* A:B = half the difference-in-differences, averaged over C:
  at c1 [(20-12) - (14-10)] = 4, at c2 [(25-13) - (15-11)] = 8; (4 + 8) / 2 / 2 = 3
* A:C: at b1 [(15-11) - (14-10)] = 0, at b2 [(25-13) - (20-12)] = 4; (0 + 4) / 2 / 2 = 1
* B:C: at a1 [(13-11) - (12-10)] = 0, at a2 [(25-15) - (20-14)] = 4; (0 + 4) / 2 / 2 = 1
* A:B:C = 2 * mean(sign * Y) = 2 * (-10+14+12-20+11-15-13+25) / 8 = 1

With two levels a term is +-effect/2 in every cell, so its fANOVA variance is (effect / 2)^2:
V_A = 12.25, V_B = 6.25, V_C = 1, V_AB = 2.25, V_AC = 0.25, V_BC = 0.25, V_ABC = 0.25, total 22.5
(= Var Y: deviations -5 -1 -3 5 -4 0 -2 10, squares summing to 180, / 8).

Seeds: seed 0 = Y + e, seed 1 = Y - e, with e = 1 in cell (a2, b1, c1) and 0 elsewhere. The seed mean is Y
again; each per-seed contrast moves by +-2 * sign(a2 b1 c1) / 8 = +-0.25, so every term's contrast_se is
std(ddof=1) of (x + 0.25, x - 0.25) / sqrt(2) = 0.35355 / 1.41421 = 0.25.
"""

import numpy as np
import pytest
import xarray as xr

from fi_sim.attribution import effect_summary, fanova, sobol_indices
from fi_sim.attribution.uncertainty import seed_uncertainty

# Y[a, b, c] with index 0 = first level.
Y = np.zeros((2, 2, 2))
for (a, b, c), value in {
    (0, 0, 0): 10, (1, 0, 0): 14, (0, 1, 0): 12, (1, 1, 0): 20,
    (0, 0, 1): 11, (1, 0, 1): 15, (0, 1, 1): 13, (1, 1, 1): 25,
}.items():
    Y[a, b, c] = value

COORDS = {"A": ["a1", "a2"], "B": ["b1", "b2"], "C": ["c1", "c2"]}
EFFECTS = {"A": 7.0, "B": 5.0, "C": 2.0, "A:B": 3.0, "A:C": 1.0, "B:C": 1.0}
VARIANCES = {"A": 12.25, "B": 6.25, "C": 1.0, "A:B": 2.25, "A:C": 0.25, "B:C": 0.25}
TOTAL_VARIANCE = 22.5


def surface():
    return xr.DataArray(Y, dims=["A", "B", "C"], coords=COORDS)


def seeded_surface():
    e = np.zeros((2, 2, 2))
    e[1, 0, 0] = 1.0
    return xr.DataArray(np.stack([Y + e, Y - e], axis=-1), dims=["A", "B", "C", "seed"], coords={**COORDS, "seed": [0, 1]})


def test_main_effects_and_pairwise_contrasts():
    summary = effect_summary(surface(), max_order=2)
    assert list(summary.term.values) == ["A", "B", "C", "A:B", "A:C", "B:C"]
    assert list(summary.order.values) == [1, 1, 1, 2, 2, 2]
    for term, effect in EFFECTS.items():
        assert summary.contrast.sel(term=term).item() == pytest.approx(effect, abs=1e-12)


def test_variances_rms_and_shares():
    summary = effect_summary(surface(), max_order=2)
    assert summary.attrs["total_variance"] == pytest.approx(TOTAL_VARIANCE)
    assert summary.attrs["grand_mean"] == pytest.approx(15.0)
    for term, variance in VARIANCES.items():
        assert summary.variance.sel(term=term).item() == pytest.approx(variance, abs=1e-12)
        assert summary.rms.sel(term=term).item() == pytest.approx(np.sqrt(variance), abs=1e-12)
        assert summary.share.sel(term=term).item() == pytest.approx(variance / TOTAL_VARIANCE, abs=1e-12)
        # two-level terms: |contrast| = 2 * rms
        assert abs(summary.contrast.sel(term=term).item()) == pytest.approx(2 * summary.rms.sel(term=term).item())
    assert summary.sobol_first.sel(term="A").item() == pytest.approx(12.25 / 22.5)
    assert np.isnan(summary.sobol_first.sel(term="A:B").item())
    # total index of A: V_A + V_AB + V_AC + V_ABC = 12.25 + 2.25 + 0.25 + 0.25 = 15
    assert summary.sobol_total.sel(term="A").item() == pytest.approx(15.0 / 22.5)
    assert sobol_indices(surface())["total"].sel(factor="A").item() == pytest.approx(15.0 / 22.5)


def test_third_order_term_and_effect_tables():
    summary = effect_summary(surface(), max_order=3)
    assert summary.contrast.sel(term="A:B:C").item() == pytest.approx(1.0)
    assert summary.variance.sel(term="A:B:C").item() == pytest.approx(0.25)
    terms = fanova(surface())
    assert terms[()].item() == pytest.approx(15.0)
    np.testing.assert_allclose(terms[("A",)].values, [-3.5, 3.5])
    # f_AB = +-1.5, positive where A and B are at the same level
    np.testing.assert_allclose(terms[("A", "B")].values, [[1.5, -1.5], [-1.5, 1.5]])
    np.testing.assert_allclose(terms.reconstruct().values, Y)


def test_seed_standard_errors():
    summary = effect_summary(seeded_surface(), max_order=2, n_boot=50)
    for term, effect in EFFECTS.items():
        assert summary.contrast.sel(term=term).item() == pytest.approx(effect, abs=1e-12)
        assert summary.contrast_se.sel(term=term).item() == pytest.approx(0.25, abs=1e-12)
    assert np.isfinite(summary.rms_se.values).all()
    assert (summary.rms_se.values > 0).all()


def test_rms_se_is_the_documented_bootstrap():
    # The same draws as seed_uncertainty with the same rng seed: the vectorised path must agree with it.
    y = seeded_surface()
    summary = effect_summary(y, max_order=2, n_boot=40, rng_seed=7)
    generic = seed_uncertainty(y, lambda yb: np.sqrt(effect_summary(yb, n_boot=2).variance), n_boot=40, rng_seed=7)
    np.testing.assert_allclose(summary.rms_se.values, generic.se.values, atol=1e-12)


def test_no_seeds_or_one_seed_gives_nan_errors():
    for y in (surface(), seeded_surface().isel(seed=[0])):
        summary = effect_summary(y)
        assert np.isnan(summary.rms_se.values).all()
        assert np.isnan(summary.contrast_se.values).all()


def test_contrast_is_nan_for_multilevel_terms():
    y = xr.DataArray(np.arange(12.0).reshape(2, 3, 2), dims=["A", "B", "C"], coords={"A": [0, 1], "B": list("xyz"), "C": [0, 1]})
    summary = effect_summary(y)
    assert np.isnan(summary.contrast.sel(term="B").item())
    assert np.isnan(summary.contrast.sel(term="A:B").item())
    assert summary.contrast.sel(term="A:C").item() == pytest.approx(0.0)
    assert summary.contrast.sel(term="A").item() == pytest.approx(6.0)
