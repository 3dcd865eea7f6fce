"""The runs axis split over several devices gives bitwise the results of one device (8 forced host devices)."""

import subprocess
import sys
import textwrap

from fi_sim.engine.store import load_results

from ._helpers import ROOT, assert_same_results, fi_sim, fi_sim_env

EIGHT_DEVICES = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from fi_sim.engine.execute import Executor
    from fi_sim.world import policy
    from fi_sim.world.policy import PolicyConfig, init_params

    assert jax.local_device_count() == 8, jax.local_devices()
    config = PolicyConfig(vocab_size=21, sequence_length=12, width=8, num_layers=1, num_heads=1)

    def row(params, tokens, key_data):
        # a few steps of sampling and a policy-gradient update: the code path whose numerics an SPMD program
        # over a device mesh changes
        key = jax.random.wrap_key_data(key_data)
        def step(p, t):
            s = policy.sample(config, p, tokens[:, :7], jax.random.fold_in(key, t), 1.0, 5, 5, 18, 16)
            reward = (s.response[:, 0] == 3).astype(jnp.float32)
            def loss(q):
                lp = jnp.sum(policy.token_logprobs(config, q, tokens[:, :7], s.response) * s.mask, -1)
                return -jnp.mean((reward - reward.mean()) * lp)
            g = jax.grad(loss)(p)
            return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), jnp.mean(reward)
        p, r = jax.lax.scan(step, params, jnp.arange(3))
        return p, r

    n = 37  # not a multiple of anything: the last device batch is padded
    base = init_params(config, jax.random.key(0))
    params = jax.tree.map(lambda x: np.stack([np.asarray(x) * (1 + 0.01 * i) for i in range(n)]), base)
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (n, 6, 12), 0, 21), np.int32)
    keys = np.stack([np.asarray(jax.random.key_data(jax.random.key(i))) for i in range(n)])
    eight = Executor(jax.local_devices())
    one = Executor(jax.local_devices()[:1], compiled=eight.compiled)  # shares device 0's executable
    a = jax.tree.leaves(one.map(row, (params, tokens, keys), device_batch=2))
    b = jax.tree.leaves(eight.map(row, (params, tokens, keys), device_batch=2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "8 devices differ from one"
    print("bitwise equal")
""")


def test_eight_host_devices_equal_one_device_bitwise():
    env = fi_sim_env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    r = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "bitwise equal" in r.stdout


def test_a_study_on_eight_devices_equals_the_one_device_run(micro_study_file, micro_reference, tmp_path):
    """The micro study in chunks of 16 runs on 8 host devices, against the reference run on one device (in
    chunks of 2). Nothing names the device batch: the canonical one (2, from the study) must be chosen whatever
    the device count and chunk size (the old memory-bound sizing took the largest divisor of the chunk, 8)."""
    _, ref = micro_reference
    out = tmp_path / "eight"
    r = fi_sim("run", micro_study_file, "--out", out, "--no-report", "--chunk-size", 16)
    assert r.returncode == 0, r.stderr
    assert "8 cpu device(s), device batch 2" in r.stderr
    assert_same_results(load_results(out), ref)
