"""The compiled work: fixed-size device batches of bases, base evaluations and runs on every local device.

A row function (one base, one base evaluation, one run) is compiled as `jit(vmap(row))` for exactly
`device_batch` rows. The rows of a chunk are padded to whole device batches (by repeating the last row; padded
rows are computed and dropped) and the device batches are dealt round-robin to the local devices (placed with
`jax.sharding.SingleDeviceSharding`), one host thread per device, so every device computes concurrently. Every
device runs the same one-device program, so a row's result depends only on its own inputs and on the device
batch size — not on how many devices, processes or chunks the work was split into (tested bitwise: 8 forced host
devices against one, 2 processes against one).

Why not one SPMD program over a `NamedSharding` mesh (or `shard_map`, or `pmap`)? XLA compiles a program for
several partitions through the SPMD partitioner, whose rewrites change later fusion decisions: on CPU the
trained runs then differed from the one-device program in the last bits (KL to the base by ~1e-5 after a few
steps). Results must not depend on how the work was split, so each device runs the one-device program.

Compiled executables are built ahead of time (`lower(...).compile()`), so compile time is measured apart from
run time, and cached per (row function, device batch): a group compiles once however many chunks it has, on the
first device; every other device gets a copy of the same binary (serialized and loaded there, milliseconds —
so the devices provably run one program), or, where a backend cannot load a copy, its own compile of the same
program. Keys travel as raw uint32 key data so that they pad, stack and store like any other array.

Ctrl-C (`stop_after_chunk`): during a run, the first SIGINT while a chunk is being computed lets that chunk finish
and be saved, then stops at the next piece of work (one line on stderr says so); a SIGINT when nothing is being
computed (compiling, waiting, assembling), or a second one, stops at once (`KeyboardInterrupt`). The main thread
only waits for the device threads, so it can always take the signal.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import SingleDeviceSharding

from fi_sim import metrics
from fi_sim.engine.runfn import eval_items, make_run, prepare_verifier
from fi_sim.engine.cache import BlobDir
from fi_sim.engine.warm import WarmIndex, compile_environment
from fi_sim.evaluate import make_evaluate
from fi_sim.train import make_pretrain

log = logging.getLogger(__name__)

def key_data(keys) -> np.ndarray:
    """Typed PRNG keys as raw uint32 data (plain arrays pad, stack and store like any other)."""
    return np.stack([np.asarray(jax.random.key_data(k)) for k in keys])


def stack(trees):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def pad_rows(tree, size: int):
    """Pad the leading axis to `size` by repeating the last row (padded rows are computed and dropped)."""
    def pad(x):
        n = x.shape[0]
        return x if n == size else np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])
    return jax.tree.map(pad, tree)


def num_rows(tree) -> int:
    return int(jax.tree.leaves(tree)[0].shape[0])


# ---------------------------------------------------------------------------------------------- row functions
@functools.lru_cache(maxsize=None)
def pretrain_row(static):
    """One base: (base params, key data) -> (policy params, mean loss over the last 10% of steps)."""
    pretrain = make_pretrain(static)

    def one(base, key_data):
        params, losses = pretrain(base, jax.random.wrap_key_data(key_data))
        tail = metrics.tail_steps(static.steps)
        return params, jnp.mean(losses[-tail:]) if static.steps else jnp.float32(jnp.nan)

    one.fingerprint = f"pretrain_row:{static!r}"  # type: ignore[attr-defined]  # the warm-start key (warm.py)
    return one


@functools.lru_cache(maxsize=None)
def base_eval_row(static, world_settings):
    """A base evaluated under (scaffold, verifier): once per base job, not once per run."""
    evaluate = make_evaluate(static)
    items = eval_items(world_settings)

    def one(params, scaffold, verifier, eval_key_data):
        key = jax.random.wrap_key_data(eval_key_data)
        verifier = prepare_verifier(static, params, scaffold, verifier, key)
        r = evaluate(params, scaffold, verifier, items, key)
        return metrics.outputs("base", {
            "base_score": r.true_score, "base_proxy_score": r.proxy_score, "base_score_by_depth": r.true_by_depth,
            "base_score_by_skill": r.true_by_skill, "base_score_by_item": r.true_by_item,
            "base_eval_tokens": r.tokens})

    one.fingerprint = f"base_eval_row:{static!r}:{world_settings!r}"  # type: ignore[attr-defined]
    return one


@functools.lru_cache(maxsize=None)
def run_row(static, world_settings):
    """One post-training run of a group (see `runfn.make_run`); its outputs are a dict treated generically."""
    run = make_run(static, eval_items(world_settings))
    run.fingerprint = f"run_row:{static!r}:{world_settings!r}"  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------------------------------------- Ctrl-C
STOPPING = "fi-sim: stopping after the chunk in flight (Ctrl-C again to stop now)"


class StopRequest:
    """The state of Ctrl-C during a run. `computing` is set when the executor starts computing a piece of work and
    cleared at the next checkpoint (the start of a compile, of the next piece, of a wait, of the assembly), so it
    also covers the write of the piece just computed. A first SIGINT while computing asks to stop at the next
    checkpoint; otherwise, or the second time, it stops at once."""

    def __init__(self, notify=None):
        self.requested = False
        self.computing = False
        self.notify = notify

    def handler(self, signum, frame):
        if self.requested or not self.computing:
            raise KeyboardInterrupt("stopped by Ctrl-C; finished work is saved, run again to resume")
        self.requested = True
        try:
            (self.notify or _tell)(STOPPING)
        except Exception:  # e.g. a print interrupted in the middle of another print: tell it without buffers
            _tell(STOPPING)

    def checkpoint(self, computing: bool = False) -> None:
        """Nothing is in flight here: stop if asked to; `computing` starts the next piece of work."""
        self.computing = False
        if self.requested:
            raise KeyboardInterrupt("stopped after the chunk in flight; finished work is saved, run again to resume")
        self.computing = computing


def _tell(message: str) -> None:
    try:
        os.write(sys.stderr.fileno(), (("\n" if sys.stderr.isatty() else "") + message + "\n").encode())
    except (OSError, ValueError, AttributeError):
        pass


@contextlib.contextmanager
def stop_after_chunk(executor, notify=None):
    """Within the block, Ctrl-C finishes and saves the chunk in flight, then stops (see `StopRequest`). Active
    only in the main thread and where SIGINT has Python's default handler (not where it is ignored, e.g. a
    background job, or handled by someone else)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield None
        return
    request = StopRequest(notify)
    executor.stop = request
    previous = signal.signal(signal.SIGINT, request.handler)
    _ACTIVE.append(request)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
        _ACTIVE.remove(request)
        executor.stop = None


