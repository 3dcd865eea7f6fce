"""Check that the demo's published numbers are the numbers a fresh run gets (`make check-published`).

Reruns `experiments/demo.toml` into a fresh directory at its canonical layout, recomputes every demo number the
paper (`paper/generated/numbers.tex`, `summary.json`) and the README publish, and compares them. On the platform
the numbers were published from (recorded as `DemoPlatform`), they must be identical as printed. On another
platform the bits differ (XLA compiles for the host), so contrasts must agree within three seed standard errors
and counts exactly. Exits 1 listing every difference; 0 when all agree.

    python experiments/check_published.py [--results DIR]   # DIR: an existing demo run to check instead
    python experiments/check_published.py --surface [--surface-results DIR]
        # the 3^6 x 8 study instead (about 25 minutes to rerun): the bits of its gain and its Sobol indices
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import paper_figures as pf  # noqa: E402


def published_numbers() -> dict[str, str]:
    tex = (pf.OUT / "numbers.tex").read_text()
    return {k: v for k, v in re.findall(r"\\newcommand\{\\fs([A-Za-z]+)\}\{(.*)\}$", tex, re.M)
            if k.startswith("Demo")}


def published_paragraph() -> str:
    return pf.readme_block(pf.README_DEMO_BEGIN)


def verdict(there: str | None, here: str, elsewhere: str, what: str, problems: list[str], ok: str,
            hint: str | None = None) -> int:
    """Print where the numbers were published and computed, then the differences (exit status 1) or `ok` (0)."""
    print(f"published on: {there}\nthis machine: {here}"
          + ("" if there == here else f"\n(another platform: bits differ; {elsewhere})"))
    if problems:
        print(f"{len(problems)} published {what} number(s) differ from a fresh run:")
        for p in problems:
            print("  " + p)
        if hint:
            print(hint)
        return 1
    print(ok)
    return 0


def check_surface(results: str | None) -> int:
    """The 3^6 x 8 study's published surface (paper/generated/study_729x8.json) against a fresh run: the gain's
    bits on the platform it was published from, its Sobol indices within their published 95% intervals elsewhere."""
    stored = pf.OUT / "study_729x8.json"
    published = json.loads(stored.read_text())
    if results:
        path = Path(results)
    else:
        import subprocess

        path = Path(tempfile.mkdtemp(prefix="fi_sim-check-")) / "729"
        print(f"running the 3^6 x 8 study afresh into {path} (about 25 minutes on 2 CPU cores) ...", flush=True)
        subprocess.run([sys.executable, "-m", "fi_sim.cli", "run", "experiments/study_729x8.toml", "--out", str(path),
                        "--quiet", "--no-report"], check=True, cwd=ROOT)
    fresh = pf.surface_numbers(path)
    same_platform = fresh["platform"] == published["platform"]
    problems = []
    if same_platform and fresh["gain_sha256"] != published["gain_sha256"]:
        problems.append(f"gain bits: published sha256 {published['gain_sha256'][:12]}, fresh {fresh['gain_sha256'][:12]}")
    for kind in ("sobol_first", "sobol_total"):
        for f, p in published[kind].items():
            v = fresh[kind][f]["estimate"]
            if (same_platform and v != p["estimate"]) or not p["ci_low"] <= v <= p["ci_high"]:
                problems.append(f"{kind} {f}: published {p['estimate']:.4f} [{p['ci_low']:.4f}, {p['ci_high']:.4f}], "
                                f"fresh {v:.4f}")
    return verdict(published["platform"], fresh["platform"], "indices compared with the published 95% intervals",
                   "surface", problems,
                   "the 3^6 x 8 study's published gain bits and Sobol indices equal a fresh run's" if same_platform
                   else "the 3^6 x 8 study's Sobol indices lie within their published intervals")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="an existing results directory of experiments/demo.toml to check")
    parser.add_argument("--surface", action="store_true", help="check the 3^6 x 8 study instead of the demo")
    parser.add_argument("--surface-results", help="an existing results directory of experiments/study_729x8.toml")
    args = parser.parse_args(argv)
    if args.surface or args.surface_results:
        return check_surface(args.surface_results)
    if args.results:
        path = Path(args.results)
    else:
        import subprocess

        path = Path(tempfile.mkdtemp(prefix="fi_sim-check-")) / "demo"
        print(f"running the demo afresh into {path} (fi-sim run experiments/demo.toml) ...", flush=True)
        subprocess.run([sys.executable, "-m", "fi_sim.cli", "run", "experiments/demo.toml", "--out", str(path),
                        "--quiet", "--no-report"], check=True, cwd=ROOT)
    nums = pf.Numbers()
    ds, eff = pf.demo_numbers(path, nums)
    fresh = {k: v for k, v in nums.values.items()}
    published = published_numbers()
    here, there = fresh["DemoPlatform"], published.get("DemoPlatform")
    same_platform = here == there
    problems = []
    se = {"".join(p.capitalize() for p in str(t).split(":")): float(eff["contrast_se"].sel(term=t))
          for t in eff["term"].values}
    for name in sorted(set(published) | set(fresh)):
        a, b = published.get(name), fresh.get(name)
        if name == "DemoPlatform" or a == b:
            continue
        if not same_platform and name.endswith(("Contrast", "Z")) and a is not None and b is not None:
            key = name[4:].removesuffix("Contrast").removesuffix("Z")
            if name.endswith("Contrast") and key in se and abs(float(a) - float(b)) <= 3 * se[key]:
                continue
            if name.endswith("Z") and abs(float(a) - float(b)) <= 3:
                continue
        problems.append(f"{name}: published {a}, fresh run {b}")
    paragraph = pf.readme_demo_paragraph(ds, eff)
    if same_platform and " ".join(paragraph.split()) != published_paragraph():
        problems.append(f"README demo paragraph differs:\n  published: {published_paragraph()}\n  fresh:     {paragraph}")
    return verdict(there, here, "contrasts compared within 3 seed SEs", "demo", problems,
                   f"all {len(fresh)} published demo numbers and the README paragraph equal a fresh run's",
                   hint="regenerate them with `make demo && python experiments/paper_figures.py --no-run --only demo` "
                        "(and say so in the commit)")


if __name__ == "__main__":
    sys.exit(main())
