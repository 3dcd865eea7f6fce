"""The leaderboard: on a planted three-way interaction, the errors of one-factor-at-a-time and data-only
attribution are exactly what the Moebius identities predict; the exact methods and Shapley sampling are right."""


import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fi_sim.attribution import METHODS, Attribution, MethodNotApplicable, switch_game
from fi_sim.attribution import games
from fi_sim.attribution.leaderboard import COLUMNS, attribute_main, evaluate, run_leaderboard
from fi_sim.errors import ValidationError


@pytest.fixture(scope="module")
def planted():
    return games.get_game("interface_three_way", n_seeds=3, noise_sd=0.01, rng_seed=0)


@pytest.fixture(scope="module")
def result(planted):
    return evaluate(planted)


def estimates(result, method, regime):
    rows = result.scores[(result.scores.method == method) & (result.scores.regime == regime)]
    return dict(zip(rows.factor, rows.estimate))


def test_table_shape_and_columns(result):
    table = result.table
    assert list(table.columns) == COLUMNS
    assert len(table) == len(METHODS) * 4
    assert set(table.regime) == {"full", "paper", "budget_20", "hidden_base"}
    ok = table[table.status == "ok"]
    assert set(ok.truth) == {"switch_shapley", "switch_banzhaf"}
    assert (table[table.status != "ok"].status.str.startswith("n/a:")).all()


def test_ofat_and_data_only_are_wrong_by_exactly_the_identities(planted, result):
    game = switch_game(planted)
    m = game.moebius()
    shapley = game.shapley()
    factors = list(game.factors)
    # OFAT_i - Shapley_i = m({i}) - sum_{T containing i} m(T)/|T| = -(share of i in the higher-order terms)
    predicted_ofat = {i: -sum(v / len(t) for t, v in m.items() if i in t and len(t) >= 2) for i in factors}
    ofat = estimates(result, "ofat", "full")
    for i in factors:
        assert ofat[i] - shapley[i] == pytest.approx(predicted_ofat[i], abs=1e-10)
    # without noise, data misses exactly a third of the planted three-way term (its only interaction)
    noiseless = switch_game(games.interface_surface("three_way"))
    missed = noiseless.one_factor_at_a_time()["data"] - noiseless.shapley()["data"]
    assert missed == pytest.approx(-games.planted_truth(planted)[frozenset({"base", "verifier", "data"})] / 3, abs=1e-12)
    # data-only: the data factor gets every other factor's Shapley value too, the others lose theirs
    predicted_data = {i: (sum(v * (len(t) - 1) / len(t) for t, v in m.items() if "data" in t and t) + sum(v for t, v in m.items() if t and "data" not in t)) if i == "data" else -shapley[i] for i in factors}
    claim = estimates(result, "data_only", "full")
    for i in factors:
        assert claim[i] - shapley[i] == pytest.approx(predicted_data[i], abs=1e-10)
    # and the table's normalised L2 error is the norm of those predicted errors
    norm = np.linalg.norm(list(shapley.values()))
    row = result.table.set_index(["method", "regime"])
    assert row.loc[("ofat", "full"), "nl2"] == pytest.approx(np.linalg.norm(list(predicted_ofat.values())) / norm, abs=1e-10)
    assert row.loc[("data_only", "full"), "nl2"] == pytest.approx(np.linalg.norm(list(predicted_data.values())) / norm, abs=1e-10)
    assert row.loc[("ofat", "full"), "nl2"] > 0.5 and row.loc[("data_only", "full"), "nl2"] > 1.0
    # the leaderboard's own identity check reports the same predictions
    reported = result.predicted_errors()
    for i in factors:
        assert reported["ofat"][i] == pytest.approx(predicted_ofat[i], abs=1e-12)
        assert reported["data_only"][i] == pytest.approx(predicted_data[i], abs=1e-12)


def test_exact_methods_and_shapley_sampling_are_right(result):
    row = result.table.set_index(["method", "regime"])
    assert row.loc[("exact_shapley", "full"), "nl2"] < 1e-10
    assert row.loc[("fractional_factorial", "full"), "nl2"] < 1e-10  # against its own truth, the Banzhaf values
    assert row.loc[("fractional_factorial", "full"), "nl2_vs_shapley"] > 0.1  # but Banzhaf is not Shapley
    assert row.loc[("shapley_sampling", "full"), "nl2"] < 0.1
    assert row.loc[("shapley_sampling", "full"), "kendall"] == pytest.approx(1.0)
    assert row.loc[("exact_shapley", "full"), "precision_at_k"] == 1.0
    # hiding the most important non-data factor hurts even the exact method
    assert row.loc[("exact_shapley", "hidden_base"), "nl2"] > 0.3
    # the paper's budget cannot pay for the exact game
    assert row.loc[("exact_shapley", "paper"), "status"].startswith("n/a")
    assert row.loc[("exact_shapley", "full"), "cells"] == 32 and row.loc[("exact_shapley", "full"), "runs"] == 96


