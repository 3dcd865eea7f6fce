"""Attributing a real ablation table: the alias structure of known designs, estimates equal to the lab's where
identified, missing cells and unbalanced seeds handled, bad tables refused with a named field."""

import itertools

import numpy as np
import pandas as pd
import pytest

from fi_sim.attribution import analyse, effect_summary, fanova_variances, from_table, games, switch_game
from fi_sim.attribution.ablation import Basis, contrast_basis
from fi_sim.errors import ValidationError


def long_table(y, metric="y"):
    """A DataArray as a long table: one column per dimension and the metric."""
    return y.rename(metric).to_dataframe().reset_index()


def fraction(y, keep):
    """The rows of the long table whose cell (as +-1 signs, factor order) satisfies ``keep``."""
    df = long_table(y)
    signs = np.column_stack([np.where(df[f] == y.coords[f].values[0], -1, 1) for f in y.dims if f != "seed"])
    return df[[bool(keep(s)) for s in signs]].reset_index(drop=True)


def test_contrast_basis_is_orthonormal_under_the_uniform_design():
    for n in (2, 3, 5):
        b = contrast_basis(n)
        assert np.allclose(b.sum(axis=0), 0)
        assert np.allclose(b.T @ b / n, np.eye(n - 1))
    assert np.allclose(contrast_basis(2)[:, 0], [-1, 1])


def test_half_fraction_abc_reproduces_its_defining_relation():
    # 2^(3-1) with I = ABC: the four cells whose signs multiply to +1.
    y = games.unanimity({("A",): 1.0, ("B",): 2.0, ("C",): -1.0, ("A", "B"): 0.5}, players=("A", "B", "C"))
    order = {f: ["off", "on"] for f in "ABC"}  # the fraction's first row is not the baseline
    table = from_table(fraction(y, lambda s: s.prod() > 0), "y", levels=order)
    report = analyse(table)
    assert report.defining_relation == ["A:B:C"]
    assert report.aliases["A"] == {"B:C": pytest.approx(1.0)}
    assert report.aliases["B"] == {"A:C": pytest.approx(1.0)}
    assert report.aliases["C"] == {"A:B": pytest.approx(1.0)}
    effects = report.effects.set_index("term")
    assert list(effects.loc[["A", "B", "C"], "support"]) == ["aliased"] * 3
    assert list(effects.loc[["A:B", "A:C", "B:C"], "support"]) == ["not estimable"] * 3
    assert effects.loc["A:B", "aliases"] == "C"
    assert any("the A effect is aliased with B:C" in c for c in report.claims)
    assert any("A:B effect cannot be estimated" in c and "C" in c for c in report.claims)
    # The other half (I = -ABC) carries the sign.
    other = analyse(from_table(fraction(y, lambda s: s.prod() < 0), "y", levels=order))
    assert other.defining_relation == ["-A:B:C"]
    assert other.aliases["A"] == {"B:C": pytest.approx(-1.0)}
    # What the estimate of A is: A + B:C (the full lab's contrasts, on the two levels).
    lab = effect_summary(y, max_order=2)
    expected_a = float(lab["contrast"].sel(term="A") + lab["contrast"].sel(term="B:C"))
    assert effects.loc["A", "contrast"] == pytest.approx(expected_a, abs=1e-12)


def test_resolution_v_fraction_identifies_main_effects_and_flags_the_three_way_alias():
    # A planted A:B:C unanimity term has characters up to order 3 only, so with I = ABCDE (resolution V) the
    # main effects (aliased with 4-way terms) equal the full lab's exactly; D:E absorbs A:B:C.
    coefficients = {("A",): 0.3, ("B",): -0.2, ("D",): 0.5, ("A", "D"): 0.4, ("A", "B", "C"): 1.0}
    y = games.unanimity(coefficients, players=("A", "B", "C", "D", "E"))
    report = analyse(from_table(fraction(y, lambda s: s.prod() > 0), "y", levels={f: ["off", "on"] for f in "ABCDE"}))
    assert report.defining_relation == ["A:B:C:D:E"]
    assert report.aliases["D:E"] == {"A:B:C": pytest.approx(1.0)}
    lab = effect_summary(y, max_order=3)
    effects = report.effects.set_index("term")
    for term in ("A", "B", "C", "D", "E", "A:D", "A:B"):
        assert effects.loc[term, "contrast"] == pytest.approx(float(lab["contrast"].sel(term=term)), abs=1e-12), term
    assert effects.loc["D:E", "contrast"] == pytest.approx(float(lab["contrast"].sel(term="D:E") + lab["contrast"].sel(term="A:B:C")), abs=1e-12)
    assert set(effects["support"]) == {"clear of order <= 2"}
    assert not [c for c in report.claims if "effect" in c and "Shapley" not in c]


