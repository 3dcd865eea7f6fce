"""The optimizer factor: how the verifier's signal becomes an update.

Every mechanism (an *objective*) is one clipped, weighted log-likelihood objective over training sequences,

    J = mean over sequences of sum over tokens of min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t),
    r_t = pi(a_t) / pi_old(a_t),

minus an exact KL(policy || base) penalty and plus an entropy bonus (both per generated token), optimised
through optax (Adam or SGD) with a per-run learning rate. Objectives differ only in which sequences are
trained on (`batch`: the policy's own samples unless the objective brings its own) and how the per-token
weights A_t come from the rewards (`weights`), so they share one compiled batch:

- reinforce: the policy's samples; A_t = reward-to-go minus the mean total reward of the prompt's group (a
  group-mean baseline; with `normalize_advantage`, divided by the group's standard deviation as in GRPO).
- ppo_clip: the same advantages, `inner_epochs` updates per batch against the sampling policy, ratio clipped
  at `clip_epsilon` (the clip is active from the second epoch on).
- rs_sft: rejection-sampling SFT: supervised on the samples the verifier accepts (reward >= 0.5).
- positive_only: reinforce only the rewarded samples (weight = reward), no baseline, no negative signal.
- negative_only: only push down unrewarded samples (weight = -(1 - reward)), no positive signal.
- distill: supervised on the data factor's teacher traces (the policy's own samples are not trained on).

Outside ppo_clip the clip is off (eps = infinity) and there is one epoch, so r_t = 1 and the gradient is the
plain weighted likelihood gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.factors.verifier import ACCEPTANCE_THRESHOLD
from fi_sim.factors.registry import PerRun, Factor, Mechanism, Param, Preset, lower_value, position

NO_CLIP = 1e9
FAMILIES = ("adam", "sgd")


class WeightInputs(NamedTuple):
    """What an objective's weights are computed from."""

    token_rewards: jax.Array  # float [A, N, R]: the verifier's rewards per token (N = prompts x group, prompt-major)
    taken: jax.Array  # bool [A, N]: the attempt was made
    group_size: int  # samples per prompt (static)
    normalize: jax.Array  # > 0.5: divide advantages by the group's reward std (GRPO)


class BatchInputs(NamedTuple):
    """What an objective that brings its own training sequences (distillation) builds them from."""

    world: Any  # TaskWorld
    vocab: Any  # Vocab
    data: Any  # the run's DataParams (teacher quality and style)
    problems: Any  # Problems [N]: the step's prompts, each repeated group_size times
    key: jax.Array


# weights(params, inputs) -> A_t [A, N, R];  batch(params, inputs) -> (mode tokens [N], context [N, R],
# actions [N, R]): traces that replace the policy's samples as the training sequences (on the first attempt)
WeightFn = Callable[[Mapping[str, jax.Array], WeightInputs], jax.Array]
BatchFn = Callable[[Mapping[str, jax.Array], BatchInputs], tuple]


@dataclass(frozen=True)
class Objective(Mechanism):
    """A training objective: `weights` gives the per-token weights A_t from the rewards; an objective with a
    `batch` trains on the sequences it builds instead of the policy's samples (their log-probs are recomputed);
    `clip_epsilon` (of its own parameters) turns the PPO ratio clip on."""

    weights: WeightFn | None = None
    batch: BatchFn | None = None
    clip_epsilon: Callable[[Mapping[str, jax.Array]], jax.Array] | None = None
    factor: ClassVar[str] = "optimizer"


FACTOR = Factor(
    "optimizer",
    "how the reward becomes a parameter update",
    kind=Objective,
    shared=(
        Param("learning_rate", "float", 5e-4, "learning rate", 1e-7, 10.0),
        Param("optimizer_family", "choice", "adam", "optax update rule", choices=FAMILIES),
        Param(
            "kl_coef", "float", 0.0, "weight of the exact KL(policy || base) penalty per generated token", 0.0, 100.0
        ),
        Param("entropy_coef", "float", 0.0, "weight of the entropy bonus per generated token", 0.0, 100.0),
        Param("normalize_advantage", "bool", False, "divide advantages by the group's reward std (GRPO)"),
        Param("temperature", "float", 1.0, "sampling temperature during training", 0.05, 10.0),
        Param("max_grad_norm", "float", 1.0, "global gradient-norm clip", 1e-6, 1e6),
        Param("steps", "int", 150, "post-training steps", 1, 1_000_000, static=True),
        Param("prompts_per_step", "int", 8, "prompts per step", 1, 65_536, static=True),
        Param(
            "samples_per_prompt", "int", 8, "responses per prompt (the group for the baseline)", 2, 1024, static=True
        ),
        Param("inner_epochs", "int", 1, "updates per sampled batch", 1, 64, static=True),
    ),
)


