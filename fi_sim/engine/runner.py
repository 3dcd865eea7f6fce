"""Run a study: pretrain its bases, post-train its runs chunk by chunk, assemble the results Dataset.

Every piece of work (a batch of bases, a chunk of base evaluations, a chunk of runs) is written durably as soon
as it is done and skipped when found complete on a rerun, so a killed study resumes where it stopped and ends
bitwise equal to an uninterrupted one: chunks have a fixed size, every run's key is `fold_in(study_key,
run_key_word(run_id))`, and a run's result depends only on its inputs and the device batch (see `execute.py`) — never on which
runs share its chunk, how many devices computed it, or which process.

A study can be split over P processes (`process_index` i of `num_processes` P, or `jax.distributed` when it is
initialised): process i takes every P-th piece of work of each stage, starting at the i-th. A process waits
for the bases it needs from the others (through the shared results directory). Process 0 waits for every
chunk and assembles the results; a plain `fi-sim run` (or `fi-sim merge`) assembles them at any later time.

Off the happy path: the results directory is checked to be writable and locked (`store.DirectoryLock`: one
single-process run, or one process per index of a split study) before anything is compiled; a directory that
other code started is refused unless `allow_mixed_code`; Ctrl-C finishes and saves the chunk in flight, then
stops (a second Ctrl-C stops at once; `execute.stop_after_chunk`).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
from flax import serialization

from fi_sim.engine import cache, execute, faults, grow, hostcpu, sizing
from fi_sim.engine.plan import BASE_BATCH, Plan, base_eval_name, chunk_name
from fi_sim.engine.progress import Progress
from fi_sim.engine.results import assemble
from fi_sim.engine.runfn import run_params_for
from fi_sim.engine.sizing import size_plan
from fi_sim.engine.store import DirectoryLock, RunDirectory, check_code, check_writable
from fi_sim.errors import ResultsError, invalid
from fi_sim.factors import MODULES
from fi_sim.interface import run_key_word
from fi_sim.study import Study
from fi_sim.train import STAGE_EVAL
from fi_sim.world.policy import init_params
from fi_sim.world.tokens import Vocab

POLL_SECONDS = 0.5


def _flatten(params) -> dict[str, np.ndarray]:
    flat = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}/{k}" if prefix else k, v)
        else:
            flat[prefix] = np.asarray(node)

    walk("", serialization.to_state_dict(params))
    return flat


def _unflatten(template, flat: dict[str, np.ndarray]):
    state = serialization.to_state_dict(template)

    def walk(prefix, node):
        if isinstance(node, dict):
            return {k: walk(f"{prefix}/{k}" if prefix else k, v) for k, v in node.items()}
        return flat[prefix]

    return serialization.from_state_dict(template, walk("", state))


def study_key(study: Study):
    return jax.random.key(study.seed)


def eval_key(study: Study, job) -> jax.Array:
    """Evaluation sampling key of a base job, shared by the base's evaluation and every run from it."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(study_key(study), STAGE_EVAL), job.uid), job.seed)


def base_name(job) -> str:
    return f"base-{job.uid:08x}-seed{job.seed}"


# ---------------------------------------------------------------------------------------------- processes
def process_layout(process_index: int | None = None, num_processes: int | None = None) -> tuple[int, int]:
    """(this process, number of processes): as given, else from `jax.distributed` when initialised, else (0, 1)."""
    if process_index is None and num_processes is None:
        if jax.distributed.is_initialized():
            return jax.process_index(), jax.process_count()
        return 0, 1
    num_processes = 1 if num_processes is None else num_processes
    process_index = 0 if process_index is None else process_index
    if not isinstance(num_processes, int) or num_processes < 1:
        raise invalid("num_processes", num_processes, "an integer >= 1")
    if not isinstance(process_index, int) or not 0 <= process_index < num_processes:
        raise invalid("process_index", process_index, f"an integer in 0..{num_processes - 1}")
    return process_index, num_processes


class Share:
    """Which pieces of work this process takes: every P-th of each stage, starting at the i-th."""

    def __init__(self, index: int, count: int):
        self.index, self.count = index, count

    def __call__(self, k: int) -> bool:
        return k % self.count == self.index


