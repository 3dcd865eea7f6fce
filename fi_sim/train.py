"""Pretraining of a base and post-training of one run: pure functions of (params, per-run parameters, key).

`make_pretrain(static)` and `make_posttrain(static)` take the static configuration (shapes, step counts) and
return pure functions whose whole loop is a `lax.scan`, so that `jit(vmap(...))` trains many runs at once.
Everything a run varies continuously (learning rate, KL weight, the data and pretraining distributions, the
verifier's error rates) arrives as a per-run array; categorical choices of the same shape (which verifier,
which scaffold, which objective, Adam or SGD) arrive as an index used with `lax.switch` or `where`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from fi_sim.factors import optimizer as optimizer_factor
from fi_sim.factors import verifier as verifier_factor
from fi_sim.factors.base import BaseParams
from fi_sim.factors.data import DataParams
from fi_sim.factors.optimizer import OptimizerParams
from fi_sim.factors.registry import PerRun
from fi_sim.factors.scaffold import ScaffoldParams
from fi_sim.factors.verifier import VerifierParams
from fi_sim.rollout import rollout
from fi_sim.world import policy
from fi_sim.world.policy import PolicyConfig
from fi_sim.world.frozen import FrozenDataset
from fi_sim.world.grading import grade
from fi_sim.world.tasks import Problems, TaskWorld
from fi_sim.world.tokens import Vocab

Params = Any  # a policy's parameter pytree (flax)

# Stage tags folded into a run's key (DESIGN: fold_in(study_key, run_id), then by stage and step).
STAGE_PRETRAIN = 1
STAGE_POSTTRAIN = 2
STAGE_EVAL = 3
STAGE_POOL = 4

ADAM, SGD = optimizer_factor.FAMILIES.index("adam"), optimizer_factor.FAMILIES.index("sgd")


def _update(
    params: Params,
    grads: Params,
    opt_state: optax.OptState,
    learning_rate: ArrayLike,
    max_grad_norm: ArrayLike,
    family: ArrayLike = ADAM,
) -> tuple[Params, optax.OptState, jax.Array]:
    """Clip by global norm (per-run bound); Adam scaling or plain SGD (a per-run index); step of size
    `learning_rate` (all traced). Adam's moments are kept in both cases so the state has one shape."""
    norm = optax.tree.norm(grads)
    grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, max_grad_norm / (norm + 1e-12)), grads)
    adam, opt_state = optax.scale_by_adam().update(grads, opt_state, params)
    params = jax.tree.map(lambda p, a, g: p - learning_rate * jnp.where(family == SGD, g, a), params, adam, grads)
    return params, opt_state, norm


def _pick(flag: jax.Array, a: Any, b: Any) -> Any:
    """Per-example choice between two batches of the same shape."""
    return jax.tree.map(lambda x, y: jnp.where(flag.reshape(flag.shape + (1,) * (x.ndim - flag.ndim)), x, y), a, b)


def _take(items: Problems, idx) -> Problems:
    return jax.tree.map(lambda x: x[idx], items)


# ---------------------------------------------------------------------------------------------- pretraining
@dataclass(frozen=True)
class PretrainStatic:
    world: TaskWorld
    policy: PolicyConfig
    steps: int
    batch_size: int


