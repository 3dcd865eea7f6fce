"""Results as a flat table: one row per run and budget, for spreadsheets, pandas and `fi-sim attribute TABLE`.

A results Dataset is labelled and multi-dimensional; most people who read an ablation table want it long:
one column per factor (the level), a ``seed`` column, and one column per scalar metric. :func:`to_table`
writes exactly that, and :func:`export` writes it as CSV or parquet (``fi-sim export DIR``). Metric columns
carry their kind in their name, ``true:<metric>``, ``proxy:<metric>`` or ``channel:<metric>`` (a
measurement of the reward channel itself), because a table loses the attrs that say which is which.

Variables with more dimensions than the factors and the seed (by depth, by skill, by step) are not scalar
per run and are left out; training-side metrics have no budget dimension and repeat on every budget row of
their run. Runs that were never run (cells outside a listed design) are dropped; runs that failed keep their
row, with NaN metrics and their ``status``, so that a reader sees them.

This module lives outside :mod:`fi_sim.attribution`, which reads tables from anywhere
(:func:`fi_sim.attribution.from_table`) and must not import the simulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from fi_sim.errors import ValidationError, invalid

FORMATS = ("csv", "parquet")
SEED_COLUMN = "seed"
STATUS_COLUMN = "status"
TRUTH_KINDS = ("true", "proxy", "channel")


def metric_column(name: str, truth: str | None) -> str:
    """The column of a metric: ``<kind>:<name>`` where the variable says its kind, else the bare name."""
    return f"{truth}:{name}" if truth in TRUTH_KINDS else name


NON_FACTOR_DIMS = ("seed", "depth", "skill", "step", "k")
"""Dimensions of results that are not factors: replicates, and per-item or per-step axes."""


def _factor_dims(ds: xr.Dataset) -> list[str]:
    """Factor dimensions in the Dataset's order: every dimension but seed and the per-item / per-step axes."""
    return [str(d) for d in ds.dims if d not in NON_FACTOR_DIMS]


def to_table(ds: xr.Dataset, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The results as a long DataFrame: one row per run and budget; see the module docstring.

    ``metrics`` restricts the metric columns to these variable names (default: every scalar metric).
    The factor columns come first, in the Dataset's factor order, then ``seed``, ``status`` (where the
    results have one) and the metrics; rows are in the Dataset's C order, so that a full factorial reads back
    with its levels in their original order.
    """
    if not isinstance(ds, xr.Dataset):
        raise invalid("ds", type(ds).__name__, "an xarray.Dataset of results (fi_sim.load_results(DIR))")
    factors = _factor_dims(ds)
    if not factors:
        raise invalid("ds.dims", list(ds.dims), "at least one factor dimension")
    if SEED_COLUMN not in ds.dims:
        raise invalid("ds.dims", list(ds.dims), "a 'seed' dimension (one run per cell and seed)")
    row_dims = factors + [SEED_COLUMN]
    allowed = set(row_dims)
    scalar = [str(n) for n, v in ds.data_vars.items() if set(v.dims) <= allowed and n not in ("status", "run_id")
              and (np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.bool_))]
    if metrics is not None:
        unknown = [m for m in metrics if m not in scalar]
        if unknown:
            raise invalid("metrics", unknown, f"scalar metrics of the results: {scalar}")
        scalar = list(metrics)
    if not scalar:
        raise invalid("ds.data_vars", list(ds.data_vars), "at least one metric with only factor and seed dimensions")

    shape = [ds.sizes[d] for d in row_dims]
    index = np.indices(shape).reshape(len(shape), -1)
    columns: dict[str, Any] = {}
    for axis, dim in enumerate(row_dims):
        labels = np.asarray(ds[dim].values) if dim in ds.coords else np.arange(ds.sizes[dim])
        columns[dim] = labels[index[axis]]

    def spread(var: xr.DataArray) -> np.ndarray:
        # Broadcast a variable without some factor (a training metric has no budget) over every row.
        full = var.broadcast_like(xr.DataArray(np.empty(shape), dims=row_dims, coords={d: ds[d] for d in row_dims if d in ds.coords}))
        return np.asarray(full.transpose(*row_dims).values).reshape(-1)

    keep = np.ones(index.shape[1], bool)
    if "status" in ds.data_vars and set(ds["status"].dims) <= allowed:
        codes = spread(ds["status"]).astype(int)
        meanings = str(ds["status"].attrs.get("flag_meanings", "")).split()
        values = [int(v) for v in np.asarray(ds["status"].attrs.get("flag_values", []))]
        names = dict(zip(values, meanings))
        status = np.array([names.get(c, str(c)) for c in codes], dtype=object)
        keep &= status != "not_run"
        columns[STATUS_COLUMN] = status
    for name in scalar:
        columns[metric_column(name, ds[name].attrs.get("truth"))] = spread(ds[name]).astype(np.float64)
    table = pd.DataFrame(columns)[keep].reset_index(drop=True)
    table.attrs["factors"] = list(factors)
    return table


def export(ds_or_dir: xr.Dataset | str | Path, path: str | Path, fmt: str | None = None,
           metrics: Sequence[str] | None = None) -> Path:
    """Write :func:`to_table` of a Dataset (or of a results directory) to ``path`` as CSV or parquet.

    ``fmt`` defaults to the path's suffix. CSV floats are written with 17 significant digits, so that
    reading them back (pandas ``float_precision='round_trip'``, as :func:`fi_sim.attribution.from_table`
    does) gives the same numbers bit for bit.
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise invalid("format", fmt, f"one of {list(FORMATS)} (or a path ending in .csv / .parquet)")
    if isinstance(ds_or_dir, (str, Path)):
        from fi_sim.engine.store import load_results

        ds = load_results(ds_or_dir)
    else:
        ds = ds_or_dir
    table = to_table(ds, metrics)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        table.to_csv(path, index=False, float_format="%.17g")
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValidationError([_missing("pyarrow")]) from None
        table.to_parquet(path, index=False)
    return path


def _missing(package: str):
    from fi_sim.errors import Problem

    return Problem("format", "parquet", f"csv, or parquet once the '{package}' package is installed (pip install 'fi_sim[parquet]')")


__all__ = ["to_table", "export", "metric_column", "FORMATS"]
