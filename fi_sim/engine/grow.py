"""Growing a study in its results directory: more seeds, more levels, a fixed description, without recomputing
the runs that did not change.

A run is reused only when its **identity** is unchanged: its 63-bit run id (world, the levels of the five
training factors, seed), the study seed, the device batch it is computed at, and a hash of the compiled program
of its group (the lowered XLA module: every shape, every mechanism, the evaluation budgets and the code itself).
Whatever the study grew by, a reused run is bitwise the run a fresh directory would compute, because a run's
result depends only on those inputs (`execute.py`); anything else is recomputed.

`fi-sim run NEW.toml --out DIR --grow` moves DIR's finished chunks under `DIR/previous/<old study hash>/`,
writes the new study into DIR (the manifest lists the earlier study hashes in `lineage`) and runs the new study:
each chunk copies the rows it can reuse from `previous/` and computes the rest. Bases are reused by name (a
base depends only on the world, the study seed, its level and its seed, which growth keeps). When the grown
study's results are assembled, `previous/` is removed (every reused row was copied). Killed at any point, the
same command (or a plain `fi-sim run NEW.toml --out DIR`) picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from fi_sim.engine.store import RunDirectory, atomic_write, sha256_bytes
from fi_sim.errors import ResultsError

PREVIOUS = "previous"


def run_identity(run_id: int, study_seed: int, device_batch: int, program: str) -> str:
    return hashlib.sha256(f"{run_id}:{study_seed}:{device_batch}:{program}".encode()).hexdigest()[:32]


def start(path: str | Path, study, layout: dict | None) -> None:
    """Turn the results directory at `path` (holding another study) into one for `study`, keeping its finished
    work under `previous/` for reuse. Refuses what cannot share runs: another world or study seed."""
    path = Path(path)
    rd = RunDirectory(path)
    manifest = rd.manifest()
    old_hash = manifest["study_hash"]
    if old_hash == study.hash:
        return
    try:
        old = json.loads((path / "study.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}/study.json: unreadable ({err}); cannot grow this directory") from None
    if old.get("world") != study.world.card():
        raise ResultsError(f"{path}: holds a study of another world; a study can grow only within its world "
                           "(nothing could be reused): use a new --out")
    if old.get("study", {}).get("seed") != study.seed:
        raise ResultsError(f"{path}: holds a study with study.seed {old.get('study', {}).get('seed')}, this one has "
                           f"{study.seed}; growing cannot change the study seed (nothing could be reused): use a new --out")
    keep = path / PREVIOUS / old_hash[:16] / "chunks"
    keep.mkdir(parents=True, exist_ok=True)
    chunks = path / "chunks"
    if chunks.is_dir():
        for receipt in sorted(chunks.glob("*.json")):
            data = receipt.with_suffix(".npz")
            if data.exists():
                os.replace(data, keep / data.name)  # data first: a receipt never stands without its data
            os.replace(receipt, keep / receipt.name)
    lineage = list(manifest.get("lineage", [])) + [old_hash]
    manifest.update(study_hash=study.hash, lineage=lineage)
    if layout is not None:
        manifest.setdefault("plan", {})["layout"] = layout
    atomic_write(path / "study.json", study.to_json().encode())
    atomic_write(path / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())


class Reuse:
    """The finished rows of earlier studies of a directory, by run identity (empty when there are none)."""

    def __init__(self, path: str | Path):
        self.root = Path(path) / PREVIOUS
        self.rows: dict[str, tuple[Path, int]] = {}
        self._cache: dict[Path, dict[str, np.ndarray] | None] = {}
        if self.root.is_dir():
            for receipt in sorted(self.root.glob("*/chunks/*.json")):
                try:
                    meta = json.loads(receipt.read_text())
                except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                    continue
                for row, identity in enumerate(meta.get("identities") or []):
                    self.rows.setdefault(identity, (receipt, row))

    def __len__(self) -> int:
        return len(self.rows)

    def find(self, identities: list[str]) -> dict[int, dict[str, np.ndarray]]:
        """{position: that run's arrays} for every identity that an earlier study finished (status included)."""
        found = {}
        for pos, identity in enumerate(identities):
            where = self.rows.get(identity)
            if where is None:
                continue
            arrays = self._load(where[0])
            if arrays is not None:
                found[pos] = {k: v[where[1]] for k, v in arrays.items()}
        return found

    def _load(self, receipt: Path) -> dict[str, np.ndarray] | None:
        if receipt not in self._cache:
            arrays: dict[str, np.ndarray] | None = None
            try:
                meta = json.loads(receipt.read_text())
                blob = receipt.with_suffix(".npz").read_bytes()
                if meta.get("sha256") == sha256_bytes(blob):  # a damaged file is recomputed, never trusted
                    with np.load(io.BytesIO(blob)) as z:
                        arrays = {k: z[k] for k in z.files}
            except (OSError, ValueError, json.JSONDecodeError, UnicodeDecodeError):
                arrays = None
            self._cache = {receipt: arrays}  # one chunk in memory at a time: chunks are read in order
        return self._cache[receipt]

    def finish(self) -> None:
        """Remove the earlier studies' chunks once the grown study is assembled (each reused row was copied)."""
        if self.root.is_dir():
            shutil.rmtree(self.root, ignore_errors=True)
