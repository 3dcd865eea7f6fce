"""Information regimes: what an analyst may see of a fully measured surface, and what it cost them.

A :class:`Regime` is built from the full surface; it holds the truth and hides it from the method under
test. The method sees only:

* ``reported_factors`` and their ``levels``: an unreported (hidden) factor still varies, but its label is
  hidden, so every outcome the analyst sees is the **average over the hidden factor's levels under a fixed
  mixture** (uniform unless given): the expected outcome of a study that pooled an unreported choice. The
  analyst can neither set nor name a hidden factor, so its share of the truth is credited to no one;
* ``baseline`` and ``target`` (the cells whose gain is to be attributed), restricted to reported factors;
* ``query(cell)``: one cell's outcome, the mean over the regime's seeds (the **first** ``n_seeds`` seeds of
  the surface; failed, NaN, runs are left out of the mean); ``query_seeds(cell)`` gives them one by one;
* ``rng``: the random generator a method must use, so that a leaderboard is reproducible.

Cost: each *distinct* cell costs one unit of the ``budget`` (one training configuration, run with the
regime's seeds); asking for a cell again is free, because an analyst keeps the runs they already have. A
query that would exceed the budget raises :class:`BudgetExceeded`. ``spent`` counts cells, ``runs_spent``
cells times seeds.

:func:`standard_regimes` gives the small standard set used by the leaderboard: ``full``, ``paper``,
``budget_<B>`` and ``hidden_<factor>``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import xarray as xr

from fi_sim.errors import FiSimError, Problem, ValidationError, invalid

from ._surface import Surface, as_surface, default_endpoints, full_assignment


class BudgetExceeded(FiSimError):
    """A query would take the analyst past the regime's budget of distinct cells."""

    def __init__(self, regime: str, budget: int, spent: int, cell: Mapping[str, Any]):
        self.regime, self.budget, self.spent, self.cell = regime, budget, spent, dict(cell)
        super().__init__(f"regime {regime!r}: querying {self.cell} would use cell {spent + 1} of a budget of {budget}")


@dataclass(frozen=True)
class RegimeSpec:
    """A named information regime, independent of any surface: what :class:`Regime` is built from."""

    name: str
    budget: int | None = None
    """Distinct cells the analyst may query; None: unlimited."""
    n_seeds: int | None = None
    """Seeds per cell the analyst sees (the first ones); None: all."""
    hidden: tuple[str, ...] = ()
    """Factors that vary but are not reported."""
    description: str = ""

    def build(self, y: xr.DataArray, **options) -> "Regime":
        return Regime(y, name=self.name, budget=self.budget, n_seeds=self.n_seeds, hidden=self.hidden, description=self.description, **options)


