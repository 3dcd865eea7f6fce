"""A study split over 2 local processes (each taking every other piece of work) equals a single-process run."""

import json

from fi_sim.engine.store import load_results

from ._helpers import assert_same_results, fi_sim_popen


def test_two_processes_merge_to_the_single_process_results(micro_study_file, micro_reference, tmp_path):
    _, ref = micro_reference
    out = tmp_path / "split"
    procs = [fi_sim_popen("run", micro_study_file, "--out", out, "--no-report", "--process-index", i,
                          "--num-processes", 2) for i in (1, 0)]  # the secondary first: it waits for process 0
    for p in procs:
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read()
    assert_same_results(load_results(out), ref)  # process 0 assembled the results
    # each process computed its own share: chunk k by process k mod 2
    by = {json.loads(p.read_text())["process"] for p in (out / "chunks").glob("*.json")}
    assert by == {0, 1}
    for receipt in (out / "chunks").glob("*.json"):
        meta = json.loads(receipt.read_text())
        assert meta["process"] == (meta["global_chunk"] % 2)


def test_merge_assembles_and_refuses_an_unfinished_split(micro_reference, tmp_path):
    """Shares of a split study, one after the other in this process: nothing is assembled until all are done."""
    import pytest

    from fi_sim.engine.runner import merge, run_study
    from fi_sim.errors import ResultsError
    from fi_sim.study import loads_study

    from ._helpers import MICRO_STUDY

    _, ref = micro_reference
    study, out = loads_study(MICRO_STUDY), tmp_path / "half"
    with pytest.raises(ResultsError, match="process 0"):  # process 0 never came: nothing exists, nothing is done
        run_study(study, out, study_text=MICRO_STUDY, quiet=True, process_index=1, num_processes=2, wait_seconds=0)
    with pytest.raises(ResultsError, match="missing"):  # process 0 does its share, then cannot assemble
        run_study(study, out, study_text=MICRO_STUDY, quiet=True, process_index=0, num_processes=2, wait_seconds=0)
    with pytest.raises(ResultsError, match="missing"):
        merge(out, quiet=True)
    assert run_study(study, out, quiet=True, process_index=1, num_processes=2) is None
    assert_same_results(merge(out, quiet=True), ref)
    assert_same_results(load_results(out), ref)
