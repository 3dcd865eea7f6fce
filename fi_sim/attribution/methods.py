"""Attribution methods under test: each a plain function from a :class:`~fi_sim.attribution.regimes.Regime`
to an :class:`Attribution`.

The question every built-in method answers is the paper's: *which factors caused the gain of the target
cell over the baseline cell, and by how much?* A method may only query cells through the regime (which
charges its budget), may only name reported factors, and must draw any randomness from ``regime.rng``.
It says which truth it estimates in ``Attribution.target``: ``"switch_shapley"`` (the Shapley values of
the switching game, the natural "share of this gain due to factor i") for all built-ins except the
fractional factorial, whose main effects estimate the switching game's Banzhaf values
(``"switch_banzhaf"``: the classical 2^k main effect on the baseline / target levels).

Methods that need two levels per factor (fractional factorial, difference-in-differences, and regressions
whose budget is too small for the full grid) use the baseline and target level of each factor and say so
in ``notes``. A method that cannot run within the regime's budget raises :class:`MethodNotApplicable` with
the reason; the leaderboard records it.

Intervals are 95% intervals: over seeds (mean +- t * sd / sqrt(n), paired by seed index) for the
designed comparisons, from the OLS covariance for the regressions, and over permutations for Shapley
sampling. To plug in your own method, write ``def my_method(regime) -> Attribution`` (see docs/attribution.md).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, cast

import numpy as np

from fi_sim.errors import FiSimError

from . import cooperative as coop
from ._surface import term_name
from .regimes import Regime


@dataclass
class Attribution:
    """What a method says about the gain: per-factor scores, and optionally interactions and intervals."""

    scores: dict[str, float]
    """Per reported factor, in units of the outcome."""
    interactions: dict[frozenset, float] | None = None
    intervals: dict[str, tuple[float, float]] | None = None
    """95% intervals per factor, where the method gives them."""
    notes: str = ""
    target: str = "switch_shapley"
    """Which truth the scores estimate: 'switch_shapley', 'switch_banzhaf', 'shapley_effects', 'sobol_total', 'sobol_first'."""
    details: dict[str, Any] = field(default_factory=dict)
    """Structured extras, e.g. the fractional factorial's alias structure."""


class MethodNotApplicable(FiSimError):
    """A method cannot run in a regime (too small a budget, a missing factor, ...); the message says why."""


# ----------------------------------------------------------------------------------------------------------
# shared helpers

