"""The budget factor: inference-time compute at evaluation.

A budget level is k samples per prompt at a temperature, aggregated by a *budget rule* (an estimator on the
evaluation episodes):
- pass@k: solved if any of k samples is right (the unbiased estimator from n >= k samples);
- majority vote: the most frequent answer of k samples (ties share the credit);
- best of k: the sample the proxy verifier scores highest (ties share the credit) — with a noisy verifier,
  best-of-n plateaus at the share of accepted samples that are right;
- first accepted: samples are drawn one by one until the proxy verifier accepts one (at most k); the answer is
  the accepted one, or the k-th; tokens are counted only up to the stop;
with at most `max_tokens` generated tokens per sample (a sample that needs more fails). Budget levels never
retrain: every level is computed from one set of n samples of the trained policy per distinct temperature, so
the budget is static evaluation configuration shared by all runs of a study. A budget rule is one
`BudgetRule` value: its parameters and its estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from fi_sim.factors.verifier import ACCEPTANCE_THRESHOLD
from fi_sim.factors.registry import Factor, Mechanism, Param, Preset


class EstimatorInputs(NamedTuple):
    """The evaluation episodes of every item at one temperature (n per item, item-major), for an estimator."""

    correct: jax.Array  # bool [E, n]: the episode's answer is right (truth)
    answers: jax.Array  # int32 [E, n]: the episode's answer (-1: none or malformed)
    proxy: jax.Array  # float [E, n]: the verifier's reward of the episode's answer
    spent: jax.Array  # float [E, n]: tokens the episode spent, tool costs included
    solution: jax.Array  # int32 [E]: each item's exact answer
    num_values: int  # answers are in 0..num_values - 1
    options: tuple  # the rule's own static parameters, as (name, value) pairs


# estimate(inputs, k) -> (true score [E], proxy score [E], tokens per item [E] or None: k x the mean episode cost)
EstimateFn = Callable[[EstimatorInputs, int], tuple]


@dataclass(frozen=True)
class BudgetRule(Mechanism):
    """An aggregation of k samples per item into a score: `estimate(inputs, k)` (see `EstimateFn`)."""

    estimate: EstimateFn | None = None
    factor: ClassVar[str] = "budget"


FACTOR = Factor(
    "budget",
    "inference-time compute at evaluation",
    kind=BudgetRule,
    shared=(
        Param("k", "int", 1, "samples per prompt", 1, 1024, static=True),
        Param("temperature", "float", 1.0, "sampling temperature at evaluation", 0.05, 10.0, static=True),
        Param(
            "max_tokens",
            "int",
            0,
            "most generated tokens per sample, tool costs included (0: no limit)",
            0,
            1_000_000,
            static=True,
        ),
    ),
)


@dataclass(frozen=True)
class BudgetSpec:
    """A budget level as static evaluation configuration (every budget parameter is static)."""

    name: str
    aggregation: str  # the budget rule's name
    k: int
    temperature: float
    max_tokens: int = 0  # 0: no limit
    options: tuple = ()  # the rule's own static parameters, as (name, value) pairs


def spec(level) -> BudgetSpec:
    p = level.params
    mech = FACTOR.mechanisms[level.mechanism]
    return BudgetSpec(
        level.name, level.mechanism, int(p["k"]), float(p["temperature"]), int(p["max_tokens"]), mech.static_values(p)
    )


# ---------------------------------------------------------------------------------------------- estimators
def pass_at_k(num_correct, n: int, k: int):
    """Unbiased pass@k from c correct of n samples: 1 - prod_{i=0}^{k-1} (n - c - i) / (n - i)."""
    c = jnp.asarray(num_correct, jnp.float32)
    i = jnp.arange(k, dtype=jnp.float32)
    factors = jnp.clip((n - c[..., None] - i) / (n - i), 0.0, 1.0)
    return 1.0 - jnp.prod(factors, axis=-1)


def _blocks(x, k: int):
    n = x.shape[-1]
    blocks = n // k
    return x[..., : blocks * k].reshape(x.shape[:-1] + (blocks, k))


def majority_vote(answers, correct_answer, rewards, k: int, num_values: int):
    """Expected majority-vote score of blocks of k samples. answers: [..., n] (-1: no answer);
    returns (true score, proxy score) [...], each averaged over floor(n / k) blocks."""
    a, r = _blocks(answers, k), _blocks(rewards, k)
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


def best_of_k(correct, rewards, k: int):
    """Blocks of k: the sample with the highest proxy reward (ties share the credit). Returns (true, proxy)."""
    c, r = _blocks(correct.astype(jnp.float32), k), _blocks(rewards, k)
    top = jnp.max(r, -1, keepdims=True)
    tied = (r == top).astype(jnp.float32)
    true = jnp.sum(tied * c, -1) / jnp.sum(tied, -1)
    return jnp.mean(true, -1), jnp.mean(top[..., 0], -1)


def first_accepted(correct, rewards, tokens, k: int):
    """Blocks of k taken in order until the proxy verifier accepts one. Returns (true, proxy, tokens spent)."""
    c, r, t = _blocks(correct.astype(jnp.float32), k), _blocks(rewards, k), _blocks(tokens, k)
    accepted = (r >= ACCEPTANCE_THRESHOLD).at[..., -1].set(True)
    stop = jnp.argmax(accepted, -1)[..., None]
    spent = jnp.sum(jnp.where(jnp.arange(k) <= stop, t, 0.0), -1)

    def pick(x):
        return jnp.take_along_axis(x, stop, -1)[..., 0]

    return jnp.mean(pick(c), -1), jnp.mean(pick(r), -1), jnp.mean(spent, -1)


# ---------------------------------------------------------------------------------------------- rules
def _pass_at_k(x: EstimatorInputs, k: int):
    n = x.correct.shape[-1]
    return (
        pass_at_k(jnp.sum(x.correct, -1), n, k),
        pass_at_k(jnp.sum(x.proxy >= ACCEPTANCE_THRESHOLD, -1), n, k),
        None,
    )


FACTOR.add_mechanism(
    BudgetRule("pass_at_k", "solved if any of k samples is right (unbiased estimator)", estimate=_pass_at_k)
)
FACTOR.add_mechanism(
    BudgetRule(
        "majority_vote",
        "the most frequent answer of k samples (ties share credit)",
        estimate=lambda x, k: (*majority_vote(x.answers, x.solution, x.proxy, k, x.num_values), None),
    )
)
FACTOR.add_mechanism(
    BudgetRule(
        "best_of_k",
        "the sample the proxy verifier scores highest (ties share credit)",
        estimate=lambda x, k: (*best_of_k(x.correct, x.proxy, k), None),
    )
)
FACTOR.add_mechanism(
    BudgetRule(
        "first_accepted",
        "draw up to k samples, stop at the first the proxy verifier accepts",
        estimate=lambda x, k: first_accepted(x.correct, x.proxy, x.spent, k),
    )
)
FACTOR.add_preset(Preset("pass@1", "pass_at_k", "one sample at temperature 1", {"k": 1}))
FACTOR.add_preset(Preset("pass@k", "pass_at_k", "pass@8 at temperature 1", {"k": 8}))
FACTOR.add_preset(Preset("majority@k", "majority_vote", "majority vote of 8 samples at temperature 1", {"k": 8}))
FACTOR.add_preset(Preset("best_of_k", "best_of_k", "best of 8 by the proxy verifier", {"k": 8}))
FACTOR.add_preset(Preset("first_accepted", "first_accepted", "up to 8 samples until the verifier accepts", {"k": 8}))
FACTOR.add_preset(Preset("greedy_ish", "pass_at_k", "one sample at temperature 0.1", {"k": 1, "temperature": 0.1}))
