"""The run directory: durable, resumable, checkable.

    DIR/study.toml        the study file as given (when run from a file)
    DIR/study.json        the resolved study (every level's parameters written out)
    DIR/manifest.json     format, fi_sim version, study hash, the plan's shape and the engine layout
                          (chunk size, device batch) that every process and every resume must share
    DIR/bases/*.npz       pretrained base parameters, one file per base job
    DIR/base_evals/*.npz  base evaluations, one file per chunk of (base, scaffold, verifier) jobs
    DIR/chunks/*.npz      post-training results, one file per chunk of runs
    DIR/*/*.json          a piece of work's receipt: checksum of its .npz, the study hash; written after the .npz
    DIR/results.nc        the assembled xarray Dataset (netCDF4)
    DIR/results.json      results.nc's receipt: its sha256, the study hash and the code identity; written after it
    DIR/.lock, .lock-i    held (flock) by the fi-sim run writing the directory (.lock-i: process i of a split study)

Every file is written to a temporary name, flushed to disk and renamed into place, so an interrupted write
never leaves a file that reads as complete. A piece of work counts as done only when its receipt exists, names
this study and the checksum of its data file matches; anything else is recomputed. Work is keyed by content,
so resuming reproduces exactly what an uninterrupted run would have written.

The manifest records the identity of the code that started the directory (`fi_sim.code_identity()`: version and
a hash of the package source); a resume by other code is refused unless allowed, and every identity that
contributed is recorded. Temporary files carry their writer's tag (`.NAME.TAG~RANDOM.tmp`: `s` a single-process
run, `pI` process I of a split study), so that a process tidies only the temporaries of its own (dead)
predecessors, never a live writer's. A write that fails for lack of space or permission raises a one-line
`ResultsError` that names the file; finished work is kept and the same command resumes.
"""

from __future__ import annotations

import contextvars
import errno
import hashlib
import io
import json
import os
import re
import socket
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np

import fi_sim
from fi_sim import __version__
from fi_sim.errors import ResultsError

FORMAT = "fi_sim-results"
FORMAT_VERSION = 1
KINDS = ("bases", "base_evals", "chunks")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# the tag of this process's temporary files (see `DirectoryLock`): "s" a single-process run, "pI" process I of a
# split study, "x" any other writer
_WRITER = contextvars.ContextVar("fi_sim_writer", default="x")
_TEMPORARY = re.compile(r"^\..+\.([A-Za-z0-9]+)~[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask sets it, which is not thread-safe)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _errno(err: OSError) -> int | None:
    """The errno of an OSError, also where h5py only writes it into the message ("errno = 28")."""
    if err.errno:
        return err.errno
    found = re.search(r"errno = (\d+)", str(err))
    return int(found.group(1)) if found else None


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _meaning(err: OSError) -> str:
    code = _errno(err)
    return os.strerror(code) if code else (str(err).splitlines()[0] if str(err) else type(err).__name__)


def storage_error(path, err: OSError) -> ResultsError:
    """A failed write as one line: the file, what the system said, and that nothing finished is lost."""
    code = _errno(err)
    meaning = _meaning(err)
    hints: dict[int | None, str] = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (quota)",
                                    errno.EROFS: "use a writable file system", errno.EACCES: "fix its permissions",
                                    errno.EPERM: "fix its permissions"}
    hint = hints.get(code, "fix the cause")
    return ResultsError(f"{path}: cannot write ({meaning}); finished chunks are kept: {hint}, then run the same "
                        "command again to resume")


def atomic_replace(path: Path, write) -> None:
    """Put a file at `path` durably: `write(tmp)` fills a temporary file in the same directory, which gets the
    usual umask-respecting mode (mkstemp creates 0600), is fsynced and renamed into place, then the directory is
    fsynced. An interrupted write leaves no file at `path` (and removes its temporary file). A write that fails
    with an errno (no space, a read-only file system, no permission, ...) raises a one-line `ResultsError`."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_WRITER.get()}~", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        if _errno(err) is None:
            raise
        raise storage_error(path, err) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes durably (see `atomic_replace`)."""
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **cast(dict[str, Any], arrays))  # the stubs type **kwds against savez's bool keyword
    return buf.getvalue()