_ACTIVE: list = []  # the StopRequest of the run in progress (SIGINT goes to the main thread: one at a time)


def checkpoint() -> None:
    """A point between pieces of work (e.g. while waiting for other processes) where a requested stop takes
    effect (see `StopRequest`)."""
    if _ACTIVE:
        _ACTIVE[-1].checkpoint()


# ---------------------------------------------------------------------------------------------- the executor
@dataclass
class CompileRecord:
    label: str
    seconds: float
    memory_bytes: int | None  # per device, from XLA's memory analysis (None where the backend gives none)
    # "compiled" (by XLA, here), "loaded" (traced, then loaded from a cache) or "warm" (found without tracing)
    source: str = "compiled"
    cold_seconds: float | None = None  # what this program's cold compile took (recorded with its binary)

    def describe(self) -> str:
        """How the executable was obtained, e.g. "compiled group 0 in 18.5s" or "loaded group 0 in 0.9s without
        tracing (warm cache; cold compile 18.5s)"."""
        what = self.label or "function"
        cold = "" if self.cold_seconds is None else f"; cold compile {self.cold_seconds:.1f}s"
        if self.source == "warm":
            return f"loaded {what} in {self.seconds:.1f}s without tracing (warm cache{cold})"
        if self.source == "loaded":
            return f"traced {what} and loaded it from the cache in {self.seconds:.1f}s"
        return f"compiled {what} in {self.seconds:.1f}s"


