"""The leaderboard: every method under every regime, scored against the exact truth of the full surface.

**What is attributed.** The gain of a target cell over a baseline cell (defaults: the surface's
``attrs['baseline']`` / ``attrs['target']``, else the first and last level of every factor). Its truth is
computed from the full surface over *all* factors, hidden ones included:

* ``switch_shapley``: Shapley values of the switching game v(S) = Y(target on S, baseline elsewhere), the
  share of the gain due to each factor; every built-in method but one estimates it;
* ``switch_banzhaf``: Banzhaf values of the same game (the full-factorial main effects on the baseline /
  target levels), the native target of the fractional factorial;
* ``shapley_effects``, ``sobol_total``, ``sobol_first``: global variance attribution, for methods of your
  own that estimate those.

Each row is scored against the truth its method names (column ``truth``), and also, whatever the method's
target, by ``nl2_vs_shapley``: its normalised L2 distance to the switch-game Shapley values, the common
yardstick of the question "how much of this gain is due to factor i".

:func:`run_leaderboard` writes ``leaderboard.csv``, ``leaderboard.md``, ``leaderboard.png`` and
``leaderboard_scores.csv`` (per-factor estimates beside the truth); :func:`attribute_main` is the entry
point of ``fi-sim attribute``.
"""

from __future__ import annotations

import math
import pathlib
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, cast

import numpy as np
import pandas as pd
import xarray as xr

from fi_sim.errors import FiSimError, Problem, ValidationError, invalid

from . import metrics
from ._surface import MissingSeedsWarning, as_surface, default_endpoints, full_assignment
from .games import GAMES, get_game
from .methods import METHODS, Attribution
from .regimes import Regime, RegimeSpec, standard_regimes
from .truth import shapley_effects, sobol_indices, switch_game

TRUTHS: dict[str, str] = {
    "switch_shapley": "Shapley values of the switching game baseline -> target (sum to the gain)",
    "switch_banzhaf": "Banzhaf values of the switching game (full-factorial main effects on baseline/target levels)",
    "shapley_effects": "Shapley effects: Shapley values of Var E[Y | X_S] (sum to Var Y)",
    "sobol_total": "total Sobol indices",
    "sobol_first": "first-order Sobol indices",
}

COLUMNS = [
    "method", "regime", "truth", "status", "cells", "runs", "budget",
    "nl2", "kendall", "spearman", "sign", "precision_at_k", "coverage", "nl2_vs_shapley", "notes",
]


def compute_truths(y: xr.DataArray, baseline=None, target=None) -> dict[str, dict[str, float]]:
    """Every truth a method may target, per factor, from the full surface."""
    game = switch_game(y, baseline, target)
    sobol = sobol_indices(y)
    effects = shapley_effects(y)
    factors = list(game.factors)
    return {
        "switch_shapley": game.shapley(),
        "switch_banzhaf": game.banzhaf(),
        "shapley_effects": dict(zip(factors, map(float, effects.values))),
        "sobol_total": dict(zip(factors, map(float, sobol["total"].values))),
        "sobol_first": dict(zip(factors, map(float, sobol["first"].values))),
    }


