"""XLA's CPU code depends on its thread pool, max(NPROC or cores, host devices); fi_sim pins it per study so that
1, 2 or 8 host devices (or another core count) compile the same program and so give the same bits."""

import subprocess
import sys
import textwrap

import pytest

from fi_sim.engine import hostcpu

from ._helpers import ROOT

PROGRAM = textwrap.dedent("""
    import hashlib, os, sys
    if sys.argv[1] == "fi_sim":
        from fi_sim.engine import hostcpu
        hostcpu.configure(8, int(sys.argv[2]))
    else:
        os.environ.pop("NPROC", None)
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={sys.argv[2]}"
    import jax, jax.numpy as jnp
    assert jax.local_device_count() == int(sys.argv[2])
    def f(key, x):  # random bits and a few elementwise ops: XLA partitions such loops over its thread pool
        u = jax.random.uniform(key, (2, 32, 128))
        return jnp.tanh(u * x).sum(-1)
    exe = jax.jit(f).lower(jax.random.key(0), jnp.ones((2, 32, 128))).compile()
    print(hashlib.sha256(exe.as_text().encode()).hexdigest())
""")


def _compiled(how: str, devices: int) -> str:
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "HOME": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", PROGRAM, how, str(devices)], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


def test_the_same_program_on_one_two_and_eight_host_devices():
    pinned = {d: _compiled("fi_sim", d) for d in (1, 2, 8)}
    assert len(set(pinned.values())) == 1, pinned
    # the control: without the pinned pool, 8 devices on this machine compile another program (when it has fewer
    # than 8 cores, as CI and the development machines do)
    if hostcpu.cores() < 8:
        assert _compiled("plain", 2) != _compiled("plain", 8)


def test_more_host_devices_than_the_parallelism_are_refused(monkeypatch):
    monkeypatch.setattr(hostcpu, "jax_started", lambda: False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with pytest.raises(Exception, match="cpu-devices.*1..2"):
        hostcpu.configure(2, 8)


def test_a_process_at_another_parallelism_refuses_to_compute(monkeypatch):
    class Cpu:
        platform = "cpu"

    monkeypatch.setenv("NPROC", "8")
    with pytest.raises(Exception, match="CPU parallelism is 8.*the study's is 2"):
        hostcpu.check(2, Cpu())
    hostcpu.check(8, Cpu())