def local_devices(count: int | None = None) -> tuple:
    devices = tuple(jax.local_devices())
    if count is not None:
        if not 1 <= count <= len(devices):
            from fi_sim.errors import invalid

            raise invalid("devices", count, f"an integer in 1..{len(devices)} (local devices: {len(devices)})")
        devices = devices[:count]
    return devices


@dataclass
class Executor:
    """Runs row functions over all local devices in fixed-size device batches."""

    devices: tuple = field(default_factory=local_devices)
    on_compile: Callable[[CompileRecord], Any] | None = None  # e.g. the progress display
    compiled: dict = field(default_factory=dict)
    compile_seconds: float = 0.0
    binaries: object = None  # a directory for compiled binaries; None: the engine's cache directory; False: none

    def __post_init__(self):
        self.devices = tuple(self.devices)
        self._pool = None
        self._check_pool: ThreadPoolExecutor | None = None
        self._binaries = Binaries(self.binaries)
        self._warm = WarmIndex(None if self._binaries.path is None else self._binaries.path.parent / "warm")
        self._stale: set = set()  # warm-start keys found stale in this process (never looked up again)
        self.stop = None  # a StopRequest while `stop_after_chunk` is active
        self._mapping = False

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def platform(self) -> str:
        return self.devices[0].platform

    def _workers(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.num_devices, thread_name_prefix="fi_sim-device")
        return self._pool

    def close(self) -> None:
        for key, per_device in list(self.compiled.items()):  # checks in flight (a program never mapped has
            if not isinstance(per_device.get("check", ()), tuple):  # computed nothing: it is not traced)
                self._verify_key(key)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._check_pool is not None:
            self._check_pool.shutdown(wait=True)
            self._check_pool = None

    def abandon(self) -> None:
        """Stop waiting for the device threads (after Ctrl-C): a computation in flight finishes in its thread and
        is dropped; nothing waits for it here."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @staticmethod
    def _key(row, args, device_batch):
        return (row, device_batch, jax.tree.structure(args),
                tuple((tuple(x.shape[1:]), str(x.dtype)) for x in jax.tree.leaves(args)))

    def _lower(self, row, args, device_batch, device):
        spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct((device_batch,) + tuple(x.shape[1:]), x.dtype,
                                                           sharding=SingleDeviceSharding(device)), args)
        return jax.jit(jax.vmap(row)).lower(*spec)

    def compile(self, row, args, device_batch: int, label: str = "", all_devices: bool = True,
                copies: bool = True):
        """The compiled executable of `row` for `device_batch` rows on the first device (built once, timed);
        with `all_devices`, also on every other device. `args` is a pytree of example rows (any leading size);
        only shapes and dtypes are used.

        Found without tracing where the warm-start index has it (`fi_sim.engine.warm`): the program is then
        traced and lowered in a background thread while the binary computes, and checked before any result is
        returned (`verify`). Else traced and lowered here, then loaded from the binaries or compiled."""
        key = self._key(row, args, device_batch)
        per_device = self.compiled.setdefault(key, {})
        todo = [d for d in (self.devices if all_devices else self.devices[:1]) if d not in per_device]
        if not todo:
            return per_device[self.devices[0]]
        if self.stop is not None and not self._mapping:
            self.stop.checkpoint()  # a compile between pieces of work: nothing in flight, Ctrl-C stops at once
        t = time.perf_counter()
        first = self.devices[0]
        source, cold = "loaded", None
        if first in todo:
            warm_key = self._warm.key(row, args, device_batch, first) if copies else None
            entry = self._warm.get(warm_key) if warm_key not in self._stale else None
            blob = self._binaries.read(entry["binary"]) if entry is not None else None
            exe = load_binary(blob, first, entry["in_tree"], entry["out_tree"]) if entry and blob else None
            if entry is not None and exe is not None:
                source, cold = "warm", entry.get("compile_seconds")
                # checked once it computes (`_start_check`): tracing meanwhile would only slow this thread
                per_device.update({first: exe, "blob": blob, "binary": entry["binary"], "program": entry["program"],
                                   "trees": (entry["in_tree"], entry["out_tree"]), "warm_key": warm_key,
                                   "check": (row, args, device_batch, first)})
            else:
                lowered = self._lower(row, args, device_batch, first)
                name = self._binaries.name(lowered, first)
                blob = self._binaries.read(name) if copies else None
                exe = load(blob, lowered, first) if blob is not None else None
                if exe is None:
                    hits = _cache_hits()
                    exe = lowered.compile()
                    source = "compiled" if _cache_hits() == hits else "loaded"
                    # a fresh binary can be copied to other devices; one loaded from JAX's compilation cache cannot
                    blob = serialize(exe) if copies and source == "compiled" else None
                    if blob is not None:
                        self._binaries.write(name, blob)
                trees = (jax.tree.structure(lowered.args_info), lowered.out_tree)
                program = program_hash(lowered)
                cold = time.perf_counter() - t if source == "compiled" else None
                if blob is not None:
                    self._warm.put(warm_key, program, name, *trees, compile_seconds=cold)
                per_device.update({first: exe, "blob": blob, "binary": name, "lowered": lowered, "trees": trees,
                                   "program": program, "warm_key": warm_key})
            todo.remove(first)
        blob, trees = per_device["blob"], per_device["trees"]

        def other(d):  # the same binary on every other device; its own compile only where that is impossible
            exe = load_binary(blob, d, *trees) if blob is not None else None
            return exe if exe is not None else self._lower(row, args, device_batch, d).compile()

        if todo:
            per_device.update(zip(todo, self._workers().map(other, todo)))
        seconds = time.perf_counter() - t
        self.compile_seconds += seconds
        exe = per_device[first]
        where = f" on {len(todo) + 1} device(s)" if self.num_devices > 1 and all_devices else ""
        per_device["record"] = CompileRecord(f"{label}{where}", seconds, memory_bytes(exe), source, cold)
        if self.on_compile is not None:
            self.on_compile(per_device["record"])
        return exe

    def record(self, row, args, device_batch: int) -> CompileRecord:
        """How a compiled `row` was obtained: its last `compile` (time, memory, source)."""
        return self.compiled[self._key(row, args, device_batch)]["record"]

    def _checker(self) -> ThreadPoolExecutor:
        if self._check_pool is None:
            self._check_pool = ThreadPoolExecutor(1, thread_name_prefix="fi_sim-check")
        return self._check_pool

    def verify(self, row, args, device_batch: int) -> bool:
        """Wait for the check of a warm-started program (see `compile`): True when the binary is the traced
        program's (or was not warm-started). Otherwise the entry is dropped and forgotten, with a warning, and
        False: the caller compiles afresh and computes again."""
        return self._verify_key(self._key(row, args, device_batch))

    def _start_check(self, key) -> None:
        """Trace and lower a warm-started program in the background (see `compile`), once: when it computes."""
        check = self.compiled.get(key, {}).get("check")
        if isinstance(check, tuple):
            self.compiled[key]["check"] = self._checker().submit(self._lower, *check)

    def _verify_key(self, key) -> bool:
        self._start_check(key)
        per_device = self.compiled.get(key, {})
        check = per_device.pop("check", None)
        if check is None:
            return True
        lowered = check.result()
        if program_hash(lowered) == per_device["program"]:
            per_device["lowered"] = lowered
            return True
        warnings.warn("a warm-start entry's binary is not this program's (code changed where its key cannot see: "
                      "e.g. a mechanism edited in a notebook); compiling afresh and computing its rows again")
        self._forget(key)
        return False

    def _forget(self, key) -> dict:
        """Drop a compiled program found stale (in this process, and its warm-start entry: never looked up
        again); returns what was kept of it."""
        stale = self.compiled.pop(key, {})
        stale.pop("check", None)
        self._stale.add(stale.get("warm_key"))
        self._warm.drop(stale.get("warm_key"))
        return stale

    def program(self, row, args, device_batch: int) -> str:
        """The hash of a compiled `row`'s lowered program (what a reused run must share, see `grow`); waits for a
        warm start's check (and compiles afresh where it fails)."""
        if not self.verify(row, args, device_batch):
            self.compile(row, args, device_batch, all_devices=False)
        return self.compiled[self._key(row, args, device_batch)]["program"]

    def map(self, row, args, device_batch: int, label: str = ""):
        """Apply `row` to every row of `args` (a tuple of pytrees with a leading rows axis); returns numpy
        outputs with the same leading size. Device batch k runs on device k mod D, each device in its own host
        thread, so all devices compute at once.

        Each call is a checkpoint of Ctrl-C (`stop_after_chunk`): a stop requested while the previous piece of
        work was computed takes effect here, before anything new is computed."""
        if self.stop is not None:
            self.stop.checkpoint(computing=True)
        self._mapping = True
        try:
            return self._map_or_recompile(row, args, device_batch, label)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for the device threads
            self.abandon()
            raise
        finally:
            self._mapping = False

    def _map_or_recompile(self, row, args, device_batch: int, label: str):
        try:
            return self._map(row, args, device_batch, label)
        except jax.errors.JaxRuntimeError as error:
            # An executable that was loaded rather than compiled here (from JAX's persistent cache or as a copy
            # of another device's binary) can fail to run when the cache entry is stale or the backend cannot
            # relocate it. Nothing is lost: compile afresh, without the cache, and compute the rows again.
            warnings.warn(f"a loaded executable failed to run ({str(error).splitlines()[0][:200]}); "
                          "recompiling without the compilation cache")
            stale = self._forget(self._key(row, args, device_batch))
            if "binary" in stale:
                self._binaries.drop(stale["binary"])
            enabled = jax.config.jax_enable_compilation_cache  # type: ignore[attr-defined]  # an option, not in stubs
            jax.config.update("jax_enable_compilation_cache", False)
            try:
                self.compile(row, args, device_batch, label, copies=False)
            finally:
                jax.config.update("jax_enable_compilation_cache", enabled)
            return self._map(row, args, device_batch, label)

    def _map(self, row, args, device_batch: int, label: str):
        n = num_rows(args)
        batches = -(-n // device_batch)
        padded = pad_rows(args, batches * device_batch)
        self.compile(row, args, device_batch, label)
        self._start_check(self._key(row, args, device_batch))
        exes = self.compiled[self._key(row, args, device_batch)]

        def work(d: int):
            device = self.devices[d]
            outs = {}
            for k in range(d, batches, self.num_devices):
                part = jax.tree.map(lambda x: x[k * device_batch:(k + 1) * device_batch], padded)
                outs[k] = jax.device_get(exes[device](*jax.device_put(part, device)))
            return outs

        # the work runs in device threads even on one device: the main thread only waits, so a Ctrl-C reaches it
        # at once (a signal handler cannot run while the main thread is inside a computation)
        results = {}
        for part in self._workers().map(work, range(min(self.num_devices, batches))):
            results.update(part)
        if not self.verify(row, args, device_batch):  # a warm-start binary that is not this program's: again
            return self._map(row, args, device_batch, label)
        ordered = [results[k] for k in range(batches)]
        return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:n], *ordered)


