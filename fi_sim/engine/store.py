"""The run directory: durable, resumable, checkable.

    DIR/study.toml        the study file as given (when run from a file)
    DIR/study.json        the resolved study (every level's parameters written out)
    DIR/manifest.json     format, fi_sim version, study hash, the plan's shape
    DIR/bases/*.npz       pretrained base parameters, one file per base job
    DIR/chunks/*.npz      post-training results, one file per chunk of runs
    DIR/chunks/*.json     a chunk's receipt: checksum of its .npz, run ids; written after the .npz
    DIR/results.nc        the assembled xarray Dataset (netCDF4)

Every file is written to a temporary name, flushed to disk and renamed into place, so an interrupted write
never leaves a file that reads as complete. A chunk counts as done only when its receipt exists and the
checksum matches; anything else is recomputed. Work is keyed by content, so resuming reproduces exactly what
an uninterrupted run would have written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from fi_sim import __version__
from fi_sim.errors import ResultsError

FORMAT = "fi_sim-results"
FORMAT_VERSION = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes durably: temporary file in the same directory, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
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


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class RunDirectory:
    def __init__(self, path: Path):
        self.path = Path(path)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, study_hash: str, study_json: str, plan_summary: dict,
             study_text: str | None = None) -> "RunDirectory":
        """Create a new run directory, or reopen one that holds the same study (to resume)."""
        rd = cls(Path(path))
        manifest_path = rd.path / "manifest.json"
        if manifest_path.exists():
            manifest = rd.manifest()
            if manifest["study_hash"] != study_hash:
                raise ResultsError(
                    f"{rd.path}: holds a different study (study hash {manifest['study_hash'][:12]}, "
                    f"this study {study_hash[:12]}); choose another --out directory or remove it"
                )
            return rd
        if rd.path.exists() and (not rd.path.is_dir() or any(rd.path.iterdir())):
            raise ResultsError(f"{rd.path}: exists and is not a fi_sim results directory (no manifest.json); "
                               "choose an empty or new --out directory")
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
        return manifest

    # ------------------------------------------------------------------ chunks of results
    def _chunk_paths(self, kind: str, name: str) -> tuple[Path, Path]:
        return self.path / kind / f"{name}.npz", self.path / kind / f"{name}.json"

    def has(self, kind: str, name: str) -> bool:
        """A piece of work is done when its receipt exists and its data file matches the receipt."""
        data, receipt = self._chunk_paths(kind, name)
        if not receipt.exists() or not data.exists():
            return False
        try:
            meta = json.loads(receipt.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        return meta.get("sha256") == sha256_bytes(data.read_bytes())

    def write(self, kind: str, name: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        data_path, receipt_path = self._chunk_paths(kind, name)
        blob = npz_bytes(arrays)
        atomic_write(data_path, blob)
        atomic_write(receipt_path, json.dumps(dict(meta, sha256=sha256_bytes(blob)), sort_keys=True).encode())

    def read(self, kind: str, name: str) -> tuple[dict[str, np.ndarray], dict]:
        data_path, receipt_path = self._chunk_paths(kind, name)
        try:
            meta = json.loads(receipt_path.read_text())
            blob = data_path.read_bytes()
        except FileNotFoundError as err:
            raise ResultsError(f"{self.path}: missing {err.filename}; run `fi-sim run` again to resume") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ResultsError(f"{receipt_path}: corrupt receipt ({err})") from None
        if meta.get("sha256") != sha256_bytes(blob):
            raise ResultsError(f"{data_path}: checksum does not match its receipt (corrupt or partial file)")
        with np.load(io.BytesIO(blob)) as z:
            return {k: z[k] for k in z.files}, meta

    # ------------------------------------------------------------------ final dataset
    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.path / name, text.encode())

    def write_dataset(self, ds) -> Path:
        path = self.path / "results.nc"
        tmp = self.path / ".results.nc.tmp"
        ds.to_netcdf(tmp, engine="h5netcdf")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