class OptimizerParams(NamedTuple):
    """A run's optimizer: the shared parameters as arrays, the objective's registry index and every registered
    objective's own parameters (the others at their defaults)."""

    kind: PerRun  # index into FACTOR.mechanisms
    learning_rate: PerRun
    family: PerRun  # index into FAMILIES
    kl_coef: PerRun
    entropy_coef: PerRun
    normalize_advantage: PerRun
    temperature: PerRun
    max_grad_norm: PerRun
    params: dict  # objective name -> its own per-run pytree


def run_params(level, world=None) -> OptimizerParams:
    p = level.params
    return OptimizerParams(
        kind=np.int32(FACTOR.index(level.mechanism)),
        learning_rate=np.float32(p["learning_rate"]),
        family=lower_value(FACTOR.shared[1], p["optimizer_family"]),
        kl_coef=np.float32(p["kl_coef"]),
        entropy_coef=np.float32(p["entropy_coef"]),
        normalize_advantage=np.float32(p["normalize_advantage"]),
        temperature=np.float32(p["temperature"]),
        max_grad_norm=np.float32(p["max_grad_norm"]),
        params={
            name: mech.lower(p if name == level.mechanism else mech.default_values(), world)
            for name, mech in FACTOR.mechanisms.items()
        },
    )


def used(mechanisms=None) -> tuple[Objective, ...]:
    return tuple(FACTOR.mechanisms[n] for n in FACTOR.used(mechanisms))  # type: ignore[misc]


def token_weights(opt: OptimizerParams, token_rewards, taken, group_size: int, normalize, mechanisms=None):
    """Per-token weights A_t [A, N, R] of the run's objective (picked by `opt.kind`) among `mechanisms`."""
    inputs = WeightInputs(token_rewards, taken, group_size, normalize)
    objectives = used(mechanisms)
    table = [m.weights(opt.params[m.name], inputs) for m in objectives if m.weights is not None]
    return jnp.stack(table)[position(FACTOR, opt.kind, tuple(m.name for m in objectives))]


def clip_epsilon(opt: OptimizerParams, mechanisms=None):
    """The PPO ratio clip of the run's objective (NO_CLIP for an objective without one)."""
    objectives = used(mechanisms)
    if all(m.clip_epsilon is None for m in objectives):
        return jnp.float32(NO_CLIP)
    table = [jnp.float32(NO_CLIP) if m.clip_epsilon is None else m.clip_epsilon(opt.params[m.name]) for m in objectives]
    return jnp.stack(table)[position(FACTOR, opt.kind, tuple(m.name for m in objectives))]


# ---------------------------------------------------------------------------------------------- weights
def reward_to_go(inputs: WeightInputs) -> jax.Array:
    r = inputs.token_rewards
    return jnp.flip(jnp.cumsum(jnp.flip(r, -1), -1), -1)


def total_reward(inputs: WeightInputs) -> jax.Array:
    return jnp.sum(inputs.token_rewards, -1)  # [A, N]


