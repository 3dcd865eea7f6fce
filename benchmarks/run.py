"""fi_sim's engine benchmark: run-steps of the default world's post-training per CPU-second and per wall-second at
N runs, against a Python loop over the same jitted single-run function and three PyTorch peers (an eager loop
over runs, the runs batched by hand, the same under `torch.compile`).

    python -m benchmarks.run                       # CPU: the table, and benchmarks/results.json
    python -m benchmarks.run --device gpu --out D  # the engine and the loop on a GPU (see benchmarks/gpu.sh)
    python -m benchmarks.run --quick               # a minute of every path

Every implementation is timed interleaved with the others, in a rotating order, in long-lived worker processes
driven in lock-step (one JAX worker; one PyTorch worker per core): while one implementation is timed, every other
worker waits on its pipe, so all of them see the same machine, and each worker's CPU time is its own. The table
quotes medians over the repeats, and ratios are medians of the ratios paired within a repeat. See
benchmarks/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NS = (1, 16, 64, 256)
PEERS = ("loop", "torch_eager", "torch_batched", "torch_compiled")
IMPLS = ("engine",) + PEERS
LABELS = {"engine": "engine", "loop": "py loop", "torch_eager": "eager", "torch_batched": "batched",
          "torch_compiled": "compiled"}


def cpu_seconds() -> float:
    """This process's CPU time, every thread's, user and system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def timed(fn):
    t, c = time.perf_counter(), cpu_seconds()
    out = fn()
    return {"wall": time.perf_counter() - t, "cpu": cpu_seconds() - c}, out


def load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return None