class Regime:
    """What an analyst may see of a fully measured surface; see the module docstring."""

    def __init__(
        self,
        y: xr.DataArray,
        *,
        name: str = "full",
        budget: int | None = None,
        n_seeds: int | None = None,
        hidden: Sequence[str] = (),
        baseline: Mapping[str, Any] | None = None,
        target: Mapping[str, Any] | None = None,
        data_factor: str = "data",
        mixture: Mapping[str, Sequence[float]] | None = None,
        rng_seed: int | np.random.SeedSequence = 0,
        description: str = "",
    ):
        surface = as_surface(y)
        self.name = str(name)
        self.description = description
        problems = []
        if budget is not None and (not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 1):
            problems.append(Problem("budget", budget, "None (unlimited) or an integer >= 1 (distinct cells)"))
        available = max(surface.n_seeds, 1)
        if n_seeds is not None and (not isinstance(n_seeds, (int, np.integer)) or not 1 <= n_seeds <= available):
            problems.append(Problem("n_seeds", n_seeds, f"None (all) or an integer between 1 and {available} (the seeds measured)"))
        hidden = (hidden,) if isinstance(hidden, str) else tuple(hidden)
        unknown = [h for h in hidden if h not in surface.factors]
        if unknown:
            problems.append(Problem("hidden", unknown, f"factors among {list(surface.factors)}"))
        elif len(set(hidden)) >= surface.n_factors:
            problems.append(Problem("hidden", list(hidden), "at most all but one factor (something must be reported)"))
        if problems:
            raise ValidationError(problems)

        default_base, default_top = default_endpoints(surface, y.attrs)
        self._true_baseline = default_base if baseline is None else full_assignment(surface, baseline, "baseline")
        self._true_target = default_top if target is None else full_assignment(surface, target, "target")
        self.budget: int | None = None if budget is None else int(budget)
        self.n_seeds: int = available if n_seeds is None else int(n_seeds)
        self.hidden: tuple[str, ...] = tuple(f for f in surface.factors if f in hidden)
        self.reported_factors: tuple[str, ...] = tuple(f for f in surface.factors if f not in hidden)
        self.levels: dict[str, tuple] = {f: surface.levels[f] for f in self.reported_factors}
        self.rng = np.random.default_rng(rng_seed)
        self._surface = surface
        self._visible = self._visible_outcomes(surface, mixture or {})
        self._charged: dict[tuple[int, ...], None] = {}
        self.log: list[dict[str, Any]] = []
        """Every query in order (repeats included), as {factor: level} over reported factors."""

        if data_factor in self.reported_factors:
            self.data_factor, self.data_factor_note = data_factor, ""
        else:
            self.data_factor = self.reported_factors[0]
            why = "is hidden in this regime" if data_factor in surface.factors else "is not a factor of this surface"
            self.data_factor_note = f"data factor {data_factor!r} {why}; the paper's data factor is taken to be {self.data_factor!r}"

    # --- what the analyst sees
    def _visible_outcomes(self, surface: Surface, mixture: Mapping[str, Sequence[float]]) -> np.ndarray:
        """Per-seed outcomes over reported factors (seed axis last), hidden factors averaged under the mixture."""
        per_seed = surface.per_seed if surface.per_seed is not None else surface.mean[..., None]
        per_seed = per_seed[..., : self.n_seeds]
        weights = np.ones(per_seed.shape)
        for f in self.hidden:
            w = np.asarray(mixture.get(f, np.ones(len(surface.levels[f]))), dtype=np.float64)
            if w.shape != (len(surface.levels[f]),) or (w < 0).any() or w.sum() <= 0:
                raise invalid(f"mixture[{f!r}]", list(w), f"{len(surface.levels[f])} non-negative weights, not all zero")
            shape = [1] * per_seed.ndim
            shape[surface.factors.index(f)] = len(w)
            weights = weights * (w / w.sum()).reshape(shape)
        unknown = sorted(set(mixture) - set(self.hidden))
        if unknown:
            raise invalid("mixture", unknown, f"weights for hidden factors only ({list(self.hidden)})")
        finite = np.isfinite(per_seed)
        axes = tuple(surface.factors.index(f) for f in self.hidden)
        if not axes:
            return per_seed
        # A failed run drops out of its mixture; the other levels' weights are renormalised.
        total = np.where(finite, per_seed * weights, 0.0).sum(axis=axes)
        mass = np.where(finite, weights, 0.0).sum(axis=axes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(mass > 0, total / np.where(mass > 0, mass, 1.0), np.nan)

    @property
    def baseline(self) -> dict[str, Any]:
        return {f: self._true_baseline[f] for f in self.reported_factors}

    @property
    def target(self) -> dict[str, Any]:
        return {f: self._true_target[f] for f in self.reported_factors}

    @property
    def spent(self) -> int:
        """Distinct cells queried so far."""
        return len(self._charged)

    @property
    def runs_spent(self) -> int:
        """Training runs those cells stand for: cells x seeds."""
        return self.spent * self.n_seeds

    @property
    def remaining(self) -> float:
        return float("inf") if self.budget is None else self.budget - self.spent

    def _indices(self, cell: Mapping[str, Any]) -> tuple[int, ...]:
        if not isinstance(cell, Mapping):
            raise invalid("cell", cell, f"a dict {{factor: level}} over the reported factors {list(self.reported_factors)}")
        problems = []
        for f in cell:
            if f in self.hidden:
                problems.append(Problem(f"cell[{f!r}]", cell[f], f"nothing: factor {f!r} is not reported in regime {self.name!r}"))
            elif f not in self.reported_factors:
                problems.append(Problem("cell", f, f"factors among {list(self.reported_factors)}"))
        missing = [f for f in self.reported_factors if f not in cell]
        if missing:
            problems.append(Problem("cell", f"missing factors {missing}", f"a level for every reported factor {list(self.reported_factors)}"))
        if problems:
            raise ValidationError(problems)
        return tuple(self._surface.level_index(f, cell[f], f"cell[{f!r}]") for f in self.reported_factors)

    def cost_of(self, cells: Iterable[Mapping[str, Any]]) -> int:
        """How many budget units these cells would cost now (cells already queried are free)."""
        return len({self._indices(c) for c in cells} - set(self._charged))

    def can_afford(self, cells: Iterable[Mapping[str, Any]]) -> bool:
        return self.cost_of(cells) <= self.remaining

    def query_seeds(self, cell: Mapping[str, Any]) -> np.ndarray:
        """Per-seed outcomes of a cell (NaN where that run failed); charges the cell once."""
        index = self._indices(cell)
        if index not in self._charged:
            if self.budget is not None and self.spent >= self.budget:
                raise BudgetExceeded(self.name, self.budget, self.spent, cell)
            self._charged[index] = None
        self.log.append(dict(cell))
        return self._visible[index].copy()

    def query(self, cell: Mapping[str, Any], n_seeds: int | None = None) -> float:
        """A cell's outcome: the mean over its finite seeds (the first ``n_seeds`` of the regime's, if given)."""
        values = self.query_seeds(cell)
        if n_seeds is not None:
            if not isinstance(n_seeds, (int, np.integer)) or not 1 <= n_seeds <= self.n_seeds:
                raise invalid("n_seeds", n_seeds, f"None or an integer between 1 and {self.n_seeds}")
            values = values[:n_seeds]
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else float("nan")

    # --- conveniences for methods
    def switch_cell(self, switched: Iterable[str] = ()) -> dict[str, Any]:
        """The cell with the given reported factors at their target level and the others at their baseline."""
        switched = {switched} if isinstance(switched, str) else set(switched)
        unknown = sorted(switched - set(self.reported_factors))
        if unknown:
            raise invalid("switched", unknown, f"reported factors among {list(self.reported_factors)}")
        return {f: (self._true_target[f] if f in switched else self._true_baseline[f]) for f in self.reported_factors}

    @property
    def switching_factors(self) -> tuple[str, ...]:
        """Reported factors whose target level differs from their baseline level (the players of the gain)."""
        return tuple(f for f in self.reported_factors if self._true_target[f] != self._true_baseline[f])

    def all_cells(self) -> list[dict[str, Any]]:
        """Every cell of the reported grid (querying them all costs their number)."""
        return [dict(zip(self.reported_factors, combo)) for combo in itertools.product(*(self.levels[f] for f in self.reported_factors))]

    def __repr__(self) -> str:
        budget = "unlimited" if self.budget is None else self.budget
        return f"Regime({self.name!r}, reported={list(self.reported_factors)}, budget={budget}, n_seeds={self.n_seeds}, spent={self.spent})"


def standard_regimes(y: xr.DataArray, *, data_factor: str = "data", baseline=None, target=None) -> list[RegimeSpec]:
    """The standard set of regimes for a surface with k factors.

    * ``full``: every cell, every seed, every factor reported (the testbed's own view);
    * ``paper``: a budget of k + 1 cells (one baseline and one ablation per factor), one seed;
    * ``budget_<4k>``: 4k cells, up to 3 seeds;
    * ``hidden_<f>``: every cell and seed, but factor f unreported, where f is the non-data factor with the
      largest |Shapley value| in the true switching game: the most damaging factor a paper can leave out.
    """
    from .truth import switch_game

    surface = as_surface(y)
    k = surface.n_factors
    seeds = max(surface.n_seeds, 1)
    specs = [
        RegimeSpec("full", None, None, (), "all cells, all seeds, all factors reported"),
        RegimeSpec("paper", k + 1, 1, (), f"a paper's ablation table: {k + 1} cells, one seed"),
        RegimeSpec(f"budget_{4 * k}", 4 * k, min(3, seeds), (), f"a budget of {4 * k} cells, {min(3, seeds)} seed(s)"),
    ]
    if k >= 2:
        shapley = switch_game(y, baseline, target).shapley()
        candidates = [f for f in surface.factors if f != data_factor] or list(surface.factors[1:])
        worst = max(candidates, key=lambda f: (abs(shapley[f]), -surface.factors.index(f)))
        specs.append(RegimeSpec(f"hidden_{worst}", None, None, (worst,), f"all cells and seeds, factor {worst!r} unreported (averaged over its levels)"))
    return specs


__all__ = ["BudgetExceeded", "Regime", "RegimeSpec", "standard_regimes"]
