"""A study split over 2 local processes through `jax.distributed` (a real coordination service on a free local
port, each process calling `fi-sim run --distributed --coordinator ...`) equals a single-process run bitwise."""

import json
import socket

from fi_sim.engine.store import load_results

from ._helpers import assert_same_results, fi_sim, fi_sim_popen


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_jax_distributed_processes_merge_to_the_single_process_results(micro_study_file, micro_reference,
                                                                          tmp_path):
    _, ref = micro_reference
    out = tmp_path / "distributed"
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [fi_sim_popen("run", micro_study_file, "--out", out, "--no-report", "--distributed", "--coordinator",
                          coordinator, "--num-processes", 2, "--process-index", i) for i in (1, 0)]
    try:
        for p in procs:
            p.wait(timeout=240)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    logs = [p.stderr.read() for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    # the layout came from jax.distributed: each process says which of the 2 it was
    assert "process 1 of 2" in logs[0] and "process 0 of 2" in logs[1], logs
    assert_same_results(load_results(out), ref)  # process 0 assembled the results
    for receipt in (out / "chunks").glob("*.json"):
        meta = json.loads(receipt.read_text())
        assert meta["process"] == meta["global_chunk"] % 2


def test_distributed_options_are_validated_in_one_line(micro_study_file, tmp_path):
    out = tmp_path / "never"
    for args, field in ((["--coordinator", "127.0.0.1:1"], "--coordinator"),  # without --distributed
                        (["--distributed", "--coordinator", "127.0.0.1:1"], "--coordinator"),  # without i and P
                        (["--num-processes", 2, "--process-index", 2], "--process-index")):
        r = fi_sim("run", micro_study_file, "--out", out, *args, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and field in r.stderr, r.stderr
    assert not out.exists()
