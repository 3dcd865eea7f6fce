"""The headline experiment: same pairs, different gains.

1. Generate one post-training dataset of prompt-response-reward tuples under a fixed interface
   (experiments/headline/generate.toml) and freeze it (fi_sim.datasets.freeze).
2. Replay the identical tuples — as supervised data and as offline policy-gradient data — under every combination
   of the other factors (experiments/headline/replay.toml).
3. Report how widely the gain from the identical pairs varies, and attribute it exactly: the functional ANOVA,
   Sobol indices and Shapley effects of the gain over the factors (fi_sim.attribution).

    python experiments/headline.py            # small size (2 seeds, 128 frozen prompts, 96 evaluation items)
    python experiments/headline.py --full     # the study files as written (256 prompts x 8 responses, 3 seeds)

Writes runs/headline/<size>/: frozen.npz, replay/ (the results directory), headline.md, headline.png, and
headline.json (the numbers the paper quotes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "experiments" / "headline"
SIZES = {"small": {"prompts": 128, "responses": 8, "seeds": 2, "eval_size": 96},
         "full": {"prompts": 256, "responses": 8, "seeds": 3, "eval_size": 192}}


def replay_study(size: str, dataset: Path):
    from fi_sim.study import study_from_dict

    raw = tomllib.loads((HERE / "replay.toml").read_text())
    raw["factors"]["data"][0]["dataset"] = str(dataset)
    raw["study"]["seeds"] = SIZES[size]["seeds"]
    raw["world"]["eval_size"] = SIZES[size]["eval_size"]
    return study_from_dict(raw)


def summarize(ds) -> tuple[dict, list[str]]:
    """The spread of the gain over interfaces and its exact attribution."""
    from fi_sim.attribution import effect_summary, shapley_effects, sobol_indices

    y = ds["gain"].squeeze(drop=True)  # the data factor has one level: the same frozen pairs everywhere
    cell = y.mean("seed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sobol = sobol_indices(y)
        shapley = shapley_effects(y, normalize=True)
        effects = effect_summary(y, max_order=2)
    numbers = {
        "cells": int(cell.size),
        "seeds": int(y.sizes["seed"]),
        "gain_min": float(cell.min()),
        "gain_max": float(cell.max()),
        "gain_mean": float(cell.mean()),
        "gain_sd_over_cells": float(cell.std()),
        "share_cells_positive": float((cell > 0).mean()),
        "sobol_first": {str(f): float(sobol["first"].sel(factor=f)) for f in sobol["factor"].values},
        "sobol_total": {str(f): float(sobol["total"].sel(factor=f)) for f in sobol["factor"].values},
        "shapley_share": {str(f): float(shapley.sel(factor=f)) for f in shapley["factor"].values},
    }
    lines = ["| factor | Sobol first | Sobol total | Shapley share |", "|---|---|---|---|"]
    for f in sobol["factor"].values:
        lines.append(f"| {f} | {numbers['sobol_first'][str(f)]:.3f} | {numbers['sobol_total'][str(f)]:.3f} | "
                     f"{numbers['shapley_share'][str(f)]:.3f} |")
    top = effects.where(effects["order"] == 2, drop=True).sortby("variance", ascending=False)
    lines += ["", "Largest interactions (share of variance): " + ", ".join(
        f"{t} {float(top['share'].sel(term=t)):.3f}" for t in top["term"].values[:4])]
    return numbers, lines


def figure(ds, numbers: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = ds["gain"].squeeze(drop=True)
    cell = y.mean("seed")
    factors = [d for d in cell.dims]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    x = 0
    ticks, labels = [], []
    for f in factors:
        for level in cell[f].values:
            v = cell.sel({f: level}).values.ravel()
            ax.scatter(np.full(v.size, x) + np.linspace(-0.25, 0.25, v.size), v, s=10, alpha=0.7)
            ax.plot([x - 0.3, x + 0.3], [v.mean()] * 2, color="black")
            ticks.append(x)
            labels.append(f"{f}: {level}")
            x += 1
        x += 0.6
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(ticks, labels, fontsize=7, rotation=40, ha="right")
    ax.set_ylabel("gain from the identical frozen pairs (pass, held-out)")
    ax.set_title(f"same pairs, {numbers['cells']} interfaces: gain from {numbers['gain_min']:+.2f} to "
                 f"{numbers['gain_max']:+.2f}")
    ax = axes[1]
    names = list(numbers["shapley_share"])
    ax.barh(names, [numbers["shapley_share"][n] for n in names], color="tab:blue", label="Shapley share")
    ax.barh(names, [numbers["sobol_first"][n] for n in names], color="tab:orange", height=0.35,
            label="first-order Sobol")
    ax.set_xlabel("share of the gain's variance")
    ax.set_title("exact attribution of the gain's variance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The headline experiment: same pairs, different gains.")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "runs" / "headline"))
    args = parser.parse_args(argv)
    from fi_sim.engine import hostcpu

    hostcpu.configure(2)  # the CPU parallelism its study files declare ([engine] cpu_parallelism)
    size = "full" if args.full else "small"
    out = Path(args.out) / size
    out.mkdir(parents=True, exist_ok=True)

    from fi_sim.datasets import freeze
    from fi_sim.engine.runner import run_study
    from fi_sim.study import load_study
    from fi_sim.world import frozen

    dataset_path = out / "frozen.npz"
    if dataset_path.exists():
        dataset = frozen.load(dataset_path)
        print(f"frozen dataset: {dataset_path} (exists, sha256 {dataset.sha256[:12]})")
    else:
        dataset = freeze(load_study(HERE / "generate.toml"), dataset_path, prompts=SIZES[size]["prompts"],
                         responses=SIZES[size]["responses"])
        print(f"frozen dataset: {dataset_path} ({dataset.num_prompts} prompts x {dataset.group_size} responses, "
              f"true accuracy {dataset.provenance['true_accuracy']:.3f}, sha256 {dataset.sha256[:12]})")
    study = replay_study(size, dataset_path)
    ds = run_study(study, out / "replay", quiet=True)
    numbers, lines = summarize(ds)
    numbers["dataset_sha256"] = dataset.sha256
    numbers["dataset_true_accuracy"] = dataset.provenance["true_accuracy"]
    fig = figure(ds, numbers, out / "headline.png")
    report = [
        "# Same pairs, different gains",
        "",
        f"One frozen dataset ({dataset.num_prompts} prompts x {dataset.group_size} responses, sha256 "
        f"`{dataset.sha256[:16]}`) replayed under {numbers['cells']} interfaces x {numbers['seeds']} seeds.",
        "",
        f"- gain over interfaces (seed means): from {numbers['gain_min']:+.3f} to {numbers['gain_max']:+.3f}, "
        f"mean {numbers['gain_mean']:+.3f}, sd {numbers['gain_sd_over_cells']:.3f}; positive in "
        f"{numbers['share_cells_positive']:.0%} of interfaces",
        "",
        *lines,
        "",
        f"![headline]({fig.name})",
    ]
    (out / "headline.md").write_text("\n".join(report) + "\n")
    (out / "headline.json").write_text(json.dumps(numbers, indent=2, sort_keys=True))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