@dataclass
class LeaderboardResult:
    table: pd.DataFrame
    """One row per method x regime: metrics and query cost (the columns of :data:`COLUMNS`)."""
    scores: pd.DataFrame
    """Long table: method, regime, factor, estimate, truth value, switch-Shapley value, interval."""
    truths: dict[str, dict[str, float]]
    baseline: dict[str, Any]
    target: dict[str, Any]
    gain: float
    attributions: dict[tuple[str, str], Attribution | None] = field(default_factory=dict)
    moebius: dict[frozenset, float] = field(default_factory=dict)
    """Moebius coefficients of the true switching game (for the identity check)."""

    def predicted_errors(self) -> dict[str, dict[str, float]]:
        """Errors against the switch-game Shapley values that the Moebius identities predict.

        ``ofat``: OFAT_i - Shapley_i = -sum_{T containing i, |T| >= 2} m(T) / |T|. ``data_only`` (data factor d
        as the method used it): d gets sum_{T not containing d} m(T) + sum_{T containing d} m(T) (|T| - 1) / |T|
        (every other factor's Shapley value), every other factor loses its Shapley value.
        """
        shapley = self.truths["switch_shapley"]
        terms = [(t, v) for t, v in self.moebius.items() if t]
        out = {"ofat": {i: -sum(v / len(t) for t, v in terms if i in t and len(t) >= 2) for i in shapley}}
        claim = self.attributions.get(("data_only", "full"))
        if claim is not None:
            d = claim.details.get("data_factor")
            out["data_only"] = {
                i: (sum(v for t, v in terms if d not in t) + sum(v * (len(t) - 1) / len(t) for t, v in terms if d in t)) if i == d else -shapley[i]
                for i in shapley
            }
        return out


def _resolve_methods(methods) -> dict[str, Callable[[Regime], Attribution]]:
    if methods is None:
        return dict(METHODS)
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):
        resolved = dict(methods)
    else:
        resolved = {}
        for m in methods:
            if isinstance(m, str):
                if m not in METHODS:
                    raise invalid("methods", m, f"names among {list(METHODS)} or callables regime -> Attribution")
                resolved[m] = METHODS[m]
            elif callable(m):
                resolved[getattr(m, "__name__", repr(m))] = m
            else:
                raise invalid("methods", m, "a method name or a callable regime -> Attribution")
    for name, fn in resolved.items():
        if not callable(fn):
            raise invalid(f"methods[{name!r}]", fn, "a callable regime -> Attribution")
    return resolved


def _resolve_regimes(y, regimes, data_factor, baseline, target) -> list[RegimeSpec]:
    standard = standard_regimes(y, data_factor=data_factor, baseline=baseline, target=target)
    if regimes is None:
        return standard
    if isinstance(regimes, (str, RegimeSpec)):
        regimes = [regimes]
    by_name = {spec.name: spec for spec in standard}
    resolved = []
    for r in regimes:
        if isinstance(r, RegimeSpec):
            resolved.append(r)
        elif isinstance(r, str) and r in by_name:
            resolved.append(by_name[r])
        elif isinstance(r, str) and r.startswith("hidden_"):
            resolved.append(RegimeSpec(r, None, None, (r[len("hidden_"):],), f"factor {r[len('hidden_'):]!r} unreported"))
        elif isinstance(r, str) and r.startswith("budget_") and r[len("budget_"):].isdigit():
            budget = int(r[len("budget_"):])
            resolved.append(RegimeSpec(r, budget, None, (), f"a budget of {budget} cells"))
        elif isinstance(r, Mapping):
            resolved.append(RegimeSpec(**r))
        else:
            raise invalid("regimes", r, f"RegimeSpec objects or names among {list(by_name)}, 'hidden_<factor>', 'budget_<cells>'")
    return resolved


def _stable_seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode())


def _check_attribution(result: Any, regime: Regime, method: str) -> Attribution:
    if not isinstance(result, Attribution):
        raise invalid(f"result of method {method!r}", type(result).__name__, "an Attribution")
    problems = []
    named = set(result.scores) | set((result.intervals or {}))
    hidden = sorted(named & set(regime.hidden))
    if hidden:
        problems.append(Problem(f"scores of method {method!r}", hidden, f"reported factors only: {list(regime.reported_factors)}"))
    unknown = sorted(named - set(regime.reported_factors) - set(regime.hidden))
    if unknown:
        problems.append(Problem(f"scores of method {method!r}", unknown, f"reported factors only: {list(regime.reported_factors)}"))
    if result.target not in TRUTHS:
        problems.append(Problem(f"target of method {method!r}", result.target, f"one of {list(TRUTHS)}"))
    if problems:
        raise ValidationError(problems)
    return result


