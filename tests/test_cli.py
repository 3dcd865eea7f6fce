"""The command line: bad input gives a short message without a traceback and a non-zero exit."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def fi_sim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "fi_sim.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_malformed_study_exits_nonzero_with_one_line_per_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "experiments" / "demo.toml").read_text().replace('"noisy"', '"noisier"'))
    r = fi_sim("run", str(bad), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) <= 2, r.stderr
    assert "factors.verifier[1].preset" in r.stderr and "'noisier'" in r.stderr and "exact" in r.stderr
    assert not (tmp_path / "out").exists()  # nothing is created before validation passes


def test_several_problems_are_listed_one_per_line(tmp_path):
    bad = tmp_path / "bad.toml"
    text = (ROOT / "experiments" / "demo.toml").read_text()
    bad.write_text(text.replace("seeds = 3", "seeds = 0").replace("eval_size = 256", "eval_size = -4"))
    r = fi_sim("card", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "2 problems" in r.stderr and "study.seeds" in r.stderr and "world.eval_size" in r.stderr


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname=")
    for args in (("card", str(bad)), ("card", str(tmp_path / "missing.toml")), ("report", str(tmp_path))):
        r = fi_sim(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2


def test_card_and_levels_print_what_they_promise():
    from fi_sim.factors import FACTOR_NAMES, FACTORS

    r = fi_sim("card", "experiments/demo.toml", "--summary")
    assert r.returncode == 0
    assert len(r.stdout.strip().splitlines()) == 64
    # the default: one line per level (factor, preset, mechanism, doc), nothing else
    r = fi_sim("levels")
    assert r.returncode == 0
    lines = r.stdout.strip().splitlines()
    rows = [(f, row) for f in FACTOR_NAMES for row in FACTORS[f].catalogue()]
    assert len(lines) == len(rows)
    for line, (factor, row) in zip(lines, rows):
        assert line.split()[:3] == [factor, row["preset"], f"[{row['mechanism']}]"], line
    assert "false_positive_rate" not in r.stdout and len(r.stdout) < 10_000
    # the detail behind --full (and --json)
    r = fi_sim("levels", "--full")
    assert r.returncode == 0
    for factor in FACTOR_NAMES:
        assert f"{factor}:" in r.stdout
    assert "false_positive_rate" in r.stdout
    r = fi_sim("levels", "verifier", "--json")
    assert r.returncode == 0 and set(json.loads(r.stdout)) == {"verifier"}


def _closed_pipe_run(*args):
    """Run fi-sim with stdout a pipe whose reader has gone (`| head` after it stopped reading)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "fi_sim.cli", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, timeout=300)
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [("levels",), ("levels", "--full"), ("card", "experiments/demo.toml"),
                                  ("card", "experiments/demo.toml", "--summary"), ("--help",), ("--version",)])
def test_a_closed_pipe_ends_quietly(args):
    r = _closed_pipe_run(*args)
    assert r.stderr == "", r.stderr  # no traceback, no "Exception ignored" at exit
    # a command's output cut short: 141 as for SIGPIPE (argparse's --help ignores the error itself and exits 0)
    assert r.returncode in ((0, 141) if args[0].startswith("--") else (141,))


def test_head_of_levels_in_a_shell():
    r = subprocess.run(f"{shlex.quote(sys.executable)} -m fi_sim.cli card experiments/demo.toml | head -n 3",
                       shell=True, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_version_names_the_package_version_and_the_commit():
    from fi_sim import __version__

    r = fi_sim("--version")
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith(f"fi-sim {__version__} ")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    if head.returncode == 0:  # a checkout: its commit is named
        assert f"(git {head.stdout.strip()}" in r.stdout
    else:
        assert "(installed)" in r.stdout


# ---------------------------------------------------------------------------------------------- attribute
def _largest_gain(ds):
    """Notebook 02's "largest gain": the best seed-mean cell against every factor at another level."""
    y = ds["gain"]
    y = y.isel({d: 0 for d in y.dims if d != "seed" and y.sizes[d] < 2}, drop=True)
    mean = y.mean("seed")
    best = np.unravel_index(int(np.nanargmax(mean.values)), mean.shape)
    target = {f: str(mean[f].values[i]) for f, i in zip(mean.dims, best)}
    baseline = {f: next(str(v) for v in y[f].values if str(v) != target[f]) for f in mean.dims}
    return baseline, target, float(mean.values[best])


def _cell(d):
    return ",".join(f"{f}={v}" for f, v in d.items())


def test_attribute_defaults_to_the_largest_gain_and_says_so(tiny_results, tmp_path):
    out, ds = tiny_results
    baseline, target, best = _largest_gain(ds)
    r = fi_sim("attribute", str(out), "--regimes", "full", "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert f"target   {_cell(target)}" in r.stdout and f"baseline {_cell(baseline)}" in r.stdout, r.stdout
    assert "largest seed-mean gain" in r.stdout
    board = (tmp_path / "a" / "leaderboard.md").read_text()
    gain = float(ds["gain"].mean("seed").sel(target).squeeze() - ds["gain"].mean("seed").sel(baseline).squeeze())
    assert f"= {gain:.4f}" in board, board[:600]
    assert best > 0


def test_attribute_takes_an_explicit_baseline_and_target(tiny_results, tmp_path):
    out, ds = tiny_results
    levels = {f: [str(v) for v in ds[f].values] for f in ("verifier", "data", "scaffold", "budget")}
    base = {f: ls[0] for f, ls in levels.items()}
    top = {f: ls[-1] for f, ls in levels.items()}
    top["budget"] = levels["budget"][1]
    r = fi_sim("attribute", str(out), "--regimes", "full", "--out", str(tmp_path / "b"),
               "--baseline", _cell(base), "--target", _cell(top))
    assert r.returncode == 0, r.stderr
    assert f"target   {_cell(top)}" in r.stdout and "(as given)" in r.stdout
    board = (tmp_path / "b" / "leaderboard.md").read_text()
    mean = ds["gain"].mean("seed")
    assert f"= {float(mean.sel(top).squeeze() - mean.sel(base).squeeze()):.4f}" in board


@pytest.mark.parametrize("flag, value, expect", [
    ("--target", "verifier=exact", ["--target", "missing: data, scaffold, budget"]),
    ("--target", "verifier=exactly,data=within,scaffold=direct,budget=pass@1", ["--target verifier", "'exactly'",
                                                                                 "exact, noisy"]),
    ("--baseline", "verifier=exact,data=within,scaffold=direct,budget=pass@1,colour=red",
     ["--baseline", "'colour'", "verifier, data, scaffold, budget"]),
    ("--baseline", "verifier exact", ["--baseline", "factor=level pairs"]),
])
def test_attribute_rejects_a_bad_cell_in_one_line(tiny_results, flag, value, expect):
    out, _ = tiny_results
    r = fi_sim("attribute", str(out), flag, value)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for part in expect:
        assert part in r.stderr, r.stderr
