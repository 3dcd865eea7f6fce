"""Designing the next runs: the Bayesian design picks what is missing, the adaptive method spends its budget
and is exact with the whole switching game, exchanges never make a planned design worse."""

import itertools

import numpy as np
import pandas as pd
import pytest

from fi_sim.attribution import design_next, from_table, games, switch_game
from fi_sim.attribution.design import BayesianSurface, adaptive, plan_cells, random_cells
from fi_sim.attribution.regimes import Regime
from fi_sim.errors import ValidationError


def grid_table(y, drop=(), seeds=2, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    rows = []
    for cell in itertools.product(*(range(n) for n in y.shape)):
        if cell in drop:
            continue
        for s in range(seeds):
            rows.append({**{f: str(y.coords[f].values[i]) for f, i in zip(y.dims, cell)}, "seed": s, "acc": float(y.values[cell]) + 0.01 * rng.normal()})
    return pd.DataFrame(rows)


def test_design_next_proposes_the_missing_switch_cell_first():
    y = games.random_game(3, levels=[3, 3, 2], rng_seed=3)
    # Baseline (L0, L0, L0) -> target (L2, L2, L1): the switch cell (L2, L0, L1) is missing, and so are two
    # cells off the switch's sub-grid; a new run of the missing switch cell helps the Shapley values most.
    table = from_table(grid_table(y, drop={(2, 0, 1), (1, 1, 0), (1, 2, 1)}), "acc")
    proposal = design_next(table, 3, new_cells_only=True)
    assert len(proposal) == 3 and proposal["new_cell"].all()
    assert proposal.iloc[0][["f1", "f2", "f3"]].tolist() == ["L2", "L0", "L1"]
    assert {tuple(r) for r in proposal[["f1", "f2", "f3"]].values} == {("L2", "L0", "L1"), ("L1", "L1", "L0"), ("L1", "L2", "L1")}
    assert proposal["target_sd_after"].is_monotonic_decreasing
    assert proposal.attrs["target_sd_before"] > proposal["target_sd_after"].iloc[-1]


def test_design_next_sobol_target_and_replicates():
    y = games.random_game(3, levels=2, rng_seed=4)
    table = from_table(grid_table(y, drop={(1, 1, 1)}, seeds=1), "acc")
    proposal = design_next(table, 2, target="sobol")
    assert len(proposal) == 2
    with pytest.raises(ValidationError) as error:
        design_next(table, 2, target="banzhaf")
    assert error.value.problems[0].field == "target"
    with pytest.raises(ValidationError):
        design_next(table, 0)


def test_exchange_never_worsens_the_greedy_plan():
    model = BayesianSurface(("a", "b", "c", "d"), (2, 2, 2, 2))
    cells = np.array(list(itertools.product((0, 1), repeat=4)))
    post = model.posterior(np.zeros((0, model.basis.width)), np.zeros(0), np.zeros(0), 1.0, 0.4, 1e-2)
    functional = np.random.default_rng(0).normal(size=(4, model.basis.width))

    def reduction(plan):
        x = model.columns(np.array([c for c, _ in plan]))
        m = x @ post.covariance @ x.T + post.noise * np.eye(len(x))
        b = x @ post.covariance @ functional.T
        return np.trace(b.T @ np.linalg.solve(m, b))

    greedy = plan_cells(model, post, cells, functional, 6, exclude=set(), exchange_passes=0)
    exchanged = plan_cells(model, post, cells, functional, 6, exclude=set())
    assert len({tuple(c) for c, _ in exchanged}) == 6
    assert reduction(exchanged) >= reduction(greedy) - 1e-12


def test_adaptive_spends_its_budget_and_is_exact_on_the_whole_game():
    y = games.unanimity()
    truth = switch_game(y).shapley()
    regime = Regime(y, budget=12)
    result = adaptive(regime)
    assert regime.spent == 12 and len(result.details["cells"]) == 12
    assert set(result.scores) == set(truth)
    full = adaptive(Regime(y))
    assert Regime(y).budget is None
    assert full.scores == pytest.approx(truth, abs=1e-3 * max(abs(v) for v in truth.values()))
    again = adaptive(Regime(y, budget=12))
    assert again.scores == result.scores  # deterministic: no randomness in the design
    control = random_cells(Regime(y, budget=12, rng_seed=1))
    assert len(control.details["cells"]) == 12


def test_adaptive_needs_two_cells():
    from fi_sim.attribution import MethodNotApplicable

    with pytest.raises(MethodNotApplicable):
        adaptive(Regime(games.unanimity(), budget=1))
