"""Bad runs are flagged in `status` and left out of the truth with a warning, never averaged."""

import shutil
import warnings

import numpy as np
import pytest

from fi_sim.engine import faults
from fi_sim.engine.plan import make_plan


def test_status_codes(micro_reference):
    from fi_sim.study import loads_study

    from ._helpers import MICRO_STUDY

    static = make_plan(loads_study(MICRO_STUDY)).groups[0].static
    bound = faults.kl_bound(static)
    outputs = {
        "finite": np.array([True, False, True, True, True]),
        "kl_to_base": np.array([0.5, 0.5, np.nan, bound * 2, np.inf]),
        "score": np.zeros((5, 1)),
    }
    assert faults.run_status(outputs, static).tolist() == [0, 1, 2, 2, 2]
    assert faults.run_status({"score": np.zeros(3)}, static).tolist() == [0, 0, 0]  # generic: no flags, no faults
    assert faults.describe(np.array([0, 2, 2])) == "1 ok, 2 diverged"


def test_bad_runs_are_nan_and_flagged_and_the_truth_leaves_them_out_with_a_warning(micro_reference, tmp_path):
    from fi_sim.attribution import effect_summary
    from fi_sim.engine.runner import merge
    from fi_sim.engine.store import RunDirectory

    ref_dir, ref = micro_reference
    out = tmp_path / "bad"
    shutil.copytree(ref_dir, out)
    rd = RunDirectory(out, ref.attrs["study_hash"])
    arrays, meta = rd.read("chunks", "g00-c00001")
    arrays["status"] = np.array([faults.NONFINITE, faults.DIVERGED], np.int8)
    rd.write("chunks", "g00-c00001", arrays, meta)
    with pytest.warns(UserWarning) as caught:
        ds = merge(out, quiet=True)
    messages = " ".join(str(w.message) for w in caught)
    assert "non-finite" in messages and "diverged" in messages
    status = ds["status"]
    assert status.attrs["flag_meanings"].split() == ["not_run", "ok", "nonfinite", "diverged", "collapsed"]
    assert int((status == 1).sum()) == 1 and int((status == 2).sum()) == 1 and int((status == 0).sum()) == 14
    bad = (status != 0)
    for name in ("score", "gain", "kl_to_base"):
        assert ds[name].where(bad).notnull().sum() == 0, name  # every metric of a bad run is NaN
    y = ds["gain"].sel(budget="pass@1").squeeze(drop=True)  # the micro study's fixed factors are dropped
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        effect_summary(y, n_boot=10)
    assert w, "the truth computation must warn that it left seeds out"