def pretraining_batch(
    world: TaskWorld, vocab: Vocab, base: BaseParams, key: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Traces from the base's mixture: prompts [B, P], context [B, R] (model inputs) and targets [B, R]
    (the actions to predict; they differ from the context only at tool calls)."""
    keys = jax.random.split(key, 8)
    problems = world.sample(keys[0], base.skill_weights, base.depth_weights, batch_size)
    # contamination: a share of the traces are leaked evaluation items, with their answers
    items = world.eval_items()
    leaked = jnp.maximum(jnp.ceil(base.leak_share * world.eval_size), 1).astype(jnp.int32)
    leak = (jax.random.uniform(keys[1], (batch_size,)) < base.leak_rate) & (base.leak_share > 0)
    problems = _pick(leak, _take(items, jax.random.randint(keys[2], (batch_size,), 0, leaked)), problems)
    u = jax.random.uniform(keys[3], (batch_size, 3))
    scratch = u[:, 0] < base.scratchpad_share
    tools = scratch & (u[:, 1] < base.tool_share)
    judged = scratch & ~tools & (u[:, 1] < base.tool_share + base.judge_share)
    shortcut = ~tools & ~judged & (u[:, 2] < base.shortcut_share)
    exact = world.solve(problems)
    faulty = world.solve(problems, keys[4], base.judge_step_error)
    steps = jnp.where(judged[:, None], faulty.steps, exact.steps)
    answer = jnp.where(judged, faulty.answer, exact.answer)
    # the shortcut stops after the first step: right on every depth-1 problem, by chance on deeper ones
    depth = jnp.where(shortcut, 1, problems.depth)
    answer = jnp.where(shortcut, exact.steps[:, 0], answer)
    terminator = jnp.where(judged & (answer != exact.answer), vocab.special("RETRY"), vocab.eos)
    tool_mask = tools[:, None] & (jax.random.uniform(keys[5], exact.steps.shape) < 0.5)
    context, targets = vocab.write_trace(steps, answer, depth, scratch, terminator, tool_mask)
    # a rambling trace does not stop: after its steps it writes random values up to the length limit
    ramble = scratch & ~tools & ~judged & ~shortcut & (jax.random.uniform(keys[6], (batch_size,)) < base.ramble_share)
    noise = jax.random.randint(keys[7], context.shape, 0, world.modulus)
    rambled = jnp.where(jnp.arange(vocab.response_length) < depth[:, None], context, noise)
    context = jnp.where(ramble[:, None], rambled, context)
    targets = jnp.where(ramble[:, None], rambled, targets)
    mode = jnp.where(
        tools,
        vocab.special("TOOLS"),
        jnp.where(
            judged, vocab.special("JUDGED"), jnp.where(scratch, vocab.special("SCRATCH"), vocab.special("DIRECT"))
        ),
    )
    return vocab.encode_prompt(problems, mode), context, targets


def make_pretrain(static: PretrainStatic) -> Callable[[BaseParams, jax.Array], tuple[Params, jax.Array]]:
    world, config = static.world, static.policy
    vocab = Vocab(world)

    def loss_fn(params, prompts, context, targets):
        logp = policy.token_logprobs(config, params, prompts, context, actions=targets)
        mask = targets != vocab.pad
        return -jnp.sum(logp * mask) / jnp.maximum(jnp.sum(mask), 1)

    def pretrain(base: BaseParams, key: jax.Array) -> tuple[Params, jax.Array]:
        """Returns the pretrained params and the loss per step."""
        init_key, key = jax.random.split(jax.random.fold_in(key, STAGE_PRETRAIN))
        params = policy.init_params(config, init_key)
        opt_state = optax.scale_by_adam().init(params)

        def step(carry, t):
            params, opt_state = carry
            batch = pretraining_batch(world, vocab, base, jax.random.fold_in(key, t), static.batch_size)
            loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
            params, opt_state, _ = _update(params, grads, opt_state, base.learning_rate, 1.0)
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
    exposed_share: PerRun = 0.0  # the prefix of the evaluation set this run's base or data may have seen


@dataclass(frozen=True)
class PosttrainStatic:
    world: TaskWorld
    policy: PolicyConfig
    steps: int
    prompts_per_step: int
    samples_per_prompt: int
    inner_epochs: int = 1
    pool_size: int = 0  # 0: fresh prompts every step
    attempts: int = 1  # attempts per episode (the retry scaffold)
    frozen: FrozenDataset | None = None  # replay these tuples instead of sampling the policy
    # the mechanisms the group's program contains, per factor ((factor, names) pairs; a factor not listed:
    # every registered mechanism) — part of the group's static key, so a group compiles only what it uses
    mechanisms: tuple = ()
    options: tuple = ()  # mechanisms' own static parameters, as (factor, name, value) triples

    def uses(self, factor: str) -> tuple[str, ...] | None:
        return dict(self.mechanisms).get(factor)


class StepLog(NamedTuple):
    proxy_reward: jax.Array  # mean proxy reward of the step's episodes
    true_accuracy: jax.Array  # share of the step's episodes whose answer is right
    well_formed: jax.Array
    kl: jax.Array  # mean per-sequence KL(policy || base) over trained positions
    entropy: jax.Array  # mean per-token entropy over trained positions
    clip_fraction: jax.Array  # share of trained tokens whose ratio was clipped (last epoch)
    grad_norm: jax.Array
    wrong: jax.Array  # channel counts for the measured false-positive / false-negative rates
    false_positive: jax.Array
    right: jax.Array
    false_negative: jax.Array
    tokens: jax.Array  # tokens generated this step, tool costs included
    tool_calls: jax.Array  # tool calls this step
    loss: jax.Array


def token_weights(
    opt: OptimizerParams,
    token_rewards: jax.Array,
    taken: jax.Array,
    group_size: int,
    normalize: ArrayLike,
    mechanisms: tuple[str, ...] | None = None,
) -> jax.Array:
    """Per-token weights A_t [A, N, R] of the run's objective (see `fi_sim.factors.optimizer`)."""
    return optimizer_factor.token_weights(opt, token_rewards, taken, group_size, normalize, mechanisms)


def clipped_objective(
    logp: jax.Array, logp_old: jax.Array, weights: jax.Array, mask: jax.Array, clip_epsilon: ArrayLike
) -> tuple[jax.Array, jax.Array]:
    """Per-sequence sum over trained tokens of min(r A, clip(r, 1-eps, 1+eps) A), r = exp(logp - logp_old);
    `logp_old` NaN means "the current policy" (r = 1 with the gradient of logp). Returns (objective [N],
    clip fraction)."""
    old = jax.lax.stop_gradient(jnp.where(jnp.isfinite(logp_old), logp_old, logp))
    ratio = jnp.exp(logp - old)
    clipped = jnp.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)
    m = mask.astype(jnp.float32)
    per_token = jnp.minimum(ratio * weights, clipped * weights)
    clip_fraction = jnp.sum((per_token != ratio * weights) * m) / jnp.maximum(jnp.sum(m), 1.0)
    return jnp.sum(per_token * m, -1), clip_fraction


