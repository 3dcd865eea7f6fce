"""The command line: bad input gives a short message without a traceback and a non-zero exit."""

import subprocess
import sys
from pathlib import Path

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
    r = fi_sim("card", "experiments/demo.toml", "--summary")
    assert r.returncode == 0
    assert len(r.stdout.strip().splitlines()) == 64
    r = fi_sim("levels")
    assert r.returncode == 0
    for factor in ("verifier", "base", "data", "optimizer", "scaffold", "budget"):
        assert f"{factor}:" in r.stdout
    assert "false_positive_rate" in r.stdout