def check_writable(path: Path) -> None:
    """Create `path` if needed and write, fsync and remove a probe file in it: refuses (one line) a results
    directory that cannot be created or written before any compile or compute."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ResultsError(f"{path}: cannot create the results directory ({_meaning(err)}); "
                           "choose a writable --out") from None
    probe = path / f".fi_sim-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o666)
        try:
            os.write(fd, b"fi_sim write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ResultsError(f"{path}: the results directory is not writable ({_meaning(err)}); "
                           "choose a writable --out") from None


def _own_file(name: str) -> bool:
    """fi_sim's bookkeeping files that may exist in a directory before its manifest (a lock, a write probe)."""
    return name == ".lock" or name.startswith(".lock-") or name.startswith(".fi_sim-probe-")


class DirectoryLock:
    """The exclusive right to write a results directory, held for a whole run (`fcntl.flock`, non-blocking).

    A single-process run holds DIR/.lock exclusively. Process i of a split study holds DIR/.lock shared (so a
    single-process run and a split study exclude each other) and DIR/.lock-i exclusively (so two processes with
    the same index exclude each other), and tags its temporary files `pI`. The kernel releases a lock when its
    holder dies, however it dies; a lock file left behind is harmless. flock works across the processes of one
    host and on most shared file systems (NFS emulates it with byte-range locks); where it is unsupported the run
    goes on without a lock, as before."""

    def __init__(self, path: Path, process: tuple[int, int] | None = None):
        self.path = Path(path)
        self.process = None if process is None or process[1] <= 1 else process
        self.tag = "s" if self.process is None else f"p{self.process[0]}"
        self._fds: list[int] = []
        self._token: contextvars.Token[str] | None = None

    def acquire(self) -> "DirectoryLock":
        import fcntl

        files = [(self.path / ".lock", fcntl.LOCK_EX)] if self.process is None else \
            [(self.path / ".lock", fcntl.LOCK_SH), (self.path / f".lock-{self.process[0]}", fcntl.LOCK_EX)]
        try:
            for file, mode in files:
                try:
                    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o666)
                except OSError as err:
                    raise storage_error(file, err) from None
                self._fds.append(fd)
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise ResultsError(f"{self.path} is being written by another fi-sim run ({self._holders(file)}); "
                                       "wait for it or use another --out") from None
                except OSError as err:
                    if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise storage_error(file, err) from None
                if mode == fcntl.LOCK_EX:  # who holds it, for the message of a run that is refused
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except BaseException:
            self.release()
            raise
        self._token = _WRITER.set(self.tag)
        return self

    def _holders(self, file: Path) -> str:
        files = [file] + ([] if file.name != ".lock" else sorted(self.path.glob(".lock-*")))
        pids = []
        for f in files:
            try:
                text = f.read_text().split()
            except OSError:
                continue
            if text and text[0] not in pids:
                pids.append(text[0] + (f" on {text[1]}" if len(text) > 1 and text[1] != socket.gethostname()
                                       else ""))
        return ("pid " + ", ".join(pids)) if pids else "pid unknown"

    def release(self) -> None:
        if self._token is not None:
            _WRITER.reset(self._token)
            self._token = None
        for fd in reversed(self._fds):
            try:
                os.close(fd)  # closing releases the flock
            except OSError:
                pass
        self._fds = []

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def recorded_codes(manifest: dict) -> list[str]:
    """The code identities that contributed to a results directory (empty: written before they were recorded)."""
    codes = manifest.get("codes")
    if isinstance(codes, list) and all(isinstance(c, str) for c in codes) and codes:
        return list(codes)
    code = manifest.get("code")
    return [code["id"]] if isinstance(code, dict) and isinstance(code.get("id"), str) else []