def policy_gradient(inputs: WeightInputs) -> jax.Array:
    """Reward-to-go minus the group's mean total reward (over the attempts made), divided by the group's std
    when `normalize` (GRPO). The group of a prompt is all its samples' attempts that were made."""
    A, N, R = inputs.token_rewards.shape
    G = inputs.group_size
    total, to_go = total_reward(inputs), reward_to_go(inputs)
    w = inputs.taken.astype(jnp.float32)

    def grouped(x):
        return x.reshape(A, N // G, G).transpose(1, 0, 2).reshape(N // G, -1)

    tw, tt = grouped(w), grouped(total)
    count = jnp.maximum(jnp.sum(tw, 1, keepdims=True), 1.0)
    mean = jnp.sum(tw * tt, 1, keepdims=True) / count
    std = jnp.sqrt(jnp.sum(tw * (tt - mean) ** 2, 1, keepdims=True) / count)

    def ungroup(x):
        return jnp.broadcast_to(x, tt.shape).reshape(N // G, A, G).transpose(1, 0, 2).reshape(A, N)

    baseline, scale = ungroup(mean), ungroup(jnp.where(inputs.normalize > 0.5, std + 1e-6, 1.0))
    return (to_go - baseline[..., None]) / scale[..., None]


def _per_sample(inputs: WeightInputs, weight: jax.Array) -> jax.Array:
    return jnp.broadcast_to(weight[..., None], inputs.token_rewards.shape)


def _rs_sft(p, inputs):
    accepted = (total_reward(inputs) >= ACCEPTANCE_THRESHOLD).astype(jnp.float32)
    return _per_sample(inputs, accepted * inputs.taken.astype(jnp.float32))


def _positive(p, inputs):
    return _per_sample(inputs, total_reward(inputs) * inputs.taken.astype(jnp.float32))


def _negative(p, inputs):
    return _per_sample(inputs, -(1.0 - total_reward(inputs)) * inputs.taken.astype(jnp.float32))


def teacher_traces(p, inputs: BatchInputs):
    """The data factor's teacher: the solver with per-step error rate q, in a mix of styles. Returns the
    traces' mode tokens [N] and (context, actions) [N, R]."""
    world, vocab, data, problems = inputs.world, inputs.vocab, inputs.data, inputs.problems
    k_err, k_style = jax.random.split(inputs.key)
    solution = world.solve(problems, k_err, data.teacher_step_error)
    scratch = jax.random.uniform(k_style, problems.x0.shape) < data.teacher_scratchpad_share
    context, actions = vocab.write_trace(solution.steps, solution.answer, problems.depth, scratch)
    mode = jnp.where(scratch, vocab.special("SCRATCH"), vocab.special("DIRECT"))
    return mode, context, actions


FACTOR.add_mechanism(
    Objective("reinforce", "policy gradient with a group-mean baseline", weights=lambda p, x: policy_gradient(x))
)
FACTOR.add_mechanism(
    Objective(
        "ppo_clip",
        "clipped ratio objective over several epochs per batch",
        (Param("clip_epsilon", "float", 0.2, "PPO ratio clip", 1e-4, 10.0),),
        defaults={"inner_epochs": 4},
        weights=lambda p, x: policy_gradient(x),
        clip_epsilon=lambda p: p["clip_epsilon"],
    )
)
FACTOR.add_mechanism(Objective("rs_sft", "supervised on the samples the verifier accepts", weights=_rs_sft))
FACTOR.add_mechanism(Objective("positive_only", "reinforce rewarded samples only", weights=_positive))
FACTOR.add_mechanism(Objective("negative_only", "push down unrewarded samples only", weights=_negative))
FACTOR.add_mechanism(
    Objective(
        "distill",
        "supervised on the data factor's teacher traces",
        weights=lambda p, x: jnp.ones_like(x.token_rewards),
        batch=teacher_traces,
    )
)

FACTOR.add_preset(Preset("reinforce", "reinforce", "REINFORCE with a group-mean baseline, Adam, no KL penalty"))
FACTOR.add_preset(
    Preset("reinforce_kl", "reinforce", "the same with a KL penalty to the base (coefficient 0.2)", {"kl_coef": 0.2})
)
FACTOR.add_preset(
    Preset("grpo", "reinforce", "group-normalised advantages (GRPO without clipping)", {"normalize_advantage": True})
)
FACTOR.add_preset(
    Preset(
        "ppo_clip",
        "ppo_clip",
        "GRPO-style advantages, 4 epochs per batch, ratio clip 0.2",
        {"normalize_advantage": True},
    )
)
FACTOR.add_preset(Preset("rs_sft", "rs_sft", "rejection-sampling SFT on verifier-accepted samples"))
FACTOR.add_preset(Preset("positive_only", "positive_only", "positive sample reinforcement only"))
FACTOR.add_preset(Preset("negative_only", "negative_only", "negative sample reinforcement only"))
FACTOR.add_preset(Preset("distill", "distill", "distillation SFT on teacher traces"))
FACTOR.add_preset(
    Preset(
        "reinforce_sgd", "reinforce", "REINFORCE through plain SGD", {"optimizer_family": "sgd", "learning_rate": 0.05}
    )
)
FACTOR.add_preset(
    Preset("reinforce_entropy", "reinforce", "REINFORCE with an entropy bonus (0.01)", {"entropy_coef": 0.01})
)
