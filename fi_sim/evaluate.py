"""Evaluation of a policy under every budget level from one set of samples.

For each distinct evaluation temperature, the policy answers every held-out evaluation item n times. Every
budget level is then an estimator on those samples — never a new training run:

- pass@k: the unbiased estimator 1 - C(n-c, k) / C(n, k) from c correct of n samples (Chen et al. 2021);
- majority vote of k: the n samples are cut into floor(n / k) disjoint blocks of k; a block votes for its most
  frequent answer among its well-formed traces; ties share the credit (the expected score under a uniform
  tie-break).

Each metric exists twice: true (against the exact solver) and proxy (as the run's verifier would score it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from fi_sim.factors import verifier as verifier_factor
from fi_sim.factors.budget import BudgetSpec
from fi_sim.factors.scaffold import ScaffoldParams
from fi_sim.factors.verifier import VerifierParams
from fi_sim.world import policy
from fi_sim.world.chain import ChainWorld, Problems
from fi_sim.world.grading import grade
from fi_sim.world.policy import PolicyConfig
from fi_sim.world.tokens import Vocab


@dataclass(frozen=True)
class EvalStatic:
    world: ChainWorld
    policy: PolicyConfig
    budgets: tuple[BudgetSpec, ...]
    num_samples: int  # n per item and temperature, >= every budget's k

    @property
    def temperatures(self) -> tuple[float, ...]:
        return tuple(sorted({b.temperature for b in self.budgets}))


class EvalResult(NamedTuple):
    true_score: jax.Array  # [num_budgets]
    proxy_score: jax.Array  # [num_budgets]
    true_by_depth: jax.Array  # [num_budgets, max_depth] (NaN where the eval set has no item of that depth)
    tokens: jax.Array  # tokens generated during evaluation (all temperatures)


def pass_at_k(num_correct, n: int, k: int):
    """Unbiased pass@k from c correct of n samples: 1 - prod_{i=0}^{k-1} (n - c - i) / (n - i)."""
    c = jnp.asarray(num_correct, jnp.float32)
    i = jnp.arange(k, dtype=jnp.float32)
    factors = jnp.clip((n - c[..., None] - i) / (n - i), 0.0, 1.0)
    return 1.0 - jnp.prod(factors, axis=-1)


def majority_vote(answers, correct_answer, rewards, k: int, num_values: int):
    """Expected majority-vote score of blocks of k samples. answers: [..., n] (-1: no answer);
    returns (true score, proxy score) [...], each averaged over floor(n / k) blocks."""
    n = answers.shape[-1]
    blocks = n // k
    a = answers[..., : blocks * k].reshape(answers.shape[:-1] + (blocks, k))
    r = rewards[..., : blocks * k].reshape(a.shape)
    onehot = (a[..., None] == jnp.arange(num_values)).astype(jnp.float32)  # [..., blocks, k, m]
    counts = jnp.sum(onehot, axis=-2)  # [..., blocks, m]
    best = jnp.max(counts, axis=-1, keepdims=True)
    tied = (counts == best) & (best > 0)
    num_tied = jnp.maximum(jnp.sum(tied, -1), 1)
    idx = jnp.broadcast_to(correct_answer[..., None, None].astype(jnp.int32), tied.shape[:-1] + (1,))
    true = jnp.take_along_axis(tied, idx, -1)[..., 0] / num_tied
    # proxy: the verifier's reward of the first sample that gave each tied answer, shared like the credit
    first = jnp.argmax(onehot, axis=-2)  # [..., blocks, m]: index of the first sample with each answer
    rep_reward = jnp.take_along_axis(r, first, axis=-1)
    proxy = jnp.sum(jnp.where(tied, rep_reward, 0.0), -1) / num_tied
    return jnp.mean(true, -1), jnp.mean(proxy, -1)


def eval_set(world: ChainWorld, size: int, skill_weights, depth_weights, seed: int) -> Problems:
    """The fixed held-out evaluation items (drawn from the evaluation partition of problem space)."""
    key = jax.random.fold_in(jax.random.key(seed), 0xE7A1)
    return world.sample(key, jnp.asarray(skill_weights), jnp.asarray(depth_weights), size, heldout=True)


def make_evaluate(static: EvalStatic):
    world, config = static.world, static.policy
    vocab = Vocab(world)
    n = static.num_samples
    temps = static.temperatures

    def evaluate(params, scaffold: ScaffoldParams, verifier: VerifierParams, items: Problems, key) -> EvalResult:
        E = items.x0.shape[0]
        solution = world.solve(items)
        prompts = jnp.repeat(vocab.encode_prompt(items, scaffold.mode_token), n, axis=0)  # item-major
        sol = jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), solution)
        per_temp = {}
        tokens = jnp.zeros((), jnp.float32)
        for ti, temperature in enumerate(temps):
            k_sample, k_reward = jax.random.split(jax.random.fold_in(key, ti))
            s = policy.sample(config, params, prompts, k_sample, temperature, vocab.response_length,
                              scaffold.response_limit, vocab.eos, vocab.pad)
            graded = grade(vocab, s.response, scaffold.response_limit, sol)
            rewards = verifier_factor.reward(verifier, graded, k_reward)
            tokens = tokens + jnp.sum(s.mask)
            votes = jnp.where(graded.well_formed, graded.answer, -1)  # a malformed trace casts no vote
            per_temp[temperature] = (graded.correct.reshape(E, n), votes.reshape(E, n), rewards.reshape(E, n))
        true_scores, proxy_scores, by_depth = [], [], []
        depth_onehot = (items.depth[:, None] == jnp.arange(1, world.max_depth + 1)).astype(jnp.float32)
        depth_count = jnp.sum(depth_onehot, 0)
        for b in static.budgets:
            correct, answers, rewards = per_temp[b.temperature]
            if b.aggregation == "pass_at_k":
                true_item = pass_at_k(jnp.sum(correct, -1), n, b.k)
                proxy_item = pass_at_k(jnp.sum(rewards >= 0.5, -1), n, b.k)
            elif b.aggregation == "majority_vote":
                true_item, proxy_item = majority_vote(answers, solution.answer, rewards, b.k, world.modulus)
            else:  # validated upstream; a new aggregation must be added here
                raise NotImplementedError(b.aggregation)
            true_scores.append(jnp.mean(true_item))
            proxy_scores.append(jnp.mean(proxy_item))
            by_depth.append(jnp.where(depth_count > 0, true_item @ depth_onehot / jnp.maximum(depth_count, 1), jnp.nan))
        return EvalResult(jnp.stack(true_scores), jnp.stack(proxy_scores), jnp.stack(by_depth), tokens)

    return evaluate


def num_eval_samples(budgets, minimum: int = 16) -> int:
    """n: at least twice the largest k (so majority vote has two blocks) and at least `minimum`."""
    return int(max([minimum] + [2 * b.k for b in budgets]))
