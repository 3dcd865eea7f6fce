"""The verifier factor: the reward channel that scores a trace.

Every mechanism maps a graded trace (whose true correctness is known) to rewards in [0, 1] per generated
token: an outcome verifier puts its reward on the trace's last token, a process verifier rewards each correct
step where it is written. A verifier is one `Verifier` value (its parameters, its reward function) registered
in `FACTOR`; mechanisms are chosen per run by an index under `lax.switch` over the mechanisms a compiled group
uses, so different verifiers train in one compiled batch. True correctness is always logged beside the proxy
reward, and `channel_counts` measures the channel's realised false-positive and false-negative rates.

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

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.factors.registry import PerRun, Factor, Mechanism, Param, Preset, dispatch
from fi_sim.world.grading import Graded

ACCEPTANCE_THRESHOLD = 0.5  # a trace whose total reward reaches this counts as accepted by the verifier

# rewards(params, graded, key, world) -> float rewards [..., R] per generated token, each trace's sum in [0, 1]
RewardFn = Callable[[Mapping[str, jax.Array], Graded, jax.Array, Any], jax.Array]


@dataclass(frozen=True)
class Verifier(Mechanism):
    """A reward channel. `rewards(params, graded, key, world)` gets the mechanism's own per-run parameters (a
    dict of arrays, see `Mechanism.lower`), the graded traces (fields [...]), a PRNG key for the channel's
    noise and the task world; it returns rewards [..., R] per generated token whose sum per trace is in [0, 1]."""

    rewards: RewardFn | None = None
    factor: ClassVar[str] = "verifier"


FACTOR = Factor(
    "verifier", "the reward channel that scores a trace during post-training (and proxy evaluation)", kind=Verifier
)


class VerifierParams(NamedTuple):
    """A run's verifier: its registry index and every registered verifier's own parameters (the others at their
    defaults: under `vmap` every run carries the same structure)."""

    kind: PerRun  # int32: index into FACTOR.mechanisms
    params: dict  # mechanism name -> its own per-run pytree


def run_params(level, world=None) -> VerifierParams:
    return VerifierParams(
        kind=np.int32(FACTOR.index(level.mechanism)),
        params={
            name: mech.lower(level.params if name == level.mechanism else mech.default_values(), world)
            for name, mech in FACTOR.mechanisms.items()
        },
    )


def token_rewards(params: VerifierParams, graded: Graded, key: jax.Array, world, mechanisms=None) -> jax.Array:
    """Rewards [..., R] per generated token from the run's verifier (picked by `params.kind`, traced), among
    `mechanisms` (the ones a compiled program contains; None: every registered verifier)."""
    return dispatch(
        FACTOR, params.kind, mechanisms, lambda mech: mech.rewards(params.params[mech.name], graded, key, world)
    )


def reward(params: VerifierParams, graded: Graded, key: jax.Array, world, mechanisms=None) -> jax.Array:
    """The trace's total proxy reward in [0, 1]."""
    return jnp.sum(token_rewards(params, graded, key, world, mechanisms), -1)


# ---------------------------------------------------------------------------------------------- helpers
def outcome(graded: Graded, score: jax.Array) -> jax.Array:
    """An outcome score [...] on the trace's last generated token: rewards [..., R]."""
    R = graded.step_correct.shape[-1]
    last = jnp.clip(graded.length - 1, 0, R - 1)
    return (jnp.arange(R) == last[..., None]) * score[..., None]


def uniform(key: jax.Array, graded: Graded) -> jax.Array:
    """One uniform draw per trace: the channel noise of the built-in verifiers."""
    return jax.random.uniform(key, graded.correct.shape)


def step_share(graded: Graded) -> jax.Array:
    steps = jnp.sum(graded.step_correct, -1)
    return jnp.where(graded.well_formed, steps / jnp.maximum(graded.depth, 1), 0.0).clip(0.0, 1.0)


def lucky_rank(world) -> np.ndarray:
    """A fixed order of the values (from the world seed); the hackable verifier's lucky set is a prefix of it."""
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, 0x5EED, world.modulus]))
    rank = np.empty(world.modulus, np.int32)
    rank[rng.permutation(world.modulus)] = np.arange(world.modulus)
    return rank


