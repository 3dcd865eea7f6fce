"""The attribution lab: exact truth, methods under test, information regimes, metrics and a leaderboard.

It works on any labelled response surface, an ``xarray.DataArray`` whose dimensions are factors
(coordinates = level names) and optionally ``seed``, and imports nothing from the simulator, so a surface
can come from anywhere. See docs/attribution.md.

Exact truth (:mod:`.truth`): :func:`fanova`, :func:`sobol_indices`, :func:`shapley_effects`,
:func:`switch_game`, :func:`effect_summary`; seed uncertainty: :func:`seed_uncertainty`.
Real tables: :func:`from_table` reads a long ablation table, :func:`analyse` gives its alias structure,
supported estimates and unsupported claims (:mod:`.ablation`); :func:`design_next` proposes the next runs
and :func:`adaptive` is the same rule as a method of the lab (:mod:`.design`).
Submodules: :mod:`.games` (analytic games), :mod:`.regimes` (what an analyst may see), :mod:`.methods`
(methods under test), :mod:`.metrics`, :mod:`.leaderboard`, :mod:`.cooperative` (game algebra).
"""

from __future__ import annotations

from . import ablation, cooperative, design, games, leaderboard, methods, metrics, regimes, truth, uncertainty
from .ablation import AblationTable, TableReport, analyse, from_table
from .design import adaptive, design_next, random_cells
from ._surface import SEED_DIM, MissingSeedsWarning, Surface, as_surface, term_name
from .methods import METHODS, Attribution, MethodNotApplicable
from .regimes import BudgetExceeded, Regime, RegimeSpec, standard_regimes
from .truth import (
    CONTRAST_CONVENTION,
    FanovaDecomposition,
    SwitchGame,
    effect_summary,
    fanova,
    fanova_variances,
    shapley_effects,
    sobol_closed,
    sobol_indices,
    switch_game,
)
from .uncertainty import seed_uncertainty

# The designed methods join the leaderboard after the built-in ablation designs.
METHODS.setdefault("random_cells", random_cells)
METHODS.setdefault("adaptive", adaptive)

__all__ = [
    "fanova",
    "fanova_variances",
    "sobol_indices",
    "sobol_closed",
    "shapley_effects",
    "switch_game",
    "effect_summary",
    "seed_uncertainty",
    "from_table",
    "analyse",
    "AblationTable",
    "TableReport",
    "design_next",
    "adaptive",
    "random_cells",
    "SwitchGame",
    "FanovaDecomposition",
    "CONTRAST_CONVENTION",
    "Attribution",
    "METHODS",
    "MethodNotApplicable",
    "Regime",
    "RegimeSpec",
    "BudgetExceeded",
    "standard_regimes",
    "MissingSeedsWarning",
    "Surface",
    "as_surface",
    "term_name",
    "SEED_DIM",
    "ablation",
    "cooperative",
    "design",
    "games",
    "leaderboard",
    "methods",
    "metrics",
    "regimes",
    "truth",
    "uncertainty",
]