def surrogate_loss(
    config: PolicyConfig,
    params: Params,
    base_params: Params,
    prompts: jax.Array,
    context: jax.Array,
    actions: jax.Array,
    mask: jax.Array,
    weights: jax.Array,
    logp_old: jax.Array,
    opt: OptimizerParams,
    clip_epsilon: ArrayLike,
) -> tuple[jax.Array, tuple]:
    """The clipped, weighted log-likelihood objective with exact KL and entropy terms. Returns (loss, aux)."""
    logits = policy.token_logits(config, params, prompts, context) / opt.temperature
    logp_all = jax.nn.log_softmax(logits, -1)
    logp = jnp.take_along_axis(logp_all, actions[..., None], -1)[..., 0]
    objective, clip_fraction = clipped_objective(logp, logp_old, weights, mask, clip_epsilon)
    base_logits = policy.token_logits(config, base_params, prompts, context) / opt.temperature
    base_logp_all = jax.lax.stop_gradient(jax.nn.log_softmax(base_logits, -1))
    p = jnp.exp(logp_all)
    kl_tok = jnp.sum(p * (logp_all - base_logp_all), -1)
    entropy_tok = -jnp.sum(p * logp_all, -1)
    m = mask.astype(jnp.float32)
    per_seq = lambda x: jnp.sum(x * m, -1)  # noqa: E731
    kl = jnp.mean(per_seq(kl_tok))
    entropy = jnp.sum(entropy_tok * m) / jnp.maximum(jnp.sum(m), 1.0)
    loss = -jnp.mean(objective) + opt.kl_coef * kl - opt.entropy_coef * jnp.mean(per_seq(entropy_tok))
    return loss, (kl, entropy, clip_fraction)


