"""Error against budget: how fast each design approaches the true Shapley values as cells are added.

For one surface whose truth is known (a noiseless game, or the seed mean of a measured study) and a few
noisy *replicates* of it (what an analyst with one seed would see: fresh seed noise, or one measured seed),
every method runs under a regime of ``B`` cells, one seed each, for every budget ``B`` of a grid from k + 1 to
2^k (k: factors that switch between baseline and target), and is scored by its normalised L2 distance to
the switch-game Shapley values of the truth. :func:`summarize` gives the mean and the 10%-90% band over
replicates; :func:`against_static` compares the sequential design (``adaptive``) with the best static design
(one-factor-at-a-time, the fractional factorial, random cells) at each budget.
"""

from __future__ import annotations

import math
import warnings
import zlib
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from . import metrics
from ._surface import MissingSeedsWarning, as_surface, default_endpoints, full_assignment
from .methods import METHODS, MethodNotApplicable
from .regimes import Regime
from .truth import switch_game

CURVE_METHODS = ("adaptive", "random_cells", "fractional_factorial", "ofat", "shapley_sampling")
STATIC_DESIGNS = ("ofat", "fractional_factorial", "random_cells")
BAND = (10, 90)


def budget_grid(k: int, points: int = 5) -> list[int]:
    """Budgets from k + 1 to 2^k cells, about geometrically spaced (every integer when there are few)."""
    low, high = k + 1, 1 << k
    if high <= low:
        return [high]
    if high - low + 1 <= points:
        return list(range(low, high + 1))
    grid = np.unique(np.round(np.geomspace(low, high, points)).astype(int))
    return [int(b) for b in grid]


def error_vs_budget(
    truth: xr.DataArray,
    replicates: Sequence[xr.DataArray],
    *,
    methods: Sequence[str] = CURVE_METHODS,
    budgets: Sequence[int] | None = None,
    baseline: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
    surface: str = "",
    rng_seed: int = 0,
) -> pd.DataFrame:
    """One row per replicate, method and budget: cells used, nl2 against the truth's switch-game Shapley values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingSeedsWarning)
        s = as_surface(truth)
        default_base, default_top = default_endpoints(s, truth.attrs)
        baseline = default_base if baseline is None else full_assignment(s, baseline, "baseline")
        target = default_top if target is None else full_assignment(s, target, "target")
        shapley = switch_game(truth, baseline, target).shapley()
        k = sum(baseline[f] != target[f] for f in s.factors)
        budgets = budget_grid(k) if budgets is None else list(budgets)
        rows = []
        for r, y in enumerate(replicates):
            for name in methods:
                method = METHODS[name]
                for b in budgets:
                    seed = zlib.crc32(f"{rng_seed}/{surface}/{r}/{name}/{b}".encode())
                    regime = Regime(y, name=f"budget_{b}", budget=int(b), n_seeds=1, baseline=baseline, target=target, rng_seed=seed)
                    try:
                        attribution = method(regime)
                        nl2 = metrics.normalized_l2(attribution.scores, shapley)
                        status = "ok"
                    except MethodNotApplicable as error:
                        nl2, status = math.nan, f"n/a: {error}"
                    rows.append({"surface": surface, "method": name, "budget": int(b), "replicate": r, "cells": regime.spent, "nl2": nl2, "status": status})
    return pd.DataFrame(rows)


def summarize(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean nl2 and the 10%-90% band over replicates, per surface, method and budget (NaN where n/a)."""
    ok = curves[curves["status"] == "ok"]
    grouped = ok.groupby(["surface", "method", "budget"])["nl2"]
    out = pd.DataFrame({
        "mean": grouped.mean(),
        "low": grouped.quantile(BAND[0] / 100),
        "high": grouped.quantile(BAND[1] / 100),
        "cells": ok.groupby(["surface", "method", "budget"])["cells"].mean(),
        "replicates": grouped.size(),
    }).reset_index()
    return out


