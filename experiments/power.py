"""Power before the full run: the seeds each finding's check needs, computed from a pilot.

A finding's check (`experiments/validate.py`) decides PASS from 95% t-intervals over seeds of a few per-seed
contrasts (a gain, a paired difference, a fall along training), all paired by seed. The pilot is the finding's
studies at full size with their first `--pilot-seeds` seeds. From it this script takes the contrasts' mean vector
and covariance over seeds and simulates the check at n seeds: n seeds are drawn from the normal distribution with
that mean and covariance, the check's own criterion is applied to their intervals, and the share of draws that
pass is the power at n (plug-in power: the pilot's effect is taken as the truth). The seeds a finding runs at are
the smallest n on the grid whose power reaches 80%, never fewer than the pilot's; a finding whose power stays
below 80% up to the largest n on the grid is marked unreachable, and runs at the pilot's seeds: more seeds would
only narrow the intervals around an effect that fails the criterion.

    python experiments/power.py                 # every finding; pilots run (or resumed) where missing
    python experiments/power.py over_optimisation --pilot-seeds 6

It prints one line per finding and writes `experiments/findings/power.json`, which `validate.py --full` reads for
the seeds of each finding (commit it before the full run: the seeds are then fixed before any full-size result).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import validate  # noqa: E402

POWER_FILE = validate.FINDINGS_DIR / "power.json"
TARGET = 0.8
GRID = (3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 24, 32, 40, 48, 64, 96, 128)
DRAWS = 2000


def simulated_intervals(contrasts: dict[str, np.ndarray], n: int, draws: int, rng) -> list[dict]:
    """`draws` simulated checks at n seeds: for each, the 95% interval of every contrast."""
    names = list(contrasts)
    x = np.column_stack([np.asarray(contrasts[k], float) for k in names])  # [pilot seeds, contrasts]
    x = x[np.all(np.isfinite(x), 1)]
    p = x.shape[0]
    mean, centered = x.mean(0), x - x.mean(0)
    # n seeds per draw from N(mean, sample covariance): z [draws, n, p] @ centered [p, m] / sqrt(p - 1)
    sims = mean + rng.standard_normal((draws, n, p)) @ centered / np.sqrt(p - 1)
    m = sims.mean(1)
    half = validate.t975(n - 1) * sims.std(1, ddof=1) / np.sqrt(n)
    return [{k: validate.Interval(float(m[d, j]), float(m[d, j] - half[d, j]), float(m[d, j] + half[d, j]))
             for j, k in enumerate(names)} for d in range(draws)]


def power(verdict, n: int, draws: int = DRAWS, seed: int = 0) -> float:
    """The share of simulated checks at n seeds that pass (see the module docstring)."""
    if verdict.criterion is None or not verdict.contrasts:
        raise ValueError("the check exposes no contrasts and criterion: its power cannot be computed")
    rng = np.random.default_rng(seed)
    return float(np.mean([bool(verdict.criterion(iv)) for iv in simulated_intervals(verdict.contrasts, n, draws,
                                                                                        rng)]))


def seeds_needed(verdict, pilot_seeds: int, target: float = TARGET) -> dict:
    """The smallest n on the grid (>= the pilot's seeds) with power >= target, and the power curve."""
    curve = {}
    for n in GRID:
        if n < pilot_seeds:
            continue
        curve[n] = power(verdict, n)
        if curve[n] >= target:
            return {"seeds": n, "reachable": True, "power": curve[n], "curve": curve}
    return {"seeds": pilot_seeds, "reachable": False, "power": curve.get(pilot_seeds, float("nan")), "curve": curve}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="findings (default: all): " + ", ".join(validate.FINDINGS))
    parser.add_argument("--pilot-seeds", type=int, default=6, help="the pilot's seeds (default 6)")
    parser.add_argument("--out", default=str(validate.ROOT / "runs" / "validation"))
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    from fi_sim.engine import hostcpu

    hostcpu.configure(2)
    unknown = [n for n in args.names if n not in validate.FINDINGS]
    if unknown:
        print(f"power: unknown finding(s) {unknown}; allowed: {', '.join(validate.FINDINGS)}", file=sys.stderr)
        return 2
    record = json.loads(POWER_FILE.read_text()) if POWER_FILE.exists() else {}
    pilot_dir = Path(args.out) / f"full-seeds{args.pilot_seeds}"
    for name in args.names or list(validate.FINDINGS):
        finding = validate.FINDINGS[name]
        results = validate.run_studies(name, finding.studies, "full", pilot_dir, not args.progress, args.pilot_seeds)
        verdict = finding.check(results)
        need = seeds_needed(verdict, args.pilot_seeds)
        contrasts = {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1))}
                     for k, v in verdict.contrasts.items()}
        record[name] = {"pilot_seeds": args.pilot_seeds, "pilot_passed": verdict.passed, "seeds": need["seeds"],
                        "reachable": need["reachable"], "power": round(need["power"], 3),
                        "power_curve": {str(n): round(p, 3) for n, p in need["curve"].items()},
                        "contrasts": contrasts, "target": TARGET, "draws": DRAWS}
        where = (f"{need['seeds']} seeds give power {need['power']:.2f}" if need["reachable"] else
                 f"unreachable: power {max(need['curve'].values()):.2f} at most up to {max(need['curve'])} seeds; "
                 f"runs at the pilot's {args.pilot_seeds}")
        print(f"{name}: pilot ({args.pilot_seeds} seeds) {'PASS' if verdict.passed else 'FAIL'}; {where}", flush=True)
    POWER_FILE.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {POWER_FILE.relative_to(validate.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
