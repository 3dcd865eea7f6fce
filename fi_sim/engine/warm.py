"""Warm start: a group's compiled binary found without tracing its program, and checked while it computes.

With the persistent cache warm, what kept a second run of the same study shape from computing at once was not
compiling but finding the binary: the cache is keyed by the lowered program, so every row function was traced
and lowered first (3 to 4 s for the demo's post-training group on a 2-core CPU). This index keys the binary by
what the program is built from instead, known before tracing:

- the row function's **fingerprint**: the builder's name and the repr of its static configuration and world
  (`execute.pretrain_row`, `base_eval_row`, `run_row` set it; a row without one never takes this path, nor one
  whose repr is not a plain value: an elided array, an object address);
- the arguments' tree and shapes, the device batch, the device kind;
- the **code**: every source file of fi_sim and of the module of every registered mechanism (plugins), and
  every registered mechanism's name in registry order;
- jax and jaxlib versions, the platform and device kind, XLA_FLAGS, NPROC and the x64 flag
  (`compile_environment`, as `execute.Binaries` keys).

An entry records the lowered program's hash, the binary's file and the trees the executable is called with.
**Nothing is trusted unchecked**: the executor starts computing with the binary and meanwhile traces and lowers
the program in a background thread (`Executor.compile`); before any result is returned, the lowered program's
hash must equal the entry's (`Executor.verify`). If it does not (code the key cannot see changed: a mechanism
edited in a notebook, a monkeypatch), the entry is dropped, the group compiled afresh and the rows computed
again, with a warning: a stale entry costs time, never a wrong number.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import jax

log = logging.getLogger(__name__)

FORMAT = 1
PACKAGE = Path(__file__).resolve().parents[1]


def code_digest() -> str:
    """fi_sim's source, every registered mechanism (name, registry order) and its module's source."""
    import fi_sim
    from fi_sim.factors import FACTORS

    h = hashlib.sha256(fi_sim.code_provenance()["source_sha256"].encode())
    files: set[str] = set()
    for fname, factor in FACTORS.items():
        h.update(f"{fname}:{','.join(factor.mechanisms)}\0".encode())
        for mech in factor.mechanisms.values():
            for value in vars(mech).values():
                code = getattr(value, "__code__", None)
                if code is not None and not Path(code.co_filename).resolve().is_relative_to(PACKAGE):
                    files.add(code.co_filename)
    for name in sorted(files):
        try:
            h.update(name.encode() + b"\0" + Path(name).read_bytes())
        except OSError:  # no file (a notebook cell): only the verification can tell a change
            h.update(name.encode() + b"\0?")
    return h.hexdigest()


def compile_environment(device) -> list[str]:
    """Everything beside the program that shapes what XLA compiles for `device` (part of both caches' keys)."""
    import jaxlib

    return [jax.__version__, jaxlib.__version__, device.platform, device.device_kind,
            os.environ.get("XLA_FLAGS", ""), os.environ.get("NPROC", ""), str(getattr(jax.config, "jax_enable_x64"))]


def fingerprint(row) -> str | None:
    value = getattr(row, "fingerprint", None)
    if not isinstance(value, str) or "..." in value or " at 0x" in value:
        return None
    return value


class WarmIndex:
    """Entries `DIR/<key>.pkl`: {"program": hash of the lowered program, "binary": the binary's file name,
    "in_tree", "out_tree", "compile_seconds": what its cold compile took}. A missing, unreadable or foreign entry
    is a miss; an unwritable directory is no index (`cache.BlobDir`)."""

    def __init__(self, path: Path | None):
        from fi_sim.engine.cache import BlobDir

        self.files = BlobDir(path, "warm-start entry")

    def key(self, row, args, device_batch: int, device) -> str | None:
        fp = fingerprint(row)
        if self.files.path is None or fp is None:
            return None
        shapes = tuple((tuple(x.shape[1:]), str(x.dtype)) for x in jax.tree.leaves(args))
        parts = [str(FORMAT), fp, str(jax.tree.structure(args)), repr(shapes), str(device_batch),
                 *compile_environment(device), code_digest()]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def get(self, key: str | None) -> dict | None:
        blob = None if key is None else self.files.read(f"{key}.pkl")
        if blob is None:
            return None
        try:
            entry = pickle.loads(blob)
        except Exception as error:  # a corrupt or foreign file: a miss
            log.warning("fi_sim: ignoring an unreadable warm-start entry (%r)", error)
            return None
        if not isinstance(entry, dict) or entry.get("format") != FORMAT:
            return None
        return entry

    def put(self, key: str | None, program: str, binary: str, in_tree: Any, out_tree: Any,
            compile_seconds: float | None = None) -> None:
        if key is not None:
            self.files.write(f"{key}.pkl", pickle.dumps({
                "format": FORMAT, "program": program, "binary": binary, "in_tree": in_tree, "out_tree": out_tree,
                "compile_seconds": compile_seconds}))

    def drop(self, key: str | None) -> None:
        if key is not None:
            self.files.drop(f"{key}.pkl")
