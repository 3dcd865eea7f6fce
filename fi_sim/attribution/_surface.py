"""The labelled response surface that every attribution function reads, validated once.

A response surface is an ``xarray.DataArray`` whose dimensions are factors (categorical, coordinates = level
names), optionally with a ``seed`` dimension. Everything in the attribution lab first turns it into a
:class:`Surface`: plain numpy arrays in a fixed factor order, the seed-mean outcome of every cell, and the
per-seed outcomes kept aside for standard errors. Bad input is refused here, with a
:class:`~fi_sim.errors.ValidationError` that names the field, the value given and what is allowed, so that
the numerical code further down can assume a clean, complete grid.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import xarray as xr

from fi_sim.errors import Problem, ValidationError, invalid

SEED_DIM = "seed"
"""The only reserved dimension name: replicate runs of the same cell."""

MAX_FACTORS = 16
"""Exact computation enumerates 2^n coalitions; beyond this many factors it is refused rather than slow."""

MAX_LATTICE_SIZE = 50_000_000
"""The full fANOVA keeps one conditional-mean table per subset: prod(levels + 1) numbers in all."""


class MissingSeedsWarning(UserWarning):
    """Some seeds of some cells were NaN (failed runs) and were left out of the cell means."""


@dataclass(frozen=True)
class Surface:
    """A validated response surface as numpy arrays, factors in the DataArray's dimension order."""

    factors: tuple[str, ...]
    levels: dict[str, tuple]
    mean: np.ndarray
    """Seed-mean outcome, one axis per factor (float64, all finite)."""
    per_seed: np.ndarray | None
    """Outcome per seed: the factor axes, then the seed axis last (may hold NaN); None without seeds."""
    seeds: tuple | None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mean.shape

    @property
    def n_factors(self) -> int:
        return len(self.factors)

    @property
    def n_seeds(self) -> int:
        return 0 if self.per_seed is None else self.per_seed.shape[-1]

    def factor_index(self, factor: str, field: str = "factor") -> int:
        if factor not in self.factors:
            raise invalid(field, factor, f"one of the factors {list(self.factors)}")
        return self.factors.index(factor)

    def level_index(self, factor: str, level: Any, field: str) -> int:
        levels = self.levels[factor]
        for i, known in enumerate(levels):
            if _same_label(known, level):
                return i
        raise invalid(field, level, f"a level of factor {factor!r}: {list(levels)}")

    def cell_indices(self, cell: Mapping[str, Any], field: str) -> tuple[int, ...]:
        """Indices of a cell given as {factor: level} naming every factor exactly once."""
        if not isinstance(cell, Mapping):
            raise invalid(field, cell, "a dict {factor: level} naming every factor")
        problems = []
        unknown = [f for f in cell if f not in self.factors]
        if unknown:
            problems.append(Problem(field, sorted(map(str, unknown)), f"factors among {list(self.factors)}"))
        missing = [f for f in self.factors if f not in cell]
        if missing:
            problems.append(Problem(field, f"missing factors {missing}", f"a level for every factor {list(self.factors)}"))
        if problems:
            raise ValidationError(problems)
        return tuple(self.level_index(f, cell[f], f"{field}[{f!r}]") for f in self.factors)

    def cell_dict(self, indices: Sequence[int]) -> dict[str, Any]:
        return {f: self.levels[f][i] for f, i in zip(self.factors, indices)}

    def coords(self, factors: Iterable[str]) -> dict[str, list]:
        return {f: list(self.levels[f]) for f in factors}


def _plain(value: Any) -> Any:
    """A numpy scalar label as the plain Python value, so that dict keys and messages read naturally."""
    return value.item() if isinstance(value, np.generic) else value


def _same_label(known: Any, given: Any) -> bool:
    try:
        return bool(known == given)
    except Exception:  # labels of incomparable types are simply different
        return False


def term_name(factors: Iterable[str]) -> str:
    """Name of a fANOVA term or coalition, e.g. ``base:data``; the empty term is ``(mean)``."""
    factors = list(factors)
    return ":".join(factors) if factors else "(mean)"


def ordered(subset: Iterable[str], factor_order: Sequence[str]) -> tuple[str, ...]:
    subset = set(subset)
    return tuple(f for f in factor_order if f in subset)


