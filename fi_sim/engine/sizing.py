"""Choosing how the work is split, and estimating what it costs: the numbers `fi-sim plan` prints.

The layout (the device batch: runs computed at once on each device) shapes the arrays a run is computed in, so
it decides the last bits of every result. It is therefore **canonical**: a function of the study and the
platform only, never of free memory or of how many devices are present. The study's `[engine] device_batch`
wins; else it is the platform's default (`CANONICAL_DEVICE_BATCH`), capped by the study's `[engine]
chunk_size` when it sets one. Devices and processes only decide who computes which device batch; the chunk
size (runs per durable file) never changes a bit.

Memory is checked, not chased: each group is compiled once at the canonical batch (that executable is kept for
the run), XLA's memory analysis gives its peak per device, and when that does not fit (every host device shares
the RAM on a CPU; one accelerator's memory otherwise) the plan stops before any compute, saying what is needed,
what is available and what to do. An explicit `--device-batch` that differs from the canonical one is allowed
and recorded: the results then name a non-canonical layout (their last bits differ from a canonical run's).

Model FLOPs are counted from the policy's shape (matmul FLOPs per token, `PolicyConfig.flops_per_token`) times
the tokens each stage processes; time is estimated from them at a measured rate (`--calibrate` times one call
of each group) or, without calibration, at a fraction of this machine's measured dense-matmul rate.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.engine.plan import BASE_BATCH, Plan, make_plan
from fi_sim.errors import ResultsError, invalid

# The canonical device batch per platform. CPU: past a few runs per core the working set leaves the caches and
# throughput falls (measured on a 2-core EPYC: run-steps per CPU-second peak at 4 to 8 runs per device and fall
# by a third at 32). Accelerators: 256 runs of the 3^6 x 8 study's model take about 14 GiB, within any current
# data-centre GPU (an H200 saturates near 4,096, at 78% of that rate at 256; choose more with --device-batch).
CANONICAL_DEVICE_BATCH = {"cpu": 8}
ACCELERATOR_DEVICE_BATCH = 256
CPU_MEMORY_SHARE = 0.8  # of the RAM available now, for the compiled work of every host device together
ACCELERATOR_MEMORY_SHARE = 0.9  # of each accelerator's memory
# Without calibration, the engine is assumed to reach this share of the dense-matmul rate (rough: the toy
# policy's matmuls are small; `benchmarks/` measures the real share, `fi-sim plan --calibrate` times it).
ASSUMED_ROOFLINE_FRACTION = {"cpu": 0.2}
DEFAULT_ROOFLINE_FRACTION = 0.05


# ---------------------------------------------------------------------------------------------- FLOPs
def posttrain_flops_per_step(static) -> float:
    """Model FLOPs of one post-training step of one run: sample, score, update (the benchmarks' run-step).

    Sampling: every sequence position once through the policy (prefill + decode with a KV cache). Update: the
    policy's forward and backward (3x forward) over prompt + response, and the base's forward for the exact KL."""
    p = static.posttrain
    fpt = p.policy.flops_per_token()
    seqs = p.prompts_per_step * p.samples_per_prompt
    L = p.policy.sequence_length
    return float(fpt * seqs * (L + 3 * (L - 1) + (L - 1)))


def run_flops(static, eval_size: int) -> float:
    return static.posttrain.steps * posttrain_flops_per_step(static) + eval_size * eval_flops_of(static.evaluate)


def pretrain_flops(static) -> float:
    return float(3 * static.steps * static.batch_size * static.policy.sequence_length * static.policy.flops_per_token())


def plan_flops(plan: Plan) -> dict[str, float]:
    """Model FLOPs of the whole study by stage."""
    E = plan.study.world.eval_size
    return {
        "pretraining": sum(pretrain_flops(job.static) for job in plan.bases),
        "base evaluation": sum(E * eval_flops_of(job.static) for job in plan.base_evals),
        "post-training and evaluation": sum(len(g.runs) * run_flops(g.static, E) for g in plan.groups),
    }


def eval_flops_of(estatic) -> float:
    """Model FLOPs of evaluating one policy on one item under every budget (one set of samples per temperature)."""
    return float(estatic.policy.flops_per_token() * estatic.num_samples * len(estatic.temperatures)
                 * estatic.policy.sequence_length)


# ---------------------------------------------------------------------------------------------- memory
MEMORY_LIMIT_ENV = "FI_SIM_MEMORY_LIMIT"  # bytes of RAM fi_sim may count on (e.g. on a shared machine); at most the free RAM


def available_host_memory() -> int:
    """The RAM available now (MemAvailable), or FI_SIM_MEMORY_LIMIT bytes when that is set and smaller."""
    free = _free_host_memory()
    limit = os.environ.get(MEMORY_LIMIT_ENV)
    if limit:
        try:
            value = int(float(limit))
        except ValueError:
            raise invalid(MEMORY_LIMIT_ENV, limit, "a number of bytes, e.g. 8e9") from None
        if value < 1:
            raise invalid(MEMORY_LIMIT_ENV, limit, "a positive number of bytes, e.g. 8e9")
        return min(value, free)
    return free


def _free_host_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def platform_device_batch(platform: str) -> int:
    return CANONICAL_DEVICE_BATCH.get(platform, ACCELERATOR_DEVICE_BATCH)


def canonical_device_batch(study, platform: str) -> int:
    """The device batch a study is computed at on a platform: a function of the study and platform only."""
    given = study.engine.device_batch
    if given is not None:
        return int(given)
    default = platform_device_batch(platform)
    return min(default, study.engine.chunk_size) if study.engine.chunk_size else default


def memory_available(devices, host_bytes: int | None = None) -> tuple[int, str]:
    """(bytes the compiled work of one call may use on the devices together, what that is) for the fit check."""
    d = devices[0]
    if d.platform == "cpu":
        host = available_host_memory() if host_bytes is None else host_bytes
        return int(CPU_MEMORY_SHARE * host), f"{CPU_MEMORY_SHARE:.0%} of the {host / 2**30:,.1f} GiB of RAM available"
    try:
        limit = (d.memory_stats() or {}).get("bytes_limit")
    except Exception:  # a backend without memory statistics: assume a small accelerator
        limit = None
    limit = limit or 16 << 30
    return int(ACCELERATOR_MEMORY_SHARE * limit), f"{ACCELERATOR_MEMORY_SHARE:.0%} of one device's {limit / 2**30:,.1f} GiB"


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(np.floor(np.log2(max(x, 1.0)))))


# ---------------------------------------------------------------------------------------------- sizing
@dataclass
class GroupSizing:
    index: int
    memory_bytes: int | None  # per device, of the executable at the plan's device batch
    compile_seconds: float
    calibrated_seconds: float | None = None  # one call of D x device_batch runs, measured
    record: Any = None  # how the executable was obtained (execute.CompileRecord: compiled, loaded, warm)


@dataclass
class Sizing:
    plan: Plan
    available_bytes: int
    num_devices: int
    platform: str
    chosen_by: str  # how the device batch was chosen
    canonical_device_batch: int
    groups: list[GroupSizing] = field(default_factory=list)

    @property
    def canonical(self) -> bool:
        return self.plan.device_batch == self.canonical_device_batch

    @property
    def device_memory_bytes(self) -> int | None:
        known = [g.memory_bytes for g in self.groups if g.memory_bytes is not None]
        return max(known) if known else None

    def layout(self) -> dict:
        """What a results directory records: every process and every resume must share it."""
        layout = dict(self.plan.layout(), platform=self.platform, canonical_device_batch=self.canonical_device_batch)
        if self.platform == "cpu":
            layout["cpu_parallelism"] = self.plan.study.engine.parallelism
        return layout


def example_run_args(plan: Plan, group):
    """One row of a group's inputs (shapes and dtypes for compiling), from the first run of the group."""
    from fi_sim.engine.runfn import run_params_for
    from fi_sim.engine import execute
    from fi_sim.world.policy import init_params

    run = group.runs[0]
    base = jax.eval_shape(lambda: init_params(group.static.policy, jax.random.key(0)))
    base = jax.tree.map(lambda s: np.zeros((1,) + s.shape, s.dtype), base)
    params = execute.stack([run_params_for(plan.study, run.cell)])
    keys = execute.key_data([jax.random.key(0)])
    return base, params, keys, keys


def size_plan(study, executor, *, chunk_size: int | None = None, device_batch: int | None = None,
              layout: dict | None = None, host_memory_bytes: int | None = None) -> Sizing:
    """The plan at its layout, with every group compiled for it and checked to fit in memory.

    The device batch: a results directory's recorded `layout` (a resume never changes it), else an explicit
    `device_batch` (`--device-batch`; recorded as non-canonical when it differs), else the canonical one
    (`canonical_device_batch`). The chunk size: recorded, else given, else the study's, else one device batch on
    every local device (it never changes a result). Raises before any compute when a group does not fit."""
    from fi_sim.engine import execute

    from fi_sim.engine import hostcpu

    platform = executor.platform
    hostcpu.check(study.engine.parallelism, executor)
    canonical = canonical_device_batch(study, platform)
    if layout:
        for name, value in (("chunk_size", chunk_size), ("device_batch", device_batch)):
            if value is not None and value != layout.get(name):
                raise ResultsError(f"this results directory was started with {name} {layout.get(name)}; "
                                   f"got {value} (results depend on the layout: keep it, or use a new --out)")
        if platform == "cpu" and layout.get("cpu_parallelism", study.engine.parallelism) != study.engine.parallelism:
            raise ResultsError(f"this results directory was computed at CPU parallelism {layout['cpu_parallelism']}; "
                               f"the study now says {study.engine.parallelism} ([engine] cpu_parallelism), whose bits "
                               "differ: restore it, or use a new --out")
        if layout.get("platform", platform) != platform:
            raise ResultsError(f"this results directory was computed on {layout['platform']}; this is {platform}, "
                               "whose bits differ: resume it on the same platform, or use a new --out")
        chunk_size, device_batch = layout["chunk_size"], layout["device_batch"]
        canonical = layout.get("canonical_device_batch", canonical)
        chosen_by = "recorded in the results directory"
    elif device_batch is not None and device_batch != canonical:
        chosen_by = f"given; NOT the canonical {canonical}: results differ in the last bits from a canonical run"
    else:
        device_batch = canonical
        chosen_by = "canonical for the study on " + platform
    D = executor.num_devices
    chunk_size = chunk_size or study.engine.chunk_size or device_batch * D
    plan = make_plan(study, chunk_size, device_batch)
    available, what = memory_available(executor.devices, host_memory_bytes)
    sizing = Sizing(plan, available, D, platform, chosen_by, canonical)
    for g in plan.groups:
        t = time.perf_counter()
        row, example = execute.run_row(g.static, study.world), example_run_args(plan, g)
        exe = executor.compile(row, example, device_batch, label=f"group {g.index}", all_devices=False)
        rec = GroupSizing(g.index, execute.memory_bytes(exe), time.perf_counter() - t,
                          record=executor.record(row, example, device_batch))
        sizing.groups.append(rec)
        need = None if rec.memory_bytes is None else rec.memory_bytes * (D if platform == "cpu" else 1)
        if need is not None and need > available:
            assert rec.memory_bytes is not None  # `need` is computed from it
            per = rec.memory_bytes / device_batch
            fits = max(1, int(available // (per * (D if platform == "cpu" else 1))))
            remedies = []
            if platform == "cpu" and D > 1 and rec.memory_bytes <= available:
                remedies.append(f"use fewer host devices (--devices {max(1, int(available // rec.memory_bytes))}: "
                                "same results, slower)")
            remedies.append("free memory")
            remedies.append(f"or choose a non-canonical layout (--device-batch {_pow2_floor(fits)}: recorded; its "
                            "last bits differ from a canonical run)")
            raise ResultsError(
                f"group {g.index} needs {need / 2**30:,.2f} GiB at device batch {device_batch} on {D} "
                f"{platform} device(s) ({rec.memory_bytes / 2**20:,.0f} MiB per device); available: "
                f"{available / 2**30:,.2f} GiB ({what}); " + ", ".join(remedies))
    return sizing


def calibrate(sizing: Sizing, executor) -> None:
    """Time one call (device_batch runs on every device) of each group, after its compile."""
    from fi_sim.engine import execute

    plan = sizing.plan
    for g, rec in zip(plan.groups, sizing.groups):
        row = execute.run_row(g.static, plan.study.world)
        args = example_run_args(plan, g)
        args = execute.pad_rows(args, plan.device_batch * executor.num_devices)
        # real base shapes but zero weights would make a degenerate policy; a random one is representative
        from fi_sim.world.policy import init_params

        base = jax.jit(init_params, static_argnums=0)(g.static.policy, jax.random.key(0))
        args = (execute.stack([base] * execute.num_rows(args)),) + tuple(args[1:])
        executor.map(row, args, plan.device_batch)  # warm
        t = time.perf_counter()
        executor.map(row, args, plan.device_batch)
        rec.calibrated_seconds = time.perf_counter() - t


def matmul_flops_per_second(devices, size: int = 1024, repeats: int = 5) -> float:
    """This machine's dense float32 matmul rate on the given devices (median of `repeats`), all devices at once."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(devices), ("d",))
    sharding = NamedSharding(mesh, PartitionSpec("d"))
    D = len(devices)
    a = jax.device_put(jnp.ones((D, size, size), jnp.float32) / size, sharding)
    f = jax.jit(lambda x: jnp.einsum("dij,djk->dik", x, x), in_shardings=sharding, out_shardings=sharding)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return D * 2 * size**3 / float(np.median(times))


@dataclass
class Estimate:
    flops: dict[str, float]
    seconds: dict[str, float]
    basis: str
    peak_memory_bytes: int | None


def estimate(sizing: Sizing, executor) -> Estimate:
    plan = sizing.plan
    flops = plan_flops(plan)
    D = executor.num_devices
    calibrated = all(g.calibrated_seconds is not None for g in sizing.groups)
    peak = matmul_flops_per_second(executor.devices)
    share = ASSUMED_ROOFLINE_FRACTION.get(sizing.platform, DEFAULT_ROOFLINE_FRACTION)
    rate = share * peak
    seconds = {k: v / rate for k, v in flops.items()}
    basis = (f"model FLOPs at {share:.0%} of the measured dense-matmul rate ({peak / 1e9:,.0f} GFLOP/s on "
             f"{D} device(s)); `--calibrate` times one call of each group instead")
    if calibrated:
        per_call = plan.device_batch * D
        seconds["post-training and evaluation"] = sum(
            -(-len(g.runs) // per_call) * rec.calibrated_seconds for g, rec in zip(plan.groups, sizing.groups))
        basis = (f"post-training timed on one call of each group (calibrated); other stages at {share:.0%} of the "
                 f"measured dense-matmul rate ({peak / 1e9:,.0f} GFLOP/s)")
    mem = sizing.device_memory_bytes
    peak_memory = None if mem is None else mem * (D if sizing.platform == "cpu" else 1)
    return Estimate(flops, seconds, basis, peak_memory)


def describe(sizing: Sizing, est: Estimate | None = None) -> str:
    plan = sizing.plan
    lines = [plan.describe(),
             f"devices: {sizing.num_devices} x {sizing.platform}; device batch {plan.device_batch} runs per device "
             f"({sizing.chosen_by}); base batch {BASE_BATCH}; {plan.num_chunks} chunk(s) of {plan.chunk_size} runs"]
    for g, rec in zip(plan.groups, sizing.groups):
        memory = "unknown" if rec.memory_bytes is None else f"{rec.memory_bytes / 2**20:,.1f} MiB"
        per_run = "" if rec.memory_bytes is None else f", about {rec.memory_bytes / plan.device_batch / 2**20:,.1f} MiB per run"
        how = rec.record.describe() if rec.record is not None else f"compiled group {g.index} in {rec.compile_seconds:.1f}s"
        lines.append(f"  {how}; memory per device {memory}{per_run}")
    mem = sizing.device_memory_bytes
    if mem is not None:
        need = mem * (sizing.num_devices if sizing.platform == "cpu" else 1)
        lines.append(f"memory: {need / 2**30:,.2f} GiB of compiled work "
                     f"({'all host devices' if sizing.platform == 'cpu' else 'per device'}); "
                     f"{sizing.available_bytes / 2**30:,.2f} GiB available for it")
    if est is not None:
        total_f = sum(est.flops.values())
        total_s = sum(est.seconds.values())
        lines.append(f"estimated work: {total_f / 1e12:,.2f} TFLOP (model FLOPs)")
        for k in est.flops:
            lines.append(f"  {k}: {est.flops[k] / 1e12:,.3f} TFLOP, about {_duration(est.seconds[k])}")
        if est.peak_memory_bytes is not None:
            lines.append(f"estimated peak memory: {est.peak_memory_bytes / 2**30:,.2f} GiB of compiled work "
                         f"({'host RAM' if sizing.platform == 'cpu' else 'per device'}), plus the bases and "
                         "about 1 GiB of process overhead")
        lines.append(f"estimated time: {_duration(total_s)} ({est.basis})")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
