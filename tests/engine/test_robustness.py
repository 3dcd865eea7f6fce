"""Off the happy path (issue #15): nothing ends in a traceback, nothing already computed is lost.

A corrupt results.nc is caught by its receipt; Ctrl-C saves the chunk in flight; an unwritable or full disk is
one line; two runs never write one directory at once; a directory started by other code is not resumed
silently; files get the usual umask-respecting mode.
"""

import errno
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fi_sim
from fi_sim.engine import execute, store
from fi_sim.engine.runner import run_study
from fi_sim.engine.store import DirectoryLock, RunDirectory, atomic_write, load_results
from fi_sim.errors import ResultsError
from fi_sim.study import loads_study

from ._helpers import MICRO_STUDY, ROOT, assert_same_results, fi_sim_env, fi_sim_popen, wait_for_first_chunk


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# ---------------------------------------------------------------------------------------------- 1. results.nc
def test_every_bit_flip_of_results_nc_is_caught_or_harmless(micro_reference, tmp_path):
    """Single-bit flips all over results.nc (and its receipt): each one loads the same values or raises
    ResultsError naming the file and the repair; never another exception, never other values."""
    ref_dir, ref = micro_reference
    out = copy_run(ref_dir, tmp_path / "run")
    nc = out / "results.nc"
    blob = nc.read_bytes()
    assert_same_results(load_results(out), ref)
    rng = np.random.default_rng(0)
    offsets = sorted(set(np.linspace(0, len(blob) - 1, 150).astype(int)) | set(rng.integers(0, len(blob), 150)))
    caught = 0
    for offset in offsets:
        flipped = bytearray(blob)
        flipped[offset] ^= 1 << int(rng.integers(8))
        nc.write_bytes(bytes(flipped))
        try:
            ds = load_results(out)
        except ResultsError as err:
            message = str(err)
            assert "\n" not in message and "results.nc" in message and "fi-sim merge" in message, message
            caught += 1
            continue
        assert_same_results(ds, ref)  # loaded: then it must be the same results
    assert caught == len(offsets)  # the checksum catches every flip of the data file
    nc.write_bytes(blob)
    receipt = out / "results.json"
    text = receipt.read_bytes()
    for offset in range(0, len(text), 7):  # flips of the receipt: refused or harmless, never a traceback
        flipped = bytearray(text)
        flipped[offset] ^= 1 << (offset % 8)
        receipt.write_bytes(bytes(flipped))
        try:
            assert_same_results(load_results(out), ref)
        except ResultsError as err:
            assert "\n" not in str(err)
    receipt.write_bytes(text)
    assert_same_results(load_results(out), ref)


def test_results_without_a_receipt_are_refused_and_assembling_again_repairs_them(micro_reference, tmp_path):
    from fi_sim.cli import main
    from fi_sim.engine.runner import merge

    ref_dir, ref = micro_reference
    out = copy_run(ref_dir, tmp_path / "run")
    (out / "results.json").unlink()  # e.g. killed between results.nc and its receipt, or an older fi_sim
    with pytest.raises(ResultsError, match=r"results.nc: .*no receipt results.json.*fi-sim merge"):
        load_results(out)
    assert main(["report", str(out)]) == 2  # the CLI says it in one line
    assert_same_results(merge(out, quiet=True), ref)  # the chunks are intact: assembling again repairs it
    assert_same_results(load_results(out), ref)
    receipt = json.loads((out / "results.json").read_text())
    assert receipt["study_hash"] == ref.attrs["study_hash"] and receipt["code"] == fi_sim.code_identity()


# ---------------------------------------------------------------------------------------------- 2. Ctrl-C
class Sent(list):
    def __init__(self):
        super().__init__()
        self.done = threading.Event()