def as_surface(y: Any, field: str = "y", *, warn: bool = True) -> Surface:
    """Validate a response surface and reduce it to seed-mean numpy arrays.

    NaN (or infinite) entries along ``seed`` are failed runs: a cell's mean is taken over its finite seeds,
    with a :class:`MissingSeedsWarning` saying how many values were dropped. A cell with no finite seed at
    all (or a non-finite value in a surface without seeds) cannot be attributed and raises.
    """
    if isinstance(y, xr.Dataset):
        raise invalid(
            field,
            f"an xarray.Dataset with variables {list(y.data_vars)}",
            "an xarray.DataArray: pick one outcome, e.g. ds['accuracy']",
        )
    if not isinstance(y, xr.DataArray):
        raise invalid(field, type(y).__name__, "an xarray.DataArray whose dimensions are factors (and optionally 'seed')")
    if not (np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.bool_)):
        raise invalid(f"{field}.dtype", str(y.dtype), "a numeric dtype (the outcome of each cell)")

    factors = tuple(str(d) for d in y.dims if d != SEED_DIM)
    if not factors:
        raise invalid(f"{field}.dims", list(y.dims), "at least one factor dimension besides 'seed'")
    if len(factors) > MAX_FACTORS:
        raise invalid(f"{field}.dims", f"{len(factors)} factors", f"at most {MAX_FACTORS} factors (exact computation enumerates 2^n coalitions)")

    problems: list[Problem] = []
    levels: dict[str, tuple] = {}
    for dim in factors:
        size = y.sizes[dim]
        if dim in y.coords:
            labels = tuple(_plain(v) for v in y.coords[dim].values)
        else:
            labels = tuple(range(size))
        if size < 2:
            problems.append(Problem(f"{field}.sizes[{dim!r}]", size, "at least 2 levels per factor (drop a fixed factor with .squeeze() or .isel())"))
        seen, duplicates = set(), []
        for label in labels:
            key = repr(label)
            if key in seen and label not in duplicates:
                duplicates.append(label)
            seen.add(key)
        if duplicates:
            problems.append(Problem(f"{field}.coords[{dim!r}]", duplicates, "unique level names along each factor"))
        levels[dim] = labels
    if SEED_DIM in y.dims:
        if y.sizes[SEED_DIM] < 1:
            problems.append(Problem(f"{field}.sizes['seed']", 0, "at least one seed"))
        elif SEED_DIM in y.coords:
            seed_labels = [repr(_plain(v)) for v in y.coords[SEED_DIM].values]
            if len(set(seed_labels)) != len(seed_labels):
                problems.append(Problem(f"{field}.coords['seed']", "duplicate seed labels", "unique seed labels"))
    if problems:
        raise ValidationError(problems)
    lattice = math.prod(n + 1 for n in (len(levels[f]) for f in factors))
    if lattice > MAX_LATTICE_SIZE:
        raise invalid(f"{field}.sizes", dict(y.sizes), f"a grid whose prod(levels + 1) is at most {MAX_LATTICE_SIZE:,} (exact fANOVA tables)")

    if SEED_DIM in y.dims:
        per_seed = np.asarray(y.transpose(*factors, SEED_DIM).values, dtype=np.float64)
        seeds = tuple(_plain(v) for v in y.coords[SEED_DIM].values) if SEED_DIM in y.coords else tuple(range(y.sizes[SEED_DIM]))
        finite = np.isfinite(per_seed)
        n_finite = finite.sum(axis=-1)
        _refuse_empty_cells(n_finite == 0, factors, levels, field, "no finite value along 'seed' (every seed failed)")
        dropped = int(per_seed.size - finite.sum())
        if dropped and warn:
            n_cells = int((n_finite < per_seed.shape[-1]).sum())
            warnings.warn(
                f"{field}: dropped {dropped} non-finite seed value(s) in {n_cells} cell(s); "
                "those cells are the mean over their available seeds",
                MissingSeedsWarning,
                stacklevel=3,
            )
        mean = np.where(finite, per_seed, 0.0).sum(axis=-1) / n_finite
    else:
        per_seed, seeds = None, None
        mean = np.asarray(y.transpose(*factors).values, dtype=np.float64)
        _refuse_empty_cells(~np.isfinite(mean), factors, levels, field, "a non-finite outcome (and no seeds to fall back on)")
    return Surface(factors=factors, levels=levels, mean=mean, per_seed=per_seed, seeds=seeds)


def _refuse_empty_cells(bad: np.ndarray, factors, levels, field: str, what: str) -> None:
    if not bad.any():
        return
    cells = np.argwhere(bad)
    problems = [
        Problem(f"{field} cell {dict(zip(factors, (levels[f][i] for f, i in zip(factors, idx))))}", what, "a finite outcome in every cell")
        for idx in cells[:10]
    ]
    if len(cells) > 10:
        problems.append(Problem(field, f"{len(cells) - 10} more such cells", "a finite outcome in every cell"))
    raise ValidationError(problems)


def full_assignment(surface: Surface, assignment: Any, field: str) -> dict[str, Any]:
    """Validate {factor: level} naming every factor; returns it with levels as stored in the surface."""
    indices = surface.cell_indices(assignment, field)
    return surface.cell_dict(indices)


def default_endpoints(surface: Surface, attrs: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
    """The default baseline and target cells: the surface's attrs if it names them, else first and last levels.

    Analytic games store ``attrs['baseline']`` / ``attrs['target']``; a surface without them (or whose
    attrs no longer match its factors and levels, e.g. after a selection) is read as "levels are listed
    from the reference (first) to the treatment (last)".
    """
    attrs = attrs or {}
    first = {f: surface.levels[f][0] for f in surface.factors}
    last = {f: surface.levels[f][-1] for f in surface.factors}

    def from_attrs(key: str, fallback: dict) -> dict:
        given = attrs.get(key)
        if not isinstance(given, Mapping):
            return fallback
        try:
            return full_assignment(surface, given, key)
        except ValidationError:
            return fallback

    return from_attrs("baseline", first), from_attrs("target", last)