def test_files_are_written(planted, tmp_path):
    table = run_leaderboard(planted, tmp_path, methods=["exact_shapley", "ofat", "data_only"], regimes=["full", "paper"], title="planted")
    assert len(table) == 6
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.png", "leaderboard_scores.csv"):
        assert (tmp_path / name).stat().st_size > 0
    md = (tmp_path / "leaderboard.md").read_text()
    assert md.startswith("# planted") and "| method | regime | truth |" in md
    assert "Identity check" in md and "predicted by the identities (ofat)" in md
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "leaderboard.csv")[["method", "regime"]], table[["method", "regime"]])
    assert (tmp_path / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"


def test_a_users_method_plugs_in(planted):
    def halves(regime):
        """Credit half of the gain to the data factor and split the rest evenly."""
        gain = regime.query(regime.switch_cell(regime.switching_factors)) - regime.query(regime.switch_cell(()))
        others = [f for f in regime.reported_factors if f != regime.data_factor]
        scores = {regime.data_factor: gain / 2, **{f: gain / 2 / len(others) for f in others}}
        return Attribution(scores=scores, notes="half to the data")

    def picky(regime):
        raise MethodNotApplicable("only runs on Sundays")

    out = evaluate(planted, methods={"halves": halves, "picky": picky}, regimes=["full", "hidden_verifier"])
    row = out.table.set_index(["method", "regime"])
    assert row.loc[("halves", "full"), "status"] == "ok" and row.loc[("halves", "full"), "cells"] == 2
    assert row.loc[("picky", "full"), "status"] == "n/a: only runs on Sundays"
    assert row.loc[("halves", "hidden_verifier"), "status"] == "ok"


def test_a_method_may_not_name_hidden_factors(planted):
    def cheat(regime):
        return Attribution(scores={"base": 1.0})

    with pytest.raises(ValidationError) as info:
        evaluate(planted, methods={"cheat": cheat}, regimes=["hidden_base"])
    assert "reported factors only" in str(info.value)


def test_attribute_main_with_a_game_and_with_a_surface(tmp_path, planted):
    table = attribute_main(None, "unanimity", tmp_path / "game", methods=["exact_shapley", "data_only"], regimes=["full"])
    assert list(table.method) == ["exact_shapley", "data_only"]
    assert "data factor 'data' is not a factor" in table.set_index("method").loc["data_only", "notes"]
    ds = xr.Dataset({"accuracy": planted, "reward": planted * 2})
    table = attribute_main(ds, None, tmp_path / "results", metric="accuracy", methods=["ofat"], regimes=["paper"])
    assert table.iloc[0].status == "ok" and (tmp_path / "results" / "leaderboard.md").exists()


def test_attribute_main_refuses_bad_calls(tmp_path, planted):
    with pytest.raises(ValidationError):
        attribute_main(None, None, tmp_path)
    with pytest.raises(ValidationError):
        attribute_main(planted, "unanimity", tmp_path)
    with pytest.raises(ValidationError) as info:
        attribute_main(None, "nope", tmp_path)
    assert "ishigami" in str(info.value)
    with pytest.raises(ValidationError) as info:
        attribute_main(planted, None, tmp_path, colour="red")
    assert "colour" in str(info.value)
    with pytest.raises(ValidationError):
        attribute_main(xr.Dataset({"accuracy": planted}), None, tmp_path, metric="loss")
    with pytest.raises(ValidationError):
        evaluate(planted, methods=["magic"])
    with pytest.raises(ValidationError):
        evaluate(planted, regimes=["moon"])


def test_failed_seeds_in_a_results_surface(planted):
    y = planted.copy()
    y[0, 0, 0, 0, 0, 2] = np.nan  # a failed run in the baseline cell, seed 2
    with pytest.warns(UserWarning, match="dropped 1"):
        out = evaluate(y, methods=["exact_shapley", "ofat"], regimes=["full", "budget_40"])
    assert (out.table.status == "ok").all()
    y[0, 0, 0, 0, 0, 0] = np.nan  # now the paper's only seed of the baseline failed too
    with pytest.warns(UserWarning, match="dropped 2"):
        out = evaluate(y, methods=["ofat"], regimes=["full", "paper"])
    status = out.table.set_index("regime").status
    assert status["full"] == "ok" and "no finite seed" in status["paper"]
