"""Generate a frozen post-training dataset under one fixed interface (what a paper would release).

`freeze(study, ...)` takes the first cell of a study as the generating interface: it pretrains that cell's base
(seed `seed`), draws prompts from its data level, lets the base answer each prompt `responses` times under its
scaffold, scores every response with its verifier, and writes the prompt-response-reward tuples with their
provenance (the generating interface card, the seed, the sizes) to a `.npz` file (`fi_sim.world.frozen`). Replay
it under any other interface with the data level `{ preset = "frozen", dataset = "PATH" }`.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.factors import MODULES
from fi_sim.rollout import rollout
from fi_sim.train import STAGE_POSTTRAIN, PretrainStatic, make_pretrain
from fi_sim.world import frozen
from fi_sim.world.policy import PolicyConfig
from fi_sim.world.tokens import Vocab


def freeze(study, out: str | Path, *, prompts: int = 256, responses: int = 8, seed: int = 0) -> frozen.FrozenDataset:
    cell = next(iter(study.cells()))
    interface = study.interface(cell)
    levels = interface.levels
    world = study.world.task_world()
    vocab = Vocab(world)
    bp = levels["base"].params
    config = PolicyConfig(vocab.size, vocab.sequence_length, bp["width"], bp["num_layers"], bp["num_heads"])
    key = jax.random.fold_in(jax.random.key(study.seed), 0xF0CE)
    pretrain = jax.jit(make_pretrain(PretrainStatic(world, config, bp["steps"], bp["batch_size"])))
    base = MODULES["base"].run_params(levels["base"], world)
    params, _ = pretrain(jax.tree.map(jnp.asarray, base), jax.random.fold_in(key, seed))

    data = MODULES["data"].run_params(levels["data"], world)
    scaffold = MODULES["scaffold"].run_params(levels["scaffold"], vocab)
    verifier = MODULES["verifier"].run_params(levels["verifier"], world)
    temperature = float(levels["optimizer"].params["temperature"])

    @jax.jit
    def generate(params, key):
        k_prompts, k_roll = jax.random.split(jax.random.fold_in(key, STAGE_POSTTRAIN))
        problems = world.sample(k_prompts, jnp.asarray(data.skill_weights), jnp.asarray(data.depth_weights), prompts)
        rep = lambda x: jnp.repeat(x, responses, axis=0)  # noqa: E731
        solution = world.solve(jax.tree.map(rep, problems))
        encoded = vocab.encode_prompt(problems, scaffold.mode_token)
        ep = rollout(world, config, params, rep(encoded), solution, rep(problems.depth),
                     jax.tree.map(jnp.asarray, scaffold), jax.tree.map(jnp.asarray, verifier), k_roll, temperature, 1)
        shape = lambda x: x[0].reshape((prompts, responses) + x.shape[2:])  # noqa: E731
        return (problems, encoded, shape(ep.context), shape(ep.actions), shape(ep.logprob), shape(ep.reward),
                ep.correct.reshape(prompts, responses))

    problems, encoded, context, actions, logprob, reward, correct = generate(params, jax.random.fold_in(key, seed))
    arrays = {"x0": problems.x0, "skills": problems.skills, "depth": problems.depth, "prompts": encoded,
              "context": context, "actions": actions, "logprob": logprob, "reward": reward}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    card = interface.card()
    provenance = {
        "generator": "the base of the generating interface, sampled under its scaffold and scored by its verifier",
        "interface_card": json.loads(card.to_json(indent=None)),
        "interface_hash": card.hash,
        "seed": seed,
        "study_seed": study.seed,
        "prompts": prompts,
        "responses_per_prompt": responses,
        "sampling_temperature": temperature,
        "filters": ["prompts from the generating data level (training partition of problem space)"],
        "true_accuracy": float(np.mean(np.asarray(correct))),
        "mean_reward": float(np.mean(arrays["reward"])),
    }
    dataset = frozen.make(arrays, provenance)
    frozen.save(dataset, out)
    return dataset
