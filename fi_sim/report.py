"""Turn a results directory into `report.md` with figures: the study, the truth about its gain, the channel.

The main effects and interactions are the exact functional ANOVA of the seed-mean gain under the uniform
design (from `fi_sim.attribution`), each with its seed standard error, so the report states what caused the
gain in this study rather than estimating it.

The report says how many runs finished and how many were left out, and why (the `status` flags, see
`fi_sim.engine.faults`); when the ANOVA cannot be computed it says which cells are missing. Every string a user
wrote (study name, description, level names, parameters) is escaped before it enters the markdown (`md`), so a
`|`, a newline or HTML in a name cannot break a table or inject markup.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import cast

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


def md(value) -> str:
    """A user-provided value as inert markdown text: HTML special characters as entities, `|` escaped (tables),
    backticks as entities (code spans), every run of whitespace (newlines included) as one space, and a leading
    '#' escaped (headings)."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "&#96;")
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return "\\" + text if text.startswith("#") else text


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _varying(y: xr.DataArray) -> xr.DataArray:
    fixed = [d for d in y.dims if d != "seed" and y.sizes[d] < 2]
    return y.isel({d: 0 for d in fixed}, drop=True)  # a factor held fixed explains nothing


def effects(ds: xr.Dataset, outcome: str = OUTCOME) -> xr.Dataset | None:
    """Main effects and pairwise interactions of `outcome` (None when some cell has no finished seed or fewer
    than two factors vary; `skipped_because` says which)."""
    if skipped_because(ds, outcome) is not None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return effect_summary(_varying(ds[outcome]), max_order=2)


def planned(ds: xr.Dataset) -> xr.DataArray:
    """Which post-training cells x seeds the study's design asks for (a listed design leaves the others out)."""
    status = ds["status"]
    design = json.loads(ds.attrs["study"])["design"]
    if design.get("kind") != "listed":
        return xr.ones_like(status, dtype=bool)
    mask = np.zeros([ds.sizes[f] for f in FACTOR_NAMES], bool)
    for cell in design["cells"]:
        mask[tuple(cell)] = True
    bi = FACTOR_NAMES.index("budget")
    train = mask.any(axis=bi)
    dims = [f for f in FACTOR_NAMES if f != "budget"]
    return xr.DataArray(train, dims=dims).broadcast_like(status).transpose(*status.dims)


def status_counts(ds: xr.Dataset) -> dict[str, int]:
    """Planned runs by status (every status the results know, zeros included: ok, nonfinite, diverged,
    collapsed, not_run)."""
    status = ds["status"]
    codes = [int(c) for c in np.atleast_1d(status.attrs.get("flag_values", []))]
    names = str(status.attrs.get("flag_meanings", "")).split()
    meaning = dict(zip(codes, names)) or {-1: "not_run", 0: "ok", 1: "nonfinite", 2: "diverged"}
    values = status.values[planned(ds).values]
    order = [c for c in sorted(meaning) if c >= 0] + [c for c in sorted(meaning) if c < 0]
    counts = {meaning[c]: int(np.sum(values == c)) for c in order}
    unknown = int(np.sum(~np.isin(values, list(meaning))))
    if unknown:
        counts["unknown"] = unknown
    return counts


def _cell_name(coords: dict) -> str:
    return ", ".join(f"{f}={md(v)}" for f, v in coords.items())


def skipped_because(ds: xr.Dataset, outcome: str = OUTCOME) -> str | None:
    """Why the functional ANOVA of `outcome` cannot be computed (None when it can)."""
    y = _varying(ds[outcome])
    factors = [cast(str, d) for d in y.dims if d != "seed"]
    if len(factors) < 2:
        return (f"fewer than two factors have two or more levels ({', '.join(factors) or 'none'}), so there is "
                "nothing to apportion")
    empty = y.isnull().all("seed") if "seed" in y.dims else y.isnull()
    if not bool(empty.any()):
        return None
    # a training cell (all factors but the budget) with no seed at status ok: its runs failed or never ran
    want = planned(ds)
    status = ds["status"].where(want)
    reasons = []
    stacked = empty.stack(cell=factors)
    missing = stacked["cell"].values[stacked.values]
    for cell in missing:
        coords = dict(zip(factors, cell if isinstance(cell, tuple) else (cell,)))
        train = {f: v for f, v in coords.items() if f in status.dims}
        fixed = {d: 0 for d in status.dims if d != "seed" and d not in train}
        selected = status.sel(train).isel(fixed) if fixed else status.sel(train)
        runs = selected.values.ravel()
        runs = runs[np.isfinite(runs)].astype(int)
        if runs.size == 0:
            what = "not in the listed design"
        else:
            names = dict(zip([int(c) for c in np.atleast_1d(ds["status"].attrs.get("flag_values", []))],
                             str(ds["status"].attrs.get("flag_meanings", "")).split()))
            tally: dict[str, int] = {}
            for c in runs:
                tally[names.get(int(c), str(c))] = tally.get(names.get(int(c), str(c)), 0) + 1
            what = ", ".join(f"{n} {k}" for k, n in tally.items())
        reasons.append(f"{_cell_name(coords)} ({what})")
    k = len(missing)
    not_designed = sum(r.endswith("(not in the listed design)") for r in reasons)
    if not_designed == k:
        head = (f"the design is not a complete grid: {k} of {stacked.sizes['cell']} cells over the factors with two "
                "or more levels are not in it")
    else:
        head = f"{k} cell(s) have no finished seed"
    shown = "; ".join(reasons[:8]) + (f"; and {k - 8} more" if k > 8 else "")
    return f"{head}: {shown}"