def serialize(exe) -> bytes | None:
    """The binary of a freshly compiled one-device executable (None where the backend cannot serialize)."""
    try:
        from jax.experimental import serialize_executable

        return serialize_executable.serialize(exe)[0]
    except Exception as error:  # the caller then compiles on every device
        log.warning("fi_sim: cannot serialize a compiled executable (%r); each device compiles its own", error)
        return None


def program_hash(lowered) -> str:
    """Hash of a lowered program (everything that shapes its arithmetic, the code included): a group's identity."""
    import hashlib

    return hashlib.sha256(lowered.as_text().encode()).hexdigest()


def load(blob: bytes, lowered, device):
    """The binary `blob` (of `lowered`, compiled for one device) loaded onto `device` (see `load_binary`)."""
    return load_binary(blob, device, jax.tree.structure(lowered.args_info), lowered.out_tree)


def load_binary(blob: bytes, device, in_tree, out_tree):
    """The binary `blob` (compiled for one device; called with the trees `in_tree`, `out_tree`) loaded onto
    `device`, without compiling; None where that fails (an API this relies on changed): the caller then
    compiles."""
    import io
    import pickle

    try:
        from jax._src.lib import xla_client as xc

        class Loader(pickle.Unpickler):  # the persistent ids of jax's executable pickler, onto `device`
            def persistent_load(self, pid):
                if pid[0] == "exec":
                    options = xc.CompileOptions()
                    options.device_assignment = xc.DeviceAssignment.create(np.array([[device.id]]))
                    return device.client.deserialize_executable(pid[1], xc.DeviceList((device,)),
                                                                compile_options=options)
                if pid[0] == "device":
                    return device
                if pid[0] == "client":
                    return device.client
                raise pickle.UnpicklingError(f"unknown persistent id {pid[0]!r}")

        unloaded, args_info, no_kwargs = Loader(io.BytesIO(blob)).load()
        # PyTreeDef (jaxlib) does not resolve for mypy here, so its `unflatten` is unknown to it
        exe = jax.stages.Compiled(unloaded.load(), [], in_tree.unflatten(args_info),  # type: ignore[attr-defined]
                                  out_tree, no_kwargs=no_kwargs)
        if any(set(s.device_set) != {device} for s in jax.tree.leaves(exe.input_shardings)):
            log.warning("fi_sim: a loaded executable is not placed on %s; compiling there instead", device)
            return None
        return exe
    except Exception as error:  # an API this relies on changed: the caller compiles
        log.warning("fi_sim: cannot load a compiled binary onto %s (%r); compiling instead", device, error)
        return None