_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (table to 30, then an expansion)."""
    if df < 1:
        return float("nan")
    if df <= 30:
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _observe(regime: Regime, cells: list[dict], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Query cells: (mean over finite seeds per cell, per-seed values (cells, seeds)); refuses over budget."""
    cost = regime.cost_of(cells)
    if cost > regime.remaining:
        raise MethodNotApplicable(f"{what} needs {cost} cells; the budget leaves {int(regime.remaining)}")
    per_seed = np.stack([regime.query_seeds(c) for c in cells]) if cells else np.zeros((0, regime.n_seeds))
    finite = np.isfinite(per_seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(finite, per_seed, 0.0).sum(axis=1) / finite.sum(axis=1)
    if not np.isfinite(means).all():
        raise MethodNotApplicable(f"{what}: a queried cell has no finite seed")
    return means, per_seed


def _seed_intervals(names, per_seed_estimates: np.ndarray) -> dict[str, tuple[float, float]] | None:
    """95% t-intervals over seeds for per-seed estimates (seeds, len(names)); None with fewer than 2 seeds."""
    rows = per_seed_estimates[np.isfinite(per_seed_estimates).all(axis=1)]
    if rows.shape[0] < 2:
        return None
    centre = rows.mean(axis=0)
    half = t_quantile_975(rows.shape[0] - 1) * rows.std(axis=0, ddof=1) / np.sqrt(rows.shape[0])
    return {n: (float(c - h), float(c + h)) for n, c, h in zip(names, centre, half)}


def _with_nulls(regime: Regime, scores: dict[str, float]) -> dict[str, float]:
    """Every reported factor gets a score; a factor not switched between baseline and target gets 0."""
    return {f: float(scores.get(f, 0.0)) for f in regime.reported_factors}


def _two_level_note(regime: Regime) -> str:
    multi = [f for f in regime.reported_factors if len(regime.levels[f]) > 2]
    if not multi:
        return ""
    return f"two-level restriction: factors {multi} have more than 2 levels; only their baseline and target levels are used. "


# ----------------------------------------------------------------------------------------------------------
# exact and sampled Shapley values of the visible switching game


def exact_shapley(regime: Regime) -> Attribution:
    """Query all 2^k cells of the switching game and take its exact Shapley values (and order-2 SII)."""
    players = regime.switching_factors
    k = len(players)
    cells = [regime.switch_cell(coop.members(m, players)) for m in range(1 << k)]
    means, per_seed = _observe(regime, cells, f"the exact switching game (2^{k} cells)")
    moebius = coop.moebius_transform(means)
    scores = dict(zip(players, coop.shapley_from_moebius(moebius)))
    per_seed_scores = coop.shapley_from_moebius(coop.moebius_transform(per_seed.T))
    interactions = None
    if k >= 2:
        sii = coop.interaction_index_from_moebius(moebius, 2)
        interactions = {frozenset(coop.members(m, players)): float(sii[m]) for m in range(1 << k) if bin(m).count("1") == 2}
    return Attribution(
        scores=_with_nulls(regime, scores),
        interactions=interactions,
        intervals=_seed_intervals(players, per_seed_scores),
        notes=f"all {1 << k} cells of the switching game between baseline and target; exact Shapley values",
    )


def shapley_sampling(regime: Regime, n_permutations: int = 200) -> Attribution:
    """Permutation-sampling Shapley values: switch factors on in random orders, average marginal contributions.

    Permutations come in antithetic pairs (an order and its reverse). Cells already queried are reused for
    free; sampling stops before a permutation whose new cells the budget cannot pay for.
    """
    players = regime.switching_factors
    k = len(players)
    if k == 0:
        return Attribution(scores=_with_nulls(regime, {}), notes="no factor differs between baseline and target")
    cache: dict[int, float] = {}
    marginals: list[np.ndarray] = []
    order: np.ndarray | None = None
    for draw in range(n_permutations):
        order = regime.rng.permutation(k) if draw % 2 == 0 else cast(np.ndarray, order)[::-1]
        prefixes = [sum(1 << int(p) for p in order[:j]) for j in range(k + 1)]
        cells = [regime.switch_cell(coop.members(m, players)) for m in prefixes]
        if regime.cost_of(cells) > regime.remaining:
            break
        for m, cell in zip(prefixes, cells):
            if m not in cache:
                cache[m] = regime.query(cell)
        if not all(np.isfinite(cache[m]) for m in prefixes):
            raise MethodNotApplicable("shapley_sampling: a queried cell has no finite seed")
        marginal = np.zeros(k)
        for j, p in enumerate(order):
            marginal[p] = cache[prefixes[j + 1]] - cache[prefixes[j]]
        marginals.append(marginal)
    if not marginals:
        raise MethodNotApplicable(f"shapley_sampling needs {k + 1} cells for one permutation; the budget leaves {int(regime.remaining)}")
    contributions = np.array(marginals)
    scores = dict(zip(players, contributions.mean(axis=0)))
    # Antithetic partners are dependent: the independent units are the pair means.
    n_pairs = contributions.shape[0] // 2
    intervals = None
    if n_pairs >= 2:
        units = contributions[: 2 * n_pairs].reshape(n_pairs, 2, k).mean(axis=1)
        half = t_quantile_975(n_pairs - 1) * units.std(axis=0, ddof=1) / np.sqrt(n_pairs)
        intervals = {p: (float(scores[p] - h), float(scores[p] + h)) for p, h in zip(players, half)}
    return Attribution(
        scores=_with_nulls(regime, scores),
        intervals=intervals,
        notes=f"{contributions.shape[0]} permutation(s) in antithetic pairs, over {len(cache)} distinct cells; intervals reflect permutation sampling only",
        details={"permutations": int(contributions.shape[0]), "cells": len(cache)},
    )


# ----------------------------------------------------------------------------------------------------------
# the designs of ablation tables


def one_factor_at_a_time(regime: Regime) -> Attribution:
    """Switch each factor alone from the baseline: score_i = Y(baseline + i) - Y(baseline).

    Equals the singleton Moebius term m({i}); it misses every interaction.
    """
    players = regime.switching_factors
    cells = [regime.switch_cell(())] + [regime.switch_cell((p,)) for p in players]
    means, per_seed = _observe(regime, cells, "one-factor-at-a-time")
    scores = dict(zip(players, means[1:] - means[0]))
    return Attribution(
        scores=_with_nulls(regime, scores),
        intervals=_seed_intervals(players, (per_seed[1:] - per_seed[:1]).T),
        notes="each factor switched alone from the baseline (= singleton Moebius terms; interactions are missed)",
    )


def leave_one_out(regime: Regime) -> Attribution:
    """Revert each factor alone at the target: score_i = Y(target) - Y(target with i at baseline).

    Equals sum_{T containing i} m(T): every interaction is counted in full for each of its members.
    """
    players = regime.switching_factors
    cells = [regime.switch_cell(players)] + [regime.switch_cell(tuple(q for q in players if q != p)) for p in players]
    means, per_seed = _observe(regime, cells, "leave-one-out")
    scores = dict(zip(players, means[0] - means[1:]))
    return Attribution(
        scores=_with_nulls(regime, scores),
        intervals=_seed_intervals(players, (per_seed[:1] - per_seed[1:]).T),
        notes="each factor reverted alone at the target (interactions counted in full for every member)",
    )


def data_only(regime: Regime) -> Attribution:
    """What a paper reporting only its data does: the whole gain Y(target) - Y(baseline) goes to the data factor."""
    data = regime.data_factor
    means, per_seed = _observe(regime, [regime.switch_cell(()), regime.switch_cell(regime.switching_factors)], "data-only attribution")
    notes = f"the whole gain is credited to {data!r}"
    if regime.data_factor_note:
        notes += f"; {regime.data_factor_note}"
    return Attribution(
        scores=_with_nulls(regime, {data: means[1] - means[0]}),
        intervals=_seed_intervals([data], (per_seed[1:] - per_seed[:1]).T),
        notes=notes,
        details={"data_factor": data},
    )


def difference_in_differences(regime: Regime) -> Attribution:
    """2x2 designs of the data factor against each other factor, all from the baseline.

    For each partner j: the four cells {}, {data}, {j}, {data, j}; DiD_j = [Y(d,j) - Y(j)] - [Y(d) - Y()].
    Scores: data gets its one-factor effect plus half of every DiD, partner j its one-factor effect plus half
    of DiD_j (the Shapley split of each 2x2); factors the budget leaves without a 2x2 get 0. Interactions
    of three or more factors, and pairs without the data factor, are not seen.
    """
    data = regime.data_factor
    if data not in regime.switching_factors:
        raise MethodNotApplicable(f"difference-in-differences: the data factor {data!r} has the same baseline and target level")
    partners = [p for p in regime.switching_factors if p != data]
    if not partners:
        raise MethodNotApplicable("difference-in-differences needs a second factor that switches")
    affordable = len(partners) if regime.budget is None else int((regime.remaining - 2) // 2)
    if affordable < 1:
        raise MethodNotApplicable(f"difference-in-differences needs 4 cells for one 2x2; the budget leaves {int(regime.remaining)}")
    partners = partners[:affordable]
    cells = [regime.switch_cell(()), regime.switch_cell((data,))]
    for p in partners:
        cells += [regime.switch_cell((p,)), regime.switch_cell((data, p))]
    means, per_seed = _observe(regime, cells, "difference-in-differences")

    def attribute(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base, with_data = values[0], values[1]
        partner_alone, both = values[2::2], values[3::2]
        did = (both - partner_alone) - (with_data - base)
        scores = np.concatenate([[with_data - base + 0.5 * did.sum()], partner_alone - base + 0.5 * did])
        return scores, did

    scores, did = attribute(means)
    names = [data] + partners
    per_seed_scores = np.array([attribute(per_seed[:, s])[0] for s in range(per_seed.shape[1])])
    missing = [p for p in regime.switching_factors if p not in names]
    notes = _two_level_note(regime) + f"2x2 designs of {data!r} against {partners}"
    if missing:
        notes += f"; no budget for {missing} (scored 0)"
    if regime.data_factor_note:
        notes += f"; {regime.data_factor_note}"
    return Attribution(
        scores=_with_nulls(regime, dict(zip(names, scores))),
        interactions={frozenset((data, p)): float(d) for p, d in zip(partners, did)},
        intervals=_seed_intervals(names, per_seed_scores),
        notes=notes,
        details={"partners": partners, "did": dict(zip(partners, map(float, did)))},
    )


# --- fractional factorial 2^(k-p)

_MAX_GENERATOR_SEARCH = 3000


def _word_length_pattern(words: list[int], k: int) -> tuple[int, ...]:
    lengths = [bin(w).count("1") for w in words]
    return tuple(lengths.count(length) for length in range(1, k + 1))


def _defining_words(generators: list[int]) -> list[int]:
    words = []
    for size in range(1, len(generators) + 1):
        for combo in itertools.combinations(generators, size):
            word = 0
            for g in combo:
                word ^= g
            words.append(word)
    return words


def fractional_design(k: int, r: int) -> dict[str, Any]:
    """A 2^(k-p) design with 2^r runs (p = k - r): base factors 0..r-1, added factors r..k-1.

    Each added factor is set to the product of a set of >= 2 base factors (its generator). Generators are
    chosen by minimum aberration (lexicographically smallest word-length pattern of the defining relation)
    when there are at most 3000 candidate sets, else by taking the highest-order products first.
    Returns the +-1 design (2^r, k), the generator words and every word of the defining relation, as bitmasks
    over the k factors.
    """
    p = k - r
    if p < 0 or r < 1:
        raise ValueError(f"need 1 <= r <= k, got k={k}, r={r}")
    runs = np.arange(1 << r)
    base = np.where((runs[:, None] >> np.arange(r)[None, :]) & 1, 1.0, -1.0)
    candidates = sorted((m for m in range(1, 1 << r) if bin(m).count("1") >= 2), key=lambda m: (-bin(m).count("1"), m))
    if p > len(candidates):
        raise ValueError(f"a 2^({k}-{p}) design needs at least {k + 1} runs")
    if p == 0:
        chosen: tuple[int, ...] = ()
    elif math.comb(len(candidates), p) <= _MAX_GENERATOR_SEARCH:
        best = None
        for combo in itertools.combinations(candidates, p):
            words = _defining_words([m | (1 << (r + j)) for j, m in enumerate(combo)])
            key = _word_length_pattern(words, k)
            if best is None or key < best[0]:
                best = (key, combo)
        assert best is not None  # 1 <= p <= len(candidates): there was at least one combination
        chosen = best[1]
    else:
        chosen = tuple(candidates[:p])
    added = [np.prod(base[:, [i for i in range(r) if m >> i & 1]], axis=1) for m in chosen]
    design = np.column_stack([base] + added) if added else base
    generators = [m | (1 << (r + j)) for j, m in enumerate(chosen)]
    return {"design": design, "generators": generators, "words": _defining_words(generators)}


def fractional_factorial(regime: Regime) -> Attribution:
    """A 2^(k-p) fractional factorial on the baseline (-) / target (+) levels; main effects, with aliasing.

    The largest fraction the budget pays for is used (the full 2^k factorial when it can); it needs at least
    k + 1 runs (resolution III). Main effect of i = mean(Y | i at target) - mean(Y | i at baseline) over
    the runs, which in the full factorial is the Banzhaf value of the switching game: that is its truth.
    The alias structure (which effects are confounded) is in ``notes`` and in ``details``.
    """
    players = list(regime.switching_factors)
    k = len(players)
    if k == 0:
        return Attribution(scores=_with_nulls(regime, {}), target="switch_banzhaf", notes="no factor differs between baseline and target")
    r_min = max(1, math.ceil(math.log2(k + 1)))
    affordable = k if regime.budget is None else min(k, int(math.floor(math.log2(max(regime.remaining, 1)))))
    if affordable < r_min:
        raise MethodNotApplicable(f"a resolution-III fraction of {k} factors needs {1 << r_min} runs; the budget leaves {int(regime.remaining)}")
    r = affordable
    built = fractional_design(k, r)
    design = built["design"]
    cells = [regime.switch_cell([players[i] for i in range(k) if row[i] > 0]) for row in design]
    means, per_seed = _observe(regime, cells, f"the 2^({k}-{k - r}) fractional factorial")
    effects = 2.0 * (design * means[:, None]).mean(axis=0)
    per_seed_effects = 2.0 * np.einsum("rk,rs->sk", design, per_seed) / design.shape[0]

    def name(mask: int) -> str:
        return term_name(coop.members(mask, players))

    words = built["words"]
    interactions = {}
    for i, j in itertools.combinations(range(k), 2):
        interactions[frozenset((players[i], players[j]))] = float(2.0 * (design[:, i] * design[:, j] * means).mean())
    aliases = {}
    for size in (1, 2):
        for combo in itertools.combinations(range(k), size):
            effect = sum(1 << i for i in combo)
            confounded = sorted({effect ^ w for w in words if bin(effect ^ w).count("1") <= 3}, key=lambda m: (bin(m).count("1"), m))
            if confounded:
                aliases[name(effect)] = [name(m) for m in confounded]
    resolution = min((bin(w).count("1") for w in words), default=None)
    generator_text = [f"{players[w.bit_length() - 1]} = " + "*".join(coop.members(w & ~(1 << (w.bit_length() - 1)), players)) for w in built["generators"]]
    relation = "I = " + " = ".join(name(w) for w in sorted(words, key=lambda m: (bin(m).count("1"), m))) if words else "none (full factorial)"
    design_name = f"2^({k}-{k - r})" if r < k else f"2^{k} full factorial"
    notes = _two_level_note(regime) + f"{design_name}, {1 << r} runs"
    if words:
        main_aliases = {t: a for t, a in aliases.items() if ":" not in t}
        notes += f", resolution {resolution}; generators {generator_text}; defining relation {relation}; main-effect aliases (to order 3) {main_aliases}"
    return Attribution(
        scores=_with_nulls(regime, dict(zip(players, effects))),
        interactions=interactions or None,
        intervals=_seed_intervals(players, per_seed_effects),
        notes=notes,
        target="switch_banzhaf",
        details={
            "design": design_name,
            "runs": 1 << r,
            "resolution": resolution,
            "generators": generator_text,
            "defining_relation": relation,
            "aliases": aliases,
            "two_level_levels": {"-": regime.baseline, "+": regime.target},
            "interaction_convention": "2^k factorial effect: 2 * mean(sign_i * sign_j * Y) over the runs",
        },
    )


# --- regressions on a random subset of cells


def _coding(regime: Regime, two_level: bool) -> dict[str, list]:
    """Levels coded per factor (treatment coding against the baseline level)."""
    if two_level:
        return {f: [regime.baseline[f], regime.target[f]] for f in regime.switching_factors}
    return {f: list(regime.levels[f]) for f in regime.reported_factors}


def _design_rows(cells: list[dict], coding: dict[str, list], baseline: dict, pairwise: bool) -> np.ndarray:
    columns = []
    indicator = {}
    for f, levels in coding.items():
        indicator[f] = [np.array([1.0 if c[f] == level else 0.0 for c in cells]) for level in levels if level != baseline[f]]
        columns += indicator[f]
    if pairwise:
        for f, g in itertools.combinations(coding, 2):
            columns += [a * b for a in indicator[f] for b in indicator[g]]
    return np.column_stack([np.ones(len(cells))] + columns)


def _pick_cells(regime: Regime, pool: list[dict], coding, pairwise: bool, n_params: int) -> list[dict]:
    """A random subset of the pool that fits the budget, drawn so that the model is identified if it can be.

    Cells are taken in a random order; first those that add a new direction to the design (until it has
    full rank), then the rest of the random order until the budget is spent.
    """
    if regime.budget is None:
        return pool
    size = min(int(regime.remaining), len(pool))
    order = regime.rng.permutation(len(pool))
    rows = _design_rows([pool[i] for i in order], coding, regime.baseline, pairwise)
    basis: list[np.ndarray] = []
    chosen: list[int] = []
    for position, row in enumerate(rows):
        if len(basis) == n_params or len(chosen) == size:
            break
        residual = row - sum((row @ b) * b for b in basis) if basis else row.copy()
        norm = np.linalg.norm(residual)
        if norm > 1e-9:
            basis.append(residual / norm)
            chosen.append(position)
    taken = set(chosen)
    rest = [p for p in range(len(order)) if p not in taken]
    chosen += rest[: size - len(chosen)]
    return [pool[order[p]] for p in chosen]


def _regression(regime: Regime, pairwise: bool) -> Attribution:
    label = "pairwise regression" if pairwise else "additive regression"
    players = regime.switching_factors
    k = len(players)

    def n_params(coding) -> int:
        extra = [len(levels) - 1 for levels in coding.values()]
        return 1 + sum(extra) + (sum(a * b for a, b in itertools.combinations(extra, 2)) if pairwise else 0)

    coding = _coding(regime, two_level=False)
    two_level = regime.budget is not None and regime.remaining < n_params(coding)
    if two_level:
        coding = _coding(regime, two_level=True)
    p = n_params(coding)
    if regime.budget is not None and regime.remaining < p:
        raise MethodNotApplicable(f"{label} has {p} parameters on the two-level grid; the budget leaves {int(regime.remaining)} cells")
    pool = [dict(zip(coding, combo)) for combo in itertools.product(*coding.values())]
    fixed = {f: regime.baseline[f] for f in regime.reported_factors if f not in coding}
    pool = [{**fixed, **cell} for cell in pool]
    cells = _pick_cells(regime, pool, coding, pairwise, p)
    _, per_seed = _observe(regime, cells, label)

    design = _design_rows(cells, coding, regime.baseline, pairwise)
    rows = np.repeat(design, per_seed.shape[1], axis=0)
    outcome = per_seed.reshape(-1)
    keep = np.isfinite(outcome)
    rows, outcome = rows[keep], outcome[keep]
    beta, _, rank, _ = np.linalg.lstsq(rows, outcome, rcond=None)
    if rank < p:
        raise MethodNotApplicable(f"{label}: the {len(cells)} cells drawn identify only {rank} of {p} parameters")
    # The model's own switching game, and its exact Shapley values (linear in the coefficients).
    switch_cells = [regime.switch_cell(coop.members(m, players)) for m in range(1 << k)]
    switch_rows = _design_rows(switch_cells, coding, regime.baseline, pairwise)
    weights = coop.shapley_weight_matrix(k)  # (2^k, k)
    to_scores = weights.T @ switch_rows  # (k, p)
    scores = dict(zip(players, to_scores @ beta))

    intervals = None
    dof = rows.shape[0] - p
    if dof > 0:
        sigma2 = float(((outcome - rows @ beta) ** 2).sum() / dof)
        covariance = sigma2 * np.linalg.pinv(rows.T @ rows)
        half = t_quantile_975(dof) * np.sqrt(np.maximum(np.einsum("kp,pq,kq->k", to_scores, covariance, to_scores), 0.0))
        intervals = {f: (float(scores[f] - h), float(scores[f] + h)) for f, h in zip(players, half)}
    interactions = None
    if pairwise and k >= 2:
        fitted = switch_rows @ beta
        sii = coop.interaction_index_from_moebius(coop.moebius_transform(fitted), 2)
        interactions = {frozenset(coop.members(m, players)): float(sii[m]) for m in range(1 << k) if bin(m).count("1") == 2}
    where = "the baseline/target two-level grid" if two_level else "the full grid"
    how = "all" if regime.budget is None else "a random subset of"
    notes = (
        (_two_level_note(regime) if two_level else "")
        + f"OLS with treatment coding on {how} {len(cells)} cells of {where}, seeds as replicate rows; "
        + "scores = Shapley values of the fitted model's switching game"
        + ("" if pairwise else " (= the target-level coefficients)")
        + "; intervals from the OLS covariance (they include lack of fit)"
    )
    return Attribution(
        scores=_with_nulls(regime, scores),
        interactions=interactions,
        intervals=intervals,
        notes=notes,
        details={"cells": len(cells), "parameters": p, "two_level": two_level},
    )


def additive_regression(regime: Regime) -> Attribution:
    """Main-effects-only regression on a random subset of cells; attribution = its switching-game Shapley values."""
    return _regression(regime, pairwise=False)


def pairwise_regression(regime: Regime) -> Attribution:
    """Regression with all pairwise interaction terms on a random subset of cells; attribution = its Shapley values."""
    return _regression(regime, pairwise=True)


# ----------------------------------------------------------------------------------------------------------

Method = Callable[[Regime], Attribution]

METHODS: dict[str, Method] = {
    "exact_shapley": exact_shapley,
    "shapley_sampling": shapley_sampling,
    "ofat": one_factor_at_a_time,
    "leave_one_out": leave_one_out,
    "fractional_factorial": fractional_factorial,
    "diff_in_diff": difference_in_differences,
    "additive_regression": additive_regression,
    "pairwise_regression": pairwise_regression,
    "data_only": data_only,
}
"""The built-in methods by name, in the leaderboard's order."""