def _bad_runs(ds: xr.Dataset, limit: int = 12) -> list[str]:
    """One markdown bullet per planned run that did not finish ok (the first `limit`)."""
    status = ds["status"].where(planned(ds))
    names = dict(zip([int(c) for c in np.atleast_1d(ds["status"].attrs.get("flag_values", []))],
                     str(ds["status"].attrs.get("flag_meanings", "")).split()))
    bad = (status != 0) & status.notnull()
    if not bool(bad.any()):
        return []
    dims = list(status.dims)
    idx = np.argwhere(bad.values)
    lines = []
    for row in idx[:limit]:
        coords = {d: status[d].values[i] for d, i in zip(dims, row)}
        seed = coords.pop("seed")
        varying = {d: v for d, v in coords.items() if ds.sizes[d] > 1} or coords
        code = int(status.values[tuple(row)])
        lines.append(f"  - {_cell_name(varying)}, seed {seed}: {names.get(code, code)}")
    if len(idx) > limit:
        lines.append(f"  - and {len(idx) - limit} more (`status` in results.nc)")
    return lines


def _level_rows(study: dict) -> list[list[str]]:
    rows = []
    for f in FACTOR_NAMES:
        for lvl in study["factors"][f]:
            params = ", ".join(f"{k}={v}" for k, v in lvl["params"].items()
                               if k not in ("width", "num_layers", "num_heads", "batch_size"))
            rows.append([f, md(lvl["level"]), f"{md(lvl['preset'])} ({md(lvl['mechanism'])})", md(params) or "–"])
    return rows


def layout_line(ds) -> str:
    """How the runs were laid out (their last bits depend on it), and whether that is the study's canonical layout."""
    try:
        layout = json.loads(ds.attrs.get("layout", "{}"))
    except ValueError:
        layout = {}
    if not layout:
        return "- Layout: not recorded (results from an fi_sim before the canonical layout)."
    where = f"{layout.get('platform', '?')}"
    if "cpu_parallelism" in layout:
        where += f", CPU parallelism {layout['cpu_parallelism']}"
    text = f"- Layout: device batch {layout.get('device_batch')} on {where}"
    if layout.get("canonical", True):
        return text + " (canonical: a fresh run of this study on this platform gives these bits)."
    return (text + f" — **not the canonical layout** (device batch {layout.get('canonical_device_batch')}): the "
            "results' last bits differ from a canonical run's; the surface agrees within seed noise.")