def _interrupt_during_run_chunk(monkeypatch, which: int, times: int, slow: float = 0.0, later=()):
    """Send SIGINT `times` times to this process as the executor starts computing the `which`-th chunk of runs
    (the calls of `Executor.map` without a label), and once after each of the delays `later` (from another
    thread; none after `sent.done` is set); `slow` holds that chunk's device threads for that many seconds.
    Returns the list of the times they were sent."""
    sent = Sent()
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    original = execute.Executor._map
    calls = []

    def map_(self, row, args, device_batch, label):
        if label == "":
            calls.append(1)
            if len(calls) == which:
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.2)  # the handler runs in this (main) thread

                def send_later():
                    for delay in later:
                        time.sleep(delay)
                        if sent.done.is_set():  # the run already ended: a SIGINT now would hit pytest
                            return
                        sent.append(time.monotonic())
                        os.kill(os.getpid(), signal.SIGINT)

                threading.Thread(target=send_later, daemon=True).start()
                if slow:
                    real_get = execute.jax.device_get

                    def slow_get(x):
                        time.sleep(slow)
                        return real_get(x)

                    monkeypatch.setattr(execute.jax, "device_get", slow_get)
        return original(self, row, args, device_batch, label)

    monkeypatch.setattr(execute.Executor, "_map", map_)
    return sent


def test_first_ctrl_c_saves_the_chunk_in_flight_then_stops(micro_reference, tmp_path, monkeypatch, capfd):
    _, ref = micro_reference
    out = tmp_path / "run"
    _interrupt_during_run_chunk(monkeypatch, which=2, times=1)
    with pytest.raises(KeyboardInterrupt):
        run_study(loads_study(MICRO_STUDY), out, study_text=MICRO_STUDY, quiet=True, devices=1)
    err = capfd.readouterr().err
    assert err.count(execute.STOPPING) == 1 and "Traceback" not in err
    done = sorted(p.stem for p in (out / "chunks").glob("*.json"))
    assert done == ["g00-c00000", "g00-c00001"]  # the chunk in flight was finished and saved; nothing after it
    assert not list(out.rglob("*.tmp")) and not (out / "results.nc").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the run's handler is gone
    monkeypatch.undo()
    stream = io.StringIO()
    assert_same_results(run_study(loads_study(MICRO_STUDY), out, stream=stream, devices=1), ref)
    assert "4 resumed" in stream.getvalue()


def test_second_ctrl_c_stops_at_once(micro_reference, tmp_path, monkeypatch, capfd):
    _, ref = micro_reference
    out = tmp_path / "run"
    before = threading.active_count()
    # the second chunk's device thread is held 6 s; Ctrl-C twice during it must not wait for it
    sent = _interrupt_during_run_chunk(monkeypatch, which=2, times=0, slow=6.0, later=(0.5, 0.3))
    try:
        with pytest.raises(KeyboardInterrupt):
            run_study(loads_study(MICRO_STUDY), out, study_text=MICRO_STUDY, quiet=True, devices=1)
    finally:
        sent.done.set()
    stopped = time.monotonic() - sent[-1]
    assert len(sent) == 2 and stopped < 2.0, f"took {stopped:.1f}s: waited for the computation in flight"
    assert capfd.readouterr().err.count(execute.STOPPING) == 1
    done = sorted(p.stem for p in (out / "chunks").glob("*.json"))
    assert done == ["g00-c00000"] and not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    deadline = time.monotonic() + 30  # let the abandoned device thread end before the resume
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_same_results(run_study(loads_study(MICRO_STUDY), out, quiet=True, devices=1), ref)


