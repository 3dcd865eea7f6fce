"""Run a study: pretrain its bases, post-train its runs chunk by chunk, assemble the results Dataset.

Every piece of work (a chunk of bases, a chunk of runs) is written durably as soon as it is done and skipped
when found complete on a rerun, so a killed study resumes where it stopped and ends bitwise equal to an
uninterrupted one: chunks have a fixed size (the last one padded), every run's key is
`fold_in(study_key, run_id)`, and nothing a run computes depends on which other runs share its chunk.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from flax import serialization

from fi_sim.engine import execute
from fi_sim.engine.runfn import run_params_for
from fi_sim.engine.plan import Plan, base_eval_name, chunk_name, make_plan
from fi_sim.engine.results import assemble
from fi_sim.engine.store import RunDirectory
from fi_sim.factors import MODULES
from fi_sim.study import Study
from fi_sim.train import STAGE_EVAL
from fi_sim.world.policy import init_params
from fi_sim.world.tokens import Vocab

BASE_CHUNK = 2  # bases per compiled pretraining call (fixed, so a base never depends on its neighbours)


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


class Progress:
    """One line per finished piece of work on stderr (silent when quiet)."""

    def __init__(self, total_runs: int, quiet: bool = False, stream=None):
        self.total = total_runs
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.done = 0
        self.run_steps = 0
        self.compute_s = 0.0
        self.t0 = time.perf_counter()

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream, flush=True)

    def chunk(self, label: str, runs: int, run_steps: int, seconds: float, skipped: bool = False) -> None:
        self.done += runs
        if skipped:
            self.log(f"  {label}: {runs} runs already done (resumed)")
            return
        self.run_steps += run_steps
        self.compute_s += seconds
        rate = self.run_steps / max(self.compute_s, 1e-9)
        remaining = self.total - self.done
        eta = remaining * (self.compute_s / max(self.run_steps, 1)) * (run_steps / max(runs, 1))
        self.log(f"  {label}: {self.done}/{self.total} runs, {run_steps / seconds:,.0f} run-steps/s "
                 f"(mean {rate:,.0f}), {seconds:.1f}s, ETA {eta:.0f}s")


def study_key(study: Study):
    return jax.random.key(study.seed)


def pretrain_bases(plan: Plan, rd: RunDirectory, progress: Progress) -> dict[int, object]:
    """Pretrain (or reload) every base job; returns job index -> params."""
    study = plan.study
    skey = study_key(study)
    out: dict[int, object] = {}
    by_static: dict = {}
    for job in plan.bases:
        by_static.setdefault(job.static, []).append(job)
    for static, jobs in by_static.items():
        template = init_params(static.policy, jax.random.key(0))
        for c in range(0, len(jobs), BASE_CHUNK):
            chunk = jobs[c : c + BASE_CHUNK]
            names = [f"base-{job.uid:08x}-seed{job.seed}" for job in chunk]
            if all(rd.has("bases", n) for n in names):
                for job, n in zip(chunk, names):
                    out[job.index] = _unflatten(template, rd.read("bases", n)[0])
                progress.log(f"  bases {', '.join(names)}: already pretrained (resumed)")
                continue
            levels = [study.factors["base"][job.level_index] for job in chunk]
            params = execute.stack([MODULES["base"].run_params(lv, static.world) for lv in levels])
            keys = execute.key_data([jax.random.fold_in(jax.random.fold_in(skey, job.uid), job.seed) for job in chunk])
            t = time.perf_counter()
            fn = execute.pretrain_fn(static)
            trained, loss = fn(execute.pad_rows(params, BASE_CHUNK), execute.pad_rows(keys, BASE_CHUNK))
            trained = jax.device_get(trained)
            loss = np.asarray(loss)
            for i, (job, n) in enumerate(zip(chunk, names)):
                p = jax.tree.map(lambda x: x[i], trained)
                rd.write("bases", n, _flatten(p), {"level": study.factors["base"][job.level_index].name,
                                                   "seed": job.seed, "final_loss": float(loss[i])})
                out[job.index] = p
            progress.log(f"  pretrained {len(chunk)} base(s) ({', '.join(lv.name for lv in levels)}) x "
                         f"{static.steps} steps in {time.perf_counter() - t:.1f}s; final loss "
                         + ", ".join(f"{x:.3f}" for x in loss[: len(chunk)]))
    return out


def eval_key(study: Study, job) -> jax.Array:
    """Evaluation sampling key of a base job, shared by the base's evaluation and every run from it."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(study_key(study), STAGE_EVAL), job.uid), job.seed)


