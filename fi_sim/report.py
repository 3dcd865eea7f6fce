"""Turn a results directory into `report.md` with figures: the study, the truth about its gain, the channel.

The main effects and interactions are the exact functional ANOVA of the seed-mean gain under the uniform
design (from `fi_sim.attribution`), each with its seed standard error, so the report states what caused the
gain in this study rather than estimating it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from fi_sim.attribution import effect_summary
from fi_sim.engine.store import RunDirectory, load_results
from fi_sim.factors import FACTOR_NAMES
from fi_sim.plots import gain_heatmap, interaction_plot, training_curves

OUTCOME = "gain"


def _fmt(x, digits=3, signed=False) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def effects(ds: xr.Dataset, outcome: str = OUTCOME) -> xr.Dataset | None:
    """Main effects and pairwise interactions of `outcome` (None when the design is not a complete grid)."""
    y = ds[outcome]
    fixed = [d for d in y.dims if d != "seed" and y.sizes[d] < 2]
    y = y.isel({d: 0 for d in fixed}, drop=True)  # a factor held fixed explains nothing
    if bool(y.isnull().all("seed").any()) or len(y.dims) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return effect_summary(y, max_order=2)


def _level_rows(study: dict) -> list[list[str]]:
    rows = []
    for f in FACTOR_NAMES:
        for lvl in study["factors"][f]:
            params = ", ".join(f"{k}={v}" for k, v in lvl["params"].items()
                               if k not in ("width", "num_layers", "num_heads", "batch_size"))
            rows.append([f, lvl["level"], f"{lvl['preset']} ({lvl['mechanism']})", params or "–"])
    return rows


def write_report(path: str | Path) -> Path:
    """Write DIR/report.md and DIR/figures/*.png for the results in DIR; returns the report's path."""
    rd = RunDirectory(Path(path))
    ds = load_results(rd.path)
    study = json.loads(ds.attrs["study"])
    figdir = rd.path / "figures"
    figdir.mkdir(exist_ok=True)
    gain = ds[OUTCOME]
    status = ds["status"]
    n_ok, n_bad = int((status == 0).sum()), int((status == 1).sum())
    cells = int(np.prod([ds.sizes[f] for f in FACTOR_NAMES]))
    lines = [f"# fi_sim report: {study['study']['name']}", ""]
    if study["study"].get("description"):
        lines += [study["study"]["description"], ""]
    w = study["world"]
    lines += [
        "## Study",
        "",
        f"- fi_sim {ds.attrs['fi_sim_version']}, study hash `{ds.attrs['study_hash'][:16]}`; results in `results.nc` "
        "(`fi_sim.load_results(DIR)`).",
        f"- World: chain task family, values mod {w['modulus']}, {w['num_skills']} skills, depth <= {w['max_depth']}, "
        f"world seed {w['seed']}; {w['eval_size']} held-out evaluation items (skills {w['eval_skills']}, "
        f"depths {w['eval_depths']}).",
        f"- Design: {study['design']['kind'].replace('_', ' ')} over {cells} interface cells x "
        f"{ds.sizes['seed']} seeds; {n_ok} post-training runs finished"
        + (f", **{n_bad} non-finite (left out)**" if n_bad else "") + ".",
        f"- Outcome: `{OUTCOME}` = {gain.attrs['description']} ({gain.attrs['truth']}; {gain.attrs['units']}).",
        "",
        _table(["factor", "level", "preset (mechanism)", "parameters"], _level_rows(study)),
        "",
    ]

    mean = gain.mean("seed")
    lo, hi = float(mean.min()), float(mean.max())
    lines += ["## The gain", "",
              f"Mean gain over all cells {_fmt(float(mean.mean()), signed=True)}; cell means range from "
              f"{_fmt(lo, signed=True)} to {_fmt(hi, signed=True)}."]
    if "data" in mean.dims:
        for level in mean["data"].values:
            m = mean.sel(data=level)
            lines.append(f"With data `{level}` the gain ranges from {_fmt(float(m.min()), signed=True)} to "
                         f"{_fmt(float(m.max()), signed=True)} depending on the other five factors.")
    lines += ["", "![gain for every cell](figures/gain_by_cell.png)", ""]
    gain_heatmap(gain, figdir / "gain_by_cell.png")

    summary = effects(ds)
    if summary is None:
        lines += ["## Attribution", "", "The design is not a complete grid over factors with two or more levels, "
                  "so the functional ANOVA is not computed here; use `fi_sim.attribution` on a complete sub-grid.",
                  ""]
    else:
        z = summary["contrast"] / summary["contrast_se"]
        main = summary.where(summary["order"] == 1, drop=True)
        inter = summary.where(summary["order"] == 2, drop=True)
        header = ["term", "effect (2-level contrast)", "seed SE", "abs(effect) / SE", "rms", "rms SE",
                  "share of variance"]

        def rows(part):
            out = []
            for t in part["term"].values:
                r = summary.sel(term=t)
                out.append([f"`{t}`", _fmt(float(r["contrast"]), signed=True), _fmt(float(r["contrast_se"])),
                            _fmt(abs(float(z.sel(term=t))), 1), _fmt(float(r["rms"])), _fmt(float(r["rms_se"])),
                            _fmt(float(r["share"]), 3)])
            return out

        top = inter.sortby("variance", ascending=False)
        lines += [
            "## Attribution: exact functional ANOVA of the gain",
            "",
            "Uniform design over the levels, seed-mean surface. For a two-level factor the effect is mean(gain | "
            "second level) - mean(gain | first level); an interaction's effect follows the 2^k factorial "
            "convention. Standard errors are over seeds; rms is the term's standard deviation.",
            "",
            "### Main effects",
            "",
            _table(header, rows(main)),
            "",
            "### Largest pairwise interactions",
            "",
            _table(header, rows(top.isel(term=slice(0, 6)))),
            "",
        ]
        if top.sizes["term"]:
            a, b = str(top["term"].values[0]).split(":")
            fig = interaction_plot(gain, a, b, figdir / f"interaction_{a}_{b}.png")
            lines += [f"The most entangled pair is `{a}` x `{b}`:", "", f"![interaction]({fig.relative_to(rd.path)})",
                      ""]

    lines += ["## Reward channel: nominal against measured", "",
              "Measured over every post-training sample, where true correctness is known.", ""]
    rows = []
    for lvl in study["factors"]["verifier"]:
        p = lvl["params"]
        sel = {"verifier": lvl["level"]}
        fp = float(ds["reward_false_positive_rate"].sel(sel).mean())
        fn = float(ds["reward_false_negative_rate"].sel(sel).mean())
        rows.append([lvl["level"], lvl["mechanism"], _fmt(p.get("false_positive_rate", 0.0)), _fmt(fp, 4),
                     _fmt(p.get("false_negative_rate", 0.0)), _fmt(fn, 4)])
    lines += [_table(["verifier", "mechanism", "nominal FP", "measured FP", "nominal FN", "measured FN"], rows), ""]

    if "curve_true_accuracy" in ds and "verifier" in ds.dims:
        training_curves(ds, "verifier", figdir / "training_curves.png")
        lines += ["![training curves](figures/training_curves.png)", ""]
    lines += ["## Reproduce", "", "```", "fi-sim card study.toml     # the interface cards of every cell",
              "fi-sim report .            # this report", "```", ""]
    out = rd.path / "report.md"
    rd.write_text("report.md", "\n".join(lines))
    return out