def test_ctrl_c_of_fi_sim_run_exits_130_in_one_line_and_resumes_bitwise(tmp_path):
    # long enough chunks (a few seconds each) that the study is still computing when the signal arrives: the micro
    # study's chunks take 0.1 s on 8 host devices, so it could finish before the SIGINT lands
    slow = MICRO_STUDY.replace("steps = 60,", "steps = 1500,")
    assert slow != MICRO_STUDY
    study_file = tmp_path / "slow.toml"
    study_file.write_text(slow)
    ref = run_study(loads_study(slow), tmp_path / "reference", quiet=True, devices=1)
    out = tmp_path / "interrupted"
    # a shell's background jobs (and so a test run started in the background) inherit SIGINT ignored, and Python
    # then installs no handler. A handled signal is reset to its default by exec (an ignored one stays ignored), so
    # the child behaves as under a terminal's Ctrl-C if this process handles SIGINT while it starts it (no
    # preexec_fn: forking a multithreaded JAX process to run Python code before exec can deadlock)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = fi_sim_popen("run", study_file, "--out", out, "--no-report")
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        chunks = wait_for_first_chunk(proc, out)
        seen = len(list(chunks.glob("*.json")))
        proc.send_signal(signal.SIGINT)
        signalled = time.monotonic()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.count(execute.STOPPING) == 1, err
    assert "interrupted; finished chunks are saved" in err
    assert time.monotonic() - signalled < 60
    done = sorted(p.stem for p in chunks.glob("*.json"))
    assert done == [f"g00-c{k:05d}" for k in range(len(done))] and seen <= len(done) < 8, done
    assert not list(out.rglob("*.tmp")) and not (out / "results.nc").exists()
    ds = run_study(loads_study(slow), out, quiet=True)
    assert_same_results(ds, ref)
    assert_same_results(load_results(out), ref)


# ---------------------------------------------------------------------------------------------- 3. disks
@pytest.mark.parametrize("code, where", [(errno.ENOSPC, "replace"), (errno.EROFS, "mkstemp"),
                                         (errno.EDQUOT, "fsync"), (errno.EACCES, "mkstemp")])
def test_a_failed_write_is_one_line_naming_the_file_and_the_errno(tmp_path, monkeypatch, code, where):
    target = tmp_path / "d" / "manifest.json"

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr({"replace": os, "mkstemp": store.tempfile, "fsync": os}[where], where, fail)
    with pytest.raises(ResultsError) as caught:
        atomic_write(target, b"{}")
    message = str(caught.value)
    assert str(target) in message and os.strerror(code) in message and "\n" not in message
    assert "finished chunks are kept" in message and "run the same command again to resume" in message
    monkeypatch.undo()
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))


def test_a_full_disk_while_writing_results_nc_is_one_line_and_keeps_the_chunks(micro_reference, tmp_path,
                                                                                 monkeypatch):
    import xarray as xr

    from fi_sim.engine.runner import merge

    ref_dir, ref = micro_reference
    out = copy_run(ref_dir, tmp_path / "run")
    chunks = {p.name: p.read_bytes() for p in (out / "chunks").iterdir()}

    def full(self, path, *args, **kwargs):  # as h5py says it: errno only in the message
        raise OSError(f"Unable to synchronously create file (unable to open file: name = '{path}', errno = 28, "
                      "error message = 'No space left on device')")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    with pytest.raises(ResultsError, match=r"results.nc: cannot write \(No space left on device\)"):
        merge(out, quiet=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (out / "chunks").iterdir()} == chunks
    assert not list(out.glob(".*.tmp"))
    with pytest.raises(ResultsError):  # no trusted results.nc now, and load_results says so
        load_results(out)
    assert_same_results(merge(out, quiet=True), ref)


