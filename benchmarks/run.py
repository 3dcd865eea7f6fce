"""fi_sim's engine benchmark: run-steps per second of the default world's post-training at N runs, against a
Python loop over the same jitted single-run function and against an idiomatic PyTorch peer.

    python -m benchmarks.run                       # CPU: the table, and benchmarks/results.json
    python -m benchmarks.run --device gpu --out D  # the same on a GPU (see benchmarks/gpu.sh)
    python -m benchmarks.run --quick               # a few seconds of each path (the smoke test)

Every measurement runs in its own subprocess (so each has its own peak RSS and nothing is shared between the
frameworks) and is repeated; the table quotes medians. See benchmarks/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NS = (1, 16, 256, 1024, 4096)


# ---------------------------------------------------------------------------------------------- children
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _setup_jax(device: str):
    if device == "cpu":
        from fi_sim.cli import configure_host_devices

        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        configure_host_devices()
    import jax

    platform_ = jax.devices()[0].platform
    if device == "gpu" and platform_ != "gpu":
        raise SystemExit(f"--device gpu: JAX sees no GPU (devices: {jax.devices()}); install jax with CUDA "
                         "support in this environment (e.g. pip install 'jax[cuda12]' from a local wheel mirror)")
    from fi_sim.engine import cache

    cache.enable()
    return jax


def child_matmul(args) -> dict:
    jax = _setup_jax(args.device)
    import jax.numpy as jnp
    import numpy as np

    from fi_sim.engine.sizing import matmul_flops_per_second

    devices = jax.local_devices()
    all_devices = matmul_flops_per_second(devices, size=args.matmul_size, repeats=args.repeats)
    a = jnp.ones((2 * args.matmul_size,) * 2, jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t)
    one = 2 * (2 * args.matmul_size) ** 3 / float(np.median(times))
    return {"all_devices_flops": all_devices, "one_device_flops": one, "peak_flops": max(all_devices, one),
            "devices": len(devices), "platform": devices[0].platform, "device_kind": devices[0].device_kind}


def _device_batch(ex, row, example, n: int, requested: int | None) -> int:
    from fi_sim.engine import execute, sizing

    if requested:
        return requested
    cap = sizing.platform_device_batch(ex.platform)
    b = max(1, min(cap, -(-n // ex.num_devices)))
    budget, _ = sizing.memory_available(ex.devices)
    while b > 1:
        mem = execute.memory_bytes(ex.compile(row, example, b, all_devices=False))
        if mem is None or mem * (ex.num_devices if ex.platform == "cpu" else 1) <= budget:
            break
        b //= 2
    return b


def child_jax(args) -> dict:
    jax = _setup_jax(args.device)
    from benchmarks import workload
    from fi_sim.engine import execute

    n, steps = args.n, args.steps
    row = workload.make_row(steps)
    ex = execute.Executor(execute.local_devices())
    example = workload.inputs(0, 1)
    t = time.perf_counter()
    b = _device_batch(ex, row, example, n, args.device_batch)
    ex.compile(row, example, b)
    compile_s = time.perf_counter() - t
    per_call = b * ex.num_devices
    devices_used = min(ex.num_devices, -(-n // b))
    ex.map(row, workload.inputs(0, min(n, per_call)), b)  # warm-up: first calls, thread pool, allocator
    samples, seconds, cpu = [], [], []
    if n <= per_call:  # one call holds every run: repeat the whole measurement
        for r in range(args.repeats):
            x = workload.inputs(r * n, n)
            t, c = time.perf_counter(), time.process_time()
            out = ex.map(row, x, b)
            seconds.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            samples.append(n * steps / seconds[-1])
        total = statistics.median(seconds)
    else:  # the N runs once, in `repeats` segments of whole calls, each timed
        size = -(-n // args.repeats)
        size = -(-size // per_call) * per_call
        first = 0
        while first < n:
            count = min(size, n - first)
            x = workload.inputs(first, count)
            t, c = time.perf_counter(), time.process_time()
            out = ex.map(row, x, b)
            seconds.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            samples.append(count * steps / seconds[-1])
            first += count
        total = sum(seconds)
    finite = bool(all(map(lambda v: bool(jax.numpy.isfinite(v).all()), jax.tree.leaves(out))))
    mem = execute.memory_bytes(ex.compile(row, example, b))
    ex.close()
    return {"n": n, "steps": steps, "device_batch": b, "devices": ex.num_devices, "devices_used": devices_used,
            "compile_s": compile_s, "samples": samples, "median": statistics.median(samples),
            "all_runs_rate": n * steps / total, "seconds": seconds, "cpu_seconds": cpu, "finite": finite,
            "cores_busy": sum(cpu) / sum(seconds), "per_cpu_second": statistics.median(
                [s * w / c for s, w, c in zip(samples, seconds, cpu)]),
            "device_memory_per_call_mb": None if mem is None else mem / 2**20,
            "device_memory_per_run_mb": None if mem is None else mem / b / 2**20, "peak_rss_mb": _peak_rss_mb()}


def child_loop(args) -> dict:
    jax = _setup_jax(args.device)
    from benchmarks import workload

    steps, runs = args.steps, args.runs
    f = jax.jit(workload.make_row(steps))
    t = time.perf_counter()
    jax.block_until_ready(f(*workload.one_input(10_000)))  # compile + warm-up
    compile_s = time.perf_counter() - t
    samples, per_cpu, busy = [], [], []
    for r in range(args.repeats):
        xs = [workload.one_input(r * runs + i) for i in range(runs)]
        t, c = time.perf_counter(), time.process_time()
        outs = [f(*x) for x in xs]  # a Python loop over runs, one jitted call each
        jax.block_until_ready(outs)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        samples.append(runs * steps / wall)
        per_cpu.append(runs * steps / cpu)
        busy.append(cpu / wall)
    return {"runs": runs, "steps": steps, "compile_s": compile_s, "samples": samples,
            "median": statistics.median(samples), "per_cpu_second": statistics.median(per_cpu),
            "cores_busy": statistics.median(busy), "peak_rss_mb": _peak_rss_mb()}


def child_torch(args) -> dict:
    # the task tables and shapes come from the JAX side (read on CPU only), the weights from the same base
    os.environ["JAX_PLATFORMS"] = "cpu"
    import torch

    from benchmarks import torch_peer, workload

    c = workload.peer_config()
    state = torch_peer.base_state_from_jax(workload.base_params(), c)
    device = torch.device(args.torch_device)
    if device.type != "cpu":
        raise SystemExit("the PyTorch peer is defined as eager CPU PyTorch (see benchmarks/README.md)")
    samples, per_cpu = torch_peer.measure(c, state, args.runs, args.steps, args.repeats, args.threads)
    return {"runs": args.runs, "steps": args.steps, "samples": samples, "median": statistics.median(samples),
            "per_cpu_second": statistics.median(per_cpu),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "peak_rss_mb": _peak_rss_mb()}


CHILDREN = {"matmul": child_matmul, "jax": child_jax, "loop": child_loop, "torch": child_torch}


# ---------------------------------------------------------------------------------------------- the parent
def spawn(kind: str, args, **extra) -> dict:
    argv = [sys.executable, "-m", "benchmarks.run", "--child", kind, "--device", args.device,
            "--steps", str(extra.pop("steps", args.steps)), "--repeats", str(extra.pop("repeats", args.repeats))]
    for k, v in extra.items():
        if v is not None:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    env = dict(os.environ)
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=args.timeout)
    if r.returncode != 0:
        raise SystemExit(f"benchmark child {kind} {extra} failed:\n{r.stderr[-4000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t
    if not args.quiet:
        print(f"  {kind} {extra or ''}: median {out.get('median', out.get('peak_flops', 0)):,.1f} "
              f"({out['wall_s']:.0f}s)", file=sys.stderr, flush=True)
    return out


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--out", default=str(ROOT / "benchmarks"), help="directory for results.json")
    p.add_argument("--ns", default=",".join(map(str, DEFAULT_NS)), help="numbers of runs N")
    p.add_argument("--steps", type=int, default=10, help="post-training steps per run (the same for every N)")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions (or segments) per measurement")
    p.add_argument("--loop-runs", type=int, default=16, help="runs timed in the Python loop (its rate does not "
                   "depend on N)")
    p.add_argument("--torch-runs", type=int, default=4, help="runs timed in the PyTorch loop")
    p.add_argument("--torch-repeats", type=int, default=3)
    p.add_argument("--torch-device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="PyTorch intra-op threads (default: its own)")
    p.add_argument("--device-batch", type=int, default=None, help="runs per device per call (default: engine)")
    p.add_argument("--matmul-size", type=int, default=1024)
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny settings: checks every path in a minute")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--child", choices=tuple(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    if args.quick:
        args.ns, args.steps, args.repeats = "1,4", 2, 2
        args.loop_runs, args.torch_runs, args.torch_repeats, args.matmul_size = 2, 1, 1, 256
    ns = [int(x) for x in args.ns.split(",")]
    t0, load0 = time.perf_counter(), load_average()
    from benchmarks import workload

    if not args.quiet:
        print(f"benchmark: {workload.describe()}; {args.steps} steps per run; device {args.device}",
              file=sys.stderr)
    matmul = spawn("matmul", args, matmul_size=args.matmul_size)
    jax_res = {n: spawn("jax", args, n=n, device_batch=args.device_batch) for n in ns}
    loop_runs = {n: min(n, args.loop_runs) for n in ns}
    loop_res = {r: spawn("loop", args, runs=r) for r in sorted(set(loop_runs.values()))}
    torch_res = {}
    if not args.skip_torch:
        torch_runs = {n: min(n, args.torch_runs) for n in ns}
        torch_res = {r: spawn("torch", args, runs=r, repeats=args.torch_repeats, torch_device=args.torch_device,
                              threads=args.threads) for r in sorted(set(torch_runs.values()))}
    flops_per_step = workload.model_flops_per_run_step()
    peak = matmul["peak_flops"]
    result = {
        "settings": {"device": args.device, "steps_per_run": args.steps, "repeats": args.repeats,
                     "loop_runs": args.loop_runs, "torch_runs": args.torch_runs, "workload": workload.describe(),
                     "model_flops_per_run_step": flops_per_step, "machine": platform.processor() or platform.machine(),
                     "cpu_count": os.cpu_count(), "load_average_start": load0, "load_average_end": load_average(),
                     "python": platform.python_version(), "command": " ".join(["python -m benchmarks.run"] + (argv or sys.argv[1:]))},
        "run_steps_per_s": {str(n): jax_res[n]["median"] for n in ns},
        "loop_run_steps_per_s": {str(n): loop_res[loop_runs[n]]["median"] for n in ns},
        "torch_run_steps_per_s": {str(n): torch_res[min(n, args.torch_runs)]["median"] for n in ns} if torch_res else {},
        "ratio_vs_loop": {str(n): jax_res[n]["median"] / loop_res[loop_runs[n]]["median"] for n in ns},
        "ratio_vs_torch": ({str(n): jax_res[n]["median"] / torch_res[min(n, args.torch_runs)]["median"] for n in ns}
                           if torch_res else {}),
        "model_flops_per_s": {str(n): jax_res[n]["median"] * flops_per_step for n in ns},
        "matmul_flops_per_s": peak,
        "roofline_fraction": {str(n): jax_res[n]["median"] * flops_per_step / peak for n in ns},
        "peak_rss_mb": {str(n): jax_res[n]["peak_rss_mb"] for n in ns},
        "peak_rss_mb_per_run": {str(n): jax_res[n]["peak_rss_mb"] / n for n in ns},
        "details": {"matmul": matmul, "jax": {str(n): v for n, v in jax_res.items()},
                    "loop": {str(r): v for r, v in loop_res.items()}, "torch": {str(r): v for r, v in torch_res.items()}},
        "wall_s": None,
    }
    result["wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"\nwritten: {out / 'results.json'} ({result['wall_s']:.0f}s)")
    return 0


def table(r: dict) -> str:
    s = r["settings"]
    d = r["details"]
    lines = [
        f"fi_sim engine benchmark — {s['workload']}; {s['steps_per_run']} post-training steps per run",
        f"device: {d['matmul']['devices']} x {d['matmul']['platform']} ({d['matmul']['device_kind']}); "
        f"dense matmul {r['matmul_flops_per_s'] / 1e9:,.0f} GFLOP/s; model {s['model_flops_per_run_step'] / 1e6:,.0f} "
        f"MFLOP per run-step; load average {s['load_average_start']} -> {s['load_average_end']}",
        "medians of repeated measurements (run-steps per second)",
        "",
        f"{'N':>6} {'engine':>9} {'py loop':>9} {'torch':>9} {'x loop':>7} {'x torch':>8} {'GFLOP/s':>8} "
        f"{'roofline':>9} {'peak RSS MB':>12} {'MB/run':>8} {'batch':>6} {'cores':>6} {'per CPU-s':>10}",
    ]
    for n in r["run_steps_per_s"]:
        j = d["jax"][n]
        torch_rate = r["torch_run_steps_per_s"].get(n)
        lines.append(
            f"{n:>6} {r['run_steps_per_s'][n]:>9,.1f} {r['loop_run_steps_per_s'][n]:>9,.1f} "
            f"{torch_rate if torch_rate is not None else float('nan'):>9,.1f} {r['ratio_vs_loop'][n]:>7.2f} "
            f"{r['ratio_vs_torch'].get(n, float('nan')):>8.2f} {r['model_flops_per_s'][n] / 1e9:>8.1f} "
            f"{r['roofline_fraction'][n]:>9.1%} {r['peak_rss_mb'][n]:>12,.0f} {r['peak_rss_mb_per_run'][n]:>8.2f} "
            f"{j['device_batch']}x{j['devices_used']:<3} {j.get('cores_busy', float('nan')):>6.2f} "
            f"{j.get('per_cpu_second', float('nan')):>10,.1f}")
    loop = ", ".join(f"{k} run(s)" for k in d["loop"])
    torch_ = ", ".join(f"{k} run(s), {v['threads']} threads, torch {v['torch']}" for k, v in d["torch"].items())
    per_cpu = [f"py loop {v['per_cpu_second']:,.1f}" for v in d["loop"].values() if "per_cpu_second" in v]
    per_cpu += [f"torch {v['per_cpu_second']:,.1f}" for v in d["torch"].values() if "per_cpu_second" in v]
    lines += ["", f"engine: jit(vmap) per device batch ('batch' = runs per device x devices used; 'cores' = CPU time "
                  f"over wall time); py loop: the same jitted single-run function called once per run ({loop}); "
                  f"torch: eager PyTorch loop ({torch_})",
              "run-steps per CPU-second (robust to other load on a shared machine): " + ", ".join(per_cpu)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
