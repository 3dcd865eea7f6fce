"""Design the next runs: which cells would most reduce the uncertainty of the attribution one cares about.

The model is Bayesian and linear in the orthonormal fANOVA basis of the grid (:class:`~.ablation.Basis`):
Y(cell) = sum_T x_T(cell) . beta_T, with independent priors beta_T ~ N(0, scale * decay^(|T| - 1)) on the
terms (a broad prior on the mean), so that higher-order interactions are a priori smaller but never ruled out
(effect hierarchy, not effect absence), and run noise N(0, noise) (a cell run with n seeds has noise / n).
The hyperparameters (scale, decay, noise) are averaged over a small grid, each weighted by the marginal
likelihood of the runs observed, and re-weighted as runs come in; that is what makes a sequential design
adaptive: a table whose interactions turn out large makes interaction-heavy cells worth more.

The attribution of interest is a set of functionals of the surface:

* ``"shapley"``: the Shapley values of the switch from a baseline cell to a target cell, linear in beta;
* ``"sobol"``: first-order and total Sobol indices, non-linear: linearised around posterior draws of beta.

A set of runs is worth how much it cuts the posterior variance of those functionals (summed),
tr(G S G'); :func:`plan_cells` chooses N runs greedily (for a linear G a run at x removes
|G S x|^2 / (noise / n + x' S x), Sherman-Morrison) and then improves the set by exchanges (the design
depends on the outcomes seen only through the hyperparameters fitted to them). :func:`design_next` proposes cells for a real table; :func:`adaptive`
is the same rule as a method of the lab, querying cells one at a time under a regime's budget, and
:func:`random_cells` is its static control (random cells, the same estimator).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from fi_sim.errors import invalid

from . import cooperative as coop
from .ablation import AblationTable, Basis, switch_shapley_weights
from .methods import Attribution, MethodNotApplicable, _with_nulls
from .regimes import Regime

TARGETS = ("shapley", "sobol")
DECAYS = (0.01, 0.05, 0.15, 0.4, 1.0)
NOISE_RATIOS = (1e-6, 1e-4, 1e-2, 0.1)
SCALE_FACTORS = (1 / 64, 1 / 16, 1 / 4, 1.0, 4.0)
"""Prior scales tried, relative to the variance of the cell means seen (which spreads over many terms)."""
MEAN_PRIOR = 1e4
"""Prior variance of the mean relative to ``scale``: in effect flat."""
MAX_DESIGN_CELLS = 4096
INITIAL_DECAY = 0.4
"""The decay per interaction order assumed before three runs have been seen (nothing to weigh it by yet)."""


@dataclass
class Posterior:
    """The Gaussian posterior of the basis coefficients given the runs seen so far."""

    mean: np.ndarray
    covariance: np.ndarray
    noise: float
    scale: float
    decay: float


class BayesianSurface:
    """The hierarchical Bayesian linear model of a grid's outcomes (see the module docstring)."""

    def __init__(self, factors, shape, max_order: int | None = None):
        self.factors = tuple(factors)
        self.shape = tuple(int(n) for n in shape)
        self.basis = Basis.of(self.factors, self.shape, max_order)
        self.order = np.zeros(self.basis.width, dtype=np.int64)
        for m in self.basis.terms:
            self.order[self.basis.blocks[m]] = bin(m).count("1")

    def columns(self, cells) -> np.ndarray:
        return self.basis.columns(np.asarray(cells), self.shape)

    def prior_variance(self, scale: float, decay: float) -> np.ndarray:
        return np.where(self.order == 0, scale * MEAN_PRIOR, scale * decay ** np.maximum(self.order - 1, 0))

    def fit(self, x: np.ndarray, y: np.ndarray, counts: np.ndarray, noise: float | None = None) -> Posterior:
        """Posterior given cell means ``y`` of ``counts`` runs at rows ``x``, averaged over the hyperparameters.

        Every (scale, decay, noise) of a small grid is weighted by its marginal likelihood (a flat prior over
        the grid), and the posterior is the moment-matched mixture: with few runs no single setting is well
        supported, and averaging keeps both the estimate and the design from betting on one. ``noise``
        (per-run variance), when known from replicate seeds, is held fixed; otherwise it is averaged over with
        the rest as a ratio of the scale. The reported scale, decay and noise are the best-supported ones.
        """
        y = np.asarray(y, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        centred = y - y.mean() if len(y) else y
        spread = float(centred.var()) if len(y) > 1 else 0.0
        scale0 = max(spread, 1e-12 * max(1.0, float(np.abs(y).max(initial=0.0)) ** 2), 1e-24)
        settings, evidences = [], []
        for decay in DECAYS:
            for factor in SCALE_FACTORS:
                scale = scale0 * factor
                noises = (noise,) if noise is not None else tuple(scale * r for r in NOISE_RATIOS)
                for run_noise in noises:
                    prior = self.prior_variance(scale, decay)
                    k_matrix = (x * prior) @ x.T + np.diag(run_noise / counts)
                    try:
                        chol = np.linalg.cholesky(k_matrix)
                    except np.linalg.LinAlgError:
                        continue
                    alpha = np.linalg.solve(chol, y)
                    evidences.append(-0.5 * float(alpha @ alpha) - float(np.log(np.diag(chol)).sum()))
                    settings.append((scale, decay, run_noise))
        if not settings or len(y) < 3:
            # Too few runs to weigh hyperparameters: a moderate hierarchy and little noise.
            return self.posterior(x, y, counts, scale0, INITIAL_DECAY, noise if noise is not None else scale0 * 1e-2)
        weights = np.exp(np.array(evidences) - max(evidences))
        weights /= weights.sum()
        keep = np.flatnonzero(weights > 1e-6 * weights.max())
        parts = [(weights[i], self.posterior(x, y, counts, *settings[i])) for i in keep]
        total = sum(w for w, _ in parts)
        mean = sum(w * p.mean for w, p in parts) / total
        covariance = sum(w * (p.covariance + np.outer(p.mean - mean, p.mean - mean)) for w, p in parts) / total
        best = settings[int(np.argmax(weights))]
        return Posterior(mean, (covariance + covariance.T) / 2, best[2], best[0], best[1])

    def posterior(self, x, y, counts, scale, decay, noise) -> Posterior:
        prior = self.prior_variance(scale, decay)
        if len(y) == 0:
            return Posterior(np.zeros(len(prior)), np.diag(prior), noise, scale, decay)
        # Woodbury form: an n x n solve (n cells seen), never a width x width inverse of the precision.
        k_matrix = (x * prior) @ x.T + np.diag(noise / np.asarray(counts, dtype=np.float64))
        gain = np.linalg.solve(k_matrix, x * prior).T  # (width, n)
        mean = gain @ y
        covariance = np.diag(prior) - gain @ (x * prior)
        return Posterior(mean, (covariance + covariance.T) / 2, noise, scale, decay)


def _stacked_functional(functional, post: Posterior, rng_draws: int, rng_seed: int) -> np.ndarray:
    """A matrix G whose tr(G S G') is the criterion: the functional itself, or for a callable (a non-linear
    target) its Jacobians at posterior draws, stacked and scaled so that the trace is their average."""
    if not callable(functional):
        return np.asarray(functional)
    rng = np.random.default_rng(rng_seed)
    draws = rng.multivariate_normal(post.mean, post.covariance, size=rng_draws, method="eigh")
    return np.vstack([functional(b) for b in draws]) / np.sqrt(rng_draws)


def plan_cells(model: BayesianSurface, post: Posterior, candidates: np.ndarray, functional, n: int, *,
               seeds_per_run: int = 1, exclude: set | None = None, exchange_passes: int = 3,
               rng_draws: int = 32, rng_seed: int = 0) -> list[tuple[list[int], float]]:
    """Choose ``n`` runs that most reduce tr(G S G') together: greedy, then Fedorov exchanges.

    Greedy adds one run at a time (Sherman-Morrison: a run at x removes |G S x|^2 / (noise / n + x' S x));
    exchange passes then swap a chosen run for an unchosen candidate whenever the set's joint reduction
    tr(B' M^-1 B) (B = X S G', M = X S X' + noise) grows, until a pass changes nothing. ``functional``: a
    (q, width) matrix G, or a callable beta -> (q, width) Jacobian, averaged over ``rng_draws`` posterior
    draws (the non-linear Sobol target). ``exclude``: cells that may not be chosen, and a chosen cell is not
    chosen twice (the lab, where a cell already queried gives nothing new); without it, repeated runs of a
    cell (further seeds) are allowed. Returns (cell, marginal reduction in greedy order) pairs.
    """
    g = _stacked_functional(functional, post, rng_draws, rng_seed)
    x = model.columns(candidates)
    noise = post.noise / max(seeds_per_run, 1)
    sx = post.covariance @ x.T  # (width, C)
    xsx = x @ sx  # (C, C)
    gsx = g @ sx  # (q, C)
    unique = exclude is not None
    banned = set() if exclude is None else {tuple(c) for c in exclude}
    allowed = np.array([tuple(c) not in banned for c in map(tuple, candidates)])
    covariance = post.covariance.copy()
    chosen: list[int] = []
    worths: list[float] = []
    for _ in range(n):
        s_x = covariance @ x.T
        denominator = noise + np.einsum("cw,wc->c", x, s_x)
        worth = ((g @ s_x) ** 2).sum(axis=0) / np.maximum(denominator, 1e-300)
        worth[~allowed] = -np.inf
        if unique:
            worth[chosen] = -np.inf
        best = int(np.argmax(worth))
        if not np.isfinite(worth[best]):
            break
        chosen.append(best)
        worths.append(float(worth[best]))
        v = s_x[:, best]
        covariance = covariance - np.outer(v, v) / denominator[best]

    def reduction(index: list[int]) -> float:
        m = xsx[np.ix_(index, index)] + noise * np.eye(len(index))
        b = gsx[:, index].T
        return float(np.trace(b.T @ np.linalg.solve(m, b)))

    if chosen and exchange_passes:
        current = reduction(chosen)
        for _ in range(exchange_passes):
            improved = False
            for position in range(len(chosen)):
                for c in np.flatnonzero(allowed):
                    if unique and c in chosen:
                        continue
                    trial = chosen.copy()
                    trial[position] = int(c)
                    value = reduction(trial)
                    if value > current * (1 + 1e-9) + 1e-300:
                        chosen, current, improved = trial, value, True
            if not improved:
                break
    return [(list(map(int, candidates[c])), w) for c, w in zip(chosen, worths)]


def sobol_jacobian(model: BayesianSurface):
    """beta -> Jacobian of (first-order indices, total indices) of every factor, (2k, width)."""
    k = len(model.factors)
    blocks = model.basis.blocks

    def jacobian(beta: np.ndarray) -> np.ndarray:
        squares = {m: float((beta[blocks[m]] ** 2).sum()) for m in model.basis.terms if m}
        total = sum(squares.values()) or 1e-300
        rows = np.zeros((2 * k, len(beta)))
        for i in range(k):
            for row, members in ((i, [1 << i]), (k + i, [m for m in squares if m >> i & 1])):
                share = sum(squares[m] for m in members) / total
                for m in squares:
                    inside = 1.0 if m in members else 0.0
                    rows[row, blocks[m]] = 2.0 * beta[blocks[m]] * (inside - share) / total
        return rows

    return jacobian


# ----------------------------------------------------------------------------------------------------------
# design the next runs of a real table


def design_next(
    table: AblationTable,
    budget: int,
    *,
    target: str = "shapley",
    baseline: Mapping[str, Any] | None = None,
    target_cell: Mapping[str, Any] | None = None,
    new_cells_only: bool = False,
    rng_seed: int = 0,
) -> pd.DataFrame:
    """The ``budget`` runs (one seed each) that would most reduce the posterior variance of the attribution.

    ``target``: ``"shapley"`` (the switch ``baseline`` -> ``target_cell``, default first -> last levels) or
    ``"sobol"`` (first-order and total indices). A proposed cell may be one already in the table (a further
    seed there), unless ``new_cells_only``. Returns one row per proposed run: its levels, whether it is new,
    the variance it removes, and the total posterior standard deviation of the target before and after.
    """
    if target not in TARGETS:
        raise invalid("target", target, f"one of {list(TARGETS)}")
    if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 1:
        raise invalid("budget", budget, "an integer >= 1 (runs to propose)")
    if table.grid_size > MAX_DESIGN_CELLS:
        raise invalid("table", f"a grid of {table.grid_size} cells", f"at most {MAX_DESIGN_CELLS} cells for the design search")
    model = BayesianSurface(table.factors, table.grid_shape)
    x = model.columns(table.cells)
    counts = table.seeds_per_cell.astype(np.float64)
    pure_df = int((counts - 1).sum())
    noise = float(sum(((r - r.mean()) ** 2).sum() for r in table.runs) / pure_df) if pure_df > 0 else None
    post = model.fit(x, table.means, counts, noise)
    candidates = np.array(list(itertools.product(*(range(n) for n in table.grid_shape))))
    if target == "shapley":
        base = table.cell_of(baseline, "baseline") if baseline is not None else tuple(0 for _ in table.factors)
        top = table.cell_of(target_cell, "target") if target_cell is not None else tuple(n - 1 for n in table.grid_shape)
        _, switch_cells, weights = switch_shapley_weights(table, base, top)
        functional = weights @ model.columns(switch_cells)
        before = float(np.trace(functional @ post.covariance @ functional.T))
    else:
        functional = sobol_jacobian(model)
        before = math.nan
    present = {tuple(c) for c in table.cells}
    chosen = plan_cells(model, post, candidates, functional, int(budget), exclude=present if new_cells_only else None, rng_seed=rng_seed)
    rows = []
    remaining = before
    for cell, worth in chosen:
        # The greedy order's marginal reductions (exchanges may have changed the set: recompute the total below).
        remaining = remaining - worth if target == "shapley" else math.nan
        row = {f: table.levels[f][i] for f, i in zip(table.factors, cell)}
        row.update(new_cell=tuple(cell) not in present, variance_removed=worth,
                   target_sd_after=math.sqrt(max(remaining, 0.0)) if target == "shapley" else math.nan)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(target=target, target_sd_before=math.sqrt(before) if target == "shapley" else math.nan,
                     noise=post.noise, scale=post.scale, decay=post.decay)
    return out


# ----------------------------------------------------------------------------------------------------------
# the same rule as a method of the lab


def _switch_setup(regime: Regime):
    players = list(regime.switching_factors)
    k = len(players)
    model = BayesianSurface(players, (2,) * k)
    cells = np.array(list(itertools.product((0, 1), repeat=k)))
    # Shapley weights over the 2^k switch cells, whose mask-to-cell order is coop's (player i = bit i).
    masks = (cells * (1 << np.arange(k))).sum(axis=1)
    weights = coop.shapley_weight_matrix(k).T[:, masks]  # (k, cells in product order)
    functional = weights @ model.columns(cells)
    return players, model, cells, functional


def _observe_cell(regime: Regime, players, cell) -> tuple[float, int]:
    values = regime.query_seeds(regime.switch_cell([p for p, on in zip(players, cell) if on]))
    finite = values[np.isfinite(values)]
    if not finite.size:
        raise MethodNotApplicable("a queried cell has no finite seed")
    return float(finite.mean()), int(finite.size)


def _estimate(regime, players, model, functional, seen: dict, label: str, notes: str) -> Attribution:
    cells = np.array(list(seen))
    means = np.array([seen[c][0] for c in seen])
    counts = np.array([seen[c][1] for c in seen], dtype=np.float64)
    post = model.fit(model.columns(cells), means, counts)
    scores = functional @ post.mean
    sd = np.sqrt(np.maximum(np.einsum("kw,wv,kv->k", functional, post.covariance, functional), 0.0))
    return Attribution(
        scores=_with_nulls(regime, dict(zip(players, map(float, scores)))),
        intervals={p: (float(s - 1.96 * d), float(s + 1.96 * d)) for p, s, d in zip(players, scores, sd)},
        notes=f"{label}: {len(seen)} of {2 ** len(players)} switch cells; {notes}; scores = posterior mean Shapley values of a "
              f"hierarchical Bayesian fANOVA model (decay {post.decay:g} per order), intervals 95% posterior",
        details={"cells": [dict(zip(players, map(int, c))) for c in seen], "decay": post.decay},
    )


def _switch_budget(regime: Regime, cells, method: str) -> int:
    """Cells a switch design may query: the regime's remaining budget, at most every switch cell; at least 2."""
    budget = len(cells) if regime.budget is None else min(int(regime.remaining), len(cells))
    if budget < 2:
        raise MethodNotApplicable(f"{method} needs the baseline and the target cell; the budget leaves {int(regime.remaining)}")
    return budget


def adaptive(regime: Regime) -> Attribution:
    """Sequential Bayesian design: query the baseline and the target, then, one at a time, the switch cell
    whose run most reduces the posterior variance of the Shapley values, refitting the hyperparameters after
    each; stop when the budget (or the 2^k switch cells) is spent."""
    players, model, cells, functional = _switch_setup(regime)
    if not players:
        return Attribution(scores=_with_nulls(regime, {}), notes="no factor differs between baseline and target")
    budget = _switch_budget(regime, cells, "adaptive")
    seen: dict[tuple, tuple[float, int]] = {}
    for cell in (tuple([0] * len(players)), tuple([1] * len(players))):
        seen[cell] = _observe_cell(regime, players, cell)
    plan: list[tuple] = []
    replan_at = len(seen)
    while len(seen) < budget:
        if len(seen) >= replan_at or not plan:
            # Refit the hyperparameters and replan the rest of the budget each time the runs seen double:
            # an early plan rests on a prior fitted to very few runs.
            known = np.array(list(seen))
            post = model.fit(model.columns(known), np.array([v[0] for v in seen.values()]), np.array([v[1] for v in seen.values()], dtype=np.float64))
            plan = [tuple(c) for c, _ in plan_cells(model, post, cells, functional, budget - len(seen), seeds_per_run=regime.n_seeds, exclude=set(seen))]
            replan_at = 2 * len(seen)
            if not plan:
                break
        cell = plan.pop(0)
        seen[cell] = _observe_cell(regime, players, cell)
    return _estimate(regime, players, model, functional, seen, "adaptive", "cells chosen one at a time by expected variance reduction")


def random_cells(regime: Regime) -> Attribution:
    """The static control of :func:`adaptive`: the baseline, the target and random switch cells up to the
    budget, with the same Bayesian estimator (so that a difference is the design's, not the estimator's)."""
    players, model, cells, functional = _switch_setup(regime)
    if not players:
        return Attribution(scores=_with_nulls(regime, {}), notes="no factor differs between baseline and target")
    budget = _switch_budget(regime, cells, "random_cells")
    ends = [tuple([0] * len(players)), tuple([1] * len(players))]
    others = [tuple(c) for c in cells if tuple(c) not in ends]
    order = regime.rng.permutation(len(others))
    seen: dict[tuple, tuple[float, int]] = {}
    for cell in ends + [others[i] for i in order[: budget - 2]]:
        seen[cell] = _observe_cell(regime, players, cell)
    return _estimate(regime, players, model, functional, seen, "random cells", "cells drawn at random")


__all__ = ["BayesianSurface", "Posterior", "design_next", "plan_cells", "adaptive", "random_cells", "TARGETS"]
