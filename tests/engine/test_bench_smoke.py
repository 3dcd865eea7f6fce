"""The benchmark's code paths in seconds: the PyTorch peers compute the same model as fi_sim's policy (same logits
from the same weights, for every run of a batch), they train, and the harness's schedule, ratios, table and JSON
keys are what benchmarks/README.md and experiments/paper_figures.py say."""

import argparse

import numpy as np
import pytest


def _logits(params_list, tokens):
    import jax

    from benchmarks import workload
    from fi_sim.world.policy import apply

    _, group = workload.default_group()
    f = jax.jit(lambda p, t: apply(group.static.policy, p, t))
    return np.stack([np.asarray(f(p, t)) for p, t in zip(params_list, tokens)])


def test_the_torch_peer_computes_the_same_model_and_trains():
    torch = pytest.importorskip("torch")  # a benchmark-only dependency (make bench installs it)
    import jax

    from benchmarks import torch_peer, workload

    c = workload.peer_config()
    params = workload.base_params()
    model = torch_peer.Policy(c)
    model.load_state_dict(torch_peer.base_state_from_jax(params, c))
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (3, c.sequence_length), 0, c.vocab_size))
    ours = _logits([params], tokens[None])[0]
    with torch.no_grad():
        theirs = model(torch.tensor(tokens, dtype=torch.long))[0].numpy()
        # the key-value cache gives the same next-token logits as the full pass
        _, caches = model(torch.tensor(tokens[:, :7], dtype=torch.long))
        step = model(torch.tensor(tokens[:, 7:8], dtype=torch.long), caches, start=7)[0].numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(step[:, 0], theirs[:, 7], rtol=1e-4, atol=1e-4)
    log = torch_peer.train_run(c, torch_peer.base_state_from_jax(params, c), seed=0, steps=2)
    assert len(log["reward"]) == 2 and np.isfinite(log["kl"]).all()


