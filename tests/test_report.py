"""The report off the happy path: bad runs are counted and named, a skipped ANOVA gives its real reason, a missing
cell is drawn as missing, a collapsed run is flagged, and hostile names cannot break or inject into report.md."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from fi_sim.engine import faults


def _copy(src, dst):
    """A copy of a results directory, its chunks (name -> run ids) and a RunDirectory to rewrite them."""
    from fi_sim.engine.store import RunDirectory, load_results

    shutil.copytree(src, dst)
    ds = load_results(dst)
    rd = RunDirectory(dst, ds.attrs["study_hash"])
    chunks = {p.stem: [int(r) for r in np.load(p)["run_id"]] for p in sorted((dst / "chunks").glob("*.npz"))}
    return rd, chunks, ds


def _training_cell(ds, run_id):
    """(training cell, seed) of a run: the index of its run id in `run_id` (dims: training factors, seed)."""
    where = np.argwhere(ds["run_id"].values == run_id)[0]
    return tuple(where[:-1]), int(where[-1])


def _merge(out):
    from fi_sim.engine.runner import merge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return merge(out, quiet=True)


def test_collapse_rule():
    # (a) true accuracy 0, (b) score 0 under every budget, (c) the base had some, (d) KL >= 20 nats per sequence
    acc = np.array([0.0, 0.0, 0.0, 0.0, 0.1, 0.0, np.nan])
    score = np.array([[0, 0], [0, 0], [0, 0.1], [0, 0], [0, 0], [0, 0], [0, 0]], float)
    base = np.array([[0.5, 0.6], [0.5, 0.6], [0.5, 0.6], [0, 0], [0.5, 0.6], [0.5, 0.6], [0.5, 0.6]])
    kl = np.array([31.0, 35.0, 31.0, 31.0, 31.0, 5.0, 31.0])
    assert faults.collapsed(acc, score, base, kl).tolist() == [True, True, False, False, False, False, False]
    assert faults.collapsed(0.0, [0.0], [0.3], 20.0).tolist() == [True]
    assert faults.NAMES[faults.COLLAPSED] == "collapsed"


def test_bad_runs_are_counted_explained_and_drawn_as_missing(tiny_results, tmp_path):
    from fi_sim.report import skipped_because, status_counts, write_report

    ref_dir, _ = tiny_results
    out = tmp_path / "bad"
    rd, chunks, ref = _copy(ref_dir, out)
    lost, _ = _training_cell(ref, next(iter(chunks.values()))[0])  # every seed of this training cell fails
    nonfinite_done = False
    for name, run_ids in chunks.items():
        arrays, meta = rd.read("chunks", name)
        status = np.asarray(arrays["status"]).copy()
        for row, run_id in enumerate(run_ids):
            if _training_cell(ref, run_id)[0] == lost:
                status[row] = faults.DIVERGED
            elif not nonfinite_done:
                status[row] = faults.NONFINITE  # one seed of another cell: that cell keeps its other seed
                nonfinite_done = True
        arrays["status"] = status
        rd.write("chunks", name, arrays, meta)
    ds = _merge(out)
    n = int(ds["status"].size)
    assert status_counts(ds) == {"ok": n - 3, "nonfinite": 1, "diverged": 2, "collapsed": 0, "not_run": 0}

    why = skipped_because(ds)
    assert why is not None and why.startswith("3 cell(s) have no finished seed"), why  # 1 cell x 3 budgets
    assert "2 diverged" in why and "complete grid" not in why

    text = write_report(out).read_text()
    assert f"Runs by status: {n - 3} ok, 1 nonfinite, 2 diverged, 0 collapsed, 0 not_run" in text
    assert "not a complete grid" not in text and "3 cell(s) have no finished seed" in text
    assert "seed 0: diverged" in text and "seed 1: diverged" in text and ": nonfinite" in text
    assert "3 of 24 cells have no finished run" in text

    # the heatmap: the 3 missing cells are grey and hatched (not the white of a zero gain), with a legend
    import matplotlib.image as mpimg

    from fi_sim.plots import MISSING_COLOR

    img = mpimg.imread(out / "figures" / "gain_by_cell.png")[..., :3]
    grey = np.array([int(MISSING_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    assert np.sum(np.all(np.abs(img - grey) < 0.02, axis=-1)) > 500  # the grey of three cells and the legend


def test_a_collapsed_run_is_flagged_at_assembly(tiny_results, tmp_path):
    ref_dir, _ = tiny_results
    out = tmp_path / "collapsed"
    rd, chunks, _ = _copy(ref_dir, out)
    name, runs = next(iter(chunks.items()))
    arrays, meta = rd.read("chunks", name)
    arrays["train_true_accuracy"] = arrays["train_true_accuracy"].copy()
    arrays["score"], arrays["kl_to_base"] = arrays["score"].copy(), arrays["kl_to_base"].copy()
    arrays["train_true_accuracy"][0], arrays["score"][0], arrays["kl_to_base"][0] = 0.0, 0.0, 33.0  # collapsed
    arrays["train_true_accuracy"][1], arrays["score"][1], arrays["kl_to_base"][1] = 0.0, 0.0, 3.0  # near the base
    rd.write("chunks", name, arrays, meta)
    ds = _merge(out)
    assert ds["status"].attrs["flag_meanings"].split()[-1] == "collapsed"
    flat = {int(r): int(s) for r, s in zip(ds["run_id"].values.ravel(), ds["status"].values.ravel())}
    assert flat[runs[0]] == faults.COLLAPSED
    assert flat[runs[1]] == faults.OK  # unlearned everything without leaving the base: a finding, kept
    assert int((ds["status"] == faults.COLLAPSED).sum()) == 1
    assert ds["gain"].where(ds["status"] == faults.COLLAPSED).notnull().sum() == 0


HOSTILE_NAME = 'x | y <script>alert("n")</script> & z'
HOSTILE_DESCRIPTION = "line one\n# not a heading | cell\n\n<img src=x onerror=alert(1)> `code`"
HOSTILE_LEVEL = "ex|act<b>\nnew"


def test_hostile_names_are_escaped_in_the_report(tiny_results, tiny_study_text, tmp_path):
    """The study loader accepts these names; the report must keep them inert."""
    from fi_sim.engine.store import RunDirectory
    from fi_sim.report import md, write_report
    from fi_sim.study import loads_study

    text = (tiny_study_text.replace('name = "tiny"', f"name = {json.dumps(HOSTILE_NAME)}\n"
                               f"description = {json.dumps(HOSTILE_DESCRIPTION)}")
            .replace('verifier = ["exact",', f'verifier = [{{ preset = "exact", name = {json.dumps(HOSTILE_LEVEL)} }},'))
    hostile = loads_study(text)  # allowed by fi_sim.study
    assert hostile.name == HOSTILE_NAME and HOSTILE_LEVEL in hostile.level_names("verifier")

    ref_dir, ref = tiny_results
    out = tmp_path / "hostile"
    shutil.copytree(ref_dir, out)
    # the same numbers under the hostile study's names (the report reads names from the results file only)
    ds = ref.copy()
    ds.attrs["study"] = hostile.to_json()
    ds = ds.assign_coords(verifier=hostile.level_names("verifier"))
    RunDirectory(out, ref.attrs["study_hash"]).write_dataset(ds)
    report = write_report(out).read_text()

    for raw in ("<script>", "<img", "<b>", "\n# not a heading"):
        assert raw not in report
    assert "&lt;script&gt;" in report and "&lt;img src=x onerror=alert(1)&gt;" in report
    assert report.splitlines()[0] == f"# fi_sim report: {md(HOSTILE_NAME)}"
    assert "x \\| y" in report.splitlines()[0]
    # every table row still has the number of cells of its header: no `|` leaked from a name
    lines = report.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            width = lines[i - 1].count("|") - lines[i - 1].count("\\|")
            for row in lines[i + 1:]:
                if not row.startswith("|"):
                    break
                assert row.count("|") - row.count("\\|") == width, row
    assert "ex\\|act&lt;b&gt; new" in report


@pytest.mark.parametrize("value, expected", [
    ("a|b", "a\\|b"), ("a\nb\r\nc", "a b c"), ("<i>&", "&lt;i&gt;&amp;"), ("# h", "\\# h"), ("`x`", "&#96;x&#96;"),
    ("back\\slash", "back\\\\slash"),
])
def test_md_escapes(value, expected):
    from fi_sim.report import md

    assert md(value) == expected


def test_the_report_names_a_non_canonical_layout():
    import json

    import xarray as xr

    from fi_sim.report import layout_line

    other = {"device_batch": 4, "canonical_device_batch": 8, "canonical": False, "platform": "cpu", "cpu_parallelism": 8}
    assert "not the canonical layout" in layout_line(xr.Dataset(attrs={"layout": json.dumps(other)}))
    same = dict(other, device_batch=8, canonical=True)
    line = layout_line(xr.Dataset(attrs={"layout": json.dumps(same)}))
    assert "canonical:" in line and "not the canonical" not in line and "CPU parallelism 8" in line


def test_the_entropy_section_recovers_a_known_entropy_law():
    """Curves built from R = -a exp(H) + b (a = 0.8, b = 1.7 for one objective, 0.5 and 1.2 for another): the
    report's table gives those coefficients with R^2 = 1."""
    import numpy as np
    import xarray as xr

    from fi_sim.report import entropy_section

    rng = np.random.default_rng(0)
    h = rng.uniform(0.05, 0.6, (2, 3, 2, 10))  # optimizer, seed, verifier, step
    coef = np.array([[0.8, 1.7], [0.5, 1.2]])
    r = -coef[:, 0, None, None, None] * np.exp(h) + coef[:, 1, None, None, None]
    dims = ("optimizer", "seed", "verifier", "step")
    ds = xr.Dataset({"curve_entropy": (dims, h), "curve_true_accuracy": (dims, r)},
                    coords={"optimizer": ["reinforce", "ppo"], "seed": [0, 1, 2], "verifier": ["a", "b"],
                            "step": np.arange(10)})
    table = "\n".join(entropy_section(ds))
    assert "| reinforce | 0.800 [0.800, 0.800] | 1.700 [1.700, 1.700] | 1.000 |" in table, table
    assert "| ppo | 0.500 [0.500, 0.500] | 1.200 [1.200, 1.200] | 1.000 |" in table, table
