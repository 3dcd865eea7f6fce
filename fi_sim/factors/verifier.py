"""The verifier factor: the reward channel that scores a trace.

Every mechanism maps a graded trace (whose true correctness is known) to rewards in [0, 1] per generated
token: an outcome verifier puts its reward on the trace's last token, a process verifier rewards each correct
step where it is written. Mechanisms of the same shape are chosen per run by an index under `lax.switch`, so
different verifiers train in one compiled batch. True correctness is always logged beside the proxy reward,
and `channel_counts` measures the channel's realised false-positive and false-negative rates.

- exact: 1 exactly when the final answer is right.
- noisy: the exact check through a binary channel: a wrong answer is accepted with probability rho0 (false
  positive rate), a right one rejected with probability rho1 (false negative rate), independently per trace.
- hackable: correlated false positives. A wrong answer is accepted whenever the trace shows a pattern — its
  answer lies in a fixed "lucky" set of values (drawn from the world seed) that covers `pattern_rate` of the
  values — so a policy can learn to produce the pattern; its false positives occur only on such traces.
- partial: the share of the trace's steps that are right (a direct answer is one step).
- process: a reward of 1/d for each correct step, on the token where it is written (scratchpad credit
  assignment; a direct answer is one step).
- format: 1 for any well-formed trace, whatever its answer.
- random: Bernoulli(p), independent of the trace.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.factors.registry import Factor, Mechanism, Param, Preset
from fi_sim.world.grading import Graded

FACTOR = Factor("verifier", "the reward channel that scores a trace during post-training (and proxy evaluation)")

FACTOR.add_mechanism(Mechanism("exact", "reward 1 exactly when the final answer is right", ()))
FACTOR.add_mechanism(Mechanism(
    "noisy", "the exact check through a binary channel with known error rates, independently per trace",
    (Param("false_positive_rate", "float", 0.1, "rho0: P(reward 1 | answer wrong)", 0.0, 1.0),
     Param("false_negative_rate", "float", 0.1, "rho1: P(reward 0 | answer right)", 0.0, 1.0))))
FACTOR.add_mechanism(Mechanism(
    "hackable", "accepts a wrong answer whenever it shows a learnable pattern (answer in a fixed lucky set)",
    (Param("pattern_rate", "float", 0.2, "share of the values in the lucky set (the pattern's base rate)", 0.0, 1.0),
     Param("hack_acceptance", "float", 1.0, "P(reward 1 | answer wrong, pattern shown)", 0.0, 1.0))))
FACTOR.add_mechanism(Mechanism("partial", "the share of correct steps (partial credit), on the last token", ()))
FACTOR.add_mechanism(Mechanism("process", "1/d for each correct step, on the token that writes it", ()))
FACTOR.add_mechanism(Mechanism("format", "1 for every well-formed trace, whatever the answer", ()))
FACTOR.add_mechanism(Mechanism(
    "random", "Bernoulli(p) independent of the trace",
    (Param("reward_probability", "float", 0.5, "p: P(reward 1)", 0.0, 1.0),)))
MECHANISMS = tuple(FACTOR.mechanisms)

FACTOR.add_preset(Preset("exact", "exact", "the exact answer check"))
FACTOR.add_preset(Preset("noisy", "noisy", "a noisy channel, rho0 = rho1 = 0.2",
                         {"false_positive_rate": 0.2, "false_negative_rate": 0.2}))
FACTOR.add_preset(Preset("hackable", "hackable", "false positives whenever the answer is in a lucky 20% of values"))
FACTOR.add_preset(Preset("partial", "partial", "partial credit: share of correct steps"))
FACTOR.add_preset(Preset("process", "process", "a process verifier: a reward for each correct step"))
FACTOR.add_preset(Preset("format", "format", "rewards well-formed traces whatever the answer"))
FACTOR.add_preset(Preset("random", "random", "a coin flip with p = 0.5"))


class VerifierParams(NamedTuple):
    kind: np.ndarray  # int32: index into MECHANISMS
    false_positive_rate: np.ndarray
    false_negative_rate: np.ndarray
    pattern_rate: np.ndarray
    hack_acceptance: np.ndarray
    reward_probability: np.ndarray


def run_params(level, world=None) -> VerifierParams:
    p = level.params
    return VerifierParams(
        kind=np.int32(MECHANISMS.index(level.mechanism)),
        false_positive_rate=np.float32(p.get("false_positive_rate", 0.0)),
        false_negative_rate=np.float32(p.get("false_negative_rate", 0.0)),
        pattern_rate=np.float32(p.get("pattern_rate", 0.0)),
        hack_acceptance=np.float32(p.get("hack_acceptance", 0.0)),
        reward_probability=np.float32(p.get("reward_probability", 0.0)),
    )


def lucky_rank(world) -> np.ndarray:
    """A fixed order of the values (from the world seed); the hackable verifier's lucky set is a prefix of it."""
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, 0x5EED, world.modulus]))
    rank = np.empty(world.modulus, np.int32)
    rank[rng.permutation(world.modulus)] = np.arange(world.modulus)
    return rank