def wait_for(rd: RunDirectory, kind: str, names: list[str], progress: Progress, timeout: float, what: str) -> None:
    """Wait until other processes have written `names` (a shared directory is the only coordination)."""
    missing = rd.missing(kind, names)
    if not missing:
        return
    progress.log(f"  waiting for {len(missing)} {what} from other processes ...")
    deadline = time.monotonic() + timeout
    last = len(missing)
    while missing:
        execute.checkpoint()  # nothing is in flight while waiting: a Ctrl-C stops here
        if time.monotonic() > deadline:
            raise ResultsError(f"{rd.path}: still missing {len(missing)} {what} after {timeout:.0f}s without progress "
                               f"(e.g. {kind}/{missing[0]}); are the other processes running? Run `fi-sim run` "
                               "again to resume (it computes whatever is missing)")
        time.sleep(POLL_SECONDS)
        missing = rd.missing(kind, missing)
        if len(missing) < last:  # progress: reset the clock
            deadline, last = time.monotonic() + timeout, len(missing)


# ---------------------------------------------------------------------------------------------- stages
def pretrain_bases(plan: Plan, rd: RunDirectory, executor, progress: Progress, share: Share) -> None:
    """Pretrain this process's share of base batches (BASE_BATCH bases of one shape per device batch)."""
    study = plan.study
    skey = study_key(study)
    todo = [(static, jobs) for k, (static, jobs) in enumerate(plan.base_batches())
            if share(k) and rd.missing("bases", [base_name(j) for j in jobs])]
    done = sum(1 for k, _ in enumerate(plan.base_batches()) if share(k)) - len(todo)
    if done:
        progress.log(f"  {done} base batch(es) already pretrained (resumed)")
    by_static: dict = {}
    for static, jobs in todo:
        by_static.setdefault(static, []).append(jobs)
    for static, batches in by_static.items():
        row = execute.pretrain_row(static)
        for c in range(0, len(batches), executor.num_devices):  # one call: a batch on every device
            call = batches[c : c + executor.num_devices]
            params, keys = [], []
            for jobs in call:
                levels = [study.factors["base"][j.level_index] for j in jobs]
                p = execute.stack([MODULES["base"].run_params(lv, static.world) for lv in levels])
                k = execute.key_data([jax.random.fold_in(jax.random.fold_in(skey, j.uid), j.seed) for j in jobs])
                params.append(execute.pad_rows(p, BASE_BATCH))
                keys.append(execute.pad_rows(k, BASE_BATCH))
            args = (jax.tree.map(lambda *x: np.concatenate(x), *params), np.concatenate(keys))
            t = time.perf_counter()
            trained, loss = executor.map(row, args, BASE_BATCH, label=f"pretraining ({static.steps} steps)")
            for b, jobs in enumerate(call):
                for i, job in enumerate(jobs):
                    r = b * BASE_BATCH + i
                    p = jax.tree.map(lambda x: x[r], trained)
                    rd.write("bases", base_name(job), _flatten(p), {
                        "level": study.factors["base"][job.level_index].name, "seed": job.seed,
                        "final_loss": float(loss[r])})
            names = [study.factors["base"][j.level_index].name for jobs in call for j in jobs]
            losses = [float(loss[b * BASE_BATCH + i]) for b, jobs in enumerate(call) for i in range(len(jobs))]
            progress.log(f"  pretrained {len(names)} base(s) ({', '.join(names)}) x {static.steps} steps in "
                         f"{time.perf_counter() - t:.1f}s; final loss " + ", ".join(f"{x:.3f}" for x in losses))


class Bases:
    """Pretrained base parameters, loaded from the run directory on first use (waiting for other processes)."""

    def __init__(self, plan: Plan, rd: RunDirectory, progress: Progress, timeout: float):
        self.plan, self.rd, self.progress, self.timeout = plan, rd, progress, timeout
        self._params: dict[int, object] = {}
        self._templates: dict = {}

    def get(self, indices) -> list:
        need = sorted({i for i in indices if i not in self._params})
        if need:
            jobs = [self.plan.bases[i] for i in need]
            wait_for(self.rd, "bases", [base_name(j) for j in jobs], self.progress, self.timeout, "pretrained base(s)")
            for job in jobs:
                if job.static not in self._templates:
                    # only the tree's structure is read (shapes, not values: no op-by-op initialisation, seconds)
                    self._templates[job.static] = jax.eval_shape(lambda c=job.static.policy: init_params(
                        c, jax.random.key(0)))
                self._params[job.index] = _unflatten(self._templates[job.static], self.rd.read("bases", base_name(job))[0])
        return [self._params[i] for i in indices]