_HITS = [0]
_LISTENING: list[Callable[..., None]] = []


def _cache_hits() -> int:
    """Hits of JAX's persistent compilation cache so far in this process."""
    if not _LISTENING:
        def listen(event, **kwargs):
            if event == "/jax/compilation_cache/cache_hits":
                _HITS[0] += 1

        jax.monitoring.register_event_listener(listen)
        _LISTENING.append(listen)
    return _HITS[0]


class Binaries(BlobDir):
    """fi_sim's cache of compiled one-device binaries, by the lowered program and everything that shapes its
    compile (a miss only costs a compile). It lets every device of a multi-device run load one binary — JAX's own
    persistent cache keys CPU executables by device, and an executable it loaded cannot be copied to another
    device. A binary that loads but fails to run is handled by `Executor.map` (recompiled, nothing lost)."""

    def __init__(self, path=None):
        from fi_sim.engine import cache

        super().__init__(None if path is False else (path or cache.binaries_dir()), "binary")

    def name(self, lowered, device) -> str:
        """The file name of `lowered`'s binary for `device`'s kind."""
        import hashlib

        key = "\n".join(compile_environment(device) + [lowered.as_text()])
        return f"{hashlib.sha256(key.encode()).hexdigest()}.bin"


def memory_bytes(exe) -> int | None:
    """Peak device memory of a compiled executable per device (arguments, outputs and temporaries)."""
    try:
        m = exe.memory_analysis()
    except Exception as error:  # some backends give no analysis
        log.debug("fi_sim: no memory analysis on this backend (%r)", error)
        return None
    if m is None:
        return None
    total = 0
    for name in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"):
        total += int(getattr(m, name, 0) or 0)
    alias = int(getattr(m, "alias_size_in_bytes", 0) or 0)
    return max(total - alias, 0)