def write_report(path: str | Path) -> Path:
    """Write DIR/report.md and DIR/figures/*.png for the results in DIR; returns the report's path."""
    rd = RunDirectory(Path(path))
    ds = load_results(rd.path)
    study = json.loads(ds.attrs["study"])
    figdir = rd.path / "figures"
    figdir.mkdir(exist_ok=True)
    gain = ds[OUTCOME]
    counts = status_counts(ds)
    n_planned, n_ok = sum(counts.values()), counts.get("ok", 0)
    cells = int(np.prod([ds.sizes[f] for f in FACTOR_NAMES]))
    lines = [f"# fi_sim report: {md(study['study']['name'])}", ""]
    if study["study"].get("description"):
        lines += [md(study["study"]["description"]), ""]
    w = study["world"]
    lines += [
        "## Study",
        "",
        f"- fi_sim {ds.attrs['fi_sim_version']}, study hash `{ds.attrs['study_hash'][:16]}`; results in `results.nc` "
        "(`fi_sim.load_results(DIR)`).",
        layout_line(ds),
        f"- World: chain task family, values mod {w['modulus']}, {w['num_skills']} skills, depth <= {w['max_depth']}, "
        f"world seed {w['seed']}; {w['eval_size']} held-out evaluation items (skills {w['eval_skills']}, "
        f"depths {w['eval_depths']}).",
        f"- Design: {study['design']['kind'].replace('_', ' ')} over {cells} interface cells x "
        f"{ds.sizes['seed']} seeds; {n_planned} post-training runs.",
        "- Runs by status: " + ", ".join(f"{n} {k}" for k, n in counts.items())
        + ("." if n_ok == n_planned else
           f"; **{n_planned - n_ok} run(s) not ok are left out (their metrics are NaN, never averaged)**; "
           "nonfinite: NaN or inf in the trained parameters or scores; diverged: the KL to the base left its "
           "support; collapsed: true accuracy fell to 0 from a base that had some, far from the base "
           "(`fi_sim.engine.faults`); not_run: no finished chunk."),
        *_bad_runs(ds),
        f"- Outcome: `{OUTCOME}` = {gain.attrs['description']} ({gain.attrs['truth']}; {gain.attrs['units']}).",
        "",
        _table(["factor", "level", "preset (mechanism)", "parameters"], _level_rows(study)),
        "",
    ]

    mean = gain.mean("seed")
    lo, hi = float(mean.min()), float(mean.max())
    n_missing = int(mean.isnull().sum())
    lines += ["## The gain", "",
              f"Mean gain over all cells {_fmt(float(mean.mean()), signed=True)}; cell means range from "
              f"{_fmt(lo, signed=True)} to {_fmt(hi, signed=True)}"
              + (f" ({n_missing} of {mean.size} cells have no finished run and are left out; hatched in the "
                 "figure)." if n_missing else ".")]
    if "data" in mean.dims:
        for level in mean["data"].values:
            m = mean.sel(data=level)
            lines.append(f"With data {md(level)} the gain ranges from {_fmt(float(m.min()), signed=True)} to "
                         f"{_fmt(float(m.max()), signed=True)} depending on the other five factors.")
    lines += ["", "![gain for every cell](figures/gain_by_cell.png)", ""]
    gain_heatmap(gain, figdir / "gain_by_cell.png")

    why_not = skipped_because(ds)
    summary = None if why_not else effects(ds)
    if summary is None:
        lines += ["## Attribution", "", f"The functional ANOVA is not computed here: {why_not}. Use "
                  "`fi_sim.attribution` on a complete sub-grid (it leaves failed seeds out of cells that have "
                  "others).", ""]
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
    channel_rows = []
    for lvl in study["factors"]["verifier"]:
        p = lvl["params"]
        sel = {"verifier": lvl["level"]}
        fp = float(ds["reward_false_positive_rate"].sel(sel).mean())
        fn = float(ds["reward_false_negative_rate"].sel(sel).mean())
        channel_rows.append([md(lvl["level"]), md(lvl["mechanism"]), _fmt(p.get("false_positive_rate", 0.0)),
                             _fmt(fp, 4), _fmt(p.get("false_negative_rate", 0.0)), _fmt(fn, 4)])
    lines += [_table(["verifier", "mechanism", "nominal FP", "measured FP", "nominal FN", "measured FN"], channel_rows), ""]

    if "curve_true_accuracy" in ds and "verifier" in ds.dims:
        training_curves(ds, "verifier", figdir / "training_curves.png")
        lines += ["![training curves](figures/training_curves.png)", ""]
    if "curve_entropy" in ds and "optimizer" in ds.dims:
        lines += entropy_section(ds)
    lines += ["## Reproduce", "", "```", "fi-sim card study.toml     # the interface cards of every cell",
              "fi-sim report .            # this report", "```", ""]
    out = rd.path / "report.md"
    rd.write_text("report.md", "\n".join(lines))
    return out


def entropy_section(ds) -> list[str]:
    """Entropy dynamics per optimizer level: Cui et al. (2025)'s R = -a exp(H) + b fitted along training (true
    accuracy of the training samples R against the policy's mean token entropy H, per window), each seed's runs
    pooled over the other factors; a and b with 95% intervals over seeds, and the pooled fit's R^2."""
    rows = []
    for level in ds["optimizer"].values:
        part = ds.sel(optimizer=level)
        try:
            fits, _, _ = entropy_law(part)
        except ValueError as error:  # e.g. an entropy that never moves: no law to fit
            rows.append([md(level), "--", "--", "--", md(str(error))])
            continue
        a, b = fits.interval("a"), fits.interval("b")
        first = float(np.nanmean(part["curve_entropy"].isel(step=0)))
        last = float(np.nanmean(part["curve_entropy"].isel(step=-1)))
        rows.append([md(level), f"{a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}]", f"{b[0]:.3f} [{b[1]:.3f}, {b[2]:.3f}]",
                     _fmt(fits.pooled.r2, 3), f"{first:.3f} -> {last:.3f}"])
    return ["## Entropy dynamics", "",
            "Cui et al. (2025)'s law R = -a exp(H) + b, fitted along training: R the true accuracy of the training "
            "samples and H the policy's mean token entropy, per logged window; a and b with 95% intervals over seeds "
            "(each seed's runs pooled over the other factors), R^2 of the pooled fit.", "",
            _table(["optimizer", "a", "b", "R^2", "entropy first -> last window"], rows), ""]


def entropy_law(part):
    """Cui et al.'s R = -a exp(H) + b on one objective's results (`part`: curves with seed and step dims, any
    other dims pooled per seed): (the `fi_sim.laws.SeedFits`, H [seed, points], R [seed, points])."""
    from fi_sim import laws

    curves = []
    for name in ("curve_entropy", "curve_true_accuracy"):
        v = part[name]
        other = [d for d in v.dims if d not in ("seed", "step")]
        v = v.stack(cell=other) if other else v.expand_dims("cell")
        curves.append(v.transpose("seed", "cell", "step").values.reshape(v.sizes["seed"], -1))
    h, r = curves
    return laws.fit_seeds("cui_entropy", h, r), h, r
