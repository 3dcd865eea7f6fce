"""The validation suite's checks (experiments/validate.py) on synthetic results whose answer is known: each check
passes on the signature it looks for, fails without it, and its statistics do not invent a signature from noise."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def validate():
    spec = importlib.util.spec_from_file_location("fi_sim_validate", ROOT / "experiments" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_seed_ci_is_the_t_interval_over_seeds(validate):
    ci = validate.seed_ci([1.0, 2.0, 3.0])
    assert ci.mean == pytest.approx(2.0)
    assert ci.hi - ci.mean == pytest.approx(4.302653 / np.sqrt(3), rel=1e-3)  # t(0.975, 2 df)
    assert np.isnan(validate.seed_ci([0.5]).lo)


def _curves(rng, seeds, steps, truth, proxy, noise=0.02):
    return (truth[None, :] + noise * rng.standard_normal((seeds, steps)),
            proxy[None, :] + noise * rng.standard_normal((seeds, steps)))


def test_rise_then_fall_finds_an_inverted_u_and_its_peak(validate):
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 50)
    truth = 0.5 + 0.3 * np.exp(-((x - 0.4) / 0.15) ** 2) - 0.2 * x  # up to a peak near 40%, then down
    t, p = _curves(rng, 6, 50, truth, 0.5 + 0.5 * x)
    rise, fall, proxy_after, where = validate.rise_then_fall(t, p)
    assert rise.lo > 0 and fall.lo > 0 and proxy_after.lo > 0
    assert abs(where - 0.4) < 0.1


def test_rise_then_fall_rejects_a_steady_rise(validate):
    rng = np.random.default_rng(1)
    x = np.linspace(0, 1, 50)
    t, p = _curves(rng, 6, 50, 0.5 + 0.4 * x, 0.5 + 0.4 * x)
    rise, fall, _, _ = validate.rise_then_fall(t, p)
    assert rise.lo > 0
    assert not fall.lo > 0


def test_rise_then_fall_does_not_invent_a_peak_from_noise(validate):
    # flat curves: the cross-fitted peak keeps each seed's contrasts unbiased, so "rises and falls" is rare
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(200):
        t, p = _curves(rng, 6, 50, np.full(50, 0.5), np.full(50, 0.5), noise=0.05)
        rise, fall, _, _ = validate.rise_then_fall(t, p)
        hits += rise.lo > 0 and fall.lo > 0
    assert hits / 200 <= 0.05


def _over_optimisation(truth_free, gains, seeds=6, steps=50, seed=0):
    rng = np.random.default_rng(seed)
    levels = ["kl1.0", "kl0.2", "kl0"]
    kls = [0.1, 0.8, 3.0]
    x = np.linspace(0, 1, steps)
    curve_t = np.stack([np.stack([(truth_free if o == "kl0" else 0.5 + 0.2 * x) + 0.02 * rng.standard_normal(steps)
                                  for _ in range(seeds)]) for o in levels])
    curve_p = np.stack([np.stack([0.5 + 0.5 * x + 0.02 * rng.standard_normal(steps) for _ in range(seeds)])
                        for _ in levels])
    dims = ("optimizer", "seed")
    g = np.stack([m + 0.02 * rng.standard_normal(seeds) for m in gains])
    return xr.Dataset({
        "gain": (dims, g), "proxy_gain": (dims, g + 0.1),
        "kl_to_base": (dims, np.repeat(np.array(kls)[:, None], seeds, 1)),
        "curve_true_accuracy": (dims + ("step",), curve_t), "curve_proxy_reward": (dims + ("step",), curve_p),
        "curve_kl": (dims + ("step",), np.repeat(np.repeat(x[None, None], seeds, 1), 3, 0)),
    }, coords={"optimizer": levels, "seed": np.arange(seeds), "step": np.arange(steps)})


def test_over_optimisation_check_needs_both_the_curve_and_the_penalty_signature(validate):
    x = np.linspace(0, 1, 50)
    u = 0.5 + 0.3 * np.exp(-((x - 0.4) / 0.15) ** 2) - 0.2 * x
    passing = validate.check_over_optimisation_hackable({"over_optimisation": _over_optimisation(u, [0.05, 0.30, 0.10])})
    assert passing.passed, passing.details
    steady = validate.check_over_optimisation_hackable({"over_optimisation": _over_optimisation(0.5 + 0.4 * x,
                                                                                       [0.05, 0.30, 0.10])})
    assert not steady.passed  # no fall along training
    plateau = validate.check_over_optimisation_hackable({"over_optimisation": _over_optimisation(u, [0.05, 0.30, 0.31])})
    assert not plateau.passed  # no fall across penalties
    assert plateau.summary.startswith("along training")


def _scaffold(base_scores, gains, final_direct=0.10, seeds=6, seed=0):
    rng = np.random.default_rng(seed)
    bases = [f"b{i}" for i in range(len(base_scores))]
    scaffolds = ["direct", "scratchpad"]
    shape = (len(bases), 2, seeds)
    start = np.zeros(shape)
    gain = np.zeros(shape)
    for i, (s0, g) in enumerate(zip(base_scores, gains)):
        start[i, 0], start[i, 1] = 0.10, s0
        gain[i, 0] = final_direct - 0.10 + 0.01 * rng.standard_normal(seeds)
        gain[i, 1] = g + 0.01 * rng.standard_normal(seeds)
    dims = ("base", "scaffold", "seed")
    return {"scaffold_learnability": xr.Dataset(
        {"gain": (dims, gain), "score": (dims, start + gain), "base_score": (dims, start),
         "train_tokens": (dims, np.ones(shape))},
        coords={"base": bases, "scaffold": scaffolds, "seed": np.arange(seeds)})}


def test_scaffold_check_reads_only_bases_at_the_edge_of_competence(validate):
    # a saturated base (0.87) shows no contrast, but it is outside the window; the edge base (0.40) shows one
    assert validate.check_scaffold_learnability(_scaffold([0.87, 0.40], [0.0, 0.3])).passed
    # an edge base without a contrast fails
    assert not validate.check_scaffold_learnability(_scaffold([0.87, 0.40], [0.3, -0.05])).passed
    # no base in the window: nothing can be shown
    assert not validate.check_scaffold_learnability(_scaffold([0.87, 0.05], [0.0, 0.3])).passed
    # direct answers learned after all: fails
    assert not validate.check_scaffold_learnability(_scaffold([0.40], [0.3], final_direct=0.45)).passed