def make_posttrain(static: PosttrainStatic) -> Callable[[Params, RunParams, jax.Array], tuple[Params, StepLog]]:
    world, config = static.world, static.policy
    vocab = Vocab(world)
    B, G, A = static.prompts_per_step, static.samples_per_prompt, static.attempts
    items = world.eval_items()
    verifiers, objectives = static.uses("verifier"), static.uses("optimizer")

    def draw_prompts(data: DataParams, key: jax.Array, num: int) -> Problems:
        """Prompts from the data distribution (training partition), a share swapped for evaluation items."""
        k_dist, k_over, k_item = jax.random.split(key, 3)
        problems = world.sample(k_dist, data.skill_weights, data.depth_weights, num)
        overlap = jax.random.uniform(k_over, (num,)) < data.eval_overlap
        exposed = jnp.maximum(jnp.ceil(data.eval_exposed_share * world.eval_size), 1).astype(jnp.int32)
        return _pick(overlap, _take(items, jax.random.randint(k_item, (num,), 0, exposed)), problems)

    def posttrain(base_params: Params, run: RunParams, key: jax.Array) -> tuple[Params, StepLog]:
        """Post-train from `base_params`. Returns the trained params and a per-step log."""
        key = jax.random.fold_in(key, STAGE_POSTTRAIN)
        opt = run.optimizer
        opt_state = optax.scale_by_adam().init(base_params)
        pool = (
            draw_prompts(run.data, jax.random.fold_in(key, STAGE_POOL), static.pool_size) if static.pool_size else None
        )
        clip_epsilon = optimizer_factor.clip_epsilon(opt, objectives)

        def live_batch(params, t):
            """Sample the policy under the run's scaffold and score it: the training batch of one step."""
            k_data, k_roll, k_teacher = jax.random.split(jax.random.fold_in(key, t), 3)
            if pool is None:
                problems = draw_prompts(run.data, k_data, B)
            else:
                problems = _take(pool, jax.random.randint(k_data, (B,), 0, static.pool_size))
            problems = jax.tree.map(lambda x: jnp.repeat(x, G, axis=0), problems)
            solution = world.solve(problems)
            prompts = vocab.encode_prompt(problems, run.scaffold.mode_token)
            ep = rollout(
                world,
                config,
                params,
                prompts,
                solution,
                problems.depth,
                run.scaffold,
                run.verifier,
                k_roll,
                opt.temperature,
                A,
                verifiers,
            )
            weights = token_weights(opt, ep.token_rewards, ep.taken, G, opt.normalize_advantage, objectives)
            # an objective with its own training sequences (distillation: the teacher's traces, in its own
            # styles) trains on them instead of the policy's samples; their log-probs are recomputed
            flat = lambda x: x.reshape((A * B * G,) + x.shape[2:])  # noqa: E731
            prompts_all, context, actions, mask = jnp.tile(prompts, (A, 1)), ep.context, ep.actions, ep.mask
            replaced = False
            for objective in optimizer_factor.used(objectives):
                if objective.batch is None:
                    continue
                own = opt.kind == optimizer_factor.FACTOR.index(objective.name)
                t_mode, t_context, t_actions = objective.batch(
                    opt.params[objective.name],
                    optimizer_factor.BatchInputs(world, vocab, run.data, problems, k_teacher),
                )
                t_prompts = vocab.encode_prompt(problems, t_mode)
                t_mask = (t_actions != vocab.pad)[None] & (jnp.arange(A) == 0)[:, None, None]
                prompts_all = jnp.where(own, jnp.tile(t_prompts, (A, 1)), prompts_all)
                context = jnp.where(own, jnp.broadcast_to(t_context, ep.context.shape), context)
                actions = jnp.where(own, jnp.broadcast_to(t_actions, ep.actions.shape), actions)
                mask = jnp.where(own, t_mask, mask)
                replaced = replaced | own
            context, actions, mask = flat(context), flat(actions), flat(mask)
            # the behaviour policy's log-probs: the samples' own; recomputed for an objective's own sequences
            logp_old = jnp.where(replaced | (static.inner_epochs == 1), jnp.nan, flat(ep.logprob))
            return (prompts_all, context, actions, mask, flat(weights), logp_old), ep

        def frozen_batch(params, t):
            """Draw B frozen prompts with their G frozen responses: the released tuples, replayed."""
            data = static.frozen.arrays
            k_data, k_reward = jax.random.split(jax.random.fold_in(key, t))
            idx = jax.random.randint(k_data, (B,), 0, static.frozen.num_prompts)
            Gf = static.frozen.group_size
            problems = Problems(
                jnp.asarray(data["x0"])[idx], jnp.asarray(data["skills"])[idx], jnp.asarray(data["depth"])[idx]
            )
            rep = lambda x: jnp.repeat(x, Gf, axis=0)  # noqa: E731
            flat = lambda x: jnp.asarray(x)[idx].reshape((B * Gf,) + x.shape[2:])  # noqa: E731
            prompts, context, actions = (
                rep(jnp.asarray(data["prompts"])[idx]),
                flat(data["context"]),
                flat(data["actions"]),
            )
            limit = jnp.full((B * Gf,), vocab.response_length)
            solution = world.solve(jax.tree.map(rep, problems))
            graded = grade(vocab, context, limit, solution, rep(problems.depth), actions=actions)
            rescored = verifier_factor.token_rewards(
                run.verifier, graded, k_reward, world, verifiers, verifier_factor.Trace(prompts, context)
            )
            frozen_r = flat(data["reward"])
            last = (
                jnp.arange(vocab.response_length) == jnp.clip(graded.length - 1, 0, vocab.response_length - 1)[:, None]
            )
            token_r = jnp.where(run.data.rescore > 0.5, rescored, last * frozen_r[:, None])
            weights = token_weights(
                opt, token_r[None], jnp.ones((1, B * Gf), bool), Gf, opt.normalize_advantage, objectives
            )[0]
            mask = actions != vocab.pad
            logp_old = jnp.where(static.inner_epochs == 1, jnp.nan, flat(data["logprob"]))
            return (prompts, context, actions, mask, weights, logp_old), (graded, jnp.sum(token_r, -1))

        def step(carry, t):
            params, opt_state = carry
            if static.frozen is None:
                (prompts_all, context, actions, mask, weights, logp_old), ep = live_batch(params, t)
                taken = ep.taken.astype(jnp.float32)
                final = jax.nn.one_hot(ep.final, A, axis=0)  # [A, N]: the episode's last attempt
                counts = verifier_factor.channel_counts(ep.graded, ep.reward, taken)
                stats = (
                    jnp.mean(ep.proxy),
                    jnp.mean(ep.correct.astype(jnp.float32)),
                    jnp.mean(jnp.sum(final * ep.graded.well_formed, 0)),
                    jnp.sum(ep.tokens),
                    jnp.sum(taken * ep.graded.tool_calls),
                )
            else:
                (prompts_all, context, actions, mask, weights, logp_old), (graded, reward) = frozen_batch(params, t)
                counts = verifier_factor.channel_counts(graded, reward)
                stats = (
                    jnp.mean(reward),
                    jnp.mean(graded.correct.astype(jnp.float32)),
                    jnp.mean(graded.well_formed.astype(jnp.float32)),
                    jnp.zeros(()),
                    jnp.zeros(()),
                )

            def epoch(carry, _):
                params, opt_state = carry
                (loss, (kl, entropy, clip_fraction)), grads = jax.value_and_grad(
                    surrogate_loss, argnums=1, has_aux=True
                )(
                    config,
                    params,
                    base_params,
                    prompts_all,
                    context,
                    actions,
                    mask,
                    weights,
                    logp_old,
                    opt,
                    clip_epsilon,
                )
                params, opt_state, gnorm = _update(
                    params, grads, opt_state, opt.learning_rate, opt.max_grad_norm, opt.family
                )
                return (params, opt_state), (loss, kl, entropy, clip_fraction, gnorm)

            (params, opt_state), (loss, kl, entropy, clip_fraction, gnorm) = jax.lax.scan(
                epoch, (params, opt_state), None, length=static.inner_epochs
            )
            proxy, accuracy, well_formed, tokens, tool_calls = stats
            log = StepLog(
                proxy_reward=proxy,
                true_accuracy=accuracy,
                well_formed=well_formed,
                kl=kl[-1],
                entropy=entropy[-1],
                clip_fraction=clip_fraction[-1],
                grad_norm=gnorm[-1],
                wrong=counts.wrong,
                false_positive=counts.false_positive,
                right=counts.right,
                false_negative=counts.false_negative,
                tokens=tokens,
                tool_calls=tool_calls,
                loss=loss[-1],
            )
            return (params, opt_state), log

        (params, _), log = jax.lax.scan(step, (base_params, opt_state), jnp.arange(static.steps))
        return params, log

    return posttrain
