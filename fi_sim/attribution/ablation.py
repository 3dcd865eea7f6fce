"""Attribute a real ablation table: which effects its cells can identify, what they are, and which claims fail.

A lab's ablation table is a handful of cells of a factorial design, one or a few seeds each. It arrives as a
long table (one column per factor, a metric column, an optional seed column; CSV, parquet or a pandas
DataFrame): :func:`from_table` reads it into an :class:`AblationTable`; :func:`analyse` (also
``AblationTable.report()``) answers three questions.

* **What can these cells identify?** Every function of the factors is a sum of fANOVA terms (the mean, the
  main effects, the interactions), and on the full grid each term has an orthonormal contrast basis under the
  uniform design (Helmert contrasts scaled to mean square 1; for two levels the +-1 sign of the classical
  2^k contrast). On the cells present, the terms are fitted hierarchically: the mean, then main effects,
  then interactions of increasing order, each term joining the model only if its columns are linearly
  independent of those already in it. A term that does not join is *not estimable* in this design. For each
  term in the model, its **aliases** are the terms outside the model whose columns its estimate absorbs (the
  alias matrix A = (X_M' W X_M)^-1 X_M' W X_O): on a regular 2^(k-p) fraction these are exactly the words of
  the defining relation (I = ABC: A is aliased with B:C, and the mean with A:B:C), on an irregular set of
  cells they can be partial (a coefficient between 0 and 1).
* **What are the effects the design supports?** Weighted least squares over the runs (every seed is a row,
  so unbalanced seeds weigh as they should) gives each model term's coefficients; from them the term's
  variance V_T (= the lab's fANOVA variance on the full grid) and, for two-level terms, the classical 2^k
  contrast (the lab's ``effect_summary`` convention). Intervals are 95% t-intervals from the pooled
  within-cell (seed) variance, or, without replicate seeds, from the residual variance (which then includes
  lack of fit; the report says so), or absent when neither exists.
* **Which claims fail?** A claim about a term is flagged when the term is not estimable or when its estimate
  is aliased with another term of order at most ``claim_order`` (default 2): "the data effect is aliased with
  data:verifier in this design". The Shapley values of the switch from a baseline cell to a target cell are
  linear in the surface; each is *identified* when it is an estimable function of the cells present (no
  assumption needed) and otherwise estimated from the hierarchical model, with the assumption named.

On a full factorial every term is in the model and nothing is aliased, so the estimates are the lab's exact
truth (:func:`~fi_sim.attribution.fanova_variances`, :func:`~fi_sim.attribution.effect_summary` contrasts,
:func:`~fi_sim.attribution.switch_game` Shapley values) to float precision. This module reads tables from
anywhere and imports nothing from the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import numpy as np
import pandas as pd
import xarray as xr

from fi_sim.errors import Problem, ValidationError, invalid

from . import cooperative as coop
from ._surface import SEED_DIM, term_name
from .methods import t_quantile_975

TABLE_FORMATS = (".csv", ".parquet")
METRIC_KINDS = ("true:", "proxy:", "channel:")
RESERVED_COLUMNS = ("status", "run_id")
MAX_LEVELS_OF_A_NUMERIC_FACTOR = 12
"""A numeric column with more distinct values than this is read as another metric, not a factor."""
MAX_ALIAS_COLUMNS = 4096
"""Beyond this many grid cells, aliases are searched among terms up to order 3 only."""
TOLERANCE = 1e-9


# ----------------------------------------------------------------------------------------------------------
# reading a table


@dataclass
class AblationTable:
    """A long table read as cells of a factorial grid: which cells were run, and the outcome of every run."""

    factors: tuple[str, ...]
    levels: dict[str, tuple]
    metric: str
    cells: np.ndarray
    """Distinct cells present, (n_cells, n_factors) level indices, in order of first appearance."""
    runs: list[np.ndarray]
    """Per cell, the finite outcomes of its runs (one per seed)."""
    run_seeds: list[list]
    """Per cell, the seed label of each run (row numbers where the table has no seed column)."""
    notes: list[str] = field(default_factory=list)

    @property
    def n_factors(self) -> int:
        return len(self.factors)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(self.levels[f]) for f in self.factors)

    @property
    def grid_size(self) -> int:
        return math.prod(self.grid_shape)

    @property
    def seeds_per_cell(self) -> np.ndarray:
        return np.array([len(r) for r in self.runs])

    @property
    def means(self) -> np.ndarray:
        return np.array([r.mean() for r in self.runs])

    @property
    def is_complete(self) -> bool:
        return len(self.cells) == self.grid_size

    def cell_dict(self, index: Sequence[int]) -> dict[str, Any]:
        return {f: self.levels[f][i] for f, i in zip(self.factors, index)}

    def level_index(self, factor: str, level: Any, field_name: str) -> int:
        for i, known in enumerate(self.levels[factor]):
            if known == level or str(known) == str(level):
                return i
        raise invalid(field_name, level, f"a level of factor {factor!r}: {list(self.levels[factor])}")

    def cell_of(self, cell: Mapping[str, Any], field_name: str) -> tuple[int, ...]:
        if not isinstance(cell, Mapping) or set(cell) != set(self.factors):
            raise invalid(field_name, cell, f"a dict naming a level for every factor {list(self.factors)}")
        return tuple(self.level_index(f, cell[f], f"{field_name}[{f!r}]") for f in self.factors)

    def to_dataarray(self) -> xr.DataArray:
        """The full grid with a ``seed`` dimension: NaN where a cell or a seed of it was not run.

        Seeds are the table's seed labels (cells that lack one have NaN there). On a complete table this is the
        response surface the rest of the lab reads.
        """
        seeds = list(dict.fromkeys(s for seeds in self.run_seeds for s in seeds))
        position = {repr(s): i for i, s in enumerate(seeds)}
        values = np.full(self.grid_shape + (len(seeds),), np.nan)
        for cell, runs, labels in zip(self.cells, self.runs, self.run_seeds):
            for value, label in zip(runs, labels):
                values[tuple(cell) + (position[repr(label)],)] = value
        return xr.DataArray(values, dims=list(self.factors) + [SEED_DIM],
                            coords={**{f: list(self.levels[f]) for f in self.factors}, SEED_DIM: seeds}, name=self.metric)

    def report(self, **options) -> "TableReport":
        return analyse(self, **options)


def _read(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (str, Path)):
        path = Path(data)
        suffix = path.suffix.lower()
        if suffix not in TABLE_FORMATS:
            raise invalid("table", str(path), "a .csv or .parquet file (or a pandas DataFrame)")
        if not path.is_file():
            raise invalid("table", str(path), "an existing file")
        if suffix == ".csv":
            # 17 significant digits (as fi_sim.tables.export writes them) read back bit for bit with pandas 3's
            # default parser (tested); older pandas needs the 'round_trip' parser, deprecated in pandas 3.
            exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
            return pd.read_csv(path, **exact)
        try:
            return pd.read_parquet(path)
        except ImportError:
            raise invalid("table", str(path), "a .csv file, or a .parquet file once 'pyarrow' is installed (pip install pyarrow)") from None
    raise invalid("table", type(data).__name__, "a pandas DataFrame or the path of a .csv / .parquet file")


def _resolve_metric(df: pd.DataFrame, metric: str | None) -> str:
    columns = [str(c) for c in df.columns]
    if metric is not None:
        if metric in columns:
            return metric
        matches = [c for c in columns if any(c == kind + metric for kind in METRIC_KINDS)]
        if len(matches) == 1:
            return matches[0]
        raise invalid("metric", metric, f"a column of the table: {columns}")
    # Default: the true gain of an fi_sim export, else the only numeric non-seed column.
    if "true:gain" in columns:
        return "true:gain"
    numeric = [c for c in columns if c != SEED_DIM and c not in RESERVED_COLUMNS and pd.api.types.is_float_dtype(df[c])]
    if len(numeric) == 1:
        return numeric[0]
    raise invalid("metric", None, f"the name of the outcome column (the table has {len(numeric)} float columns: {numeric})")


def from_table(
    data: Any,
    metric: str | None = None,
    *,
    factors: Sequence[str] | None = None,
    seed: str | None = SEED_DIM,
    levels: Mapping[str, Sequence[Any]] | None = None,
) -> AblationTable:
    """Read a long table (DataFrame, or a .csv / .parquet path) into an :class:`AblationTable`.

    ``metric``: the outcome column (a bare name also finds ``true:<name>`` etc. of an fi_sim export; default:
    ``true:gain``, else the only float column). ``factors``: the factor columns (default: every other column
    except the seed, ``status``, ``run_id``, other ``true:``/``proxy:``/``channel:`` metrics and numeric columns
    with more than 12 distinct values). ``seed``: the replicate column, if the table has one; without it,
    several rows of one cell are replicates in row order. Rows whose metric is missing (failed runs) are
    dropped and counted in ``notes``. ``levels``: the order of some factors' levels ({factor: [level, ...]});
    the others keep their order of first appearance. The first level is the default baseline (and the -
    sign of a two-level contrast), the last the default target: a fraction whose first row is not the
    baseline needs ``levels``.
    """
    level_order = levels
    df = _read(data)
    columns = [str(c) for c in df.columns]
    df = df.set_axis(columns, axis=1)
    metric = _resolve_metric(df, metric)
    if not (pd.api.types.is_numeric_dtype(df[metric]) and not pd.api.types.is_bool_dtype(df[metric])):
        raise invalid(f"metric {metric!r}", str(df[metric].dtype), "a numeric column (the outcome of each run)")
    seed_column = seed if seed in columns else None
    if seed is not None and seed != SEED_DIM and seed_column is None:
        raise invalid("seed", seed, f"a column of the table: {columns}")
    notes: list[str] = []
    if factors is None:
        factors = []
        for c in columns:
            if c in (metric, seed_column) or c in RESERVED_COLUMNS or c.startswith(METRIC_KINDS):
                continue
            if pd.api.types.is_float_dtype(df[c]) and df[c].nunique() > MAX_LEVELS_OF_A_NUMERIC_FACTOR:
                notes.append(f"column {c!r} read as another metric, not a factor (pass factors= to use it)")
                continue
            factors.append(c)
    else:
        factors = list(factors)
        missing = [f for f in factors if f not in columns]
        if missing:
            raise invalid("factors", missing, f"columns of the table: {columns}")
    problems = []
    for f in factors:
        if df[f].isna().any():
            problems.append(Problem(f"factor {f!r}", f"{int(df[f].isna().sum())} empty value(s)", "a level in every row"))
    if problems:
        raise ValidationError(problems)
    values = df[metric].to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if (~finite).any():
        notes.append(f"{int((~finite).sum())} run(s) with no value of {metric!r} (failed) left out")
    constant = [f for f in factors if df.loc[finite, f].nunique() < 2]
    if constant:
        notes.append(f"factor(s) {constant} take a single level in this table: nothing to attribute to them; dropped")
    factors = [f for f in factors if f not in constant]
    if not factors:
        raise invalid("factors", list(constant), "at least one factor column with two or more levels")
    df = df[finite]
    values = values[finite]
    found = {f: tuple(_plain(v) for v in pd.unique(df[f])) for f in factors}
    levels = dict(found)
    for f, order in (dict(level_order) if level_order else {}).items():
        if f not in found:
            raise invalid("levels", f, f"factors of the table: {factors}")
        order = tuple(_plain(v) for v in order)
        if sorted(map(repr, order)) != sorted(map(repr, found[f])):
            raise invalid(f"levels[{f!r}]", list(order), f"the levels present, in any order: {list(found[f])}")
        levels[f] = order
    index = {f: {repr(v): i for i, v in enumerate(levels[f])} for f in factors}
    codes = np.column_stack([[index[f][repr(_plain(v))] for v in df[f]] for f in factors])
    seeds = [_plain(s) for s in df[seed_column]] if seed_column else list(range(len(df)))
    run_of_cell: dict[tuple, int] = {}
    runs: list[list[float]] = []
    run_seeds: list[list] = []
    for row, code in enumerate(map(tuple, codes)):
        if code not in run_of_cell:
            run_of_cell[code] = len(runs)
            runs.append([])
            run_seeds.append([])
        run_index = run_of_cell[code]
        if seed_column and any(repr(s) == repr(seeds[row]) for s in run_seeds[run_index]):
            raise invalid("table", f"cell {dict(zip(factors, (levels[f][i] for f, i in zip(factors, code))))} seed {seeds[row]!r} twice",
                          "one row per cell and seed")
        runs[run_index].append(float(values[row]))
        run_seeds[run_index].append(seeds[row] if seed_column else len(run_seeds[run_index]))
    cells = np.array(list(run_of_cell), dtype=np.int64).reshape(-1, len(factors))
    levels_of = cast(dict[str, tuple[Any, ...]], levels)  # every value is a tuple (built above)
    return AblationTable(tuple(factors), levels_of, metric, cells, [np.array(r) for r in runs], run_seeds, notes)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------------------------------------
# the orthonormal fANOVA basis of a grid


def contrast_basis(n_levels: int) -> np.ndarray:
    """(n_levels, n_levels - 1) contrasts: columns sum to 0, are orthogonal, and have mean square 1.

    Two levels give (-1, +1), the sign of the classical 2^k contrast (first level -, second +).
    """
    helmert = np.zeros((n_levels, n_levels - 1))
    for j in range(1, n_levels):
        helmert[:j, j - 1] = -1.0
        helmert[j, j - 1] = float(j)
    return helmert / np.sqrt((helmert**2).mean(axis=0))


@dataclass(frozen=True)
class Basis:
    """The columns of every fANOVA term up to ``max_order`` on a grid, evaluated at given cells."""

    factors: tuple[str, ...]
    terms: tuple[int, ...]
    """Term bitmasks (factor i = bit i), mean (0) first, by order then mask."""
    blocks: dict[int, slice]
    """Columns of each term."""

    @classmethod
    def of(cls, factors: Sequence[str], shape: Sequence[int], max_order: int | None = None) -> "Basis":
        k = len(factors)
        max_order = k if max_order is None else min(max_order, k)
        terms = sorted((m for m in range(1 << k) if bin(m).count("1") <= max_order), key=lambda m: (bin(m).count("1"), m))
        blocks, start = {}, 0
        for m in terms:
            width = math.prod(shape[i] - 1 for i in range(k) if m >> i & 1)
            blocks[m] = slice(start, start + width)
            start += width
        return cls(tuple(factors), tuple(terms), blocks)

    @property
    def width(self) -> int:
        return max(s.stop for s in self.blocks.values())

    def columns(self, cells: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        """Model matrix (n_cells, width)."""
        cells = np.asarray(cells).reshape(-1, len(self.factors))
        bases = [contrast_basis(n) for n in shape]
        out = np.empty((len(cells), self.width))
        for m in self.terms:
            block = np.ones((len(cells), 1))
            for i in range(len(self.factors)):
                if m >> i & 1:
                    # Row-wise Kronecker product: the interaction's columns.
                    block = (block[:, :, None] * bases[i][cells[:, i]][:, None, :]).reshape(len(cells), -1)
            out[:, self.blocks[m]] = block
        return out

    def name(self, mask: int) -> str:
        return term_name(coop.members(mask, self.factors))


def switch_shapley_weights(table: AblationTable, baseline: tuple[int, ...], target: tuple[int, ...]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Players (factors that switch), the 2^k switch cells, and the (k, 2^k) Shapley weights on their values."""
    players = [i for i in range(table.n_factors) if baseline[i] != target[i]]
    k = len(players)
    members = coop.membership(k)
    cells = np.tile(np.array(baseline), (1 << k, 1))
    for j, i in enumerate(players):
        cells[members[:, j], i] = target[i]
    weights = coop.shapley_weight_matrix(k).T if k else np.zeros((0, 1))
    return players, cells, weights


