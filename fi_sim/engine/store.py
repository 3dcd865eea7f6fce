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

Every file is written to a temporary name, flushed to disk and renamed into place, so an interrupted write
never leaves a file that reads as complete. A piece of work counts as done only when its receipt exists, names
this study and the checksum of its data file matches; anything else is recomputed. Work is keyed by content,
so resuming reproduces exactly what an uninterrupted run would have written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from fi_sim import __version__
from fi_sim.errors import ResultsError

FORMAT = "fi_sim-results"
FORMAT_VERSION = 1
KINDS = ("bases", "base_evals", "chunks")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_replace(path: Path, write) -> None:
    """Put a file at `path` durably: `write(tmp)` fills a temporary file in the same directory, which is fsynced
    and renamed into place, then the directory is fsynced. An interrupted write leaves no file at `path` (and
    removes its temporary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes durably (see `atomic_replace`)."""
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class RunDirectory:
    def __init__(self, path: Path, study_hash: str | None = None):
        self.path = Path(path)
        self.study_hash = study_hash

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, study_hash: str, study_json: str, plan_summary: dict,
             study_text: str | None = None, *, create: bool = True, wait_seconds: float = 0.0) -> "RunDirectory":
        """Create a new run directory, or reopen one that holds the same study (to resume).

        `create=False` (a secondary process of a split study) never creates the directory: it waits up to
        `wait_seconds` for the primary process to write the manifest."""
        rd = cls(Path(path), study_hash)
        manifest_path = rd.path / "manifest.json"
        deadline = time.monotonic() + wait_seconds
        while not create and not manifest_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not create and not manifest_path.exists():
            raise ResultsError(f"{rd.path}: no manifest.json after {wait_seconds:.0f}s; start process 0 of the "
                               "study (it creates the directory) or run it once without --process-index")
        if cls.existing(rd.path, study_hash) is not None:
            return rd
        rd.path.mkdir(parents=True, exist_ok=True)
        if study_text is not None:
            atomic_write(rd.path / "study.toml", study_text.encode())
        atomic_write(rd.path / "study.json", study_json.encode())
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fi_sim_version": __version__,
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
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
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
        receipt = dict(meta, sha256=sha256_bytes(blob))
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

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by an interrupted write (they never count as work; this only tidies)."""
        removed = 0
        for kind in ("",) + KINDS:
            folder = self.path / kind
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
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
        path = self.path / "results.nc"
        atomic_replace(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
        return path


def load_results(path: str | Path):
    """Read the results Dataset of a run directory (checks that it is one)."""
    import xarray as xr

    rd = RunDirectory(Path(path))
    rd.manifest()
    nc = rd.path / "results.nc"
    if not nc.exists():
        raise ResultsError(f"{rd.path}: no results.nc yet (unfinished study?); run `fi-sim run` again to resume")
    try:
        with xr.open_dataset(nc, engine="h5netcdf") as ds:
            return ds.load()
    except (OSError, ValueError) as err:
        raise ResultsError(f"{nc}: unreadable results file ({err})") from None
