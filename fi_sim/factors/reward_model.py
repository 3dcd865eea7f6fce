"""A learned verifier: a reward model fitted to a finite labelled sample of the base's own traces.

In Gao, Schulman and Hilton (2022) the proxy reward is a model fitted to finitely many labelled samples: it
agrees with the gold score on the distribution it was fitted on and drifts from it where the policy goes once
post-training moves it away. This mechanism is that proxy, trained, not described by a formula:

- **Its data.** At the start of a run (and of a base's evaluation) the base answers `labelled` prompts drawn
  from the training partition (the skills `label_skills` and depths `label_depths`, each equally likely; by
  default all), under the run's scaffold, at temperature 1.
  Each trace is labelled by the exact check, and each label is flipped with probability `label_noise`.
- **Its network.** The policy's family with a scalar head: token and position embeddings, `layers` causal
  blocks of width `width`, a final LayerNorm and a linear read-out at the trace's last generated token.
- **Its training.** `train_steps` Adam steps of the logistic loss on minibatches of `batch_size` labelled traces
  (drawn with replacement), at `learning_rate`.
- **Its reward.** The model's score s = sigmoid(logit) is its estimate of P(right | trace). With `acceptance =
  "threshold"` the reward is 1 when s >= `threshold` (a verifier's accept/reject); with `"score"` the reward is
  s itself. On the trace's last token, like every outcome verifier.

The key is shared by every run of the same base and seed (`PrepareInputs.key`), so those runs train the same
reward model: it is computed once per run but is one model per (base, seed, scaffold, configuration). Its shapes
(`labelled`, `label_skills`, `label_depths`, `width`, `layers`, `train_steps`, `batch_size`) are static: a change
compiles another group.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fi_sim.factors.distribution import _depths_ok, _skills_ok
from fi_sim.factors.registry import Param, Preset
from fi_sim.factors.verifier import FACTOR, PrepareInputs, Trace, Verifier, outcome
from fi_sim.rollout import sample_attempt
from fi_sim.world.grading import Graded, grade
from fi_sim.world.policy import PolicyConfig, _Block
from fi_sim.world.tokens import Vocab

ACCEPTANCE = ("threshold", "score")


class ScoreNet(nn.Module):
    """The policy's architecture with a scalar head read at one position per sequence."""

    config: PolicyConfig

    @nn.compact
    def __call__(self, tokens: jax.Array, last: jax.Array) -> jax.Array:
        """Logits [B] for tokens [B, T], read at position `last` [B] (the trace's last generated token)."""
        c = self.config
        T = tokens.shape[1]
        position = self.param("position", nn.initializers.normal(0.02), (c.sequence_length, c.width))
        x = nn.Embed(c.vocab_size, c.width)(tokens) + position[:T]
        for i in range(c.num_layers):
            x, _ = _Block(c, name=f"block{i}")(x)
        x = nn.LayerNorm()(x)
        h = jnp.take_along_axis(x, last[:, None, None], 1)[:, 0]
        return nn.Dense(1)(h)[:, 0]


def net_config(vocab_size: int, sequence_length: int, width: int, layers: int) -> PolicyConfig:
    """The scoring network's shape (two heads where the width allows)."""
    return PolicyConfig(vocab_size, sequence_length, width, layers, num_heads=2 if width % 2 == 0 else 1)


def config_of(net: Any) -> PolicyConfig:
    """The network's configuration, read from its parameters' shapes."""
    length, width = net["position"].shape
    layers = sum(1 for k in net if k.startswith("block"))
    return net_config(net["Embed_0"]["embedding"].shape[0], length, width, layers)


def score_logits(config: PolicyConfig, net: Any, trace: Trace, length: jax.Array) -> jax.Array:
    """The reward model's logits [...] for traces (any leading shape) with `length` generated tokens each."""
    lead = trace.prompts.shape[:-1]
    prompts = trace.prompts.reshape((-1, trace.prompts.shape[-1]))
    response = trace.response.reshape((-1, trace.response.shape[-1]))
    P, R = prompts.shape[1], response.shape[1]
    last = P + jnp.clip(length.reshape(-1), 1, R) - 1
    logits: jax.Array = ScoreNet(config).apply({"params": net}, jnp.concatenate([prompts, response], 1), last)  # type: ignore[assignment]
    return logits.reshape(lead)