# ----------------------------------------------------------------------------------------------------------
# the analysis


@dataclass
class TableReport:
    """What an ablation table supports; see the module docstring. Render with :meth:`markdown`."""

    table: AblationTable
    effects: pd.DataFrame
    """One row per term up to ``max_order``: in_model, support, aliases, contrast and variance with intervals."""
    shapley: pd.DataFrame
    """One row per factor: the switch-game Shapley value, interval, whether identified without assumptions."""
    defining_relation: list[str]
    """Terms aliased with the mean (for a regular 2^(k-p) fraction, the words of its defining relation)."""
    aliases: dict[str, dict[str, float]]
    """Per model term, the alias coefficient of every term outside the model that its estimate absorbs."""
    claims: list[str]
    """Every claim the design cannot support, in words."""
    baseline: dict[str, Any]
    target: dict[str, Any]
    interval_source: str
    model_terms: list[str]

    def markdown(self) -> str:
        t = self.table
        seeds = t.seeds_per_cell
        lines = [f"# Ablation table: {t.metric}", ""]
        lines.append(f"{len(t.cells)} of {t.grid_size} cells of the {' x '.join(map(str, t.grid_shape))} grid over "
                     f"{', '.join(t.factors)}; seeds per cell {int(seeds.min())}–{int(seeds.max())} ({int(seeds.sum())} runs).")
        for note in t.notes:
            lines.append(f"- {note}")
        terms = self.model_terms
        shown = ", ".join(terms) if len(terms) <= 24 else ", ".join(terms[:24]) + f", ... ({len(terms)} terms)"
        if t.is_complete:
            shown = f"all {len(terms)} terms (the full factorial: nothing is aliased)"
        lines += ["", f"Model fitted (hierarchical, every identifiable term): {shown}.",
                  f"Intervals: {self.interval_source}.", ""]
        lines.append("Defining relation (terms aliased with the mean): "
                     + ("I = " + " = ".join(self.defining_relation) if self.defining_relation else "none"))
        lines += ["", "## Effects", ""]
        cols = ["term", "support", "aliases", "contrast", "contrast_low", "contrast_high", "variance", "variance_low", "variance_high"]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for _, row in self.effects.iterrows():
            cells = []
            for c in cols:
                v = row[c]
                cells.append("–" if isinstance(v, float) and math.isnan(v) else (f"{v:.4g}" if isinstance(v, float) else str(v)))
            lines.append("| " + " | ".join(cells).replace("\n", " ") + " |")
        lines += ["", f"## Shapley values of the switch {self.baseline} -> {self.target}", ""]
        lines.append("| factor | shapley | low | high | identified |")
        lines.append("|---|---|---|---|---|")
        for _, row in self.shapley.iterrows():
            lines.append(f"| {row['factor']} | {row['shapley']:.4g} | {row['low']:.4g} | {row['high']:.4g} | {row['identified']} |")
        lines += ["", "## Claims this design cannot support", ""]
        lines += [f"- {c}" for c in self.claims] or ["- none: every effect up to the order shown is identified"]
        return "\n".join(lines) + "\n"


