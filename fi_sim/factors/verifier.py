"""The verifier factor: the reward channel that scores a trace.

Each mechanism maps a graded trace (whose true correctness is known) to a proxy reward in [0, 1]. Mechanisms
of the same shape are chosen per run by an index under `lax.switch`, so different verifiers train in one
compiled batch. True correctness is always logged beside the proxy reward; `channel_counts` measures the
channel's realised false-positive and false-negative rates from what was actually rewarded.
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
FACTOR.add_mechanism(
    Mechanism(
        "noisy",
        "the exact check passed through a binary channel with known error rates, independently per trace",
        (
            Param("false_positive_rate", "float", 0.1, "rho0: P(reward 1 | answer wrong)", 0.0, 1.0),
            Param("false_negative_rate", "float", 0.1, "rho1: P(reward 0 | answer right)", 0.0, 1.0),
        ),
    )
)
MECHANISMS = tuple(FACTOR.mechanisms)

FACTOR.add_preset(Preset("exact", "exact", "the exact answer check"))
FACTOR.add_preset(Preset("noisy", "noisy", "a noisy channel, rho0 = rho1 = 0.2",
                         {"false_positive_rate": 0.2, "false_negative_rate": 0.2}))


class VerifierParams(NamedTuple):
    kind: np.ndarray  # int32: index into MECHANISMS
    false_positive_rate: np.ndarray
    false_negative_rate: np.ndarray


def run_params(level, world=None) -> VerifierParams:
    p = level.params
    return VerifierParams(
        kind=np.int32(MECHANISMS.index(level.mechanism)),
        false_positive_rate=np.float32(p.get("false_positive_rate", 0.0)),
        false_negative_rate=np.float32(p.get("false_negative_rate", 0.0)),
    )


def _exact(params: VerifierParams, graded: Graded, key):
    return graded.correct.astype(jnp.float32)


def _noisy(params: VerifierParams, graded: Graded, key):
    u = jax.random.uniform(key, graded.correct.shape)
    flip = jnp.where(graded.correct, u < params.false_negative_rate, u < params.false_positive_rate)
    return jnp.logical_xor(graded.correct, flip).astype(jnp.float32)


_REWARDS = {"exact": _exact, "noisy": _noisy}


def reward(params: VerifierParams, graded: Graded, key) -> jax.Array:
    """Proxy reward in [0, 1] for each graded trace; the mechanism is picked by `params.kind` (traced)."""
    branches = [(lambda p, g, k, f=_REWARDS[name]: f(p, g, k)) for name in MECHANISMS]
    return jax.lax.switch(params.kind, branches, params, graded, key)


class ChannelCounts(NamedTuple):
    wrong: jax.Array  # traces whose answer is wrong
    false_positive: jax.Array  # ... that were rewarded anyway (reward mass, for partial rewards)
    right: jax.Array
    false_negative: jax.Array  # right traces' missing reward mass


def channel_counts(graded: Graded, rewards: jax.Array) -> ChannelCounts:
    wrong = ~graded.correct
    return ChannelCounts(
        wrong=jnp.sum(wrong).astype(jnp.float32),
        false_positive=jnp.sum(jnp.where(wrong, rewards, 0.0)),
        right=jnp.sum(graded.correct).astype(jnp.float32),
        false_negative=jnp.sum(jnp.where(graded.correct, 1.0 - rewards, 0.0)),
    )