def evaluate_bases(plan: Plan, rd: RunDirectory, bases: Bases, executor, progress: Progress, share: Share) -> None:
    """Evaluate each base once per (scaffold, verifier) it is post-trained under, in fixed-size chunks."""
    study = plan.study
    world = study.world.task_world()
    vocab = Vocab(world)
    skipped = 0
    for k, (ci, chunk) in enumerate(plan.base_eval_chunks()):
        if not share(k):
            continue
        name = base_eval_name(chunk)
        if rd.has("base_evals", name):
            skipped += 1
            continue
        parts: dict = {}  # a chunk's evaluations, split by shape (one compiled evaluation each)
        for j in chunk:
            parts.setdefault(j.static, []).append(j)
        t = time.perf_counter()
        outs = {}
        for pstatic, jobs in parts.items():
            params = execute.stack(bases.get([j.base_job for j in jobs]))
            scaffolds = execute.stack([MODULES["scaffold"].run_params(study.factors["scaffold"][j.scaffold], vocab)
                                       for j in jobs])
            verifiers = execute.stack([MODULES["verifier"].run_params(study.factors["verifier"][j.verifier], world)
                                       for j in jobs])
            keys = execute.key_data([eval_key(study, plan.bases[j.base_job]) for j in jobs])
            out = executor.map(execute.base_eval_row(pstatic, study.world), (params, scaffolds, verifiers, keys),
                               plan.device_batch, label="base evaluation")
            for row, j in enumerate(jobs):
                outs[j.index] = {key: v[row] for key, v in out.items()}
        arrays = {key: np.stack([outs[j.index][key] for j in chunk]) for key in next(iter(outs.values()))}
        arrays["job"] = np.array([j.index for j in chunk], np.int64)
        rd.write("base_evals", name, arrays, {"jobs": [j.index for j in chunk]})
        progress.log(f"  evaluated {len(chunk)} base/scaffold/verifier combination(s) in "
                     f"{time.perf_counter() - t:.1f}s")
    if skipped:
        progress.log(f"  {skipped} chunk(s) of base evaluations already done (resumed)")


def run_chunks(plan: Plan, rd: RunDirectory, bases: Bases, executor, progress: Progress, share: Share) -> None:
    """Post-train and evaluate this process's share of chunks, skipping those already done."""
    study = plan.study
    skey = study_key(study)
    mine = [(k, g, ci, runs) for k, (g, ci, runs) in enumerate(plan.chunks()) if share(k)]
    total_steps = sum(len(runs) * g.static.posttrain.steps for _, g, _, runs in mine)
    total_runs = sum(len(runs) for *_, runs in mine)
    progress.set_total(total_runs, total_steps / max(1, total_runs))
    reuse = grow.Reuse(rd.path)
    if reuse:
        progress.log(f"  {len(reuse)} finished run(s) of the study this directory grew from can be reused")
    for k, group, ci, runs in mine:
        name = chunk_name(group.index, ci)
        if rd.has("chunks", name):
            progress.skipped(len(runs))
            continue
        row = execute.run_row(group.static, study.world)
        example = sizing.example_run_args(plan, group)
        executor.compile(row, example, plan.device_batch, label=f"group {group.index}")  # once, kept for the run

        def identities_of(runs=runs, row=row, example=example):
            # the identity of the group's program: what a reused run must share (a warm start's is known once it
            # is checked: before computing where runs may be reused, else after)
            program = executor.program(row, example, plan.device_batch)
            return [grow.run_identity(r.run_id, study.seed, plan.device_batch, program) for r in runs]

        reused = reuse.find(identities_of()) if reuse else {}
        todo = [i for i in range(len(runs)) if i not in reused]
        t = time.perf_counter()
        computed = {}
        if todo:
            part = [runs[i] for i in todo]
            base_params = execute.stack(bases.get([r.base_job for r in part]))
            run_params = execute.stack([run_params_for(study, r.cell) for r in part])
            keys = execute.key_data([jax.random.fold_in(skey, run_key_word(r.run_id)) for r in part])
            eval_keys = execute.key_data([eval_key(study, plan.bases[r.base_job]) for r in part])
            out = dict(executor.map(row, (base_params, run_params, keys, eval_keys), plan.device_batch))
            out["status"] = faults.run_status(out, group.static)
            computed = {i: {key: v[j] for key, v in out.items()} for j, i in enumerate(todo)}
        seconds = time.perf_counter() - t
        identities = identities_of()
        rows = [computed[i] if i in computed else reused[i] for i in range(len(runs))]
        out = {key: np.stack([r[key] for r in rows]) for key in rows[0] if key != "run_id"}
        out["run_id"] = np.array([r.run_id for r in runs], np.int64)
        rd.write("chunks", name, out, {"group": group.index, "chunk": ci, "global_chunk": k, "runs": len(runs),
                                       "reused": len(reused), "identities": identities, "seconds": seconds,
                                       "devices": executor.num_devices, "process": share.index})
        if np.any(out["status"] != faults.OK):
            progress.log(f"  warning: {name}: {faults.describe(out['status'])} run(s); they are left out of the "
                         "results (NaN, marked in `status`)")
        progress.chunk(f"group {group.index} chunk {ci}", len(todo), len(todo) * group.static.posttrain.steps, seconds)
        if reused:
            progress.skipped(len(reused))