def analyse(
    table: AblationTable,
    *,
    max_order: int = 2,
    claim_order: int = 2,
    baseline: Mapping[str, Any] | None = None,
    target: Mapping[str, Any] | None = None,
    n_draws: int = 2000,
    rng_seed: int = 0,
) -> TableReport:
    """The alias structure, the supported estimates and the unsupported claims of an ablation table.

    ``max_order``: terms shown in ``effects`` (the model itself takes every identifiable term, of any order).
    ``claim_order``: an alias with a term of at most this order makes a claim unsupported. ``baseline`` /
    ``target``: the switch whose Shapley values are reported (default: first and last level of every factor).
    Intervals of term variances come from ``n_draws`` normal draws of the coefficients (``rng_seed``).
    """
    for name, given in (("max_order", max_order), ("claim_order", claim_order)):
        if not isinstance(given, (int, np.integer)) or isinstance(given, bool) or given < 1:
            raise invalid(name, given, "an integer >= 1")
    k, shape = table.n_factors, table.grid_shape
    full = Basis.of(table.factors, shape, None if table.grid_size <= MAX_ALIAS_COLUMNS else 3)
    x_all = full.columns(table.cells, shape)
    weights = table.seeds_per_cell.astype(np.float64)
    root_w = np.sqrt(weights)[:, None]

    # Hierarchical model: a term joins if its columns add their full width to the rank.
    model: list[int] = []
    partial: dict[int, int] = {}
    current = np.zeros((len(table.cells), 0))
    rank = 0
    for m in full.terms:
        block = x_all[:, full.blocks[m]]
        trial = np.hstack([current, block])
        new_rank = np.linalg.matrix_rank(trial * root_w, tol=TOLERANCE * max(1.0, np.abs(trial).max()) * max(trial.shape))
        if new_rank == rank + block.shape[1]:
            model.append(m)
            current, rank = trial, new_rank
        elif new_rank > rank:
            partial[m] = new_rank - rank
    model_cols = np.concatenate([np.arange(full.blocks[m].start, full.blocks[m].stop) for m in model])
    outside = [m for m in full.terms if m not in model]
    x_m = x_all[:, model_cols]
    gram = x_m.T @ (weights[:, None] * x_m)
    gram_inv = np.linalg.inv(gram)

    # Alias matrix: what each model coefficient absorbs of the terms outside the model.
    aliases: dict[str, dict[str, float]] = {}
    alias_of: dict[int, dict[int, float]] = {m: {} for m in model}
    if outside:
        out_cols = np.concatenate([np.arange(full.blocks[m].start, full.blocks[m].stop) for m in outside])
        alias = gram_inv @ x_m.T @ (weights[:, None] * x_all[:, out_cols])
        row_of = _packed_slices(full.blocks, model)
        col_of = _packed_slices(full.blocks, outside)
        for m in model:
            for u in outside:
                sub = alias[row_of[m], col_of[u]]
                size = float(np.sqrt((sub**2).sum() / max(sub.shape[0], sub.shape[1])))
                if size > 1e-8:
                    # For one column each, the signed coefficient (+1 / -1 on a regular fraction).
                    alias_of[m][u] = float(sub[0, 0]) if sub.size == 1 else size
        for m in model:
            aliases[full.name(m)] = {full.name(u): v for u, v in sorted(alias_of[m].items(), key=lambda t: (bin(t[0]).count("1"), t[0]))}
    # A single-column alias carries its sign (I = -A:B:C for the other half of a 2^(3-1) design).
    defining = [("-" if alias_of[0][u] < 0 and full.blocks[u].stop - full.blocks[u].start == 1 else "") + full.name(u)
                for u in sorted(alias_of.get(0, {}), key=lambda u: (bin(u).count("1"), u))] if 0 in alias_of else []

    # Estimates: weighted least squares on cell means = OLS on every run.
    means = table.means
    beta = gram_inv @ x_m.T @ (weights * means)
    pure_df = int((weights - 1).sum())
    n_runs = int(weights.sum())
    if pure_df > 0:
        sigma2 = float(sum(((r - r.mean()) ** 2).sum() for r in table.runs) / pure_df)
        dof, source = pure_df, f"95% t-intervals from the pooled within-cell seed variance ({pure_df} degrees of freedom)"
    elif n_runs > len(model_cols):
        dof = n_runs - len(model_cols)
        sigma2 = float((weights * (means - x_m @ beta) ** 2).sum() / dof)
        source = f"no replicate seeds: 95% t-intervals from the residual variance ({dof} degrees of freedom; includes lack of fit)"
    else:
        dof, sigma2 = 0, math.nan
        source = "no replicate seeds and a saturated model: no intervals"
    covariance = sigma2 * gram_inv
    t = t_quantile_975(dof) if dof > 0 else math.nan
    rng = np.random.default_rng(rng_seed)
    draws = rng.multivariate_normal(beta, covariance, size=n_draws, method="eigh") if dof > 0 else None
    position = {}
    start = 0
    for m in model:
        width = full.blocks[m].stop - full.blocks[m].start
        position[m] = slice(start, start + width)
        start += width

    rows, claims = [], []
    for m in (m for m in full.terms if 0 < bin(m).count("1") <= max_order):
        name = full.name(m)
        order = bin(m).count("1")
        row: dict[str, Any] = {"term": name, "order": order, "in_model": m in model}
        two_level = all(shape[i] == 2 for i in range(k) if m >> i & 1)
        row.update(contrast=math.nan, contrast_low=math.nan, contrast_high=math.nan, variance=math.nan, variance_low=math.nan, variance_high=math.nan)
        if m in model:
            coef = beta[position[m]]
            row["variance"] = float((coef**2).sum())
            if draws is not None:
                v = (draws[:, position[m]] ** 2).sum(axis=1)
                row["variance_low"], row["variance_high"] = map(float, np.percentile(v, [2.5, 97.5]))
            if two_level:
                row["contrast"] = 2.0 * float(coef[0])
                half = 2.0 * t * math.sqrt(covariance[position[m], position[m]][0, 0]) if dof > 0 else math.nan
                row["contrast_low"], row["contrast_high"] = row["contrast"] - half, row["contrast"] + half
            confounded = {u: c for u, c in alias_of[m].items()}
            low_order = [u for u in confounded if bin(u).count("1") <= claim_order]
            row["aliases"] = ", ".join(f"{c:+.3g} {full.name(u)}" for u, c in sorted(confounded.items(), key=lambda t: (bin(t[0]).count("1"), t[0])))
            if low_order:
                row["support"] = "aliased"
                claims.append(f"the {name} effect is aliased with {', '.join(full.name(u) for u in low_order)} in this design: "
                              f"its estimate is {name} " + " ".join(f"{confounded[u]:+.3g} x {full.name(u)}" for u in low_order) + " (and any higher-order aliases)")
            elif confounded:
                row["support"] = f"clear of order <= {claim_order}"
            else:
                row["support"] = "identified"
        else:
            row["aliases"] = ""
            row["support"] = "partially estimable" if m in partial else "not estimable"
            dependent = [full.name(u) for u in model if _shares_columns(x_all, full, m, u, weights)]
            what = f"confounded with {', '.join(dependent)}" if dependent else "not separable from the terms already fitted"
            row["aliases"] = ", ".join(dependent)
            claims.append(f"the {name} effect cannot be estimated from these cells: it is {what}")
        rows.append(row)
    effects = pd.DataFrame(rows, columns=["term", "order", "in_model", "support", "aliases", "contrast", "contrast_low", "contrast_high",
                                          "variance", "variance_low", "variance_high"])

    # Shapley values of the switch from baseline to target.
    base_idx = table.cell_of(baseline, "baseline") if baseline is not None else tuple(0 for _ in table.factors)
    top_idx = table.cell_of(target, "target") if target is not None else tuple(n - 1 for n in shape)
    players, switch_cells, shapley_w = switch_shapley_weights(table, base_idx, top_idx)
    x_switch = full.columns(switch_cells, shape)
    functional = shapley_w @ x_switch  # (k, width of the full basis)
    row_space = np.linalg.pinv(x_all * root_w) @ (x_all * root_w)
    shap_rows = []
    estimate = functional[:, model_cols] @ beta
    for j, i in enumerate(players):
        c = functional[j]
        identified = bool(np.allclose(c @ row_space, c, atol=1e-8 * max(1.0, np.abs(c).max())))
        value = float(estimate[j])
        half = t * math.sqrt(float(functional[j, model_cols] @ covariance @ functional[j, model_cols])) if dof > 0 else math.nan
        shap_rows.append({"factor": table.factors[i], "shapley": value, "low": value - half, "high": value + half, "identified": identified})
        if not identified:
            assumed = [full.name(u) for u in outside if np.abs(c[full.blocks[u]]).max() > 1e-12]
            claims.append(f"the Shapley value of {table.factors[i]} for this switch is not identified by these cells: "
                          f"its estimate assumes {', '.join(assumed[:6])}{' ...' if len(assumed) > 6 else ''} to be zero")
    for i in range(k):
        if i not in players:
            shap_rows.append({"factor": table.factors[i], "shapley": 0.0, "low": 0.0, "high": 0.0, "identified": True})
    shapley = pd.DataFrame(shap_rows).set_index("factor").loc[list(table.factors)].reset_index()
    return TableReport(
        table=table,
        effects=effects,
        shapley=shapley,
        defining_relation=defining,
        aliases=aliases,
        claims=claims,
        baseline=table.cell_dict(base_idx),
        target=table.cell_dict(top_idx),
        interval_source=source,
        model_terms=[full.name(m) for m in model],
    )


def _shares_columns(x_all: np.ndarray, basis: Basis, m: int, u: int, weights: np.ndarray) -> bool:
    """Whether term m's columns on these cells are not orthogonal to those of model term u (they are confounded)."""
    a = x_all[:, basis.blocks[m]] * np.sqrt(weights)[:, None]
    b = x_all[:, basis.blocks[u]] * np.sqrt(weights)[:, None]
    return bool(np.abs(a.T @ b).max() > 1e-8 * len(weights))


__all__ = ["AblationTable", "TableReport", "from_table", "analyse", "contrast_basis", "Basis"]


def _packed_slices(blocks, terms) -> dict:
    """Where each term's columns sit once the blocks of `terms` are packed side by side, in that order."""
    out, start = {}, 0
    for m in terms:
        width = blocks[m].stop - blocks[m].start
        out[m] = slice(start, start + width)
        start += width
    return out