def against_static(summary: pd.DataFrame, method: str = "adaptive", static: Sequence[str] = STATIC_DESIGNS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per surface and budget: the method's mean error beside the best static design's; and per surface,
    the mean over budgets of both (the area under each curve, the static one being the lower envelope)
    and whether the method wins. Budgets where the whole grid is bought (2^k) are left out: every complete
    design is exact there."""
    rows = []
    for (surface, budget), group in summary.groupby(["surface", "budget"]):
        mine = group[group["method"] == method]["mean"]
        others = group[group["method"].isin(static)].dropna(subset=["mean"])
        if mine.empty or others.empty:
            continue
        best = others.loc[others["mean"].idxmin()]
        rows.append({"surface": surface, "budget": int(budget), method: float(mine.iloc[0]), "best_static": float(best["mean"]),
                     "best_static_method": best["method"], "wins": bool(mine.iloc[0] < best["mean"])})
    by_budget = pd.DataFrame(rows)
    if by_budget.empty:
        return by_budget, pd.DataFrame()
    full = summary.groupby("surface")["budget"].max()
    by_budget = by_budget[by_budget["budget"] < by_budget["surface"].map(full)]
    per_surface = by_budget.groupby("surface").agg(**{method: (method, "mean"), "best_static": ("best_static", "mean"),
                                                      "budgets_won": ("wins", "sum"), "budgets": ("wins", "size")}).reset_index()
    per_surface["wins"] = per_surface[method] < per_surface["best_static"]
    return by_budget, per_surface


def markdown(summary: pd.DataFrame, per_surface: pd.DataFrame | None = None) -> str:
    """The curves as a table: mean nl2 [10%, 90%] per method (rows) and budget (columns), per surface."""
    parts = []
    for surface, group in summary.groupby("surface", sort=False):
        budgets = sorted(group["budget"].unique())
        parts.append(f"Surface `{surface}`: normalised L2 error against the switch-game Shapley values, mean [10%, 90%] over "
                     f"{int(group['replicates'].max())} replicate(s), one seed per cell.")
        parts.append("")
        parts.append("| method | " + " | ".join(f"B = {b}" for b in budgets) + " |")
        parts.append("|---|" + "---|" * len(budgets))
        for method, rows in group.groupby("method", sort=False):
            cells = []
            for b in budgets:
                row = rows[rows["budget"] == b]
                cells.append("n/a" if row.empty else f"{row['mean'].iloc[0]:.3f} [{row['low'].iloc[0]:.3f}, {row['high'].iloc[0]:.3f}]")
            parts.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("")
    if per_surface is not None and len(per_surface):
        won = int(per_surface["wins"].sum())
        parts.append(f"adaptive against the best static design (mean error over budgets below 2^k, the static envelope taking "
                     f"the best of {', '.join(STATIC_DESIGNS)} at each budget): wins on {won} of {len(per_surface)} surface(s).")
        parts.append("")
        parts.append("| surface | adaptive | best static | budgets won | wins |")
        parts.append("|---|---|---|---|---|")
        for _, row in per_surface.iterrows():
            parts.append(f"| {row['surface']} | {row['adaptive']:.3f} | {row['best_static']:.3f} | {int(row['budgets_won'])}/{int(row['budgets'])} | {'yes' if row['wins'] else 'no'} |")
        parts.append("")
    return "\n".join(parts)


def figure(summary: pd.DataFrame, path, title: str = "") -> None:
    """One panel per surface: mean error against budget with the 10%-90% band, one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    surfaces = list(dict.fromkeys(summary["surface"]))
    cols = min(4, len(surfaces))
    rows = math.ceil(len(surfaces) / cols)
    fig = Figure(figsize=(3.6 * cols, 2.9 * rows))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, surface in zip(axes, surfaces):
        group = summary[summary["surface"] == surface]
        for method, rows_m in group.groupby("method", sort=False):
            rows_m = rows_m.sort_values("budget")
            line, = ax.plot(rows_m["budget"], rows_m["mean"], marker="o", markersize=3, label=method, linewidth=2.2 if method == "adaptive" else 1.2)
            ax.fill_between(rows_m["budget"], rows_m["low"], rows_m["high"], alpha=0.15, color=line.get_color())
        ax.set_title(surface, fontsize=9)
        ax.set_xlabel("cells (budget)", fontsize=8)
        ax.set_ylabel("nl2 vs Shapley", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
    for ax in axes[len(surfaces):]:
        ax.axis("off")
    axes[0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def seed_replicates(y: xr.DataArray, limit: int = 5) -> list[xr.DataArray]:
    """What an analyst with one seed sees: each of the first ``limit`` seeds alone (the surface itself without seeds)."""
    if "seed" not in y.dims or y.sizes["seed"] < 2:
        return [y]
    return [y.isel(seed=[s]) for s in range(min(limit, y.sizes["seed"]))]


__all__ = ["CURVE_METHODS", "STATIC_DESIGNS", "budget_grid", "error_vs_budget", "summarize", "against_static", "markdown", "figure", "seed_replicates"]