def test_an_unwritable_report_is_one_line(micro_reference, tmp_path, monkeypatch, capsys):
    import fi_sim.report
    from fi_sim.cli import main

    out = copy_run(micro_reference[0], tmp_path / "run")

    def denied(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(out / "report.md"))

    monkeypatch.setattr(fi_sim.report, "write_report", denied)
    assert main(["merge", str(out), "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "report.md: cannot write (Permission denied)" in line


@pytest.mark.parametrize("where", ["/proc/fi_sim_test", "/sys/fi_sim_test"])
def test_an_unwritable_out_fails_in_one_line_before_compiling(micro_study_file, where):
    from ._helpers import fi_sim

    done = fi_sim("run", micro_study_file, "--out", where, "--no-report", timeout=120)
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert line.startswith(f"fi-sim: error: {where}") and "writable --out" in line
    assert "compiled" not in done.stderr and "loaded" not in done.stderr


def test_the_directory_is_probed_before_compiling(micro_study_file, tmp_path, monkeypatch):
    """The probe runs before the plan is sized (compiled): a failing probe means nothing was compiled."""
    from fi_sim.engine import runner

    compiled = []
    monkeypatch.setattr(runner, "size_plan", lambda *a, **k: compiled.append(1))
    real_open = os.open

    def refuse_probe(path, *args, **kwargs):
        if ".fi_sim-probe-" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_probe)
    with pytest.raises(ResultsError, match="not writable \\(Read-only file system\\)"):
        run_study(loads_study(MICRO_STUDY), tmp_path / "ro", quiet=True, devices=1)
    assert not compiled


# ---------------------------------------------------------------------------------------------- 4. locks
def test_the_directory_lock(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    with DirectoryLock(path):
        with pytest.raises(ResultsError, match=rf"is being written by another fi-sim run \(pid {os.getpid()}\); "
                                               "wait for it or use another --out"):
            DirectoryLock(path).acquire()
        with pytest.raises(ResultsError, match="being written"):  # a split study excludes a single run
            DirectoryLock(path, (0, 2)).acquire()
    with DirectoryLock(path, (0, 2)), DirectoryLock(path, (1, 2)):  # processes of one split study share it
        with pytest.raises(ResultsError, match="being written"):
            DirectoryLock(path, (1, 2)).acquire()  # ... but not an index
        with pytest.raises(ResultsError, match=rf"pid {os.getpid()}"):
            DirectoryLock(path).acquire()
    with DirectoryLock(path):  # released: free again
        pass


def test_a_process_removes_only_temporaries_no_live_writer_can_own(tmp_path):
    rd = RunDirectory.open(tmp_path / "run", "a" * 64, "{}", {"layout": {"chunk_size": 2, "device_batch": 2}})
    chunks = rd.path / "chunks"
    chunks.mkdir()
    names = {"p0": ".g00-c00000.npz.p0~abc123.tmp", "p1": ".g00-c00001.npz.p1~def456.tmp",
             "single": ".g00-c00002.npz.s~ghi789.tmp", "old": ".g00-c00003.npz.jkl012.tmp"}
    for name in names.values():
        (chunks / name).write_bytes(b"half")
    assert rd.remove_stale_temporaries((0, 2)) == 3
    assert [p.name for p in chunks.iterdir()] == [names["p1"]]  # process 1's may be live: left alone
    assert rd.remove_stale_temporaries() == 1  # a single-process run holds the directory alone


def test_temporaries_carry_their_writers_tag(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(os.path.basename(a)), real(a, b)))
    (tmp_path / "run").mkdir()
    with DirectoryLock(tmp_path / "run", (3, 4)):
        atomic_write(tmp_path / "run" / "x.json", b"{}")
    with DirectoryLock(tmp_path / "run"):
        atomic_write(tmp_path / "run" / "y.json", b"{}")
    assert seen[0].startswith(".x.json.p3~") and seen[1].startswith(".y.json.s~"), seen


def test_a_second_fi_sim_run_into_the_same_directory_is_refused(micro_study_file, tmp_path):
    out = tmp_path / "shared"
    first = fi_sim_popen("run", micro_study_file, "--out", out, "--no-report", "--quiet")
    try:
        deadline = time.monotonic() + 120
        while not ((out / ".lock").exists() and (out / ".lock").read_text().strip()):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run took no lock"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "fi_sim.cli", "run", str(micro_study_file), "--out", str(out),
                                 "--no-report", "--quiet"], capture_output=True, text=True, cwd=ROOT,
                                env=fi_sim_env(), timeout=120)
        assert first.poll() is None, "the first run ended before the second started: nothing was tested"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert second.returncode == 2
    line = one_line(second.stderr)
    assert f"{out} is being written by another fi-sim run (pid {first.pid}); wait for it or use another --out" in line


# ---------------------------------------------------------------------------------------------- 5. code identity
def _other_code(monkeypatch, ident="0.1.0+0123456789ab"):
    monkeypatch.setattr(fi_sim, "code_identity", lambda: ident)
    monkeypatch.setattr(fi_sim, "code_provenance", lambda: {"id": ident, "version": "0.1.0",
                                                            "source_sha256": "0" * 64, "git_commit": None})
    return ident


