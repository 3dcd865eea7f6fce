"""Bad input is refused with a ValidationError naming the field, the value given and what is allowed."""

import warnings

import numpy as np
import pytest
import xarray as xr

from fi_sim.attribution import (
    MissingSeedsWarning,
    effect_summary,
    fanova,
    shapley_effects,
    sobol_indices,
    switch_game,
)
from fi_sim.errors import FiSimError, ValidationError

TRUTH_FUNCTIONS = [fanova, sobol_indices, shapley_effects, switch_game, effect_summary]


def surface(n_seeds=3):
    rng = np.random.default_rng(0)
    return xr.DataArray(
        rng.normal(size=(2, 3, n_seeds)),
        dims=["base", "data", "seed"],
        coords={"base": ["small", "large"], "data": ["easy", "edge", "beyond"], "seed": list(range(n_seeds))},
    )


def assert_problem(error: ValidationError, field_part: str):
    assert isinstance(error, FiSimError)
    assert any(field_part in p.field for p in error.problems), [str(p) for p in error.problems]
    for p in error.problems:
        assert p.allowed
        assert str(p.value) in str(error) or repr(p.value) in str(error)


@pytest.mark.parametrize("fn", TRUTH_FUNCTIONS)
def test_not_a_dataarray(fn):
    with pytest.raises(ValidationError) as info:
        fn(np.zeros((2, 2)))
    assert_problem(info.value, "y")
    assert "ndarray" in str(info.value)


def test_dataset_is_refused_with_a_hint():
    ds = xr.Dataset({"accuracy": surface(), "reward": surface()})
    with pytest.raises(ValidationError) as info:
        fanova(ds)
    assert "accuracy" in str(info.value) and "DataArray" in str(info.value)


@pytest.mark.parametrize("fn", TRUTH_FUNCTIONS)
def test_duplicate_levels(fn):
    y = surface().assign_coords(data=["easy", "easy", "beyond"])
    with pytest.raises(ValidationError) as info:
        fn(y)
    assert_problem(info.value, "coords['data']")
    assert "easy" in str(info.value)


@pytest.mark.parametrize("fn", TRUTH_FUNCTIONS)
def test_single_level_factor(fn):
    y = surface().isel(base=[0])
    with pytest.raises(ValidationError) as info:
        fn(y)
    assert_problem(info.value, "sizes['base']")


def test_seed_only_and_non_numeric():
    with pytest.raises(ValidationError) as info:
        fanova(xr.DataArray(np.zeros(3), dims=["seed"]))
    assert_problem(info.value, "dims")
    with pytest.raises(ValidationError) as info:
        fanova(xr.DataArray(np.array([["a", "b"], ["c", "d"]]), dims=["x", "z"]))
    assert_problem(info.value, "dtype")


def test_unknown_baseline_or_target_levels():
    y = surface()
    with pytest.raises(ValidationError) as info:
        switch_game(y, {"base": "small", "data": "medium"}, {"base": "large", "data": "edge"})
    assert_problem(info.value, "baseline['data']")
    assert "medium" in str(info.value) and "beyond" in str(info.value)
    with pytest.raises(ValidationError) as info:
        switch_game(y, {"base": "small", "data": "easy"}, {"base": "huge", "data": "edge"})
    assert_problem(info.value, "target['base']")


def test_baseline_must_name_every_factor_and_only_factors():
    y = surface()
    with pytest.raises(ValidationError) as info:
        switch_game(y, {"base": "small"}, {"base": "large", "data": "edge"})
    assert "missing" in str(info.value) and "data" in str(info.value)
    with pytest.raises(ValidationError) as info:
        switch_game(y, {"base": "small", "data": "easy", "verifier": "exact"}, {"base": "large", "data": "edge"})
    assert "verifier" in str(info.value)


def test_nan_seeds_are_dropped_with_a_warning():
    y = surface(n_seeds=3)
    y[0, 0, 1] = np.nan
    y[1, 2, 0] = np.nan
    with pytest.warns(MissingSeedsWarning, match="dropped 2 non-finite seed value"):
        result = fanova(y)
    expected = np.nanmean(y.values, axis=-1)
    np.testing.assert_allclose(result.reconstruct().values, expected, atol=1e-12)


@pytest.mark.parametrize("fn", TRUTH_FUNCTIONS)
def test_cell_without_any_finite_seed_is_named(fn):
    y = surface(n_seeds=2)
    y[1, 2, :] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingSeedsWarning)
        with pytest.raises(ValidationError) as info:
            fn(y)
    assert "'base': 'large'" in str(info.value) and "'data': 'beyond'" in str(info.value)


def test_nan_without_seed_dimension_is_refused():
    y = surface().isel(seed=0, drop=True)
    y[0, 1] = np.nan
    with pytest.raises(ValidationError) as info:
        sobol_indices(y)
    assert "'data': 'edge'" in str(info.value)


def test_other_argument_checks():
    y = surface()
    with pytest.raises(ValidationError) as info:
        effect_summary(y, max_order=0)
    assert_problem(info.value, "max_order")
    with pytest.raises(ValidationError) as info:
        effect_summary(y, n_boot=1)
    assert_problem(info.value, "n_boot")
    with pytest.raises(ValidationError) as info:
        switch_game(y).interactions(order=5)
    assert_problem(info.value, "order")


def test_any_dimension_names_and_integer_levels_work():
    y = xr.DataArray(np.arange(8.0).reshape(2, 2, 2), dims=["temperature", "k", "lr"], coords={"temperature": [0.0, 1.0], "k": [1, 8], "lr": [1e-3, 1e-2]})
    game = switch_game(y, {"temperature": 0.0, "k": 1, "lr": 1e-3}, {"temperature": 1.0, "k": 8, "lr": 1e-2})
    assert game.gain == pytest.approx(7.0)
    # dimensions without coordinates get integer level labels
    bare = xr.DataArray(np.arange(6.0).reshape(2, 3), dims=["u", "v"])
    assert list(fanova(bare)[("v",)].v.values) == [0, 1, 2]


def test_the_lab_imports_nothing_from_the_simulator():
    import subprocess
    import sys

    code = (
        "import sys, fi_sim.attribution, fi_sim.attribution.leaderboard\n"
        "bad = [m for m in sys.modules if m.startswith('fi_sim') and not m.startswith(('fi_sim.attribution', 'fi_sim.errors')) and m != 'fi_sim']\n"
        "bad += [m for m in ('jax', 'flax', 'optax', 'scipy') if m in sys.modules]\n"
        "print(bad)\n"
    )
    import os
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, env=env)
    assert out.stdout.strip() == "[]", out.stdout
