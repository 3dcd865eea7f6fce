"""Rollouts under a scaffold: the policy answers prompts in episodes of one or more attempts.

An attempt is one sampled response in the scaffold's protocol (tool results written by the environment where
the policy called TOOL). Under the retry scaffold an episode makes up to `num_attempts` independent attempts
and stops at the first one the stopping rule accepts — the verifier's reward (oracle) or the policy's own
judgement, EOS rather than RETRY (self-judged); the episode's answer is that of its last attempt made. Every
attempt is graded against the exact solution (truth) and scored by the run's verifier (proxy), and the tokens
it spent are counted, tool costs included.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fi_sim.factors import verifier as verifier_factor
from fi_sim.factors.scaffold import Protocol
from fi_sim.factors.verifier import Trace, VerifierParams
from fi_sim.world import policy
from fi_sim.world.policy import PolicyConfig
from fi_sim.world.grading import Graded, grade
from fi_sim.world.tasks import Solution, TaskWorld
from fi_sim.world.tokens import Vocab


class Episodes(NamedTuple):
    """Attempts are stacked on a leading axis [A, N, ...]; per-episode fields are [N]."""

    context: jax.Array  # int32 [A, N, R]
    actions: jax.Array  # int32 [A, N, R]
    mask: jax.Array  # bool [A, N, R]: generated tokens of attempts that were made
    logprob: jax.Array  # float [A, N, R]
    graded: Graded  # fields [A, N, ...]
    token_rewards: jax.Array  # float [A, N, R]: the verifier's rewards per token
    reward: jax.Array  # float [A, N]: total proxy reward of each attempt
    taken: jax.Array  # bool [A, N]: the attempt was made
    final: jax.Array  # int32 [N]: index of the episode's last attempt
    correct: jax.Array  # bool [N]: the episode's answer is right (truth)
    answer: jax.Array  # int32 [N]: the episode's answer (-1: none / malformed)
    proxy: jax.Array  # float [N]: the verifier's reward of the episode's answer
    tokens: jax.Array  # float [N]: tokens spent, tool costs included


def rollout(
    world: TaskWorld,
    config: PolicyConfig,
    params,
    prompts: jax.Array,
    solution: Solution,
    depth: jax.Array,
    scaffold: Protocol,
    verifier: VerifierParams,
    key: jax.Array,
    temperature,
    num_attempts: int,
    verifiers: tuple[str, ...] | None = None,
) -> Episodes:
    """`num_attempts` attempts per prompt under the run's scaffold protocol, graded and scored by the run's
    verifier (among `verifiers`, the ones the compiled program contains; None: every registered verifier)."""
    vocab = Vocab(world)
    attempts = []
    for a in range(num_attempts):
        k_sample, k_reward = jax.random.split(jax.random.fold_in(key, a))
        s = sample_attempt(world, config, params, prompts, solution, scaffold, k_sample, temperature)
        g = grade(vocab, s.response, scaffold.response_limit, solution, depth, actions=s.actions)
        r = verifier_factor.token_rewards(verifier, g, k_reward, world, verifiers, Trace(prompts, s.response))
        attempts.append((s, g, r))
    stack = lambda xs: jax.tree.map(lambda *v: jnp.stack(v), *xs)  # noqa: E731
    samples = stack([a[0] for a in attempts])
    graded = stack([a[1] for a in attempts])
    token_rewards = jnp.stack([a[2] for a in attempts])
    reward = jnp.sum(token_rewards, -1)

    taken, final, tokens = stopping(graded, reward, scaffold)

    def pick(x):
        return jnp.take_along_axis(x, final[None], 0)[0]

    correct = pick(graded.correct)
    answer = jnp.where(pick(graded.well_formed), pick(graded.answer), -1)
    return Episodes(
        context=samples.response,
        actions=samples.actions,
        mask=samples.mask & taken[..., None],
        logprob=samples.logprob,
        graded=graded,
        token_rewards=token_rewards,
        reward=reward,
        taken=taken,
        final=final,
        correct=correct,
        answer=answer,
        proxy=pick(reward),
        tokens=tokens,
    )


def sample_attempt(
    world: TaskWorld,
    config: PolicyConfig,
    params,
    prompts: jax.Array,
    solution: Solution,
    scaffold: Protocol,
    key: jax.Array,
    temperature,
) -> policy.Sample:
    """One attempt per prompt in the scaffold's protocol: the policy's responses, with the environment writing the
    exact step where the policy called the tool (if the protocol allows it)."""
    vocab = Vocab(world)
    return policy.sample(
        config,
        params,
        prompts,
        key,
        temperature,
        vocab.response_length,
        scaffold.response_limit,
        vocab.eos,
        vocab.pad,
        stop_token=vocab.special("RETRY"),
        tool_token=vocab.special("TOOL"),
        num_values=world.modulus,
        tool_steps=solution.steps,
        tools_allowed=scaffold.tools_allowed,
    )


def stopping(graded: Graded, reward: jax.Array, scaffold: Protocol) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Which attempts an episode makes, its last attempt, and the tokens it spends.

    An attempt is accepted by the verifier (oracle: reward >= 0.5) or by the policy's own judgement (self:
    it ended with EOS, not RETRY); the episode stops at the first accepted attempt, or after the last one.
    Tokens: every generated token of the attempts made, plus `tool_cost` per tool call.
    graded fields and reward: [A, N]. Returns taken [A, N], final [N], tokens [N]."""
    accepted = jnp.where(scaffold.self_judged, ~graded.retry, reward >= verifier_factor.ACCEPTANCE_THRESHOLD)
    accepted = accepted.at[-1].set(True)  # the last attempt ends the episode in any case
    taken = jnp.cumsum(accepted, axis=0) - accepted == 0
    final = jnp.argmax(accepted, axis=0).astype(jnp.int32)
    spent = graded.length + scaffold.tool_cost * graded.tool_calls
    tokens = jnp.sum(jnp.where(taken, spent, 0), 0).astype(jnp.float32)
    return taken, final, tokens
