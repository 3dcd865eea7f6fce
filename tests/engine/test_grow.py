"""A study grows into its results directory (more seeds, a new description) and reuses every unchanged run."""

import json

import pytest

from fi_sim.engine import grow
from fi_sim.engine.runner import run_study
from fi_sim.errors import ResultsError
from fi_sim.study import loads_study

from ._helpers import MICRO_STUDY, assert_same_results


def test_a_study_grows_into_its_directory_and_equals_a_fresh_run(micro_reference, tmp_path):
    out = tmp_path / "grown"
    small = MICRO_STUDY.replace("seeds = 4", "seeds = 2")
    run_study(loads_study(small), out, study_text=small, quiet=True, devices=1)
    bigger = MICRO_STUDY.replace('name = "micro"', 'name = "micro"\ndescription = "four seeds now"')
    with pytest.raises(ResultsError, match="--grow"):
        run_study(loads_study(bigger), out, study_text=bigger, quiet=True, devices=1)
    ds = run_study(loads_study(bigger), out, study_text=bigger, quiet=True, devices=1, grow_study=True)
    assert_same_results(ds, micro_reference[1])  # bitwise the fresh 4-seed run
    receipts = [json.loads(p.read_text()) for p in sorted((out / "chunks").glob("*.json"))]
    assert sum(r["reused"] for r in receipts) == 8  # seeds 0 and 1 of 2 verifiers x 2 scaffolds
    assert sum(r["runs"] for r in receipts) == 16
    assert not (out / grow.PREVIOUS).exists()  # the earlier chunks are gone once copied
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["study_hash"] == loads_study(bigger).hash and len(manifest["lineage"]) == 1
    assert "four seeds now" in (out / "study.toml").read_text()


def test_growing_refuses_another_world_or_study_seed(micro_reference, tmp_path):
    out, _ = micro_reference
    other = MICRO_STUDY.replace("eval_size = 8", "eval_size = 16")
    with pytest.raises(ResultsError, match="another world"):
        grow.start(out, loads_study(other), None)
    reseeded = MICRO_STUDY.replace('name = "micro"', 'name = "micro"\nseed = 7')
    with pytest.raises(ResultsError, match="study seed"):
        grow.start(out, loads_study(reseeded), None)
