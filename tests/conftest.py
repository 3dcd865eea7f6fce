"""Shared fixtures: a tiny study that trains in seconds, and the helpers the tests use."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Keep the tests on the CPU and off the user's compilation cache: every test (and every subprocess it starts)
# shares one persistent cache in a temporary directory, so each function compiles once per session.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# fi_sim's canonical CPU parallelism (fi_sim.engine.hostcpu): XLA's CPU code, and so every result's bits, depend on
# it; this process and every subprocess it starts compile for the same thread pool
os.environ.setdefault("NPROC", "8")
if "FI_SIM_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="fi_sim-test-cache-")
    os.environ["FI_SIM_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, True)

import pytest  # noqa: E402

TINY_STUDY = """
[study]
name = "tiny"
seeds = 2

[world]
eval_size = 32
eval_min_samples = 4

[factors]
verifier = ["exact", { preset = "noisy", name = "noisy", false_positive_rate = 0.3, false_negative_rate = 0.1 }]
base = [{ preset = "narrow", steps = 30, width = 8, num_heads = 1, batch_size = 16 }]
data = ["within", "edge"]
optimizer = [{ preset = "reinforce", steps = 4, prompts_per_step = 2, samples_per_prompt = 2 }]
scaffold = ["direct", "scratchpad"]
budget = ["pass@1", { preset = "pass@k", k = 2 }, { preset = "majority@k", k = 2 }]

[engine]
chunk_size = 4
"""


@pytest.fixture(scope="session")
def tiny_study_text() -> str:
    return TINY_STUDY


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory):
    """The tiny study run once for the whole session: (results directory, dataset)."""
    from fi_sim.engine.runner import run_study
    from fi_sim.study import loads_study

    out = tmp_path_factory.mktemp("tiny") / "run"
    ds = run_study(loads_study(TINY_STUDY), out, study_text=TINY_STUDY, quiet=True)
    return out, ds
