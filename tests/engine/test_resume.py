"""A killed study loses nothing: SIGKILL mid-study, resume, and the results equal an uninterrupted run bitwise."""

import io
import os
import signal

from fi_sim.engine.runner import run_study
from fi_sim.engine.store import load_results
from fi_sim.study import loads_study

from ._helpers import MICRO_STUDY, assert_same_results, fi_sim_popen, wait_for_first_chunk


def test_sigkill_mid_study_then_resume_equals_an_uninterrupted_run(micro_study_file, micro_reference, tmp_path):
    ref_dir, ref = micro_reference
    out = tmp_path / "killed"
    proc = fi_sim_popen("run", micro_study_file, "--out", out, "--no-report", "--quiet")
    try:
        chunks = wait_for_first_chunk(proc, out)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = len(list(chunks.glob("*.json")))
    assert not (out / "results.nc").exists() and 1 <= done < 8, f"{done} chunk(s) done: not killed mid-study"

    # resume in this process, on one device (the killed run had 8): the rest is computed, nothing is redone
    stream = io.StringIO()
    ds = run_study(loads_study(MICRO_STUDY), out, stream=stream)
    assert f"{2 * done} resumed" in stream.getvalue()
    assert_same_results(ds, ref)
    assert_same_results(load_results(out), ref)
    # the chunks written before the kill were not recomputed: same bytes as the reference's
    for receipt in sorted(chunks.glob("*.json"))[:done]:
        assert receipt.with_suffix(".npz").read_bytes() == (ref_dir / "chunks" / receipt.with_suffix(".npz").name).read_bytes()


def test_a_torn_chunk_never_reads_as_complete(micro_reference, tmp_path):
    """A chunk whose data file was cut short (or a stray temporary file) is recomputed, not trusted."""
    import shutil

    ref_dir, ref = micro_reference
    out = tmp_path / "torn"
    shutil.copytree(ref_dir, out)
    (out / "results.nc").unlink()
    victim = sorted((out / "chunks").glob("*.npz"))[3]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])  # as if the machine died mid-write without the atomic rename
    (out / "chunks" / ".g00-c00009.npz.abc.tmp").write_bytes(b"partial")
    run_study(loads_study(MICRO_STUDY), out, quiet=True)
    assert victim.read_bytes() == blob
    assert not list((out / "chunks").glob(".*.tmp"))
    assert_same_results(load_results(out), ref)