def test_full_factorial_with_seeds_equals_the_lab_exactly():
    y = games.get_game("interface_three_way", n_seeds=3, noise_sd=0.01, rng_seed=2)
    report = from_table(long_table(y, "accuracy"), "accuracy").report(max_order=5)
    variances = fanova_variances(y)
    effects = report.effects.set_index("term")
    assert len(effects) == len(variances)
    for term in variances["term"].values:
        assert effects.loc[term, "variance"] == pytest.approx(float(variances.sel(term=term)), rel=1e-9, abs=1e-15), term
    lab = effect_summary(y, max_order=2)
    for term in lab["term"].values:
        if np.isfinite(lab["contrast"].sel(term=term)):
            assert effects.loc[term, "contrast"] == pytest.approx(float(lab["contrast"].sel(term=term)), abs=1e-12)
    truth = switch_game(y).shapley()
    for _, row in report.shapley.iterrows():
        assert row["shapley"] == pytest.approx(truth[row["factor"]], abs=1e-12)
        assert row["identified"]
    assert report.defining_relation == [] and report.claims == []
    assert "within-cell seed variance" in report.interval_source


def test_missing_cells_and_unbalanced_seeds_are_handled():
    rng = np.random.default_rng(0)
    y = games.random_game(3, levels=[3, 2, 2], rng_seed=1)
    rows = []
    for cell in itertools.product(*(range(n) for n in y.shape)):
        if cell in {(2, 1, 1), (1, 0, 1)}:
            continue  # two cells never run
        for seed in range(1 + (sum(cell) % 3)):  # 1 to 3 seeds
            rows.append({**{f: str(y.coords[f].values[i]) for f, i in zip(y.dims, cell)}, "seed": seed, "acc": float(y.values[cell]) + 0.01 * rng.normal()})
    df = pd.DataFrame(rows)
    table = from_table(df, "acc")
    assert len(table.cells) == 10 and table.seeds_per_cell.sum() == len(df)
    report = analyse(table, max_order=3)
    # Oracle: ordinary least squares on every run with the model's columns.
    basis = Basis.of(table.factors, table.grid_shape)
    model_terms = report.model_terms
    cols = np.concatenate([np.arange(basis.blocks[m].start, basis.blocks[m].stop) for m in basis.terms if basis.name(m) in model_terms])
    codes = np.array([[table.level_index(f, r[f], f) for f in table.factors] for _, r in df.iterrows()])
    x = basis.columns(codes, table.grid_shape)[:, cols]
    beta = np.linalg.lstsq(x, df["acc"].to_numpy(), rcond=None)[0]
    effects = report.effects.set_index("term")
    start = 0
    for m in basis.terms:
        if basis.name(m) not in model_terms:
            continue
        width = basis.blocks[m].stop - basis.blocks[m].start
        if m:
            assert effects.loc[basis.name(m), "variance"] == pytest.approx(float((beta[start:start + width] ** 2).sum()), rel=1e-9)
        start += width
    # The full three-way term cannot be estimated from 10 of 12 cells.
    assert effects.loc[basis.name(7), "support"] in ("not estimable", "partially estimable")
    assert np.isfinite(effects.loc[basis.name(1), "variance_low"])


def test_failed_runs_and_constant_factors_are_noted_not_refused():
    df = pd.DataFrame({"data": ["a", "b", "a", "b"], "fixed": ["x"] * 4, "acc": [0.1, 0.3, np.nan, 0.35]})
    table = from_table(df, "acc")
    assert table.factors == ("data",)
    assert any("failed" in n for n in table.notes) and any("single level" in n for n in table.notes)


def test_bad_tables_raise_named_errors(tmp_path):
    df = pd.DataFrame({"data": ["a", "b"], "verifier": ["x", "y"], "acc": [0.1, 0.2], "label": ["p", "q"]})
    with pytest.raises(ValidationError) as error:
        from_table(df, "accuracy")
    assert error.value.problems[0].field == "metric" and "acc" in error.value.problems[0].allowed
    with pytest.raises(ValidationError) as error:
        from_table(df, "label")
    assert "numeric" in error.value.problems[0].allowed
    path = tmp_path / "table.xlsx"
    path.write_text("x")
    with pytest.raises(ValidationError) as error:
        from_table(path, "acc")
    assert error.value.problems[0].field == "table" and ".csv" in error.value.problems[0].allowed
    with pytest.raises(ValidationError):
        from_table(df, "acc", factors=["data", "nope"])
    with pytest.raises(ValidationError) as error:
        from_table(pd.DataFrame({"data": ["a", "a", "b"], "seed": [0, 0, 0], "acc": [0.1, 0.2, 0.3]}), "acc")
    assert "one row per cell and seed" in error.value.problems[0].allowed