def test_a_directory_started_by_other_code_is_not_resumed_silently(micro_reference, tmp_path, monkeypatch):
    ref_dir, ref = micro_reference
    this = fi_sim.code_identity()
    out = copy_run(ref_dir, tmp_path / "run")
    for name in ("results.nc", "results.json", "chunks/g00-c00007.npz", "chunks/g00-c00007.json"):
        (out / name).unlink()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["codes"] == [this] and manifest["code"]["id"] == this
    assert json.loads((out / "chunks" / "g00-c00000.json").read_text())["code"] == this
    other = _other_code(monkeypatch)
    with pytest.raises(ResultsError, match=re.escape(f"{out} was started by fi_sim {this}; this is {other}: results "
                                                     "would mix code versions. Use a new --out, or --allow-mixed-code")):
        run_study(loads_study(MICRO_STUDY), out, quiet=True, devices=1)
    assert not (out / "chunks" / "g00-c00007.json").exists()  # refused before computing anything
    ds = run_study(loads_study(MICRO_STUDY), out, quiet=True, devices=1, allow_mixed_code=True)
    assert_same_results(ds, ref)  # (the code did not really change)
    assert json.loads((out / "manifest.json").read_text())["codes"] == [this, other]
    assert json.loads((out / "chunks" / "g00-c00007.json").read_text())["code"] == other
    loaded = load_results(out)
    assert loaded.attrs["fi_sim_codes"] == f"{this} {other}" and loaded.attrs["mixed_code"] == 1
    assert loaded.attrs["fi_sim_code"] == other
    # once recorded, that code resumes without the flag; the first code too
    run_study(loads_study(MICRO_STUDY), out, quiet=True, devices=1)
    monkeypatch.undo()
    run_study(loads_study(MICRO_STUDY), out, quiet=True, devices=1)


def test_a_directory_without_a_recorded_identity_is_unknown_code(micro_reference, tmp_path, capsys):
    from fi_sim.cli import main

    out = copy_run(micro_reference[0], tmp_path / "old")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["code"], manifest["codes"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    study = out / "study.toml"
    assert main(["run", str(study), "--out", str(out), "--no-report", "--quiet", "--cpu-devices", "1"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "unknown identity" in line and "--allow-mixed-code" in line
    assert main(["run", str(study), "--out", str(out), "--no-report", "--quiet", "--cpu-devices", "1",
                 "--allow-mixed-code"]) == 0
    loaded = load_results(out)
    assert loaded.attrs["fi_sim_codes"] == f"unknown {fi_sim.code_identity()}" and loaded.attrs["mixed_code"] == 1


def test_the_code_identity_follows_the_source(tmp_path):
    """Any edit of a source file changes the identity; the version string alone would not."""
    shutil.copytree(ROOT / "fi_sim", tmp_path / "fi_sim", ignore=shutil.ignore_patterns("__pycache__"))
    probe = [sys.executable, "-c", "import fi_sim; print(fi_sim.code_identity(), fi_sim.__file__)"]
    env = dict(os.environ, PYTHONPATH=str(tmp_path))

    def identity():
        text = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.split()
        assert text[1].startswith(str(tmp_path))
        return text[0]

    first = identity()
    assert first.startswith(fi_sim.__version__ + "+") and first == identity()
    with open(tmp_path / "fi_sim" / "engine" / "faults.py", "a") as f:
        f.write("\n# an edit\n")
    assert identity() != first


# ---------------------------------------------------------------------------------------------- 6. file modes
def test_files_get_the_usual_mode(micro_reference, tmp_path):
    ref_dir, _ = micro_reference  # written under the tests' umask
    mask = os.umask(0o022)
    os.umask(mask)
    expected = 0o666 & ~mask
    for name in ("results.nc", "results.json", "manifest.json", "study.json", "chunks/g00-c00000.npz",
                 "chunks/g00-c00000.json"):
        assert stat.S_IMODE((ref_dir / name).stat().st_mode) == expected, name
    for umask in (0o022, 0o002, 0o077):
        old = os.umask(umask)
        try:
            atomic_write(tmp_path / f"f{umask:o}", b"x")
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / f"f{umask:o}").stat().st_mode) == 0o666 & ~umask