# ---------------------------------------------------------------------------------------------- the study
def _existing_layout(path: Path, study_hash: str) -> dict | None:
    """The layout a results directory was started with (None for a new one); refuses foreign directories."""
    manifest = RunDirectory.existing(path, study_hash)
    if manifest is None:
        return None
    plan = manifest.get("plan") or {}
    if "layout" in plan:
        return plan["layout"]
    if "chunk_size" in plan:  # directories from before the device batch: the whole chunk in one call
        return {"chunk_size": plan["chunk_size"], "device_batch": plan["chunk_size"]}
    raise ResultsError(f"{path}/manifest.json: corrupt manifest (no plan layout)")


def _check_code(out: Path, allow_mixed_code: bool) -> None:
    if (out / "manifest.json").exists():
        check_code(out, RunDirectory(out).manifest(), allow_mixed_code)


def prepare(study: Study, out: str | Path, executor, progress: Progress, *, study_text=None, chunk_size=None,
            device_batch=None, process_index: int = 0, wait_seconds: float = 600.0, grow_study: bool = False,
            num_processes: int = 1, allow_mixed_code: bool = False):
    """Size the plan and open (or create) the results directory. Process 0 creates it; others wait for it.

    Before anything is compiled: the directory must hold this study (or none), have been started by this code
    (unless `allow_mixed_code`), be writable, and not be written by another run: its lock (`rd.lock`, a
    `DirectoryLock`) is taken here and held until the caller releases it."""
    out = Path(out)
    if process_index > 0:
        RunDirectory.open(out, study.hash, "", {}, create=False, wait_seconds=wait_seconds,
                          allow_mixed_code=allow_mixed_code)
    if grow_study:
        _check_code(out, allow_mixed_code)  # before growth moves anything
    if grow_study and (out / "manifest.json").exists():
        grow.start(out, study, None)
        if study_text is not None:
            from fi_sim.engine.store import atomic_write

            atomic_write(out / "study.toml", study_text.encode())
    layout = _existing_layout(out, study.hash)
    _check_code(out, allow_mixed_code)
    check_writable(out)
    lock = DirectoryLock(out, (process_index, num_processes)).acquire()
    try:
        sizing = size_plan(study, executor, chunk_size=chunk_size, device_batch=device_batch, layout=layout)
        plan = sizing.plan
        summary = {"runs": plan.num_runs, "bases": len(plan.bases), "groups": len(plan.groups),
                   "chunk_size": plan.chunk_size, "layout": sizing.layout()}
        rd = RunDirectory.open(out, study.hash, study.to_json(), summary, study_text,
                               allow_mixed_code=allow_mixed_code)
    except BaseException:
        lock.release()
        raise
    rd.lock = lock
    return sizing, rd


