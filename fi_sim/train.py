"""Pretraining of a base and post-training of one run: pure functions of (params, per-run parameters, key).

`make_pretrain(static)` and `make_posttrain(static)` take the static configuration (shapes, step counts) and
return pure functions whose whole loop is a `lax.scan`, so that `jit(vmap(...))` trains many runs at once.
Everything a run varies continuously (learning rate, KL weight, the data and pretraining distributions, the
verifier's error rates) arrives as a per-run array; categorical choices of the same shape (which verifier,
which scaffold) arrive as an index used with `lax.switch` or `where`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from fi_sim.factors import verifier as verifier_factor
from fi_sim.factors.base import BaseParams
from fi_sim.factors.data import DataParams
from fi_sim.factors.optimizer import OptimizerParams
from fi_sim.factors.scaffold import ScaffoldParams
from fi_sim.factors.verifier import VerifierParams
from fi_sim.world import policy
from fi_sim.world.chain import ChainWorld
from fi_sim.world.grading import grade
from fi_sim.world.policy import PolicyConfig
from fi_sim.world.tokens import Vocab

# Stage tags folded into a run's key (DESIGN: fold_in(study_key, run_id), then by stage and step).
STAGE_PRETRAIN = 1
STAGE_POSTTRAIN = 2
STAGE_EVAL = 3


def _adam_step(params, grads, opt_state, learning_rate, max_grad_norm):
    """Clip by global norm (per-run bound), Adam scaling, step of size `learning_rate` (all traced)."""
    norm = optax.tree.norm(grads)
    grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, max_grad_norm / (norm + 1e-12)), grads)
    updates, opt_state = optax.scale_by_adam().update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - learning_rate * u, params, updates)
    return params, opt_state, norm


# ---------------------------------------------------------------------------------------------- pretraining
@dataclass(frozen=True)
class PretrainStatic:
    world: ChainWorld
    policy: PolicyConfig
    steps: int
    batch_size: int


def pretraining_batch(world: ChainWorld, vocab: Vocab, base: BaseParams, key, batch_size: int):
    """Exact solver traces from the base's mixture: prompts [B, P], target responses [B, R]."""
    k_problems, k_mode = jax.random.split(key)
    problems = world.sample(k_problems, base.skill_weights, base.depth_weights, batch_size)
    solution = world.solve(problems)
    scratch = jax.random.uniform(k_mode, (batch_size,)) < base.scratchpad_share
    mode = jnp.where(scratch, vocab.special("SCRATCH"), vocab.special("DIRECT"))
    return vocab.encode_prompt(problems, mode), vocab.target_response(problems, solution, scratch)


def make_pretrain(static: PretrainStatic):
    world, config = static.world, static.policy
    vocab = Vocab(world)

    def loss_fn(params, prompts, targets):
        logits = policy.token_logits(config, params, prompts, targets)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
        mask = targets != vocab.pad
        return -jnp.sum(logp * mask) / jnp.maximum(jnp.sum(mask), 1)

    def pretrain(base: BaseParams, key):
        """Returns the pretrained params and the loss per step."""
        init_key, key = jax.random.split(jax.random.fold_in(key, STAGE_PRETRAIN))
        params = policy.init_params(config, init_key)
        opt_state = optax.scale_by_adam().init(params)

        def step(carry, t):
            params, opt_state = carry
            prompts, targets = pretraining_batch(world, vocab, base, jax.random.fold_in(key, t), static.batch_size)
            loss, grads = jax.value_and_grad(loss_fn)(params, prompts, targets)
            params, opt_state, _ = _adam_step(params, grads, opt_state, base.learning_rate, 1.0)
            return (params, opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, opt_state), jnp.arange(static.steps))
        return params, losses

    return pretrain


# ---------------------------------------------------------------------------------------------- post-training
class RunParams(NamedTuple):
    """Everything one post-training run varies, as arrays (stacked along a leading runs axis under vmap)."""

    verifier: VerifierParams
    data: DataParams
    optimizer: OptimizerParams
    scaffold: ScaffoldParams


@dataclass(frozen=True)
class PosttrainStatic:
    world: ChainWorld
    policy: PolicyConfig
    steps: int
    prompts_per_step: int
    samples_per_prompt: int


