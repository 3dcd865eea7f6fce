"""The benchmarked work: post-training runs of the default world (JAX side), and the same work described for
the PyTorch peer.

A run-step is one post-training step of one run: sample a batch (8 prompts x 8 responses), score it with the
verifier, update the policy. The default world is the catalogue's default levels: the `narrow` base (width 32,
2 layers, 2 heads), `within` data, the `exact` verifier, `reinforce` (Adam, learning rate 5e-4, clip 1), the
`scratchpad` scaffold. Every run starts from the same base, with its own key, so runs differ as in a study.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_STUDY = """
[study]
name = "benchmark"
seeds = 1

[factors]
verifier = ["exact"]
base = ["narrow"]
data = ["within"]
optimizer = ["reinforce"]
scaffold = ["scratchpad"]
budget = ["pass@1"]
"""


@functools.cache
def default_group():
    from fi_sim.engine.plan import make_plan
    from fi_sim.study import loads_study

    study = loads_study(DEFAULT_STUDY)
    plan = make_plan(study)
    return study, plan.groups[0]


@functools.cache
def posttrain_static(steps: int):
    _, group = default_group()
    return dataclasses.replace(group.static.posttrain, steps=steps)


@functools.cache
def make_row(steps: int):
    """One run: post-train the base for `steps` steps. Returns the per-step log and a checksum of the trained
    parameters (so that nothing of the update can be skipped)."""
    from fi_sim.train import make_posttrain

    posttrain = make_posttrain(posttrain_static(steps))

    def run(base_params, run_params, key_data):
        params, log = posttrain(base_params, run_params, jax.random.wrap_key_data(key_data))
        checksum = sum(jnp.sum(x) for x in jax.tree.leaves(params))
        return {"proxy_reward": log.proxy_reward, "kl": log.kl, "checksum": checksum}

    run.fingerprint = f"benchmark_row:{posttrain_static(steps)!r}"  # type: ignore[attr-defined]  # warm start
    return run


@functools.cache
def base_params():
    """The shared starting point: the default base's freshly initialised policy (seed 0)."""
    from fi_sim.world.policy import init_params

    _, group = default_group()
    return jax.tree.map(np.asarray, jax.jit(init_params, static_argnums=0)(group.static.policy, jax.random.key(0)))


@functools.cache
def run_params():
    from fi_sim.engine.runfn import run_params_for

    study, group = default_group()
    return run_params_for(study, group.runs[0].cell)


def inputs(first: int, count: int):
    """Stacked inputs of runs first .. first + count - 1 (run i has key fold_in(key(0), i))."""
    from fi_sim.engine import execute

    base = jax.tree.map(lambda x: np.broadcast_to(x, (count,) + x.shape).copy(), base_params())
    params = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (count,) + np.shape(x)).copy(), run_params())
    keys = execute.key_data([jax.random.fold_in(jax.random.key(0), first + i) for i in range(count)])
    return base, params, keys


def one_input(i: int):
    base, params, keys = inputs(i, 1)
    return jax.tree.map(lambda x: x[0], (base, params, keys))


def model_flops_per_run_step() -> float:
    from fi_sim.engine.sizing import posttrain_flops_per_step

    _, group = default_group()
    return posttrain_flops_per_step(group.static)


def describe() -> str:
    _, group = default_group()
    p, c = group.static.posttrain, group.static.policy
    return (f"default world: width {c.width}, {c.num_layers} layers, {c.num_heads} heads, vocabulary {c.vocab_size}, "
            f"sequence {c.sequence_length}; {p.prompts_per_step} prompts x {p.samples_per_prompt} samples per step")


def peer_config():
    """The PyTorch peer's configuration: the JAX group's shapes, hyperparameters and task tables."""
    from benchmarks.torch_peer import PeerConfig

    return PeerConfig(**peer_config_fields())


def peer_config_fields() -> dict:
    """`peer_config()`'s fields as plain Python values (the harness hands them to the PyTorch workers, which
    import no JAX)."""
    from fi_sim.world.tokens import Vocab

    _, group = default_group()
    p, c = group.static.posttrain, group.static.policy
    world = p.world
    vocab = Vocab(world)
    rp = run_params()
    return dict(  # noqa: C408 (keyword form: the fields read as PeerConfig's)
        vocab_size=c.vocab_size, sequence_length=c.sequence_length, width=c.width, num_layers=c.num_layers,
        num_heads=c.num_heads, prompt_length=vocab.prompt_length, response_length=vocab.response_length,
        prompts_per_step=p.prompts_per_step, samples_per_prompt=p.samples_per_prompt,
        learning_rate=float(rp.optimizer.learning_rate), max_grad_norm=float(rp.optimizer.max_grad_norm),
        temperature=float(rp.optimizer.temperature), kl_coef=float(rp.optimizer.kl_coef),
        modulus=world.modulus, num_skills=world.num_skills, max_depth=world.max_depth,
        heldout_period=world.heldout_period, permutations=tuple(map(tuple, np.asarray(world.permutations).tolist())),
        skill_weights=tuple(np.asarray(rp.data.skill_weights, float).tolist()),
        depth_weights=tuple(np.asarray(rp.data.depth_weights, float).tolist()),
        bos=int(vocab.bos), eos=int(vocab.eos), pad=int(vocab.pad), mode_token=int(rp.scaffold.mode_token),
    )