def evaluate_bases(plan: Plan, rd: RunDirectory, bases: dict[int, object], progress: Progress) -> None:
    """Evaluate each base once per (scaffold, verifier) it is post-trained under, in fixed-size chunks."""
    study = plan.study
    world, vocab = study.world.chain(), Vocab(study.world.chain())
    by_static: dict = {}
    for job in plan.base_evals:
        by_static.setdefault(job.static, []).append(job)
    for gi, (static, jobs) in enumerate(by_static.items()):
        fn = execute.base_eval_fn(static, study.world)
        for c in range(0, len(jobs), plan.chunk_size):
            chunk = jobs[c : c + plan.chunk_size]
            name = base_eval_name(chunk)
            if rd.has("base_evals", name):
                progress.log(f"  base evaluations {c}-{c + len(chunk) - 1}: already done (resumed)")
                continue
            t = time.perf_counter()
            params = execute.stack([bases[j.base_job] for j in chunk])
            scaffolds = execute.stack([MODULES["scaffold"].run_params(study.factors["scaffold"][j.scaffold], vocab)
                                       for j in chunk])
            verifiers = execute.stack([MODULES["verifier"].run_params(study.factors["verifier"][j.verifier], world)
                                       for j in chunk])
            keys = execute.key_data([eval_key(study, plan.bases[j.base_job]) for j in chunk])
            size = plan.chunk_size
            out = fn(*(execute.pad_rows(x, size) for x in (params, scaffolds, verifiers, keys)))
            out = {k: np.asarray(v)[: len(chunk)] for k, v in jax.device_get(out).items()}
            out["job"] = np.array([j.index for j in chunk], np.int64)
            rd.write("base_evals", name, out, {"jobs": [j.index for j in chunk]})
            progress.log(f"  evaluated {len(chunk)} base/scaffold/verifier combination(s) in "
                         f"{time.perf_counter() - t:.1f}s")


def run_chunks(plan: Plan, rd: RunDirectory, bases: dict[int, object], progress: Progress,
               select: Callable[[int], bool] = lambda i: True) -> None:
    """Post-train and evaluate every chunk (those `select`ed by their global index) not already done."""
    study = plan.study
    skey = study_key(study)
    for global_index, (group, ci, runs) in enumerate(plan.chunks()):
        if not select(global_index):
            continue
        name = chunk_name(group.index, ci)
        steps = group.static.posttrain.steps
        label = f"group {group.index} chunk {ci}"
        if rd.has("chunks", name):
            progress.chunk(label, len(runs), len(runs) * steps, 0.0, skipped=True)
            continue
        base_params = execute.stack([bases[r.base_job] for r in runs])
        run_params = execute.stack([run_params_for(study, r.cell) for r in runs])
        keys = execute.key_data([jax.random.fold_in(skey, r.run_id) for r in runs])
        eval_keys = execute.key_data([eval_key(study, plan.bases[r.base_job]) for r in runs])
        fn = execute.group_fn(group.static, study.world)
        size = plan.chunk_size
        t = time.perf_counter()
        out = fn(*(execute.pad_rows(x, size) for x in (base_params, run_params, keys, eval_keys)))
        out = {k: np.asarray(v)[: len(runs)] for k, v in jax.device_get(out).items()}
        seconds = time.perf_counter() - t
        out["run_id"] = np.array([r.run_id for r in runs], np.int64)
        rd.write("chunks", name, out, {"group": group.index, "chunk": ci, "runs": len(runs), "seconds": seconds})
        progress.chunk(label, len(runs), len(runs) * steps, seconds)


def run_study(study: Study, out: str | Path, *, study_text: str | None = None, quiet: bool = False,
              chunk_size: int | None = None, stream=None):
    """Run (or resume) a study into `out`; returns the results Dataset (also written to out/results.nc)."""
    plan = make_plan(study, chunk_size)
    progress = Progress(plan.num_runs, quiet, stream)
    progress.log(plan.describe())
    summary = {"runs": plan.num_runs, "bases": len(plan.bases), "groups": len(plan.groups),
               "chunk_size": plan.chunk_size}
    rd = RunDirectory.open(out, study.hash, study.to_json(), summary, study_text)
    t0 = time.perf_counter()
    bases = pretrain_bases(plan, rd, progress)
    evaluate_bases(plan, rd, bases, progress)
    run_chunks(plan, rd, bases, progress)
    ds = assemble(plan, rd)
    rd.write_dataset(ds)
    progress.log(f"done in {time.perf_counter() - t0:.1f}s: {Path(out) / 'results.nc'}")
    return ds