def labelled_traces(inputs: PrepareInputs, num: int) -> tuple[Trace, Graded]:
    """`num` traces of the base under the run's scaffold on training-partition prompts, graded."""
    world, scaffold = inputs.world, inputs.scaffold
    vocab = Vocab(world)
    k_prompts, k_sample = jax.random.split(inputs.key)
    skills, depths = inputs.options.get("label_skills", "all"), inputs.options.get("label_depths", "all")
    skills = tuple(range(world.num_skills)) if skills == "all" else skills
    depths = tuple(range(1, world.max_depth + 1)) if depths == "all" else depths
    skill_w = jnp.zeros(world.num_skills).at[jnp.asarray(skills)].set(1.0)
    depth_w = jnp.zeros(world.max_depth).at[jnp.asarray(depths) - 1].set(1.0)
    problems = world.sample(k_prompts, skill_w, depth_w, num)
    solution = world.solve(problems)
    prompts = vocab.encode_prompt(problems, scaffold.mode_token)
    s = sample_attempt(world, inputs.policy, inputs.base_params, prompts, solution, scaffold, k_sample, 1.0)
    graded = grade(vocab, s.response, scaffold.response_limit, solution, problems.depth, actions=s.actions)
    return Trace(prompts, s.response), graded


def train(p: Mapping[str, jax.Array], inputs: PrepareInputs) -> dict[str, Any]:
    """Fit the reward model; returns its network parameters (`net`) for the run's per-run parameters."""
    o = inputs.options
    config = net_config(inputs.policy.vocab_size, inputs.policy.sequence_length, int(o["width"]), int(o["layers"]))
    k_data, k_noise, k_init, k_steps = jax.random.split(inputs.key, 4)
    trace, graded = labelled_traces(inputs._replace(key=k_data), int(o["labelled"]))
    flip = jax.random.uniform(k_noise, graded.correct.shape) < p["label_noise"]
    labels = jnp.logical_xor(graded.correct, flip).astype(jnp.float32)
    dummy = jnp.zeros((1, config.sequence_length), jnp.int32)
    net = ScoreNet(config).init(k_init, dummy, jnp.zeros((1,), jnp.int32))["params"]
    adam = optax.scale_by_adam()
    state = adam.init(net)

    def loss_fn(net, idx):
        logits = score_logits(config, net, jax.tree.map(lambda x: x[idx], trace), graded.length[idx])
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels[idx]))

    def step(carry, t):
        net, state = carry
        idx = jax.random.randint(jax.random.fold_in(k_steps, t), (int(o["batch_size"]),), 0, labels.shape[0])
        grads = jax.grad(loss_fn)(net, idx)
        updates, state = adam.update(grads, state, net)
        net = jax.tree.map(lambda w, u: w - p["learning_rate"] * u, net, updates)
        return (net, state), None

    (net, _), _ = jax.lax.scan(step, (net, state), jnp.arange(int(o["train_steps"])))
    return {"net": net}


def score(p: Mapping[str, Any], trace: Trace, graded: Graded) -> jax.Array:
    """The reward model's P(right | trace) [...] (its trained network in `p["net"]`)."""
    return jax.nn.sigmoid(score_logits(config_of(p["net"]), p["net"], trace, graded.length))


def _rewards(p, graded, key, world, trace):
    s = score(p, trace, graded)
    value = jnp.where(p["acceptance"] == ACCEPTANCE.index("score"), s, (s >= p["threshold"]).astype(jnp.float32))
    return outcome(graded, value)


MECHANISM = Verifier(
    "reward_model",
    "a learned verifier: a small network fitted to the base's own traces labelled by the exact check",
    (
        Param("labelled", "int", 512, "labelled traces of the base the model is fitted to", 8, 65536, static=True),
        Param("label_noise", "float", 0.0, "probability that a training label is flipped", 0.0, 0.5),
        Param("label_skills", "int_list", "all", "skills of the labelled prompts (drawn uniformly)", low=0,
              static=True, world_check=_skills_ok, expand_all=lambda w: list(range(w.num_skills))),
        Param("label_depths", "int_list", "all", "depths of the labelled prompts (drawn uniformly)", low=1,
              static=True, world_check=_depths_ok, expand_all=lambda w: list(range(1, w.max_depth + 1))),
        Param("width", "int", 32, "the scoring network's width", 4, 256, static=True),
        Param("layers", "int", 2, "the scoring network's causal blocks", 1, 6, static=True),
        Param("train_steps", "int", 300, "Adam steps of the logistic loss", 1, 100_000, static=True),
        Param("batch_size", "int", 64, "labelled traces per training step (drawn with replacement)", 1, 4096,
              static=True),
        Param("learning_rate", "float", 3e-3, "Adam step size", 1e-6, 1.0),
        Param("acceptance", "choice", "threshold", "the reward: 1 when the score reaches the threshold, or the "
              "score itself", choices=ACCEPTANCE),
        Param("threshold", "float", 0.5, "the score at which a trace is accepted (acceptance = threshold)", 0.0, 1.0),
    ),
    rewards=_rewards,
    reads_trace=True,
    prepare=train,
)

FACTOR.add_mechanism(MECHANISM)
FACTOR.add_preset(Preset("reward_model", "reward_model", "a reward model fitted to 512 labelled traces of the base"))
FACTOR.add_preset(
    Preset("reward_model_score", "reward_model", "the same reward model, its score as the reward",
           {"acceptance": "score"})
)