def shows_pattern(pattern_rate, graded: Graded, world) -> jax.Array:
    """The hackable verifier's pattern: a well-formed trace whose answer is in the lucky set."""
    rank = jnp.asarray(lucky_rank(world))[jnp.clip(graded.answer, 0, world.modulus - 1)]
    size = jnp.round(pattern_rate * world.modulus)
    return graded.well_formed & (graded.answer >= 0) & (rank < size)


# ---------------------------------------------------------------------------------------------- mechanisms
def _exact(p, graded, key, world):
    return outcome(graded, graded.correct.astype(jnp.float32))


def _noisy(p, graded, key, world):
    u = uniform(key, graded)
    flip = jnp.where(graded.correct, u < p["false_negative_rate"], u < p["false_positive_rate"])
    return outcome(graded, jnp.logical_xor(graded.correct, flip).astype(jnp.float32))


def _hackable(p, graded, key, world):
    u = uniform(key, graded)
    hacked = ~graded.correct & shows_pattern(p["pattern_rate"], graded, world) & (u < p["hack_acceptance"])
    return outcome(graded, (graded.correct | hacked).astype(jnp.float32))


def _partial(p, graded, key, world):
    return outcome(graded, step_share(graded))


def _process(p, graded, key, world):
    per_step = graded.step_correct / jnp.maximum(graded.depth, 1)[..., None]
    return jnp.where(graded.well_formed[..., None], per_step, 0.0)


def _format(p, graded, key, world):
    return outcome(graded, graded.well_formed.astype(jnp.float32))


def _random(p, graded, key, world):
    return outcome(graded, (uniform(key, graded) < p["reward_probability"]).astype(jnp.float32))


FACTOR.add_mechanism(Verifier("exact", "reward 1 exactly when the final answer is right", rewards=_exact))
FACTOR.add_mechanism(
    Verifier(
        "noisy",
        "the exact check through a binary channel with known error rates, independently per trace",
        (
            Param("false_positive_rate", "float", 0.1, "rho0: P(reward 1 | answer wrong)", 0.0, 1.0),
            Param("false_negative_rate", "float", 0.1, "rho1: P(reward 0 | answer right)", 0.0, 1.0),
        ),
        rewards=_noisy,
    )
)
FACTOR.add_mechanism(
    Verifier(
        "hackable",
        "accepts a wrong answer whenever it shows a learnable pattern (answer in a fixed lucky set)",
        (
            Param(
                "pattern_rate", "float", 0.2, "share of the values in the lucky set (the pattern's base rate)", 0.0, 1.0
            ),
            Param("hack_acceptance", "float", 1.0, "P(reward 1 | answer wrong, pattern shown)", 0.0, 1.0),
        ),
        rewards=_hackable,
    )
)
FACTOR.add_mechanism(
    Verifier("partial", "the share of correct steps (partial credit), on the last token", rewards=_partial)
)
FACTOR.add_mechanism(Verifier("process", "1/d for each correct step, on the token that writes it", rewards=_process))
FACTOR.add_mechanism(Verifier("format", "1 for every well-formed trace, whatever the answer", rewards=_format))
FACTOR.add_mechanism(
    Verifier(
        "random",
        "Bernoulli(p) independent of the trace",
        (Param("reward_probability", "float", 0.5, "p: P(reward 1)", 0.0, 1.0),),
        rewards=_random,
    )
)

FACTOR.add_preset(Preset("exact", "exact", "the exact answer check"))
FACTOR.add_preset(
    Preset(
        "noisy", "noisy", "a noisy channel, rho0 = rho1 = 0.2", {"false_positive_rate": 0.2, "false_negative_rate": 0.2}
    )
)
FACTOR.add_preset(Preset("hackable", "hackable", "false positives whenever the answer is in a lucky 20% of values"))
FACTOR.add_preset(Preset("partial", "partial", "partial credit: share of correct steps"))
FACTOR.add_preset(Preset("process", "process", "a process verifier: a reward for each correct step"))
FACTOR.add_preset(Preset("format", "format", "rewards well-formed traces whatever the answer"))
FACTOR.add_preset(Preset("random", "random", "a coin flip with p = 0.5"))


# ---------------------------------------------------------------------------------------------- the channel
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