def test_the_batched_peer_computes_every_runs_model_and_trains():
    torch = pytest.importorskip("torch")
    import jax

    from benchmarks import torch_batched, torch_peer, workload

    c = workload.peer_config()
    base = workload.base_params()
    # three different runs' weights: a mix-up of runs in the batched layers would show
    runs = [jax.tree.map(lambda x, i=i: np.asarray(x) + np.float32(0.1 * i) * np.random.default_rng(i).standard_normal(
        np.shape(x)).astype(np.float32), base) for i in range(3)]
    p = torch_batched.stack_states([torch_peer.base_state_from_jax(r, c) for r in runs])
    tokens = np.asarray(jax.random.randint(jax.random.key(2), (3, 4, c.sequence_length), 0, c.vocab_size))
    ours = _logits(runs, tokens)
    assert np.abs(ours[1] - ours[0]).max() > 1e-2  # the runs' models do differ
    P = c.prompt_length
    with torch.no_grad():
        theirs = torch_batched.forward(p, torch.tensor(tokens), c)[0].numpy()
        last, caches = torch_batched.prefill(p, torch.tensor(tokens[:, :, :P]), c)
        step, _ = torch_batched.decode(p, torch.tensor(tokens[:, :, P]), caches, torch.tensor(P), c)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4)
    # the fixed-length key-value cache gives the full pass's next-token logits
    np.testing.assert_allclose(last.numpy(), ours[:, :, P - 1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(step.numpy(), ours[:, :, P], rtol=1e-4, atol=1e-4)
    log = torch_batched.Runs(c, torch_peer.base_state_from_jax(base, c), 2).train(seed=0, steps=2)
    assert log["reward"].shape == (2, 2) and torch.isfinite(log["kl"]).all() and torch.isfinite(log["checksum"]).all()


def test_the_batched_peer_clips_each_runs_gradient_on_its_own():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_batched import clip_per_run

    grads = [torch.tensor([[3.0, 4.0], [0.3, 0.0]]), torch.tensor([[[0.0]], [[0.4]]])]  # run norms 5 and 0.5
    clip_per_run(grads, 1.0)
    norms = torch.stack([g.pow(2).reshape(2, -1).sum(1) for g in grads]).sum(0).sqrt()
    np.testing.assert_allclose(norms.numpy(), [1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(grads[0][0].numpy(), [0.6, 0.8], rtol=1e-6)


def test_the_schedule_interleaves_every_implementation_in_rotating_order():
    from benchmarks.run import IMPLS, schedule, shards

    ns = (1, 16, 64)
    plan = schedule(IMPLS, ns, repeats=len(IMPLS))
    assert len(plan) == len(IMPLS) * len(ns) * len(IMPLS)
    positions = {impl: [] for impl in IMPLS}
    for k in range(0, len(plan), len(IMPLS)):
        group = plan[k:k + len(IMPLS)]
        assert len({(r, n) for r, n, _ in group}) == 1 and sorted(i for _, _, i in group) == sorted(IMPLS)
        for place, (_, _, impl) in enumerate(group):
            positions[impl].append(place)
    for impl in IMPLS:  # each implementation is timed first, second, ... equally often
        assert sorted(positions[impl]) == sorted(list(range(len(IMPLS))) * len(ns))
    assert shards(5, 2) == [3, 2] and shards(1, 2) == [1, 0]


def test_ratios_are_paired_and_the_papers_keys_are_written():
    from benchmarks.run import summarize, table

    def sample(wall, cpu, steps=10):
        return {"wall": wall, "cpu": cpu, "run_steps": steps}

    ns = (1, 256)
    # the machine's load changes between repeats: the loop is half the engine's speed in two repeats of three,
    # so the paired median ratio is 2, where the ratio of the medians would be 1
    samples = {"engine": {n: [sample(1.0, 2.0), sample(10.0, 2.2), sample(2.0, 2.1)] for n in ns},
               "loop": {n: [sample(2.0, 4.0), sample(20.0, 4.4), sample(1.0, 4.2)] for n in ns},
               "torch_eager": {n: [sample(10.0, 20.0), sample(100.0, 22.0), sample(20.0, 21.0)] for n in ns}}
    setup = {"engine": {n: {"compile_s": 5.0, "peak_rss_mb": 512.0, "device_batch": 8} for n in ns},
             "loop": {"compile_s": 3.0}, "torch": {0: {"compiled": {}}}}
    info = {"model_flops_per_run_step": 1e8, "workload": "w", "jax": "x", "devices": 2, "platform": "cpu"}
    args = argparse.Namespace(device="cpu", steps=10, repeats=3, loop_runs=16)
    matmul = [{"one_device_flops": 1e11, "all_devices_flops": 2e11, "one_device_flops_per_cpu_s": 6e10}]
    starts = [{"start_to_compute_s": 1.5, "start_to_first_chunk_s": 9.0}]
    r = summarize(args, [], info, {"torch": "t"}, setup, samples, matmul, starts, None,
                  {"start": 0.1, "during": [], "end": 0.2}, (2, 1))
    assert r["ratio_vs_loop"]["256"] == pytest.approx(2.0) and r["ratio_vs_torch"]["1"] == pytest.approx(10.0)
    assert r["ratio_per_cpu_s"]["torch_eager"]["1"] == pytest.approx(10.0)
    assert r["run_steps_per_cpu_s"]["engine"]["1"] == pytest.approx(10 / 2.1)
    assert r["run_steps_per_s"]["256"] == pytest.approx(5.0) and r["loop_run_steps_per_s"]["1"] == pytest.approx(5.0)
    assert r["roofline_fraction"]["1"] == pytest.approx(5.0 * 1e8 / 2e11)
    assert r["compile_s"]["engine_cold"] == 5.0 and r["warm_start_s"] == 1.5 and r["warm_start_first_chunk_s"] == 9.0
    for key in ("run_steps_per_s", "loop_run_steps_per_s", "torch_run_steps_per_s", "ratio_vs_loop", "ratio_vs_torch",
                "roofline_fraction", "peak_rss_mb_per_run", "matmul_flops_per_s"):  # read by paper_figures.engine()
        assert set(r[key]) == {"1", "256"} if isinstance(r[key], dict) else r[key] > 0
    assert r["settings"]["model_flops_per_run_step"] == 1e8
    text = table(r)
    assert "per CPU-second" in text and "10.00" in text and "256" in text
