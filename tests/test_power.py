"""The power computation (experiments/power.py) against an independent simulation of the same t-interval check,
and its decisions where the answer is known."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def power():
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location("fi_sim_power", ROOT / "experiments" / "power.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pilot(mean, sd, seeds=6):
    """Pilot values with exactly this mean and sample standard deviation."""
    z = np.random.default_rng(1).standard_normal(seeds)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


def _verdict(power, contrasts, criterion):
    return power.validate.Verdict(True, "", [], contrasts, criterion)


def _direct_power(power, mean, sd, n, draws=20000):
    """The same check (95% t-interval above 0) on n seeds drawn straight from N(mean, sd)."""
    x = np.random.default_rng(7).normal(mean, sd, (draws, n))
    lo = x.mean(1) - power.validate.t975(n - 1) * x.std(1, ddof=1) / np.sqrt(n)
    return float(np.mean(lo > 0))


@pytest.mark.parametrize("mean,sd,n", [(0.1, 0.1, 6), (0.05, 0.1, 16), (0.2, 0.3, 10)])
def test_the_simulated_power_of_a_positive_effect_matches_a_direct_simulation(power, mean, sd, n):
    v = _verdict(power, {"gain": _pilot(mean, sd)}, lambda iv: iv["gain"].lo > 0)
    assert abs(power.power(v, n) - _direct_power(power, mean, sd, n)) < 0.04


def test_seeds_needed_is_the_first_n_reaching_80_percent_and_grows_as_the_effect_shrinks(power):
    big = power.seeds_needed(_verdict(power, {"g": _pilot(0.2, 0.2)}, lambda iv: iv["g"].lo > 0), 3)
    small = power.seeds_needed(_verdict(power, {"g": _pilot(0.05, 0.2)}, lambda iv: iv["g"].lo > 0), 3)
    assert big["reachable"] and small["reachable"]
    assert big["power"] >= 0.8 and small["seeds"] > big["seeds"]
    below = [n for n, p in small["curve"].items() if n < small["seeds"]]
    assert all(small["curve"][n] < 0.8 for n in below)


def test_an_effect_on_the_failing_side_is_unreachable_and_runs_at_the_pilots_seeds(power):
    v = _verdict(power, {"g": _pilot(-0.05, 0.1)}, lambda iv: iv["g"].lo > 0)
    need = power.seeds_needed(v, 6)
    assert not need["reachable"] and need["seeds"] == 6 and max(need["curve"].values()) < 0.05


def test_a_no_effect_claim_needs_the_interval_inside_its_margin(power):
    # "no gain": the interval's upper end below 0.02 with a true mean of 0 and sd 0.05: reachable, n grows with sd
    loose = power.seeds_needed(_verdict(power, {"g": _pilot(0.0, 0.05)}, lambda iv: iv["g"].hi < 0.02), 3)
    tight = power.seeds_needed(_verdict(power, {"g": _pilot(0.0, 0.02)}, lambda iv: iv["g"].hi < 0.02), 3)
    assert loose["reachable"] and tight["reachable"] and tight["seeds"] < loose["seeds"]
