"""The host CPU as JAX devices, with a canonical parallelism so that the bits never depend on the machine's cores.

XLA's CPU compiler splits loops into parallel tasks for its intra-op thread pool (`outer_dimension_partitions`
in the optimized HLO), and its matmuls split their work over the same pool at run time. The pool has
max(NPROC or the number of cores, number of host devices) threads. Measured with jax 0.10.2 on a 2-core EPYC:
the demo's pretraining compiled at 1 or 2 host devices partitions its fused loops into 2 tasks, at 8 host devices
into 2 x 4, and the trained parameters differ in the last bits (so does every result downstream); NPROC=8 with 2
devices compiles exactly the 8-device executable. The thread pool, not the device count, decides the bits.

So fi_sim fixes it: a study's **CPU parallelism** (`[engine] cpu_parallelism`, default
`DEFAULT_CPU_PARALLELISM`) is set as NPROC before JAX starts, and at most that many host devices are created.
One device per core up to it, any number of devices up to it, any machine: the same executable, the same bits
(the CPU model still matters: XLA compiles for the host's instruction set). It is part of the recorded layout.
From Python, call `configure(parallelism)` before JAX's first use (`fi_sim.engine.runner.run_study` refuses to
compute when the process's parallelism differs from the study's).
"""

from __future__ import annotations

import os
import sys

from fi_sim.errors import ResultsError, invalid

DEFAULT_CPU_PARALLELISM = 8
NPROC_ENV = "NPROC"  # read by XLA's CPU client (tsl) for the size of its intra-op thread pool
DEVICE_COUNT_FLAG = "xla_force_host_platform_device_count"
CPU_DEVICES_ENV = "FI_SIM_CPU_DEVICES"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def jax_started() -> bool:
    if "jax._src.xla_bridge" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def forced_device_count() -> int | None:
    for part in os.environ.get("XLA_FLAGS", "").split():
        if DEVICE_COUNT_FLAG in part and "=" in part:
            try:
                return int(part.split("=", 1)[1])
            except ValueError:
                return None
    return None


def configure(parallelism: int = DEFAULT_CPU_PARALLELISM, devices: int | None = None) -> None:
    """Before JAX starts: NPROC = `parallelism` and `devices` host CPU devices (default: FI_SIM_CPU_DEVICES, else
    one per core, at most `parallelism`). An explicit XLA_FLAGS device count is left alone (and checked later).
    Does nothing once JAX has started (`check` then says whether the process matches)."""
    if jax_started():
        return
    if not isinstance(parallelism, int) or parallelism < 1:
        raise invalid("engine.cpu_parallelism", parallelism, "a positive integer")
    if devices is None:
        env = os.environ.get(CPU_DEVICES_ENV)
        if env:
            try:
                devices = int(env)
            except ValueError:
                raise invalid(CPU_DEVICES_ENV, env, "a positive integer") from None
        else:
            devices = min(cores(), parallelism)
    if devices < 1 or devices > parallelism:
        raise invalid("--cpu-devices", devices, f"an integer in 1..{parallelism} (the study's CPU parallelism: more "
                      "host devices than that would change XLA's code and so the results' bits)")
    os.environ[NPROC_ENV] = str(parallelism)
    if forced_device_count() is None and devices > 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --{DEVICE_COUNT_FLAG}={devices}".strip()


def parallelism_in_effect(num_cpu_devices: int) -> int:
    """The size of XLA's CPU intra-op thread pool in this process (what its CPU code is generated for)."""
    try:
        nproc = int(os.environ.get(NPROC_ENV, ""))
    except ValueError:
        nproc = cores()
    return max(nproc if nproc > 0 else cores(), num_cpu_devices)


def check(parallelism: int, executor) -> None:
    """Refuse to compute on a CPU whose parallelism differs from the study's (its bits would differ)."""
    if executor.platform != "cpu":
        return
    import jax

    have = parallelism_in_effect(len([d for d in jax.local_devices() if d.platform == "cpu"]))
    if have != parallelism:
        raise ResultsError(
            f"this process's XLA CPU parallelism is {have} (NPROC={os.environ.get(NPROC_ENV)!r}, "
            f"{jax.local_device_count()} host device(s)); the study's is {parallelism} ([engine] cpu_parallelism), "
            "and XLA generates different code (different bits) for another: use `fi-sim`, or call "
            f"fi_sim.engine.hostcpu.configure({parallelism}) before JAX's first use, with at most {parallelism} "
            "host devices")
