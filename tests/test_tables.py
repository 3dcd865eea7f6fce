"""Tables out: a results Dataset as one row per run and budget, and back through from_table to the lab's answer."""

import numpy as np
import pytest
import xarray as xr

from fi_sim.attribution import analyse, effect_summary, fanova_variances, from_table, switch_game
from fi_sim.errors import ValidationError
from fi_sim.tables import export, to_table

FACTORS = {"verifier": ["exact", "noisy"], "base": ["narrow", "broad"], "data": ["within", "edge"],
           "optimizer": ["reinforce", "grpo"], "scaffold": ["direct", "scratchpad"], "budget": ["pass@1", "majority@k"]}


def results_like(seeds=3, seed=0) -> xr.Dataset:
    """A synthetic Dataset shaped like fi_sim's results: six factors, seed, per-depth and per-step variables,
    training metrics without a budget axis, a status flag with one failed run."""
    rng = np.random.default_rng(seed)
    dims = list(FACTORS) + ["seed"]
    shape = [len(v) for v in FACTORS.values()] + [seeds]
    train_dims = [d for d in dims if d != "budget"]
    train_shape = [s for d, s in zip(dims, shape) if d != "budget"]
    gain = rng.normal(0.05, 0.03, size=shape)
    status = np.zeros(train_shape, np.int8)
    status[0, 1, 0, 0, 0, 2] = 2
    gain[0, 1, 0, 0, 0, :, 2] = np.nan  # that run failed: NaN on every budget
    ds = xr.Dataset(
        {
            "gain": (dims, gain, {"truth": "true", "units": "fraction"}),
            "proxy_gain": (dims, gain + 0.01, {"truth": "proxy"}),
            "reward_false_positive_rate": (train_dims, rng.uniform(size=train_shape), {"truth": "channel"}),
            "kl_to_base": (train_dims, rng.uniform(size=train_shape), {"truth": "true"}),
            "score_by_depth": (dims + ["depth"], rng.uniform(size=shape + [2]), {"truth": "true"}),
            "curve_kl": (train_dims + ["step"], rng.uniform(size=train_shape + [3]), {"truth": "true"}),
            "status": (train_dims, status, {"flag_values": np.array([-1, 0, 2], np.int8), "flag_meanings": "not_run ok nonfinite"}),
        },
        coords={**FACTORS, "seed": list(range(seeds)), "depth": [2, 3], "step": [10, 20, 30]},
    )
    return ds


def test_one_row_per_run_and_budget_with_named_truth_columns():
    ds = results_like()
    table = to_table(ds)
    assert len(table) == 64 * 3
    assert list(table.columns[:8]) == list(FACTORS) + ["seed", "status"]
    assert set(table.columns[8:]) == {"true:gain", "proxy:proxy_gain", "channel:reward_false_positive_rate", "true:kl_to_base"}
    row = table[(table.verifier == "noisy") & (table.base == "broad") & (table.budget == "majority@k") & (table.seed == 1)
                & (table.data == "edge") & (table.optimizer == "grpo") & (table.scaffold == "scratchpad")].iloc[0]
    assert row["true:gain"] == ds["gain"].sel(verifier="noisy", base="broad", data="edge", optimizer="grpo", scaffold="scratchpad", budget="majority@k", seed=1).item()
    # a training metric repeats on both budget rows of its run
    same_run = table[(table.verifier == "exact") & (table.base == "narrow") & (table.data == "within") & (table.optimizer == "reinforce")
                     & (table.scaffold == "direct") & (table.seed == 0)]
    assert same_run["true:kl_to_base"].nunique() == 1 and len(same_run) == 2
    failed = table[table.status == "nonfinite"]
    assert len(failed) == 2 and failed["true:gain"].isna().all()


def test_not_run_cells_are_dropped():
    ds = results_like()
    ds["status"].values[1, 0, 0, 0, 0, 0] = -1
    assert len(to_table(ds)) == 64 * 3 - 2


def test_export_read_back_gives_the_labs_answer_exactly(tmp_path):
    ds = results_like()
    ds["gain"].values[0, 1, 0, 0, 0, :, 2] = 0.04  # no failed run here: the lab's full surface
    ds["status"].values[...] = 0
    path = export(ds, tmp_path / "results.csv")
    table = from_table(path, "gain")  # the bare name finds true:gain
    assert table.metric == "true:gain" and table.factors == tuple(FACTORS)
    y = ds["gain"]
    back = table.to_dataarray()
    assert np.array_equal(back.values, y.transpose(*back.dims).values)
    report = analyse(table, max_order=6)
    variances = fanova_variances(y)
    effects = report.effects.set_index("term")
    for term in variances["term"].values:
        assert effects.loc[term, "variance"] == pytest.approx(float(variances.sel(term=term)), rel=1e-9, abs=1e-16)
    contrasts = effect_summary(y, max_order=2)["contrast"]
    for term in contrasts["term"].values:
        assert effects.loc[term, "contrast"] == pytest.approx(float(contrasts.sel(term=term)), abs=1e-13)
    shapley = switch_game(y).shapley()
    assert dict(zip(report.shapley.factor, report.shapley.shapley)) == pytest.approx(shapley, abs=1e-13)


def test_parquet_round_trip_or_a_clear_error(tmp_path):
    ds = results_like()
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ValidationError) as error:
            export(ds, tmp_path / "r.parquet")
        assert "pyarrow" in str(error.value)
        return
    path = export(ds, tmp_path / "r.parquet")
    a, b = to_table(ds), from_table(path, "proxy_gain")
    assert b.metric == "proxy:proxy_gain" and np.isclose(sum(r.sum() for r in b.runs), np.nansum(a["proxy:proxy_gain"]))


def test_bad_export_requests_name_the_field(tmp_path):
    ds = results_like()
    with pytest.raises(ValidationError) as error:
        export(ds, tmp_path / "r.xlsx")
    assert error.value.problems[0].field == "format"
    with pytest.raises(ValidationError) as error:
        to_table(ds, metrics=["score_by_depth"])
    assert error.value.problems[0].field == "metrics"
    with pytest.raises(ValidationError):
        to_table(ds.isel(seed=0))