def shards(n: int, workers: int) -> list[int]:
    """n runs dealt to `workers` processes as evenly as possible."""
    return [n // workers + (i < n % workers) for i in range(workers)]


def schedule(impls, ns, repeats: int) -> list[tuple[int, int, str]]:
    """(repeat, N, implementation) in timing order: for each repeat and N, every implementation once, the order
    rotated by one place at every (repeat, N), so that each implementation takes every position equally often."""
    out = []
    for r in range(repeats):
        for j, n in enumerate(ns):
            k = (r + j) % len(impls)
            out += [(r, n, impl) for impl in list(impls[k:]) + list(impls[:k])]
    return out


# ---------------------------------------------------------------------------------------------- workers
def _setup_jax(device: str):
    if device == "cpu":
        from fi_sim.cli import configure_host_devices

        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        configure_host_devices()
    import jax

    if device == "gpu" and jax.devices()[0].platform != "gpu":
        raise SystemExit(f"--device gpu: JAX sees no GPU (devices: {jax.devices()}); install jax with CUDA "
                         "support in this environment (e.g. pip install 'jax[cuda12]' from a local wheel mirror)")
    from fi_sim.engine import cache

    cache.enable()
    return jax


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


class JaxWorker:
    """The engine and the Python loop over the jitted single run, in one process (they share JAX)."""

    def __init__(self, device: str, steps: int, peer_file: str):
        self.jax = _setup_jax(device)
        from benchmarks import workload
        from fi_sim.engine import execute

        self.workload, self.steps = workload, steps
        self.row = workload.make_row(steps)
        self.ex = execute.Executor(execute.local_devices())
        self.batches, self.loop = {}, None
        with open(peer_file, "wb") as f:  # the PyTorch workers' configuration and base weights (they import no JAX)
            base = self.jax.tree.map(lambda x: __import__("numpy").asarray(x), workload.base_params())
            pickle.dump({"config": workload.peer_config_fields(), "base": base}, f)

    def info(self) -> dict:
        d = self.ex.devices[0]
        return {"devices": self.ex.num_devices, "platform": d.platform, "device_kind": d.device_kind,
                "jax": self.jax.__version__, "workload": self.workload.describe(),
                "model_flops_per_run_step": self.workload.model_flops_per_run_step()}

    def matmul(self, size: int) -> dict:
        """One sample of the dense float32 matmul rate: every device at once (a (2*size)^2 product on one device
        when that is faster), wall and CPU time."""
        import jax.numpy as jnp

        from fi_sim.engine.sizing import matmul_flops_per_second

        all_devices = matmul_flops_per_second(self.ex.devices, size=size, repeats=3)
        if not hasattr(self, "_mm"):
            self._mm = self.jax.jit(lambda x: x @ x)
            self._a = jnp.ones((2 * size,) * 2, jnp.float32) / size
            self._mm(self._a).block_until_ready()
        t, _ = timed(lambda: self._mm(self._a).block_until_ready())
        flops = 2 * (2 * size) ** 3
        return {"all_devices_flops": all_devices, "one_device_flops": flops / t["wall"], "one_device_flops_per_cpu_s": flops / t["cpu"],
                "one_device_wall": t["wall"], "one_device_cpu": t["cpu"]}

    def setup_engine(self, n: int, device_batch: int | None) -> dict:
        from fi_sim.engine import execute

        example = self.workload.inputs(0, 1)
        t, b = timed(lambda: _device_batch(self.ex, self.row, example, n, device_batch))
        t2, _ = timed(lambda: self.ex.compile(self.row, example, b))
        self.batches[n] = b
        per_call = b * self.ex.num_devices
        self.ex.map(self.row, self.workload.inputs(0, min(n, per_call)), b)  # first calls, thread pool, allocator
        mem = execute.memory_bytes(self.ex.compile(self.row, example, b))
        return {"device_batch": b, "devices_used": min(self.ex.num_devices, -(-n // b)),
                "compile_s": t["wall"] + t2["wall"], "compile_cpu_s": t["cpu"] + t2["cpu"],
                "device_memory_per_call_mb": None if mem is None else mem / 2**20, "peak_rss_mb": peak_rss_mb()}

    def setup_study(self, path: str) -> dict:
        """The cold compile of a study's first post-training group at its canonical device batch, as `fi-sim run`
        and `fi-sim plan` compile it (the worker's cache starts empty), and apart the tracing and lowering alone
        (timed again after, the same work): the rest is XLA's."""
        from fi_sim.engine import sizing

        _, plan, group, row, b = study_group(path, self.ex)
        example = sizing.example_run_args(plan, group)
        t, _ = timed(lambda: self.ex.compile(row, example, b, all_devices=False))
        source = self.ex.record(row, example, b).source
        t2, _ = timed(lambda: self.ex._lower(row, example, b, self.ex.devices[0]))
        return {"study": path, "device_batch": b, "source": source, "cold_compile_s": t["wall"],
                "cold_compile_cpu_s": t["cpu"], "trace_lower_s": t2["wall"], "peak_rss_mb": peak_rss_mb()}

    def setup_loop(self) -> dict:
        self.loop = self.jax.jit(self.row)
        t, _ = timed(lambda: self.jax.block_until_ready(self.loop(*self.workload.one_input(10_000))))
        return {"compile_s": t["wall"], "peak_rss_mb": peak_rss_mb()}

    def engine(self, n: int, first: int) -> dict:
        x = self.workload.inputs(first, n)
        t, out = timed(lambda: self.ex.map(self.row, x, self.batches[n]))
        finite = all(bool(self.jax.numpy.isfinite(v).all()) for v in self.jax.tree.leaves(out))
        return {**t, "run_steps": n * self.steps, "finite": finite}

    def loop_runs(self, runs: int, first: int) -> dict:
        xs = [self.workload.one_input(first + i) for i in range(runs)]

        def go():  # a Python loop over runs, one jitted call each (dispatched asynchronously, synchronised once)
            return self.jax.block_until_ready([self.loop(*x) for x in xs])

        t, _ = timed(go)
        return {**t, "run_steps": runs * self.steps}


class TorchWorker:
    """The PyTorch peers in one process with a fixed number of intra-op threads (see `--torch-layout`)."""

    def __init__(self, threads: int, steps: int, peer_file: str):
        import torch

        from benchmarks import torch_peer

        torch.set_num_threads(threads)
        self.torch, self.steps, self.batched, self.compiled = torch, steps, {}, {}
        with open(peer_file, "rb") as f:
            peer = pickle.load(f)
        self.c = torch_peer.PeerConfig(**peer["config"])
        self.state = torch_peer.base_state_from_jax(peer["base"], self.c)

    def info(self) -> dict:
        import torch

        return {"torch": torch.__version__, "threads": torch.get_num_threads(),
                "interop_threads": torch.get_num_interop_threads(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "mkldnn": torch.backends.mkldnn.is_available()}

    def setup_eager(self) -> dict:
        from benchmarks import torch_peer

        t, _ = timed(lambda: torch_peer.train_run(self.c, self.state, 10_000, 1))
        return {"warmup_s": t["wall"], "peak_rss_mb": peak_rss_mb()}

    def setup_batched(self, n: int, compiled: bool) -> dict:
        from benchmarks import torch_batched

        if n == 0:
            return {"compile_s": 0.0}
        t, runs = timed(lambda: torch_batched.Runs(self.c, self.state, n, compiled=compiled))
        out = {"setup_s": t["wall"], "compile_s": runs.compile_s, "peak_rss_mb": peak_rss_mb()}
        if compiled:  # the compiled functions give the eager ones' logits
            eager = self.batched.get(n) or torch_batched.Runs(self.c, self.state, n)
            prompts = self.torch.randint(0, self.c.vocab_size, (n, 4, self.c.prompt_length))
            with self.torch.no_grad():
                a = runs.prefill(runs.base, prompts, self.c)[0]
                b = eager.prefill(eager.base, prompts, self.c)[0]
            out["max_abs_diff_vs_eager"] = float((a - b).abs().max())
        (self.compiled if compiled else self.batched)[n] = runs
        runs.train(seed=10_000, steps=1)  # warm-up at this N
        return out

    def run(self, kind: str, n: int, seed: int) -> dict:
        from benchmarks import torch_peer

        if n == 0:
            return {"wall": 0.0, "cpu": 0.0, "run_steps": 0, "finite": True}
        if kind == "torch_eager":
            t, logs = timed(lambda: [torch_peer.train_run(self.c, self.state, seed + i, self.steps) for i in range(n)])
            finite = all(math.isfinite(v) for log in logs for v in log["kl"])
        else:
            runs = (self.compiled if kind == "torch_compiled" else self.batched)[n]
            t, log = timed(lambda: runs.train(seed, self.steps))
            finite = bool(self.torch.isfinite(log["checksum"]).all())
        return {**t, "run_steps": n * self.steps, "finite": finite, "peak_rss_mb": peak_rss_mb()}


def worker_main(args) -> int:
    proto = os.fdopen(os.dup(1), "w")  # replies on a private copy of stdout; anything else printed goes to stderr
    os.dup2(2, 1)
    if args.worker == "jax":
        worker = JaxWorker(args.device, args.steps, args.peer_file)
    else:
        worker = TorchWorker(args.threads, args.steps, args.peer_file)
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = getattr(worker, request.pop("cmd"))(**request)
        except Exception as error:  # noqa: BLE001 (any failure is the parent's to report, e.g. torch.compile's)
            reply = {"error": f"{type(error).__name__}: {str(error)[:2000]}", "traceback": traceback.format_exc()}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()
    return 0


class WorkerError(RuntimeError):
    pass


class Worker:
    """A worker process driven over its pipes: `send` a request, `receive` its reply."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.run"] + argv, cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log.open("w"),
                                     text=True)

    def send(self, cmd: str, **kw) -> None:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(f"worker {self.name} exited ({self.proc.wait()}):\n{self.log.read_text()[-4000:]}")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"worker {self.name}: {reply['error']}\n{reply.get('traceback', '')[-3000:]}")
        return reply

    def call(self, cmd: str, **kw) -> dict:
        self.send(cmd, **kw)
        return self.receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def gather(workers, cmd: str, kws=None) -> list:
    """Send `cmd` to every worker at once (with its own keyword arguments), then every reply or WorkerError."""
    kws = kws or [{}] * len(workers)
    for w, kw in zip(workers, kws):
        w.send(cmd, **kw)
    replies = []
    for w in workers:
        try:
            replies.append(w.receive())
        except WorkerError as error:
            replies.append(error)
    return replies


def study_group(path: str, ex):
    """(study, plan, its first post-training group, that group's row function, device batch) as `fi-sim run`
    plans a study file on the executor's devices: the canonical device batch, one device batch per device per
    chunk."""
    from fi_sim.engine import execute, sizing
    from fi_sim.engine.plan import make_plan
    from fi_sim.study import load_study

    study = load_study(path)
    b = sizing.canonical_device_batch(study, ex.platform)
    plan = make_plan(study, b * ex.num_devices, b)
    group = plan.groups[0]
    return study, plan, group, execute.run_row(group.static, study.world), b


def warm_start(args, env: dict) -> dict:
    """A fresh process with the persistent cache warm (after `setup_study` compiled the study's group): seconds
    from its launch until it starts computing the group's first chunk (one device batch of runs on every
    device), until that chunk is computed, and where they went."""
    argv = [sys.executable, "-m", "benchmarks.run", "--warm-start-child", "--device", args.device,
            "--study", args.study]
    t0 = time.time()
    r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout,
                       check=False)
    if r.returncode != 0:
        raise WorkerError(f"warm start failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["start_to_compute_s"] = out.pop("compute_at") - t0
    out["start_to_first_chunk_s"] = out.pop("first_chunk_at") - t0
    out["process_s"] = time.time() - t0
    return out


def warm_start_child(args) -> int:
    t = time.perf_counter()
    jax = _setup_jax(args.device)
    from fi_sim.engine import execute
    from fi_sim.engine.runfn import run_params_for
    from fi_sim.world.policy import init_params

    imported = time.perf_counter()
    ex = execute.Executor(execute.local_devices())
    study, _, group, row, b = study_group(args.study, ex)
    runs = group.runs[: b * ex.num_devices]
    # a random base (the compute is representative), initialised by one compiled call (op by op takes seconds)
    base = jax.jit(init_params, static_argnums=0)(group.static.policy, jax.random.key(0))
    x = (execute.stack([base] * len(runs)), execute.stack([run_params_for(study, r.cell) for r in runs]),
         execute.key_data([jax.random.key(r.run_id) for r in runs]), execute.key_data([jax.random.key(0)] * len(runs)))
    planned = time.perf_counter()
    ex.compile(row, x, b)
    loaded = time.perf_counter()
    compute_at = time.time()
    ex.map(row, x, b)
    done = time.time()
    computed = time.perf_counter()
    ex.close()
    print(json.dumps({"compute_at": compute_at, "first_chunk_at": done, "import_s": imported - t,
                      "plan_s": planned - imported, "compile_or_load_s": loaded - planned,
                      "source": ex.record(row, x, b).source, "compute_s": computed - loaded,
                      "cache_dir": jax.config.jax_compilation_cache_dir}))
    return 0


# ---------------------------------------------------------------------------------------------- the parent
def median(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="the engine's and the loop's device")
    p.add_argument("--out", default=str(ROOT / "benchmarks"), help="directory for results.json")
    p.add_argument("--ns", default=",".join(map(str, DEFAULT_NS)), help="numbers of runs N")
    p.add_argument("--steps", type=int, default=10, help="post-training steps per run (the same for every N)")
    p.add_argument("--repeats", type=int, default=5, help="rounds of the interleaved schedule")
    p.add_argument("--loop-runs", type=int, default=16, help="runs per timing of the two loops over runs (their "
                   "rate does not depend on N): min(N, this)")
    p.add_argument("--torch-layout", default=None, help="PyTorch processes x intra-op threads each, e.g. 2x1 "
                   "(default: one single-threaded process per core)")
    p.add_argument("--device-batch", type=int, default=None, help="runs per device per call (default: engine)")
    p.add_argument("--matmul-size", type=int, default=1024)
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--skip-compile", action="store_true", help="no torch.compile peer")
    p.add_argument("--warm-starts", type=int, default=3, help="fresh processes timed with the cache warm")
    p.add_argument("--quick", action="store_true", help="tiny settings: checks every path in a few minutes")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--study", default="experiments/demo.toml", help="the study whose first group's cold compile "
                   "and warm-cache start are measured")
    p.add_argument("--warm-start-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--peer-file", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.warm_start_child:
        return warm_start_child(args)
    if args.quick:
        args.ns, args.steps, args.repeats, args.loop_runs, args.matmul_size, args.warm_starts = "1,4", 2, 2, 2, 256, 1
    ns = [int(x) for x in args.ns.split(",")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    procs, threads = map(int, (args.torch_layout or f"{cores}x1").split("x"))
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    t0, load0 = time.perf_counter(), load_average()
    scratch = Path(tempfile.mkdtemp(prefix="fi_sim_bench_"))
    env = dict(os.environ)
    env["FI_SIM_CACHE_DIR"] = str(scratch / "jax_cache")  # empty: the first compile of each shape is cold
    torch_env = dict(env, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE",
                     TORCHINDUCTOR_CACHE_DIR=str(scratch / "inductor_cache"), JAX_PLATFORMS="cpu")
    peer_file = str(scratch / "peer.pkl")
    common = ["--device", args.device, "--steps", str(args.steps), "--peer-file", peer_file]
    workers = []
    try:
        jw = Worker("jax", ["--worker", "jax"] + common, env, scratch)
        workers.append(jw)
        jw.receive()
        info = jw.call("info")
        say(f"benchmark: {info['workload']}; {args.steps} steps per run; engine on {info['devices']} x "
            f"{info['platform']}; logs in {scratch}")
        setup = {"engine": {}, "torch": {}}
        for n in ns:
            setup["engine"][n] = jw.call("setup_engine", n=n, device_batch=args.device_batch)
            say(f"  engine N={n}: device batch {setup['engine'][n]['device_batch']}, compile "
                f"{setup['engine'][n]['compile_s']:.1f}s")
        setup["loop"] = jw.call("setup_loop")
        setup["study"] = jw.call("setup_study", path=args.study)
        say(f"  {args.study} group 0: cold compile {setup['study']['cold_compile_s']:.1f}s (tracing and lowering "
            f"{setup['study']['trace_lower_s']:.1f}s)")
        starts = []
        for _ in range(args.warm_starts):
            starts.append(warm_start(args, env))
            say(f"  warm start ({starts[-1]['source']}): computing after {starts[-1]['start_to_compute_s']:.1f}s, "
                f"first chunk after {starts[-1]['start_to_first_chunk_s']:.1f}s")
        impls = ["engine", "loop"]
        torch_info, compile_error = None, None
        if not args.skip_torch:
            tws = [Worker(f"torch{i}", ["--worker", "torch", "--threads", str(threads)] + common, torch_env, scratch)
                   for i in range(procs)]
            workers += tws
            for w in tws:
                w.receive()
            torch_info = tws[0].call("info")
            impls += ["torch_eager", "torch_batched"]
            # the first worker alone, then all the others at once: they find the inductor cache warm
            for group in ([0], list(range(1, procs))):
                for i in group:
                    setup["torch"][i] = {"eager": None, "batched": {}, "compiled": {}}
                for i, reply in zip(group, gather([tws[i] for i in group], "setup_eager")):
                    if isinstance(reply, WorkerError):
                        raise reply
                    setup["torch"][i]["eager"] = reply
                for n in ns:
                    for compiled in (False, True):
                        if compiled and (args.skip_compile or compile_error) or not group:
                            continue
                        kind = "compiled" if compiled else "batched"
                        replies = gather([tws[i] for i in group], "setup_batched",
                                         [{"n": shards(n, procs)[i], "compiled": compiled} for i in group])
                        for i, reply in zip(group, replies):
                            if isinstance(reply, WorkerError):
                                if not compiled:
                                    raise reply
                                compile_error = str(reply)
                                say(f"  torch.compile failed: {compile_error.splitlines()[0]}")
                            else:
                                setup["torch"][i][kind][n] = reply
                        if compiled and not compile_error:
                            say(f"  torch.compile worker(s) {group} N={n}: "
                                + ", ".join(f"{r['compile_s']:.1f}s" for r in replies))
            if not args.skip_compile and not compile_error:
                impls.append("torch_compiled")
        samples = {impl: {n: [] for n in ns} for impl in impls}
        matmul, loads = [], []
        plan = schedule(impls, ns, args.repeats)
        for k, (r, n, impl) in enumerate(plan):
            if k == 0 or plan[k - 1][0] != r:
                matmul.append(jw.call("matmul", size=args.matmul_size))
                loads.append(load_average())
            if impl == "engine":
                s = jw.call("engine", n=n, first=r * n)
            elif impl == "loop":
                s = jw.call("loop_runs", runs=min(n, args.loop_runs), first=100_000 + r * args.loop_runs)
            else:
                count = min(n, args.loop_runs) if impl == "torch_eager" else n
                parts = shards(count, procs)
                for i, w in enumerate(tws):
                    w.send("run", kind=impl, n=parts[i], seed=1000 * r + sum(parts[:i]))
                replies = [w.receive() for w in tws]
                s = {"wall": max(x["wall"] for x in replies), "cpu": sum(x["cpu"] for x in replies),
                     "run_steps": sum(x["run_steps"] for x in replies), "finite": all(x["finite"] for x in replies),
                     "per_worker": replies}
            s["position"] = k % len(impls)  # its place in this (repeat, N)'s order
            samples[impl][n].append(s)
            say(f"  repeat {r} N={n} {impl}: {s['run_steps'] / s['wall']:,.1f} run-steps/s, "
                f"{s['run_steps'] / s['cpu']:,.1f} per CPU-s")
        result = summarize(args, argv, info, torch_info, setup, samples, matmul, starts, compile_error,
                           {"start": load0, "during": loads, "end": load_average()}, (procs, threads))
    finally:
        for w in workers:
            w.close()
        for name in ("jax_cache", "inductor_cache"):  # the workers' logs stay, for a failure's story
            shutil.rmtree(scratch / name, ignore_errors=True)
    result["wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"\nwritten: {out / 'results.json'} ({result['wall_s']:.0f}s)")
    return 0


def summarize(args, argv, info, torch_info, setup, samples, matmul, starts, compile_error, load, layout) -> dict:
    ns = sorted(samples["engine"])
    rate = {"wall": lambda s: s["run_steps"] / s["wall"], "cpu": lambda s: s["run_steps"] / s["cpu"]}
    per = {kind: {impl: {str(n): median([f(s) for s in samples[impl][n]]) for n in ns} for impl in samples}
           for kind, f in rate.items()}
    # paired: the engine against a peer within the same repeat (the same moment of the machine)
    ratio = {kind: {peer: {str(n): median([f(e) / f(q) for e, q in zip(samples["engine"][n], samples[peer][n])])
                           for n in ns} for peer in samples if peer != "engine"} for kind, f in rate.items()}
    flops_per_step = info["model_flops_per_run_step"]
    peak = max(median([m["one_device_flops"] for m in matmul]), median([m["all_devices_flops"] for m in matmul]))
    peak_per_cpu = median([m["one_device_flops_per_cpu_s"] for m in matmul])
    eng, busy = setup["engine"], {impl: {str(n): median([s["cpu"] / s["wall"] for s in samples[impl][n]])
                                         for n in ns} for impl in samples}
    compiled = {str(n): max(w["compiled"][n]["compile_s"] for w in setup["torch"].values() if n in w["compiled"])
                for n in ns if any(n in w["compiled"] for w in setup["torch"].values())}
    procs, threads = layout
    return {
        "settings": {"device": args.device, "steps_per_run": args.steps, "repeats": args.repeats,
                     "loop_runs": args.loop_runs, "torch_runs": args.loop_runs, "workload": info["workload"],
                     "model_flops_per_run_step": flops_per_step, "machine": platform.processor() or platform.machine(),
                     "cpu_count": os.cpu_count(), "load_average_start": load["start"], "load_average_end": load["end"],
                     "load_average_per_repeat": load["during"], "nice": os.nice(0), "python": platform.python_version(),
                     "jax": info["jax"], "engine_devices": info["devices"], "platform": info["platform"],
                     "torch": torch_info and torch_info["torch"],
                     "torch_layout": {"processes": procs, "threads_per_process": threads, "omp_wait_policy": "PASSIVE",
                                      "adam": "fused"},
                     "command": " ".join(["python -m benchmarks.run"] + list(argv if argv is not None else sys.argv[1:]))},
        # run-steps per wall-second, medians (the keys experiments/paper_figures.py reads)
        "run_steps_per_s": per["wall"]["engine"],
        "loop_run_steps_per_s": per["wall"]["loop"],
        "torch_run_steps_per_s": per["wall"].get("torch_eager", {}),
        "ratio_vs_loop": ratio["wall"]["loop"],
        "ratio_vs_torch": ratio["wall"].get("torch_eager", {}),
        # every implementation per CPU-second and per wall-second, and the engine's paired ratio against each peer
        "run_steps_per_cpu_s": per["cpu"],
        "run_steps_per_wall_s": per["wall"],
        "ratio_per_cpu_s": ratio["cpu"],
        "ratio_per_wall_s": ratio["wall"],
        "cores_busy": busy,
        "model_flops_per_s": {str(n): per["wall"]["engine"][str(n)] * flops_per_step for n in ns},
        "matmul_flops_per_s": peak,
        "matmul_flops_per_cpu_s": peak_per_cpu,
        "roofline_fraction": {str(n): per["wall"]["engine"][str(n)] * flops_per_step / peak for n in ns},
        "roofline_fraction_per_cpu_s": {str(n): per["cpu"]["engine"][str(n)] * flops_per_step / peak_per_cpu
                                        for n in ns},
        "peak_rss_mb": {str(n): eng[n]["peak_rss_mb"] for n in ns},
        "peak_rss_mb_per_run": {str(n): eng[n]["peak_rss_mb"] / n for n in ns},
        "compile_s": {"engine": {str(n): eng[n]["compile_s"] for n in ns}, "engine_cold": eng[ns[0]]["compile_s"],
                      "loop": setup["loop"]["compile_s"], "torch_compiled": compiled,
                      "torch_compiled_cold": (setup["torch"].get(0, {}).get("compiled", {}).get(ns[0], {})
                                              .get("compile_s"))},
        # a study's first post-training group (--study, the demo's by default): its cold compile, and a second
        # process's start with the cache warm (launch to computing; to its first chunk computed)
        "study_compile": setup.get("study"),
        "warm_start_s": median([s["start_to_compute_s"] for s in starts]) if starts else None,
        "warm_start_first_chunk_s": median([s["start_to_first_chunk_s"] for s in starts]) if starts else None,
        "torch_compile_error": compile_error,
        "details": {"setup": {k: ({str(n): v for n, v in setup[k].items()} if k == "engine" else setup[k])
                              for k in setup}, "warm_starts": starts, "matmul": matmul,
                    "samples": {impl: {str(n): v for n, v in d.items()} for impl, d in samples.items()},
                    "torch": torch_info},
        "wall_s": None,
    }


def table(r: dict) -> str:
    s = r["settings"]
    impls = [i for i in IMPLS if i in r["run_steps_per_cpu_s"]]
    peers = [i for i in impls if i != "engine"]
    lay = s["torch_layout"]
    lines = [
        f"fi_sim engine benchmark — {s['workload']}; {s['steps_per_run']} post-training steps per run",
        (f"engine on {s['engine_devices']} x {s['platform']}; PyTorch {s['torch']} as {lay['processes']} process(es) x "
         f"{lay['threads_per_process']} thread(s); model {s['model_flops_per_run_step'] / 1e6:,.0f} MFLOP per run-step; "
         f"load average {s['load_average_start']} -> {s['load_average_end']}"),
        f"medians over {s['repeats']} interleaved repeats; ratios: engine / peer, paired within a repeat",
    ]
    for kind, title in (("cpu", "run-steps per CPU-second"), ("wall", "run-steps per wall-second")):
        rates, ratios = r[f"run_steps_per_{kind}_s"], r[f"ratio_per_{kind}_s"]
        lines += ["", title,
                  f"{'N':>6} " + " ".join(f"{LABELS[i]:>9}" for i in impls) + "  "
                  + " ".join(f"{'x ' + LABELS[i]:>10}" for i in peers)]
        for n in rates["engine"]:
            lines.append(f"{n:>6} " + " ".join(f"{rates[i][n]:>9,.1f}" for i in impls) + "  "
                         + " ".join(f"{ratios[i][n]:>10.2f}" for i in peers))
    c = r["compile_s"]
    lines += ["", (f"{'N':>6} {'GFLOP/s':>8} {'roofline':>9} {'per CPU-s':>10} {'peak RSS MB':>12} {'MB/run':>8} "
                   f"{'cores':>6} {'compile s':>10} {'torch.compile s':>16}")]
    for n in r["run_steps_per_s"]:
        lines.append(f"{n:>6} {r['model_flops_per_s'][n] / 1e9:>8.1f} {r['roofline_fraction'][n]:>9.1%} "
                     f"{r['roofline_fraction_per_cpu_s'][n]:>10.1%} {r['peak_rss_mb'][n]:>12,.0f} "
                     f"{r['peak_rss_mb_per_run'][n]:>8.2f} {r['cores_busy']['engine'][n]:>6.2f} "
                     f"{c['engine'][n]:>10.1f} {c['torch_compiled'].get(n, float('nan')):>16.1f}")
    warm, study = r["warm_start_s"], r.get("study_compile")
    lines += ["", (f"dense matmul {r['matmul_flops_per_s'] / 1e9:,.0f} GFLOP/s ({r['matmul_flops_per_cpu_s'] / 1e9:,.0f}"
                   f" per CPU-s); engine's cold compile {c['engine_cold']:.1f}s")]
    if study:
        lines.append(f"{study['study']} group 0: cold compile {study['cold_compile_s']:.1f}s (tracing and lowering "
                     f"{study['trace_lower_s']:.1f}s); warm-cache start: computing after "
                     + (f"{warm:.1f}s, first chunk after {r['warm_start_first_chunk_s']:.1f}s" if warm is not None
                        else "not measured"))
    if r.get("torch_compile_error"):
        lines.append("torch.compile failed: " + r["torch_compile_error"].splitlines()[0])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
