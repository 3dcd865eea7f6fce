"""The persistent compilation cache: a per-user directory by default, configurable, and off when asked."""

import subprocess
import sys
import textwrap
from pathlib import Path

from fi_sim.engine import cache

from ._helpers import ROOT, fi_sim_env


def test_cache_directory_settings(monkeypatch, tmp_path):
    """One directory per CPU parallelism (NPROC): XLA's CPU code depends on it and JAX's cache key does not."""
    monkeypatch.delenv("FI_SIM_CACHE_DIR", raising=False)
    monkeypatch.setenv("NPROC", "8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "fi_sim" / "jax" / "nproc8"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path.home() / ".cache" / "fi_sim" / "jax" / "nproc8"
    monkeypatch.setenv("NPROC", "2")
    assert cache.cache_dir() == Path.home() / ".cache" / "fi_sim" / "jax" / "nproc2"
    for off in ("off", "0", "", "none"):
        monkeypatch.setenv("FI_SIM_CACHE_DIR", off)
        assert cache.cache_dir() is None
    monkeypatch.setenv("FI_SIM_CACHE_DIR", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c" / "nproc2"


def test_enable_writes_compiled_executables_there(tmp_path):
    code = textwrap.dedent("""
        import sys, jax, jax.numpy as jnp
        from fi_sim.engine import cache
        path = cache.enable()
        assert str(path.parent) == sys.argv[1] and path.name.startswith("nproc"), path
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # the toy function compiles fast
        jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()
    """)
    target = tmp_path / "cache"
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, cwd=ROOT,
                       env=fi_sim_env(FI_SIM_CACHE_DIR=target), timeout=120)
    assert r.returncode == 0, r.stderr
    assert any(target.iterdir())
    off = tmp_path / "off"
    r = subprocess.run([sys.executable, "-c", "from fi_sim.engine import cache; assert cache.enable(disabled=True) is None"],
                       capture_output=True, text=True, cwd=ROOT, env=fi_sim_env(FI_SIM_CACHE_DIR=off), timeout=120)
    assert r.returncode == 0, r.stderr
    assert not off.exists()


def test_an_executable_that_fails_to_run_is_recompiled_and_nothing_is_lost():
    import jax
    import jax.numpy as jnp
    import numpy as np
    import pytest

    from fi_sim.engine.execute import Executor

    def row(x):
        return {"y": jnp.tanh(x) * 2.0}

    ex = Executor(devices=jax.local_devices()[:1])
    args = (np.linspace(-1, 1, 12, dtype=np.float32).reshape(6, 2),)
    expected = ex.map(row, args, device_batch=4)["y"]

    def broken(*_):
        raise jax.errors.JaxRuntimeError("NOT_FOUND: Function fusion not found")

    key = ex._key(row, args, 4)
    ex.compiled[key][ex.devices[0]] = broken  # as a stale cache entry would behave
    with pytest.warns(UserWarning, match="recompiling without the compilation cache"):
        again = ex.map(row, args, device_batch=4)["y"]
    np.testing.assert_array_equal(again, expected)
    assert ex.compiled[key][ex.devices[0]] is not broken
