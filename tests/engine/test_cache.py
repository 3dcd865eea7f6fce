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


def _rows():
    import jax.numpy as jnp

    def row(x):  # a program no other test compiles (JAX's own cache would serve it, and then no binary is kept)
        return {"y": jnp.tanh(x) * 2.25}

    def other(x):  # another program under the same fingerprint: as if its code changed where the key cannot see
        return {"y": jnp.tanh(x) * 3.25}

    row.fingerprint = other.fingerprint = "test_row:v1"
    return row, other


def test_a_warm_start_finds_the_binary_without_tracing_and_gives_the_same_bits(tmp_path):
    import jax
    import numpy as np

    from fi_sim.engine.execute import Executor

    row, _ = _rows()
    args = (np.linspace(-1, 1, 12, dtype=np.float32).reshape(6, 2),)
    cold = Executor(devices=jax.local_devices()[:1], binaries=tmp_path / "binaries")
    expected = cold.map(row, args, device_batch=4)["y"]
    assert cold.record(row, args, 4).source == "compiled"
    warm = Executor(devices=jax.local_devices()[:1], binaries=tmp_path / "binaries")
    warm.compile(row, args, 4)
    record = warm.record(row, args, 4)
    assert record.source == "warm" and record.cold_seconds is not None and "without tracing" in record.describe()
    assert "lowered" not in warm.compiled[warm._key(row, args, 4)]  # not traced here: the check does it
    np.testing.assert_array_equal(warm.map(row, args, device_batch=4)["y"], expected)
    assert warm.program(row, args, 4) == cold.program(row, args, 4)
    unnamed = Executor(devices=jax.local_devices()[:1], binaries=tmp_path / "binaries")
    del row.fingerprint  # a row without a fingerprint never takes the warm path
    unnamed.compile(row, args, 4)
    assert unnamed.record(row, args, 4).source == "loaded"


def test_a_stale_warm_entry_is_caught_before_any_result_and_computed_again(tmp_path):
    import jax
    import numpy as np
    import pytest

    from fi_sim.engine.execute import Executor

    row, other = _rows()
    args = (np.linspace(-1, 1, 12, dtype=np.float32).reshape(6, 2),)
    Executor(devices=jax.local_devices()[:1], binaries=tmp_path / "binaries").map(row, args, device_batch=4)
    truth = Executor(devices=jax.local_devices()[:1], binaries=False).map(other, args, device_batch=4)["y"]
    ex = Executor(devices=jax.local_devices()[:1], binaries=tmp_path / "binaries")
    ex.compile(other, args, 4)
    assert ex.record(other, args, 4).source == "warm"  # the entry row's binary, under other's fingerprint
    with pytest.warns(UserWarning, match="warm-start entry's binary is not this program's"):
        got = ex.map(other, args, device_batch=4)["y"]
    np.testing.assert_array_equal(got, truth)
    assert ex.record(other, args, 4).source in ("compiled", "loaded")
    again = Executor(devices=jax.local_devices()[:1], binaries=tmp_path / "binaries")
    again.compile(other, args, 4)  # the stale entry was replaced by the right one
    np.testing.assert_array_equal(again.map(other, args, device_batch=4)["y"], truth)
