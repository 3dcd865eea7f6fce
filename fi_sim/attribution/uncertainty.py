"""Seed uncertainty: bootstrap standard errors and percentile intervals for any truth quantity.

Seeds are the replicates of a response surface (one training run per cell and seed). The bootstrap draws
seed *indices* with replacement, jointly across cells: replicate b uses seeds idx[b] in every cell, so that
whatever the seeds share (a pretrained base, a data sample) stays paired, as it was in the study. The draws
come from ``numpy.random.default_rng(rng_seed)`` with a fixed default ``rng_seed = 0``, so that a report is
reproducible to the last digit; the vectorised paths in :mod:`fi_sim.attribution.truth` use exactly the
same draws as :func:`seed_uncertainty`, and agree with it.

A replicate in which some cell has no finite seed (every drawn seed of that cell failed) is dropped; the
number kept is recorded in the result's ``n_valid`` attribute.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping

import numpy as np
import xarray as xr

from fi_sim.errors import invalid

from ._surface import SEED_DIM, MissingSeedsWarning, as_surface, ordered, term_name

DEFAULT_N_BOOT = 200
DEFAULT_RNG_SEED = 0


def bootstrap_seed_indices(n_seeds: int, n_boot: int, rng_seed: int = DEFAULT_RNG_SEED) -> np.ndarray:
    """Seed indices of every bootstrap replicate, shape (n_boot, n_seeds), shared by all cells."""
    return np.random.default_rng(rng_seed).integers(0, n_seeds, size=(n_boot, n_seeds))


def bootstrap_cell_means(per_seed: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Cell means of each replicate: per_seed (*cells, n_seeds), indices (B, n_seeds) -> (B, *cells).

    A cell whose drawn seeds are all non-finite is NaN in that replicate.
    """
    drawn = np.moveaxis(per_seed[..., indices], -2, 0)  # (B, *cells, n_seeds)
    finite = np.isfinite(drawn)
    count = finite.sum(axis=-1)
    total = np.where(finite, drawn, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def complete_replicates(cell_means: np.ndarray) -> np.ndarray:
    """Which replicates (leading axis) have a finite mean in every cell."""
    return np.isfinite(cell_means.reshape(cell_means.shape[0], -1)).all(axis=1)


def summarize_replicates(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard error (ddof=1) and percentile interval over the leading (replicate) axis."""
    if replicates.shape[0] < 2:
        nan = np.full(replicates.shape[1:], np.nan)
        return nan, nan, nan
    se = replicates.std(axis=0, ddof=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(replicates, [tail, 100.0 - tail], axis=0)
    return se, low, high


def _check_options(n_boot: Any, level: Any) -> None:
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 2:
        raise invalid("n_boot", n_boot, "an integer >= 2 (bootstrap replicates)")
    if not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise invalid("level", level, "a confidence level strictly between 0 and 1, e.g. 0.95")


def _as_dataset(result: Any, factor_order) -> tuple[xr.Dataset, bool]:
    """A statistic's value as a Dataset; the flag says whether it was a Dataset to begin with."""
    if isinstance(result, xr.Dataset):
        return result, True
    if isinstance(result, xr.DataArray):
        return xr.Dataset({"estimate": result.rename(None)}), False
    if isinstance(result, Mapping):
        keys = list(result)
        labels = [term_name(ordered(k, factor_order)) if isinstance(k, (frozenset, set, tuple)) else str(k) for k in keys]
        dim = "factor" if all(isinstance(k, str) and k in factor_order for k in keys) else "term"
        da = xr.DataArray(np.array([float(result[k]) for k in keys]), dims=[dim], coords={dim: labels})
        return xr.Dataset({"estimate": da}), False
    return xr.Dataset({"estimate": xr.DataArray(np.asarray(result, dtype=np.float64))}), False


def seed_uncertainty(
    y: xr.DataArray,
    statistic: Callable[[xr.DataArray], Any],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    rng_seed: int = DEFAULT_RNG_SEED,
    level: float = 0.95,
) -> xr.Dataset:
    """Bootstrap over seeds of any statistic of a response surface.

    ``statistic`` maps a surface (with a ``seed`` dimension: the resampled seeds, relabelled 0..n-1) to a
    number, a numpy array, a DataArray, a Dataset or a dict (e.g. ``lambda y: switch_game(y, b, t).shapley()``).
    Returns a Dataset with ``estimate`` (the statistic on ``y`` itself), ``se`` (standard deviation of the
    replicates, ddof=1), ``ci_low`` / ``ci_high`` (percentile interval at ``level``); for a Dataset-valued
    statistic the variables are ``<name>``, ``<name>_se``, ``<name>_ci_low``, ``<name>_ci_high``. Without a
    ``seed`` dimension, or with one seed, the errors are NaN: one run says nothing about seed noise.
    """
    _check_options(n_boot, level)
    surface = as_surface(y, "y")
    estimate, was_dataset = _as_dataset(statistic(y), surface.factors)

    replicates: list[xr.Dataset] = []
    if surface.n_seeds >= 2:
        assert surface.per_seed is not None  # n_seeds >= 2 implies per-seed values
        indices = bootstrap_seed_indices(surface.n_seeds, n_boot, rng_seed)
        complete = complete_replicates(bootstrap_cell_means(surface.per_seed, indices))
        for b in np.flatnonzero(complete):
            resampled = y.isel({SEED_DIM: indices[b]}).assign_coords({SEED_DIM: np.arange(surface.n_seeds)})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MissingSeedsWarning)
                replicates.append(_as_dataset(statistic(resampled), surface.factors)[0])

    out = xr.Dataset()
    for name, est in estimate.data_vars.items():
        if len(replicates) >= 2:
            stacked = np.stack([np.asarray(r[name].transpose(*est.dims).values, dtype=np.float64) for r in replicates])
            se, low, high = summarize_replicates(stacked, level)
        else:
            se = low = high = np.full(est.shape, np.nan)
        prefix = name if was_dataset else ""
        out[prefix or "estimate"] = est
        for suffix, values in (("se", se), ("ci_low", low), ("ci_high", high)):
            out[f"{prefix}_{suffix}" if prefix else suffix] = est.copy(data=np.asarray(values, dtype=np.float64))
    out.attrs.update(
        n_boot=int(n_boot),
        n_valid=len(replicates),
        rng_seed=int(rng_seed),
        level=float(level),
        n_seeds=surface.n_seeds,
        method="bootstrap over seed indices, drawn jointly across cells; percentile intervals",
    )
    return out
