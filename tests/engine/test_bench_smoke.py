"""The benchmark's code paths in seconds: the PyTorch peer is the same model as fi_sim's policy (same logits
from the same weights), trains a step, and the table and JSON keys are produced."""

import numpy as np
import pytest


def test_the_torch_peer_computes_the_same_model_and_trains():
    torch = pytest.importorskip("torch")  # a benchmark-only dependency (make bench installs it)
    import jax

    from benchmarks import torch_peer, workload
    from fi_sim.world.policy import apply

    c = workload.peer_config()
    params = workload.base_params()
    model = torch_peer.Policy(c)
    model.load_state_dict(torch_peer.base_state_from_jax(params, c))
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (3, c.sequence_length), 0, c.vocab_size))
    _, group = workload.default_group()
    ours = np.asarray(jax.jit(lambda p, t: apply(group.static.policy, p, t))(params, tokens))
    with torch.no_grad():
        theirs = model(torch.tensor(tokens, dtype=torch.long))[0].numpy()
        # the key-value cache gives the same next-token logits as the full pass
        _, caches = model(torch.tensor(tokens[:, :7], dtype=torch.long))
        step = model(torch.tensor(tokens[:, 7:8], dtype=torch.long), caches, start=7)[0].numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(step[:, 0], theirs[:, 7], rtol=1e-4, atol=1e-4)
    log = torch_peer.train_run(c, torch_peer.base_state_from_jax(params, c), seed=0, steps=2)
    assert len(log["reward"]) == 2 and np.isfinite(log["kl"]).all()


def test_table_and_required_json_keys():
    from benchmarks.run import table

    ns = ("1", "1024")
    r = {
        "settings": {"workload": "w", "steps_per_run": 2, "model_flops_per_run_step": 1e8,
                     "load_average_start": 0.1, "load_average_end": 0.2},
        "run_steps_per_s": {n: 100.0 for n in ns}, "loop_run_steps_per_s": {n: 50.0 for n in ns},
        "torch_run_steps_per_s": {n: 10.0 for n in ns}, "ratio_vs_loop": {n: 2.0 for n in ns},
        "ratio_vs_torch": {n: 10.0 for n in ns}, "model_flops_per_s": {n: 1e10 for n in ns},
        "matmul_flops_per_s": 1e11, "roofline_fraction": {n: 0.1 for n in ns}, "peak_rss_mb": {n: 500.0 for n in ns},
        "peak_rss_mb_per_run": {n: 1.0 for n in ns},
        "details": {"matmul": {"devices": 2, "platform": "cpu", "device_kind": "cpu"},
                    "jax": {n: {"device_batch": 8, "devices_used": 2} for n in ns},
                    "loop": {"16": {}}, "torch": {"4": {"threads": 2, "torch": "x"}}},
    }
    text = table(r)
    assert "1024" in text and "10.00" in text and "10.0%" in text
    for key in ("run_steps_per_s", "ratio_vs_torch", "ratio_vs_loop", "roofline_fraction", "peak_rss_mb"):
        assert key in r