def evaluate(
    y: xr.DataArray,
    *,
    regimes=None,
    methods=None,
    data_factor: str = "data",
    rng_seed: int = 0,
    baseline: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
    top_k: int = 2,
) -> LeaderboardResult:
    """Run every method under every regime and score it; writes nothing (see :func:`run_leaderboard`)."""
    surface = as_surface(y)  # validates once, and warns once about failed seeds
    default_base, default_top = default_endpoints(surface, y.attrs)
    baseline = default_base if baseline is None else full_assignment(surface, baseline, "baseline")
    target = default_top if target is None else full_assignment(surface, target, "target")
    if not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise invalid("top_k", top_k, "an integer >= 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingSeedsWarning)
        truths = compute_truths(y, baseline, target)
        true_game = switch_game(y, baseline, target)
        gain = true_game.gain
        specs = _resolve_regimes(y, regimes, data_factor, baseline, target)
        resolved = _resolve_methods(methods)
        rows: list[dict[str, Any]] = []
        long_rows: list[dict[str, Any]] = []
        attributions: dict[tuple[str, str], Attribution | None] = {}
        for spec in specs:
            for name, method in resolved.items():
                regime = spec.build(y, baseline=baseline, target=target, data_factor=data_factor, rng_seed=_stable_seed(str(rng_seed), spec.name, name))
                row: dict[str, Any] = {"method": name, "regime": spec.name, "budget": "unlimited" if spec.budget is None else spec.budget}
                try:
                    outcome = method(regime)
                except FiSimError as error:  # MethodNotApplicable, BudgetExceeded, ...: recorded, not fatal
                    attributions[(name, spec.name)] = None
                    row.update(truth="", status=f"n/a: {error}", cells=regime.spent, runs=regime.runs_spent, notes="")
                    rows.append(row)
                    continue
                attribution = _check_attribution(outcome, regime, name)
                attributions[(name, spec.name)] = attribution
                truth = truths[attribution.target]
                measured = metrics.score(attribution.scores, truth, attribution.intervals, top_k=top_k)
                row.update(
                    truth=attribution.target,
                    status="ok",
                    cells=regime.spent,
                    runs=regime.runs_spent,
                    nl2_vs_shapley=metrics.normalized_l2(attribution.scores, truths["switch_shapley"]),
                    notes=attribution.notes,
                    **measured,
                )
                rows.append(row)
                for factor in truth:
                    low, high = (attribution.intervals or {}).get(factor, (math.nan, math.nan))
                    long_rows.append(
                        {
                            "method": name,
                            "regime": spec.name,
                            "factor": factor,
                            "reported": factor in regime.reported_factors,
                            "estimate": float(attribution.scores.get(factor, 0.0)),
                            "truth": attribution.target,
                            "truth_value": truth[factor],
                            "switch_shapley": truths["switch_shapley"][factor],
                            "interval_low": low,
                            "interval_high": high,
                        }
                    )
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table.attrs.update(gain=gain, baseline=str(baseline), target=str(target), top_k=int(top_k), data_factor=data_factor)
    scores = pd.DataFrame(long_rows)
    return LeaderboardResult(table, scores, truths, baseline, target, gain, attributions, true_game.moebius())


# ----------------------------------------------------------------------------------------------------------
# writing


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def markdown_table(table: pd.DataFrame, columns: Sequence[str]) -> str:
    """A GitHub markdown table (no extra dependency)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_format(row[c]).replace("|", "/") for c in columns) + " |")
    return "\n".join(lines)


MARKDOWN_COLUMNS = ["method", "regime", "truth", "cells", "runs", "nl2", "kendall", "spearman", "sign", "precision_at_k", "coverage", "nl2_vs_shapley", "status"]


def _markdown(result: LeaderboardResult, title: str) -> str:
    shapley = result.truths["switch_shapley"]
    parts = [f"# {title or 'Attribution leaderboard'}", ""]
    parts.append(f"Gain attributed: Y(target) - Y(baseline) = {result.gain:.4f}, baseline {result.baseline}, target {result.target}.")
    parts.append("")
    parts.append("True switch-game Shapley values: " + ", ".join(f"{f} {v:+.4f}" for f, v in shapley.items()) + ".")
    parts.append("")
    parts.append(
        "Each row is scored against the truth its method targets (column `truth`); `nl2_vs_shapley` scores every row against "
        f"the switch-game Shapley values. Factors a method does not name count as 0. precision_at_k uses k = {result.table.attrs.get('top_k', 2)}."
    )
    parts.append("")
    status = result.table["status"].map(lambda s: s if len(s) < 70 else s[:67] + "...")
    parts.append(markdown_table(result.table.assign(status=status), MARKDOWN_COLUMNS))
    parts += _identity_check(result)
    notes = result.table[(result.table["status"] == "ok") & (result.table["notes"].fillna("") != "")]
    if len(notes):
        parts += ["", "Notes:", ""]
        seen = set()
        for _, row in notes.iterrows():
            text = row["notes"]
            if (row["method"], text) in seen:
                continue
            seen.add((row["method"], text))
            parts.append(f"- {row['method']} @ {row['regime']}: {text if len(text) < 400 else text[:397] + '...'}")
    return "\n".join(parts) + "\n"


def _identity_check(result: LeaderboardResult) -> list[str]:
    """Observed errors of OFAT and data-only in regime 'full' beside what the Moebius identities predict."""
    shapley = result.truths["switch_shapley"]
    predicted = result.predicted_errors()
    shown = [m for m in ("ofat", "data_only") if result.attributions.get((m, "full")) is not None and m in predicted]
    if not shown:
        return []
    columns = ["factor", "switch Shapley"]
    for m in shown:
        columns += [f"{m} - Shapley", f"predicted by the identities ({m})"]
    rows = []
    for f in shapley:
        row = [f, f"{shapley[f]:+.4f}"]
        for m in shown:
            attribution = cast(Attribution, result.attributions[(m, "full")])  # `shown` keeps only those not None
            row += [f"{attribution.scores.get(f, 0.0) - shapley[f]:+.4f}", f"{predicted[m][f]:+.4f}"]
        rows.append("| " + " | ".join(row) + " |")
    return [
        "",
        "Identity check (regime `full`): the error of one-factor-at-a-time is minus each factor's share of the "
        "interactions it belongs to, -sum_{T containing i, |T|>=2} m(T)/|T|; data-only credits the data factor with "
        "every other factor's Shapley value.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
        *rows,
    ]


def _figure(result: LeaderboardResult, path: pathlib.Path, title: str) -> None:
    # Agg canvas on a bare Figure: no pyplot, no global backend switch in the caller's process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = result.table
    methods = list(dict.fromkeys(table["method"]))
    regimes = list(dict.fromkeys(table["regime"]))
    grid = np.full((len(methods), len(regimes)), np.nan)
    cost = np.zeros_like(grid)
    for _, row in table.iterrows():
        i, j = methods.index(row["method"]), regimes.index(row["regime"])
        grid[i, j] = row["nl2_vs_shapley"]
        cost[i, j] = row["cells"]
    figure = Figure(figsize=(13, 0.45 * len(methods) + 2.5))
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1]})
    shown = np.clip(grid, 0, 2)
    image = left.imshow(np.ma.masked_invalid(shown), cmap="viridis_r", vmin=0, vmax=max(1.0, float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0), aspect="auto")
    for i in range(len(methods)):
        for j in range(len(regimes)):
            text = "n/a" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}\n{int(cost[i, j])} cells"
            left.text(j, i, text, ha="center", va="center", fontsize=7, color="black" if np.isnan(grid[i, j]) or grid[i, j] < 0.6 else "white")
    left.set_xticks(range(len(regimes)), regimes, rotation=30, ha="right", fontsize=8)
    left.set_yticks(range(len(methods)), methods, fontsize=8)
    left.set_title("normalised L2 error vs switch-game Shapley", fontsize=9)
    figure.colorbar(image, ax=left, fraction=0.04)

    factors = list(result.truths["switch_shapley"])
    shown_methods = [m for m in ("exact_shapley", "shapley_sampling", "ofat", "leave_one_out", "data_only") if (m, "full") in result.attributions and result.attributions[(m, "full")] is not None]
    width = 0.8 / (len(shown_methods) + 1)
    x = np.arange(len(factors))
    right.bar(x, [result.truths["switch_shapley"][f] for f in factors], width, label="truth (switch Shapley)", color="black")
    for n, m in enumerate(shown_methods):
        scores = cast(Attribution, result.attributions[(m, "full")]).scores  # `shown_methods` keeps only those not None
        right.bar(x + (n + 1) * width, [scores.get(f, 0.0) for f in factors], width, label=m)
    right.axhline(0, color="grey", linewidth=0.5)
    right.set_xticks(x + 0.4 - width / 2, factors, rotation=30, ha="right", fontsize=8)
    right.set_title("per-factor attribution of the gain (regime 'full')", fontsize=9)
    right.legend(fontsize=7)
    figure.suptitle(title or "Attribution leaderboard", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def run_leaderboard(
    y: xr.DataArray,
    out_dir: pathlib.Path,
    *,
    regimes=None,
    methods=None,
    data_factor: str = "data",
    rng_seed: int = 0,
    title: str = "",
    baseline: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
    top_k: int = 2,
    replicates: Sequence[xr.DataArray] | None = None,
) -> pd.DataFrame:
    """Run the leaderboard and write ``leaderboard.csv``, ``leaderboard.md``, ``leaderboard.png`` and
    ``leaderboard_scores.csv`` into ``out_dir``; returns the table (rows method x regime).

    With ``replicates`` (noisy versions of ``y``, what an analyst would see), the report also gets the error
    against budget of the designs (:mod:`.curves`), written to ``budget_curves.csv`` / ``budget_curves.png``.
    """
    result = evaluate(y, regimes=regimes, methods=methods, data_factor=data_factor, rng_seed=rng_seed, baseline=baseline, target=target, top_k=top_k)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out_dir / "leaderboard.csv", index=False)
    result.scores.to_csv(out_dir / "leaderboard_scores.csv", index=False)
    text = _markdown(result, title)
    if replicates:
        text += _budget_curves(y, replicates, out_dir, result.baseline, result.target, rng_seed)
    (out_dir / "leaderboard.md").write_text(text)
    _figure(result, out_dir / "leaderboard.png", title)
    return result.table


def _budget_curves(truth, replicates, out_dir: pathlib.Path, baseline, target, rng_seed) -> str:
    """Error against budget of the designs (adaptive, random cells, fractional, OFAT, Shapley sampling):
    writes budget_curves.csv / .png and returns the report's section."""
    from . import curves

    runs = curves.error_vs_budget(truth, replicates, baseline=baseline, target=target, surface="this surface", rng_seed=rng_seed)
    summary = curves.summarize(runs)
    _, per_surface = curves.against_static(summary)
    runs.to_csv(out_dir / "budget_curves.csv", index=False)
    curves.figure(summary, out_dir / "budget_curves.png")
    return ("\n## Error against budget\n\nEach design under budgets of B cells (one seed each), on replicates of the surface "
            "(fresh seed noise for a game, one measured seed at a time for results); figure `budget_curves.png`, every run in "
            "`budget_curves.csv`.\n\n" + curves.markdown(summary, per_surface))


ATTRIBUTE_OPTIONS = {
    "regimes": "None (the standard set) or regime names / RegimeSpec objects",
    "methods": "None (all) or method names / callables",
    "data_factor": "the factor a data-only paper credits (default 'data'; the first factor if absent)",
    "rng_seed": "integer seed of every random choice (default 0)",
    "title": "title of the markdown table and the figure",
    "baseline": "dict factor -> level (default: attrs or first levels)",
    "target": "dict factor -> level (default: attrs or last levels)",
    "top_k": "k of precision@k (default 2)",
    "metric": "the variable to attribute when y is an xarray.Dataset",
    "game_options": "dict of options for the game's builder, e.g. {'levels': 6}",
    "n_seeds": "seeds to simulate for a game (default 4)",
    "noise_sd": "seed noise of a game (default: 5% of the surface's standard deviation)",
    "curves": "error-against-budget curves in the report (default True)",
    "curve_replicates": "replicates of the curves (default 5: fresh noise for a game, one seed at a time for results)",
}


def attribute_main(y_or_none: xr.DataArray | xr.Dataset | None, game_name_or_none: str | None, out_dir, **options) -> pd.DataFrame:
    """Entry point of ``fi-sim attribute``: a surface (or a results Dataset and ``metric=``) or a game name.

    Prints nothing; writes the leaderboard files into ``out_dir`` and returns the table. For a game, the
    surface gets ``n_seeds`` seeds (default 4) with Gaussian noise of ``noise_sd`` (default 5% of the
    noiseless surface's standard deviation), so that intervals and coverage mean something.
    """
    unknown = sorted(set(options) - set(ATTRIBUTE_OPTIONS))
    if unknown:
        raise invalid("options", unknown, f"among {sorted(ATTRIBUTE_OPTIONS)}")
    if (y_or_none is None) == (game_name_or_none is None):
        raise invalid("input", "both a surface and a game" if y_or_none is not None else "neither a surface nor a game", f"exactly one: a results surface, or a game among {sorted(GAMES)}")
    metric = options.pop("metric", None)
    game_options = options.pop("game_options", None) or {}
    n_seeds = options.pop("n_seeds", 4)
    noise_sd = options.pop("noise_sd", None)
    with_curves = options.pop("curves", True)
    n_replicates = options.pop("curve_replicates", 5)
    if not isinstance(n_replicates, (int, np.integer)) or isinstance(n_replicates, bool) or n_replicates < 1:
        raise invalid("curve_replicates", n_replicates, "an integer >= 1")
    y: xr.DataArray | xr.Dataset  # a DataArray once the input is resolved
    if game_name_or_none is not None:
        noiseless = get_game(game_name_or_none, **game_options)
        if noise_sd is None:
            noise_sd = 0.05 * float(noiseless.std())
        y = get_game(game_name_or_none, n_seeds=n_seeds, noise_sd=noise_sd, rng_seed=int(options.get("rng_seed", 0)), **game_options)
        options.setdefault("title", f"game {game_name_or_none}: {GAMES[game_name_or_none]}")
        if with_curves:
            # Truth: the noiseless game; replicates: one seed of fresh noise each.
            replicates = [get_game(game_name_or_none, n_seeds=1, noise_sd=noise_sd, rng_seed=1000 + r, **game_options) for r in range(n_replicates)]
            y_truth = noiseless
    else:
        assert y_or_none is not None  # exactly one of the two is given (checked above)
        y = y_or_none
        if isinstance(y, xr.Dataset):
            if metric not in y.data_vars:
                raise invalid("metric", metric, f"a variable of the results: {list(y.data_vars)}")
            y = cast(xr.DataArray, y[metric])  # one variable of the Dataset (checked above)
        if with_curves:
            from .curves import seed_replicates

            replicates, y_truth = seed_replicates(y, cast(int, n_replicates)), y  # an int or numpy integer (checked above)
    table = run_leaderboard(y, pathlib.Path(out_dir), **options)
    if with_curves:
        out = pathlib.Path(out_dir)
        result_md = (out / "leaderboard.md").read_text()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingSeedsWarning)
            section = _budget_curves(y_truth, replicates, out, options.get("baseline"), options.get("target"), int(options.get("rng_seed", 0)))
        (out / "leaderboard.md").write_text(result_md + section)
    return table


__all__ = ["TRUTHS", "LeaderboardResult", "compute_truths", "evaluate", "run_leaderboard", "attribute_main", "markdown_table"]
