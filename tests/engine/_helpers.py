"""Helpers of the engine's tests: the micro study, `fi-sim` in a subprocess, bitwise comparison of results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# 4 seeds x 2 verifiers x 2 scaffolds = 16 runs in 8 chunks of 2; 60 post-training steps so that a chunk takes
# long enough to kill a study between chunks
MICRO_STUDY = """
[study]
name = "micro"
seeds = 4

[world]
eval_size = 8
eval_min_samples = 2

[factors]
verifier = ["exact", "noisy"]
base = [{ preset = "narrow", steps = 10, width = 8, num_layers = 1, num_heads = 1, batch_size = 8 }]
data = ["within"]
optimizer = [{ preset = "reinforce", steps = 60, prompts_per_step = 2, samples_per_prompt = 2 }]
scaffold = ["direct", "scratchpad"]
budget = ["pass@1"]

[engine]
chunk_size = 2
"""


def fi_sim_env(**extra) -> dict:
    """The environment of a `fi-sim` subprocess: 8 host CPU devices (every subprocess of the session uses the
    same client configuration, so they share compiled executables through the session's compilation cache)."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["FI_SIM_CPU_DEVICES"] = "8"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def fi_sim(*args, env=None, timeout=300, **popen):
    """Run `fi-sim` in a subprocess (8 host CPU devices unless the environment says otherwise)."""
    return subprocess.run([sys.executable, "-m", "fi_sim.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env or fi_sim_env(), timeout=timeout, **popen)


def fi_sim_popen(*args, env=None, **popen):
    return subprocess.Popen([sys.executable, "-m", "fi_sim.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env or fi_sim_env(), **popen)


def wait_for_first_chunk(proc, out: Path, timeout: float = 240) -> Path:
    """Wait until a `fi-sim run` subprocess writing to `out` has saved its first chunk (its receipt is on disk);
    fails if the process ends first or nothing is saved within `timeout` seconds. Returns the chunks folder."""
    import time

    chunks = Path(out) / "chunks"
    deadline = time.monotonic() + timeout
    while not (chunks.is_dir() and any(chunks.glob("*.json"))):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no chunk written in time"
        time.sleep(0.01)
    return chunks


def assert_same_results(a, b) -> None:
    """Bitwise equality of every variable and coordinate of two results Datasets."""
    import numpy as np

    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        x, y = a[name].values, b[name].values
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
    for name in a.coords:
        assert np.array_equal(a[name].values, b[name].values), name
