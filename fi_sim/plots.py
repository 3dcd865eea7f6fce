"""Figures of a results Dataset (matplotlib, Agg backend: files only, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
import xarray as xr  # noqa: E402

FACTOR_ORDER = ("verifier", "base", "data", "optimizer", "scaffold", "budget")
MISSING_COLOR = "#bdbdbd"  # grey: far from the white of a zero on the diverging colour map


def _factors(y: xr.DataArray) -> list[str]:
    return [cast(str, d) for d in y.dims if d != "seed"]


def gain_heatmap(y: xr.DataArray, path: Path, title: str = "gain") -> Path:
    """Every cell of the design: rows are combinations of the first half of the factors, columns of the rest;
    each square shows the seed-mean value (and is annotated when the grid is small enough to read). A cell with
    no finite value (every run failed or none ran) is drawn grey and hatched, with a legend entry: missing is
    never shown as the white of a zero gain."""
    factors = _factors(y)
    mean = y.mean("seed") if "seed" in y.dims else y
    split = (len(factors) + 1) // 2
    rows, cols = factors[:split], factors[split:]
    stacked = mean.stack(row=rows, col=cols) if cols else mean.stack(row=rows).expand_dims(col=[""])
    grid = stacked.transpose("row", "col").values
    nr, nc = grid.shape
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * nc + 4), max(4, 0.38 * nr + 2)))
    lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad=MISSING_COLOR)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    fig.colorbar(im, ax=ax, label=f"{title} ({y.attrs.get('units', '')})")
    missing = np.argwhere(~np.isfinite(grid))
    for i, j in missing:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=MISSING_COLOR, edgecolor="dimgrey",
                               hatch="///", linewidth=0.0))
    if len(missing):
        fig.legend(handles=[Patch(facecolor=MISSING_COLOR, edgecolor="dimgrey", hatch="///",
                                  label=f"missing: no finished run ({len(missing)} cell(s))")],
                   loc="lower right", fontsize=8, frameon=False)

    def labels(index):
        return [" / ".join(str(v) for v in (t if isinstance(t, tuple) else (t,))) for t in index.values]

    ax.set_yticks(range(nr), labels(stacked.indexes["row"] if "row" in stacked.indexes else stacked["row"]))
    ax.set_xticks(range(nc), labels(stacked.indexes["col"]) if cols else [""], rotation=35, ha="right")
    ax.set_ylabel(" / ".join(rows))
    ax.set_xlabel(" / ".join(cols))
    if nr * nc <= 256:
        for i in range(nr):
            for j in range(nc):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:+.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(grid[i, j]) > 0.6 * lim else "black")
    ax.set_title(f"{title} for every cell (mean over {y.sizes.get('seed', 1)} seeds)")
    fig.tight_layout(rect=(0, 0.05, 1, 1) if len(missing) else None)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def interaction_plot(y: xr.DataArray, a: str, b: str, path: Path, title: str = "gain") -> Path:
    """Mean over all other factors against the levels of `a`, one line per level of `b`, with seed SE bars."""
    others = [d for d in _factors(y) if d not in (a, b)]
    per_seed = y.mean(others) if others else y
    mean = per_seed.mean("seed") if "seed" in per_seed.dims else per_seed
    n = per_seed.sizes.get("seed", 1)
    se = per_seed.std("seed", ddof=1) / np.sqrt(n) if n > 1 else xr.zeros_like(mean)
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(y.sizes[a])
    for level in y[b].values:
        ax.errorbar(x, mean.sel({b: level}).transpose(a).values, yerr=se.sel({b: level}).transpose(a).values,
                    marker="o", capsize=4, label=f"{b} = {level}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(x, [str(v) for v in y[a].values])
    ax.set_xlabel(a)
    ax.set_ylabel(f"{title} ({y.attrs.get('units', '')})")
    ax.set_title(f"{a} x {b}: mean over the other factors, +-1 seed SE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(ds: xr.Dataset, by: str, path: Path) -> Path:
    """True accuracy and proxy reward during post-training, averaged within each level of `by`."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for ax, name, label in ((axes[0], "curve_true_accuracy", "true accuracy of samples"),
                            (axes[1], "curve_proxy_reward", "proxy reward")):
        v = ds[name]
        for level in ds[by].values:
            part = v.sel({by: level})
            m = part.mean([d for d in part.dims if d != "step"])
            ax.plot(ds["step"].values, m.values, label=f"{by} = {level}")
        ax.set_xlabel("post-training step")
        ax.set_ylabel(label)
    axes[0].legend()
    fig.suptitle("post-training: truth beside proxy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
