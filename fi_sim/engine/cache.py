"""JAX's persistent compilation cache, on by default for the engine, in a per-user cache directory.

A study's groups compile in seconds to minutes; with the cache, a resumed study, a second process or the next
study with the same shapes loads the executables instead. The cache changes no result: a cached executable is
the one the compiler would build.

    FI_SIM_CACHE_DIR=/path     use this directory
    FI_SIM_CACHE_DIR=off       disable (also: "", "0", "none", "false"; or `fi-sim run --no-cache`)
    default                    $XDG_CACHE_HOME/fi_sim/jax, else ~/.cache/fi_sim/jax

If the process has already configured a JAX compilation cache (`jax_compilation_cache_dir`), it is left alone.
Beside JAX's cache, DIR/binaries keeps the engine's compiled one-device binaries, which every device of a
multi-device run loads (see `execute.Binaries`). An executable loaded from either that fails to run is
recompiled without them (`execute.Executor.map`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "FI_SIM_CACHE_DIR"
OFF = {"", "0", "off", "none", "false", "no"}


def cache_dir() -> Path | None:
    """The directory the engine would use, or None when disabled."""
    value = os.environ.get(ENV)
    if value is not None:
        root = None if value.strip().lower() in OFF else Path(value).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "fi_sim" / "jax"
    # XLA's CPU code depends on its thread pool (fi_sim.engine.hostcpu) and JAX's cache key does not include it:
    # one directory per parallelism, so that a cached executable is always the one this process would compile
    nproc = os.environ.get("NPROC", "").strip()
    return None if root is None else root / (f"nproc{nproc}" if nproc else "nproc-default")


_DISABLED = [False]  # set by enable(disabled=True): no cache of any kind in this process


def binaries_dir() -> Path | None:
    """Where the engine keeps compiled binaries that every device can load (see `execute.Binaries`)."""
    path = None if _DISABLED[0] else cache_dir()
    return None if path is None else path / "binaries"


def enable(disabled: bool = False) -> Path | None:
    """Turn the persistent cache on (unless disabled or already configured); returns the directory in use."""
    import jax

    _DISABLED[0] = disabled
    current = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]  # a jax option: not in jax's stubs
    if current:
        return Path(current)
    path = None if disabled else cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache directory must not stop a study
    jax.config.update("jax_compilation_cache_dir", str(path))
    # cache every executable: the engine's compile once per group, and small ones add up over many studies
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


class BlobDir:
    """Files by name in one cache directory (None: no directory), where nothing can fail a study: a missing
    file is a miss, an unreadable one a miss with a warning, an unwritable directory a warning. Holds the engine's
    binaries (`execute.Binaries`) and the warm-start index (`warm.WarmIndex`)."""

    def __init__(self, path, what: str):
        self.path, self.what = (None if path is None else Path(path)), what

    def read(self, name: str) -> bytes | None:
        if self.path is None or not isinstance(name, str) or "/" in name:
            return None
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:  # a cache miss
            return None
        except Exception as error:
            log.warning("fi_sim: cannot read a cached %s (%r); compiling instead", self.what, error)
            return None

    def write(self, name: str, blob: bytes) -> None:
        if self.path is None:
            return
        try:
            from fi_sim.engine.store import atomic_write

            atomic_write(self.path / name, blob)
        except Exception as error:  # an unwritable cache must not stop a study
            log.warning("fi_sim: cannot write a %s to the cache %s (%r)", self.what, self.path, error)

    def drop(self, name: str) -> None:
        if self.path is not None:
            try:
                (self.path / name).unlink()
            except FileNotFoundError:
                pass
            except Exception as error:
                log.warning("fi_sim: cannot remove a stale cached %s (%r)", self.what, error)
