"""The command line for tables: `attribute TABLE.csv`, `design next`, `export`; bad input is one line, exit 2."""

import itertools
import subprocess
import sys
from pathlib import Path

import pandas as pd

from fi_sim.attribution import games

ROOT = Path(__file__).resolve().parents[1]


def fi_sim(*args):
    return subprocess.run([sys.executable, "-m", "fi_sim.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def fractional_csv(path: Path) -> Path:
    """A 2^(5-1) fraction with I = -ABCDE (it holds the all-baseline cell, listed first), two seeds per cell,
    of a surface with a planted A:B:C interaction."""
    y = games.unanimity({("A",): 0.3, ("D",): 0.5, ("A", "D"): 0.4, ("A", "B", "C"): 1.0}, players=("A", "B", "C", "D", "E"))
    rows = []
    for cell in itertools.product((0, 1), repeat=5):
        if (-1) ** (5 - sum(cell)) > 0:  # product of the signs (-1 off, +1 on) must be -1
            continue
        for seed in range(2):
            rows.append({**{f: ("off", "on")[i] for f, i in zip("ABCDE", cell)}, "seed": seed, "accuracy": float(y.values[cell]) + 0.001 * (seed - 0.5)})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_attribute_a_fractional_table(tmp_path):
    table = fractional_csv(tmp_path / "ablation.csv")
    r = fi_sim("attribute", str(table), "--metric", "accuracy", "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "I = -A:B:C:D:E" in r.stdout
    assert "16 of 32 cells" in r.stdout
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "effects.csv").exists()
    effects = pd.read_csv(tmp_path / "out" / "effects.csv").set_index("term")
    assert effects.loc["D:E", "aliases"].strip() == "-1 A:B:C"
    assert abs(effects.loc["A", "contrast"] - 2 * 0.5 * (0.3 + 0.4 * 0.5 + 1.0 * 0.25)) < 1e-9  # the lab's A contrast


def test_design_next_on_a_fractional_table(tmp_path):
    table = fractional_csv(tmp_path / "ablation.csv")
    out = tmp_path / "next.csv"
    r = fi_sim("design", "next", str(table), "--budget", "4", "--metric", "accuracy", "--new-cells-only", "--out", str(out))
    assert r.returncode == 0, r.stderr
    proposal = pd.read_csv(out)
    assert len(proposal) == 4 and proposal["new_cell"].all()
    present = {tuple(row) for row in pd.read_csv(table)[list("ABCDE")].values}
    assert not {tuple(row) for row in proposal[list("ABCDE")].values} & present


def test_bad_tables_and_exports_are_one_line(tmp_path):
    table = fractional_csv(tmp_path / "ablation.csv")
    for args in (("attribute", str(table), "--metric", "A"),  # not numeric
                 ("design", "next", str(tmp_path / "missing.csv"), "--budget", "2"),
                 ("export", str(tmp_path), "--format", "csv")):  # not a results directory
        r = fi_sim(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert "numeric" in fi_sim("attribute", str(table), "--metric", "A").stderr