def run_study(study: Study, out: str | Path, *, study_text: str | None = None, quiet: bool = False,
              chunk_size: int | None = None, device_batch: int | None = None, process_index: int | None = None,
              num_processes: int | None = None, devices: int | None = None, use_cache: bool = True,
              wait_seconds: float = 3600.0, stream=None, grow_study: bool = False, allow_mixed_code: bool = False):
    """Run (or resume) a study into `out`; returns the results Dataset (also written to out/results.nc).

    With several processes, only process 0 returns the Dataset (after every process's chunks are written);
    the others return None when their share is done. Ctrl-C (in the main thread) finishes and saves the chunk
    in flight, then raises KeyboardInterrupt; a second Ctrl-C raises it at once. `allow_mixed_code` resumes a
    directory that other code started (every code identity that contributed is recorded)."""
    index, count = process_layout(process_index, num_processes)
    share = Share(index, count)
    hostcpu.configure(study.engine.parallelism)  # before JAX's first use (a no-op once it has started)
    cache.enable(disabled=not use_cache)
    progress = Progress(0, quiet, stream)
    executor = execute.Executor(execute.local_devices(devices), on_compile=progress.compiled)
    t0 = time.perf_counter()
    try:
        sizing, rd = prepare(study, out, executor, progress, study_text=study_text, chunk_size=chunk_size,
                             device_batch=device_batch, process_index=index, wait_seconds=wait_seconds,
                             grow_study=grow_study, num_processes=count, allow_mixed_code=allow_mixed_code)
    except BaseException:
        executor.close()
        raise
    try:
        with execute.stop_after_chunk(executor):
            return _run(study, out, sizing, rd, executor, progress, share, wait_seconds, t0)
    finally:
        rd.lock.release()


def _run(study, out, sizing, rd, executor, progress, share, wait_seconds, t0):
    index, count = share.index, share.count
    plan = sizing.plan
    progress.log(plan.describe())
    progress.log(f"  {executor.num_devices} {executor.platform} device(s), device batch {plan.device_batch}"
                 + (f"; process {index} of {count}" if count > 1 else ""))
    rd.remove_stale_temporaries((index, count))
    bases = Bases(plan, rd, progress, wait_seconds)
    try:
        pretrain_bases(plan, rd, executor, progress, share)
        evaluate_bases(plan, rd, bases, executor, progress, share)
        run_chunks(plan, rd, bases, executor, progress, share)
        execute.checkpoint()  # a stop asked for during the last chunk: it is saved; stop before assembling
    finally:
        progress.close()
        executor.close()
    if index != 0:
        progress.log(f"process {index} of {count}: its share is done ({progress.summary()}); process 0 assembles "
                     "the results")
        return None
    if count > 1:
        wait_for(rd, "base_evals", [base_eval_name(c) for _, c in plan.base_eval_chunks()], progress, wait_seconds,
                 "chunk(s) of base evaluations")
        wait_for(rd, "chunks", [chunk_name(g.index, ci) for g, ci, _ in plan.chunks()], progress, wait_seconds,
                 "chunk(s) of runs")
    ds = assemble(plan, rd)
    rd.write_dataset(ds)
    grow.Reuse(rd.path).finish()  # a grown study's earlier chunks: every reused row is in the new chunks now
    progress.log(f"done in {time.perf_counter() - t0:.1f}s ({progress.summary()}): {Path(out) / 'results.nc'}")
    return ds


def merge(out: str | Path, study: Study | None = None, quiet: bool = False, stream=None):
    """Assemble results.nc from a results directory whose every piece of work is done; computes nothing.

    The study is read from DIR/study.toml unless given. Missing pieces are listed in the error."""
    from fi_sim.engine.plan import make_plan
    from fi_sim.study import loads_study

    out = Path(out)
    rd = RunDirectory(out)
    manifest = rd.manifest()
    if study is None:
        toml = out / "study.toml"
        if not toml.exists():
            raise ResultsError(f"{out}: no study.toml (the study was run from Python); pass the study to merge")
        study = loads_study(toml.read_text(), source=str(toml))
    layout = _existing_layout(out, study.hash)
    assert layout is not None  # rd.manifest() above found the manifest, so the layout is read (or refused) from it
    plan = make_plan(study, layout["chunk_size"], layout["device_batch"])
    rd.study_hash = manifest["study_hash"]
    missing = (rd.missing("bases", [base_name(j) for j in plan.bases])
               + rd.missing("base_evals", [base_eval_name(c) for _, c in plan.base_eval_chunks()])
               + rd.missing("chunks", [chunk_name(g.index, ci) for g, ci, _ in plan.chunks()]))
    if missing:
        raise ResultsError(f"{out}: {len(missing)} piece(s) of work missing (e.g. {missing[0]}); finish them with "
                           "`fi-sim run` (any number of processes) before merging")
    ds = assemble(plan, rd)
    path = rd.write_dataset(ds)
    grow.Reuse(rd.path).finish()
    if not quiet:
        print(f"merged {plan.num_runs} runs: {path}", file=stream or __import__("sys").stderr)
    return ds