class StepLog(NamedTuple):
    proxy_reward: jax.Array  # mean proxy reward of the step's samples
    true_accuracy: jax.Array  # share of the step's samples that are truly correct
    well_formed: jax.Array
    kl: jax.Array  # mean per-sequence KL(policy || base) over generated positions
    grad_norm: jax.Array
    wrong: jax.Array  # channel counts for the measured false-positive / false-negative rates
    false_positive: jax.Array
    right: jax.Array
    false_negative: jax.Array
    tokens: jax.Array  # tokens generated this step


def group_advantages(rewards, group_size: int, normalize):
    """Reward minus its group's mean (REINFORCE with a group baseline); divided by the group's std when
    `normalize` (GRPO). rewards: [num_prompts * group_size], grouped contiguously."""
    r = rewards.reshape(-1, group_size)
    adv = r - jnp.mean(r, axis=1, keepdims=True)
    std = jnp.std(r, axis=1, keepdims=True)
    adv = jnp.where(normalize > 0.5, adv / (std + 1e-6), adv)
    return adv.reshape(-1)


def policy_gradient_loss(config, params, base_params, prompts, responses, mask, advantages, temperature, kl_coef):
    """REINFORCE surrogate with an exact per-token KL penalty to the base. Returns (loss, mean KL)."""
    logits = policy.token_logits(config, params, prompts, responses) / temperature
    logp_all = jax.nn.log_softmax(logits, -1)
    logp = jnp.take_along_axis(logp_all, responses[..., None], -1)[..., 0]
    seq_logp = jnp.sum(jnp.where(mask, logp, 0.0), -1)
    pg = -jnp.mean(jax.lax.stop_gradient(advantages) * seq_logp)
    base_logits = policy.token_logits(config, base_params, prompts, responses) / temperature
    base_logp_all = jax.lax.stop_gradient(jax.nn.log_softmax(base_logits, -1))
    kl_tok = jnp.sum(jnp.exp(logp_all) * (logp_all - base_logp_all), -1)
    kl = jnp.mean(jnp.sum(jnp.where(mask, kl_tok, 0.0), -1))
    return pg + kl_coef * kl, kl


def make_posttrain(static: PosttrainStatic):
    world, config = static.world, static.policy
    vocab = Vocab(world)
    B, G = static.prompts_per_step, static.samples_per_prompt

    def posttrain(base_params, run: RunParams, key):
        """Post-train from `base_params`. Returns the trained params and a per-step log."""
        key = jax.random.fold_in(key, STAGE_POSTTRAIN)
        opt = run.optimizer
        opt_state = optax.scale_by_adam().init(base_params)

        def step(carry, t):
            params, opt_state = carry
            k_data, k_sample, k_reward = jax.random.split(jax.random.fold_in(key, t), 3)
            problems = world.sample(k_data, run.data.skill_weights, run.data.depth_weights, B)
            solution = world.solve(problems)
            prompts = vocab.encode_prompt(problems, run.scaffold.mode_token)
            prompts = jnp.repeat(prompts, G, axis=0)
            solution = jax.tree.map(lambda x: jnp.repeat(x, G, axis=0), solution)
            s = policy.sample(config, params, prompts, k_sample, opt.temperature, vocab.response_length,
                              run.scaffold.response_limit, vocab.eos, vocab.pad)
            graded = grade(vocab, s.response, run.scaffold.response_limit, solution)
            rewards = verifier_factor.reward(run.verifier, graded, k_reward)
            adv = group_advantages(rewards, G, opt.normalize_advantage)
            (loss, kl), grads = jax.value_and_grad(policy_gradient_loss, argnums=1, has_aux=True)(
                config, params, base_params, prompts, s.response, s.mask, adv, opt.temperature, opt.kl_coef
            )
            params, opt_state, gnorm = _adam_step(params, grads, opt_state, opt.learning_rate, opt.max_grad_norm)
            counts = verifier_factor.channel_counts(graded, rewards)
            log = StepLog(
                proxy_reward=jnp.mean(rewards),
                true_accuracy=jnp.mean(graded.correct.astype(jnp.float32)),
                well_formed=jnp.mean(graded.well_formed.astype(jnp.float32)),
                kl=kl,
                grad_norm=gnorm,
                wrong=counts.wrong,
                false_positive=counts.false_positive,
                right=counts.right,
                false_negative=counts.false_negative,
                tokens=jnp.sum(s.mask).astype(jnp.float32),
            )
            return (params, opt_state), log

        (params, _), log = jax.lax.scan(step, (base_params, opt_state), jnp.arange(static.steps))
        return params, log

    return posttrain