def check_code(path: Path, manifest: dict, allow_mixed_code: bool = False) -> list[str]:
    """Refuse (one line) to resume a directory that other code started, unless allowed; returns the identities
    that will have contributed once this code has resumed it."""
    codes, this = recorded_codes(manifest), fi_sim.code_identity()
    if this in codes:
        return codes
    if not allow_mixed_code:
        started = ("fi_sim " + ", ".join(codes)) if codes else \
            "fi_sim of unknown identity (a directory from before code identities were recorded)"
        raise ResultsError(f"{path} was started by {started}; this is {this}: results would mix code versions. "
                           "Use a new --out, or --allow-mixed-code to continue (recorded in the results)")
    return (codes or [UNKNOWN_CODE]) + [this]


UNKNOWN_CODE = "unknown"  # what a directory from before code identities were recorded was computed by


class RunDirectory:
    lock: DirectoryLock  # set (not created) by `engine.runner.prepare`: the lock its run holds while writing

    def __init__(self, path: Path, study_hash: str | None = None):
        self.path = Path(path)
        self.study_hash = study_hash

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, study_hash: str, study_json: str, plan_summary: dict,
             study_text: str | None = None, *, create: bool = True, wait_seconds: float = 0.0,
             allow_mixed_code: bool = False) -> "RunDirectory":
        """Create a new run directory, or reopen one that holds the same study (to resume).

        `create=False` (a secondary process of a split study) never creates the directory: it waits up to
        `wait_seconds` for the primary process to write the manifest. Reopening a directory that other code
        started is refused unless `allow_mixed_code` (then this code's identity is added to the manifest)."""
        rd = cls(Path(path), study_hash)
        manifest_path = rd.path / "manifest.json"
        deadline = time.monotonic() + wait_seconds
        while not create and not manifest_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not create and not manifest_path.exists():
            raise ResultsError(f"{rd.path}: no manifest.json after {wait_seconds:.0f}s; start process 0 of the "
                               "study (it creates the directory) or run it once without --process-index")
        manifest = cls.existing(rd.path, study_hash)
        if manifest is not None:
            codes = check_code(rd.path, manifest, allow_mixed_code)
            if codes != recorded_codes(manifest):
                manifest.update(codes=codes, mixed_code=True)
                atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
            return rd
        rd.path.mkdir(parents=True, exist_ok=True)
        if study_text is not None:
            atomic_write(rd.path / "study.toml", study_text.encode())
        atomic_write(rd.path / "study.json", study_json.encode())
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fi_sim_version": __version__,
            "code": fi_sim.code_provenance(),
            "codes": [fi_sim.code_identity()],
            "study_hash": study_hash,
            "plan": plan_summary,
        }
        atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
        return rd

    @classmethod
    def existing(cls, path: str | Path, study_hash: str) -> dict | None:
        """The manifest of a results directory that holds this study; None for a new or empty path. Refuses a
        directory of another study and a non-empty directory that is not a results directory."""
        path = Path(path)
        if (path / "manifest.json").exists():
            manifest = cls(path).manifest()
            if manifest["study_hash"] != study_hash:
                raise ResultsError(
                    f"{path}: holds a different study (study hash {manifest['study_hash'][:12]}, "
                    f"this study {study_hash[:12]}); choose another --out directory, or --grow to grow it into "
                    "this study (reusing every unchanged finished run)"
                )
            return manifest
        if path.exists() and (not path.is_dir() or any(not _own_file(p.name) for p in path.iterdir())):
            raise ResultsError(f"{path}: exists and is not a fi_sim results directory (no manifest.json); "
                               "choose an empty or new --out directory")
        return None

    def manifest(self) -> dict:
        path = self.path / "manifest.json"
        if not self.path.is_dir():
            raise ResultsError(f"{self.path}: not a directory; expected a fi_sim results directory")
        if not path.exists():
            raise ResultsError(f"{self.path}: no manifest.json; not a fi_sim results directory")
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultsError(f"{path}: corrupt manifest ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ResultsError(f"{path}: format {manifest.get('format') if isinstance(manifest, dict) else None!r}; "
                               f"expected {FORMAT!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ResultsError(f"{path}: format_version {manifest.get('format_version')!r}; "
                               f"this fi_sim reads version {FORMAT_VERSION}")
        if not isinstance(manifest.get("study_hash"), str):
            raise ResultsError(f"{path}: corrupt manifest (no study_hash)")
        return manifest

    # ------------------------------------------------------------------ pieces of work
    def _paths(self, kind: str, name: str) -> tuple[Path, Path]:
        return self.path / kind / f"{name}.npz", self.path / kind / f"{name}.json"

    def _receipt(self, path: Path) -> dict | None:
        try:
            meta = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return meta if isinstance(meta, dict) else None

    def has(self, kind: str, name: str) -> bool:
        """A piece of work is done when its receipt exists, names this study, and its data file matches."""
        data, receipt = self._paths(kind, name)
        if not receipt.exists() or not data.exists():
            return False
        meta = self._receipt(receipt)
        if meta is None or not self._same_study(meta, kind):
            return False
        try:
            return meta.get("sha256") == sha256_bytes(data.read_bytes())
        except OSError:
            return False

    def _same_study(self, meta: dict, kind: str = "") -> bool:
        # receipts written before the study hash was recorded in them are accepted (the manifest was checked)
        if self.study_hash is None or meta.get("study_hash", self.study_hash) == self.study_hash:
            return True
        # a grown study (fi_sim.engine.grow) keeps its bases: a base depends only on the world, the study seed,
        # its level and its seed, which its file name and growth keep
        return kind == "bases" and meta.get("study_hash") in self.lineage()

    def lineage(self) -> tuple[str, ...]:
        """The study hashes this directory held before it grew into its current study."""
        if not hasattr(self, "_lineage"):
            try:
                self._lineage = tuple(json.loads((self.path / "manifest.json").read_text()).get("lineage", ()))
            except (OSError, ValueError, AttributeError):
                self._lineage = ()
        return self._lineage

    def write(self, kind: str, name: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        data_path, receipt_path = self._paths(kind, name)
        blob = npz_bytes(arrays)
        atomic_write(data_path, blob)
        receipt = dict(meta, sha256=sha256_bytes(blob), code=fi_sim.code_identity())  # the code that computed it
        if self.study_hash is not None:
            receipt["study_hash"] = self.study_hash
        atomic_write(receipt_path, json.dumps(receipt, sort_keys=True).encode())

    def read(self, kind: str, name: str) -> tuple[dict[str, np.ndarray], dict]:
        data_path, receipt_path = self._paths(kind, name)
        try:
            meta = json.loads(receipt_path.read_text())
            blob = data_path.read_bytes()
        except FileNotFoundError as err:
            raise ResultsError(f"{self.path}: missing {err.filename}; run `fi-sim run` again to resume") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultsError(f"{receipt_path}: corrupt receipt ({err})") from None
        if not isinstance(meta, dict):
            raise ResultsError(f"{receipt_path}: corrupt receipt (not a JSON object)")
        if not self._same_study(meta, kind):
            raise ResultsError(f"{receipt_path}: belongs to another study (study hash "
                               f"{str(meta.get('study_hash'))[:12]}, this directory {str(self.study_hash)[:12]})")
        if meta.get("sha256") != sha256_bytes(blob):
            raise ResultsError(f"{data_path}: checksum does not match its receipt (corrupt or partial file)")
        try:
            with np.load(io.BytesIO(blob)) as z:
                return {k: z[k] for k in z.files}, meta
        except (ValueError, OSError, zipfile.BadZipFile) as err:
            raise ResultsError(f"{data_path}: unreadable data file ({err})") from None

    def missing(self, kind: str, names) -> list[str]:
        return [n for n in names if not self.has(kind, n)]

    def remove_stale_temporaries(self, process: tuple[int, int] | None = None) -> int:
        """Delete temporary files left by an interrupted write (they never count as work; this only tidies).

        A single-process run (`process` None, holding DIR/.lock exclusively) removes every one. Process i of a
        split study removes its own tag's (`pI`: its dead predecessors', since it holds DIR/.lock-i) and those
        of single-process runs and older fi_sim versions (none can be alive while it holds DIR/.lock shared),
        never another process's: that one may be writing it now."""
        mine = None if process is None or process[1] <= 1 else f"p{process[0]}"
        removed = 0
        for kind in ("",) + KINDS:
            folder = self.path / kind
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tag = _TEMPORARY.match(tmp.name)
                    if mine is not None and tag and re.fullmatch(r"p\d+", tag.group(1)) and tag.group(1) != mine:
                        continue
                    try:
                        tmp.unlink()
                        removed += 1
                    except OSError:
                        pass
        return removed

    # ------------------------------------------------------------------ final dataset
    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.path / name, text.encode())

    def write_dataset(self, ds) -> Path:
        """Write results.nc, then its receipt results.json (sha256, study hash, code identities); both durably.

        The code identities that contributed (the manifest's, and this code's, which assembles) go into the
        Dataset's attrs: `fi_sim_code` (this code), `fi_sim_codes` (all, space-separated), `mixed_code` (0/1)."""
        path, receipt_path = self.path / "results.nc", self.path / RESULTS_RECEIPT
        manifest = self.manifest()
        this, codes = fi_sim.code_identity(), recorded_codes(manifest)
        codes = codes + [this] if this not in codes else codes
        ds.attrs.update(fi_sim_code=this, fi_sim_codes=" ".join(codes), mixed_code=int(len(codes) > 1))
        try:  # an old receipt must never vouch for a new results.nc
            receipt_path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            raise storage_error(receipt_path, err) from None
        digest = {}

        def write(tmp):
            ds.to_netcdf(tmp, engine="h5netcdf")
            digest["sha256"] = sha256_file(tmp)

        atomic_replace(path, write)
        receipt = {"file": path.name, "sha256": digest["sha256"],
                   "study_hash": self.study_hash or manifest["study_hash"], "code": this, "codes": codes}
        atomic_write(receipt_path, json.dumps(receipt, indent=2, sort_keys=True).encode())
        return path


