"""The run directory: only complete, checksummed work of this study counts; foreign or corrupt directories give
a clear error."""

import json

import numpy as np
import pytest

from fi_sim.engine.store import RunDirectory, load_results
from fi_sim.errors import ResultsError


def make(tmp_path, study_hash="a" * 64):
    return RunDirectory.open(tmp_path / "run", study_hash, "{}", {"layout": {"chunk_size": 2, "device_batch": 2}})


def test_a_piece_of_work_counts_only_with_a_matching_receipt(tmp_path):
    rd = make(tmp_path)
    arrays = {"x": np.arange(5.0), "run_id": np.array([3, 4])}
    rd.write("chunks", "g00-c00000", arrays, {"runs": 2})
    assert rd.has("chunks", "g00-c00000")
    read, meta = rd.read("chunks", "g00-c00000")
    assert np.array_equal(read["x"], arrays["x"]) and meta["study_hash"] == "a" * 64
    data = rd.path / "chunks" / "g00-c00000.npz"
    blob = data.read_bytes()
    data.write_bytes(blob[:-10])  # torn data file: not done, and reading it says why
    assert not rd.has("chunks", "g00-c00000")
    with pytest.raises(ResultsError, match="checksum"):
        rd.read("chunks", "g00-c00000")
    data.write_bytes(blob)
    (rd.path / "chunks" / "g00-c00000.json").write_text("{not json")  # torn receipt
    assert not rd.has("chunks", "g00-c00000")
    with pytest.raises(ResultsError, match="corrupt receipt"):
        rd.read("chunks", "g00-c00000")
    (rd.path / "chunks" / "g00-c00000.json").unlink()  # data without a receipt: an interrupted write
    assert not rd.has("chunks", "g00-c00000")
    assert rd.missing("chunks", ["g00-c00000"]) == ["g00-c00000"]


def test_a_receipt_of_another_study_is_not_this_studys_work(tmp_path):
    rd = make(tmp_path)
    rd.write("chunks", "g00-c00000", {"x": np.zeros(2)}, {})
    other = RunDirectory(rd.path, "b" * 64)
    assert not other.has("chunks", "g00-c00000")
    with pytest.raises(ResultsError, match="another study"):
        other.read("chunks", "g00-c00000")


def test_foreign_and_corrupt_directories_give_clear_errors(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ResultsError, match="not a fi_sim results directory"):
        RunDirectory.open(foreign, "a" * 64, "{}", {})
    with pytest.raises(ResultsError, match="no manifest.json"):
        load_results(foreign)
    rd = make(tmp_path)
    with pytest.raises(ResultsError, match="different study"):
        RunDirectory.open(rd.path, "b" * 64, "{}", {})
    with pytest.raises(ResultsError, match="no results.nc"):
        load_results(rd.path)
    (rd.path / "results.nc").write_bytes(b"garbage")
    with pytest.raises(ResultsError, match="unreadable results file"):
        load_results(rd.path)
    manifest = rd.path / "manifest.json"
    manifest.write_text(manifest.read_text()[:20])
    with pytest.raises(ResultsError, match="corrupt manifest"):
        load_results(rd.path)
    manifest.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ResultsError, match="format"):
        RunDirectory.open(rd.path, "a" * 64, "{}", {})


def test_stale_temporaries_are_ignored_and_tidied(tmp_path):
    rd = make(tmp_path)
    (rd.path / "chunks").mkdir()
    (rd.path / "chunks" / ".g00-c00000.npz.x1.tmp").write_bytes(b"half")
    assert not rd.has("chunks", "g00-c00000")
    assert rd.remove_stale_temporaries() == 1


def test_a_secondary_process_does_not_create_the_directory(tmp_path):
    with pytest.raises(ResultsError, match="process 0"):
        RunDirectory.open(tmp_path / "new", "a" * 64, "{}", {}, create=False, wait_seconds=0)
    assert not (tmp_path / "new").exists()


def test_cli_reports_a_corrupt_directory_in_one_line(tmp_path, micro_study_file):
    from fi_sim.cli import main

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1,2")
    assert main(["merge", str(foreign)]) == 2
    assert main(["run", str(micro_study_file), "--out", str(foreign), "--quiet", "--cpu-devices", "1"]) == 2
