"""A tour of the factor catalogue: for each factor, one small study over all its levels.

    python experiments/catalogue.py                 # all six factors (about 15 minutes on 2 CPU cores)
    python experiments/catalogue.py verifier base   # only these

Each study (experiments/catalogue/<factor>.toml) varies one factor over its presets with everything else fixed,
and this script prints the gain (true pass, held-out items) of every level with its seed standard error, and the
spread of the gain across the factor's levels: max minus min of the level means, with the standard error of that
difference over seeds. Results go to runs/catalogue/<factor>/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "experiments" / "catalogue"
FACTORS = ("verifier", "base", "data", "optimizer", "scaffold", "budget")


def frozen_dataset(path: Path) -> None:
    """The data study's frozen level replays a small dataset generated under the demo's broad base."""
    if path.exists():
        return
    from fi_sim.datasets import freeze
    from fi_sim.study import load_study

    freeze(load_study(ROOT / "experiments" / "headline" / "generate.toml"), path, prompts=64, responses=8)


def spread(ds, factor: str) -> list[str]:
    g = ds["gain"]
    others = [d for d in g.dims if d not in (factor, "seed")]
    g = g.isel({d: 0 for d in others})
    n = g.sizes["seed"]
    means = g.mean("seed")
    ses = g.std("seed", ddof=1) / np.sqrt(n)
    lines = [f"  {str(level):>22}: gain {float(means.sel({factor: level})):+.3f} +- {float(ses.sel({factor: level})):.3f}"
             for level in g[factor].values]
    hi, lo = str(means.idxmax(factor).item()), str(means.idxmin(factor).item())
    diff = g.sel({factor: hi}) - g.sel({factor: lo})  # paired over seeds (same bases, same evaluation draws)
    lines.append(f"  spread: {float(diff.mean()):.3f} +- {float(diff.std(ddof=1) / np.sqrt(n)):.3f} "
                 f"(max {hi} minus min {lo}; {n} seeds)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The gain across each factor's levels.")
    parser.add_argument("factors", nargs="*", help="factors to tour (default: all)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "catalogue"))
    args = parser.parse_args(argv)
    chosen = args.factors or list(FACTORS)
    bad = [f for f in chosen if f not in FACTORS]
    if bad:
        print(f"catalogue: unknown factor(s) {bad}; allowed: {', '.join(FACTORS)}", file=sys.stderr)
        return 2
    from fi_sim.engine.runner import run_study
    from fi_sim.study import load_study

    out = Path(args.out)
    if "data" in chosen:
        frozen_dataset(ROOT / "runs" / "catalogue" / "frozen.npz")
    for factor in chosen:
        path = HERE / f"{factor}.toml"
        ds = run_study(load_study(path), out / factor, study_text=path.read_text(), quiet=True)
        print(f"== {factor} ({path.relative_to(ROOT)})")
        print("\n".join(spread(ds, factor)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