RESULTS_RECEIPT = "results.json"


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_results(path: str | Path):
    """Read the results Dataset of a run directory, verified against its receipt (results.json).

    Anything wrong with results.nc (absent receipt, checksum mismatch, a receipt of another study, a file that
    does not decode) raises a one-line `ResultsError` naming the file and the repair: the chunks are intact, so
    assembling again (`fi-sim merge DIR`, or `fi-sim run STUDY --out DIR`) rewrites it."""
    import xarray as xr

    rd = RunDirectory(Path(path))
    manifest = rd.manifest()
    nc, receipt_path = rd.path / "results.nc", rd.path / RESULTS_RECEIPT
    if not nc.exists():
        raise ResultsError(f"{rd.path}: no results.nc yet (unfinished study?); run `fi-sim run` again to resume")
    repair = (f"the finished chunks are intact: assemble it again with `fi-sim merge {rd.path}` "
              f"(or `fi-sim run STUDY.toml --out {rd.path}`)")
    try:
        receipt = json.loads(receipt_path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{nc}: unreadable results file (no receipt {RESULTS_RECEIPT}: an interrupted write or "
                           f"an older fi_sim); {repair}") from None
    except (OSError, ValueError) as err:
        raise ResultsError(f"{receipt_path}: corrupt receipt of results.nc ({type(err).__name__}); {repair}") from None
    if not isinstance(receipt, dict) or not isinstance(receipt.get("sha256"), str):
        raise ResultsError(f"{receipt_path}: corrupt receipt of results.nc (no sha256); {repair}")
    if receipt.get("study_hash") != manifest["study_hash"]:
        raise ResultsError(f"{receipt_path}: receipt of another study (study hash "
                           f"{str(receipt.get('study_hash'))[:12]}, manifest {manifest['study_hash'][:12]}); {repair}")
    try:
        actual = sha256_file(nc)
    except OSError as err:
        raise ResultsError(f"{nc}: unreadable results file ({err.strerror or err}); {repair}") from None
    if actual != receipt["sha256"]:
        raise ResultsError(f"{nc}: unreadable results file (its checksum does not match {RESULTS_RECEIPT}: corrupt "
                           f"or partial); {repair}")
    try:
        with xr.open_dataset(nc, engine="h5netcdf") as ds:
            return ds.load()
    except Exception as err:  # h5py and xarray raise KeyError, RuntimeError, OSError, ValueError, ... on bad bytes
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ResultsError(f"{nc}: unreadable results file ({type(err).__name__}: {first}); {repair}") from None
