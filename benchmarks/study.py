"""Wall time and peak memory of a whole study, as `fi-sim run` computes it from scratch.

    python -m benchmarks.study experiments/study_729x8.toml            # -> benchmarks/study_729x8.json

Runs `fi-sim run STUDY --out runs/bench/<name>` in a subprocess (into a fresh directory, so nothing is resumed;
the persistent compilation cache is used as a user's run would use it unless --no-cache), and records its wall
time, the peak resident memory of the process (`ru_maxrss` of the child), the plan's counts and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--out", default=None, help="results directory (default runs/bench/<study name>)")
    parser.add_argument("--json", default=None, help="where to write the record (default benchmarks/<name>.json)")
    parser.add_argument("--no-cache", action="store_true", help="run without the persistent compilation cache")
    args = parser.parse_args(argv)

    from fi_sim.engine.plan import make_plan
    from fi_sim.study import load_study

    study = load_study(args.study)
    plan = make_plan(study)
    out = Path(args.out or ROOT / "runs" / "bench" / study.name)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "fi_sim.cli", "run", args.study, "--out", str(out), "--quiet"]
    if args.no_cache:
        cmd.append("--no-cache")
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    runs = sum(len(g.runs) for g in plan.groups)
    steps = sum(len(g.runs) * g.static.posttrain.steps for g in plan.groups)
    record = {
        "study": study.name,
        "cells": len(list(study.cells())),
        "seeds": len(study.seeds),
        "post_training_runs": runs,
        "bases": len(plan.bases),
        "base_evaluations": len(plan.base_evals),
        "run_steps": steps,
        "wall_s": wall,
        "run_steps_per_s": steps / wall,
        "peak_rss_mb": peak_kb / 1024,
        "cache": not args.no_cache,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path = Path(args.json or ROOT / "benchmarks" / f"{study.name}.json")
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