def shows_pattern(params: VerifierParams, graded: Graded, world) -> jax.Array:
    """The hackable verifier's pattern: a well-formed trace whose answer is in the lucky set."""
    rank = jnp.asarray(lucky_rank(world))[jnp.clip(graded.answer, 0, world.modulus - 1)]
    size = jnp.round(params.pattern_rate * world.modulus)
    return graded.well_formed & (graded.answer >= 0) & (rank < size)


def _outcome(graded, score):
    """An outcome score on the trace's last generated token."""
    R = graded.step_correct.shape[-1]
    last = jnp.clip(graded.length - 1, 0, R - 1)
    return (jnp.arange(R) == last[..., None]) * score[..., None]


def _step_share(graded):
    steps = jnp.sum(graded.step_correct, -1)
    return jnp.where(graded.well_formed, steps / jnp.maximum(graded.depth, 1), 0.0).clip(0.0, 1.0)


def token_rewards(params: VerifierParams, graded: Graded, key, world) -> jax.Array:
    """Rewards [..., R] per generated token; the mechanism is picked by `params.kind` (traced)."""
    u = jax.random.uniform(key, graded.correct.shape)
    correct = graded.correct.astype(jnp.float32)

    def exact():
        return _outcome(graded, correct)

    def noisy():
        flip = jnp.where(graded.correct, u < params.false_negative_rate, u < params.false_positive_rate)
        return _outcome(graded, jnp.logical_xor(graded.correct, flip).astype(jnp.float32))

    def hackable():
        hacked = ~graded.correct & shows_pattern(params, graded, world) & (u < params.hack_acceptance)
        return _outcome(graded, (graded.correct | hacked).astype(jnp.float32))

    def partial():
        return _outcome(graded, _step_share(graded))

    def process():
        per_step = graded.step_correct / jnp.maximum(graded.depth, 1)[..., None]
        return jnp.where(graded.well_formed[..., None], per_step, 0.0)

    def format_only():
        return _outcome(graded, graded.well_formed.astype(jnp.float32))

    def random():
        return _outcome(graded, (u < params.reward_probability).astype(jnp.float32))

    table = {"exact": exact, "noisy": noisy, "hackable": hackable, "partial": partial, "process": process,
             "format": format_only, "random": random}
    branches = [table[name] for name in MECHANISMS]
    return jax.lax.switch(params.kind, branches)


def reward(params: VerifierParams, graded: Graded, key, world) -> jax.Array:
    """The trace's total proxy reward in [0, 1]."""
    return jnp.sum(token_rewards(params, graded, key, world), -1)


class ChannelCounts(NamedTuple):
    wrong: jax.Array  # traces whose answer is wrong
    false_positive: jax.Array  # ... that were rewarded anyway (reward mass, for partial rewards)
    right: jax.Array
    false_negative: jax.Array  # right traces' missing reward mass


def channel_counts(graded: Graded, rewards: jax.Array, weight=None) -> ChannelCounts:
    """Counts for the measured false-positive and false-negative rates (optionally over weighted traces)."""
    w = jnp.ones_like(rewards) if weight is None else weight.astype(jnp.float32)
    wrong = (~graded.correct) * w
    right = graded.correct * w
    return ChannelCounts(
        wrong=jnp.sum(wrong),
        false_positive=jnp.sum(wrong * rewards),
        right=jnp.sum(right),
        false_negative=jnp.sum(right * (1.0 - rewards)),
    )
