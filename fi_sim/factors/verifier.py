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
- reward_model (`fi_sim.factors.reward_model`): a learned verifier, a small scoring network trained at the start
  of a run on the base's own labelled traces; it reads the trace's tokens (`reads_trace`) and is trained by its
  `prepare` hook.

A verifier that reads the tokens of a trace declares `reads_trace=True` and gets a `Trace` as a fifth argument; a
verifier with a model of its own declares `prepare(params, inputs) -> dict`, called once at the start of a run
(and of a base's evaluation) with the base and a key shared by every run of that base and seed, whose entries
join its per-run parameters for the rest of the run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.factors.registry import PerRun, Factor, Mechanism, Param, Preset, dispatch
from fi_sim.world.grading import Graded

ACCEPTANCE_THRESHOLD = 0.5  # a trace whose total reward reaches this counts as accepted by the verifier

# rewards(params, graded, key, world[, trace]) -> float rewards [..., R] per generated token, each trace's sum in
# [0, 1]; the fifth argument (a `Trace`) only for a mechanism that declares `reads_trace`
RewardFn = Callable[..., jax.Array]


class Trace(NamedTuple):
    """The tokens of traces being scored (for a verifier that reads them: `Verifier.reads_trace`)."""

    prompts: jax.Array  # int32 [..., P]: the prompt, its scaffold's mode token last
    response: jax.Array  # int32 [..., R]: the context stream (tool results where the policy called TOOL)


class PrepareInputs(NamedTuple):
    """What a verifier's `prepare` hook gets: the world, the base (its shape and parameters), the run's scaffold,
    a key shared by every run of the same base and seed, and the mechanism's static parameters."""

    world: Any  # TaskWorld
    policy: Any  # PolicyConfig of the base
    base_params: Any
    scaffold: Any  # Protocol
    key: jax.Array
    options: Mapping[str, Any]  # the mechanism's static parameters (name -> value)


# prepare(params, inputs) -> entries added to the mechanism's per-run parameters for the rest of the run
PrepareFn = Callable[[Mapping[str, jax.Array], PrepareInputs], Mapping[str, Any]]


@dataclass(frozen=True)
class Verifier(Mechanism):
    """A reward channel. `rewards(params, graded, key, world)` gets the mechanism's own per-run parameters (a
    dict of arrays, see `Mechanism.lower`), the graded traces (fields [...]), a PRNG key for the channel's
    noise and the task world; it returns rewards [..., R] per generated token whose sum per trace is in [0, 1].
    With `reads_trace` it also gets the traces' tokens (a `Trace`); with `prepare` it trains a model of its own at
    the start of a run (see the module docstring)."""

    rewards: RewardFn | None = None
    reads_trace: bool = False
    prepare: PrepareFn | None = None
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


def token_rewards(
    params: VerifierParams, graded: Graded, key: jax.Array, world, mechanisms=None, trace: Trace | None = None
) -> jax.Array:
    """Rewards [..., R] per generated token from the run's verifier (picked by `params.kind`, traced), among
    `mechanisms` (the ones a compiled program contains; None: every registered verifier). `trace`: the traces'
    tokens, for the verifiers that read them."""

    def call(mech):
        if not mech.reads_trace:
            return mech.rewards(params.params[mech.name], graded, key, world)
        if trace is None:
            raise TypeError(f"the verifier {mech.name!r} reads the trace's tokens: pass trace=Trace(prompts, response)")
        return mech.rewards(params.params[mech.name], graded, key, world, trace)

    if mechanisms is None:  # every registered verifier that is ready: a model of its own only once prepared
        mechanisms = tuple(n for n in FACTOR.mechanisms if prepared(n, params.params[n]))
    return dispatch(FACTOR, params.kind, mechanisms, call)


def prepared(name: str, own: Mapping[str, Any]) -> bool:
    """Whether a mechanism's per-run parameters are ready to score: it has no `prepare` hook, or they carry what
    it added (entries beyond its declared parameters)."""
    mech = FACTOR.mechanisms[name]
    return getattr(mech, "prepare", None) is None or bool(set(own) - {p.name for p in mech.params})


def reward(
    params: VerifierParams, graded: Graded, key: jax.Array, world, mechanisms=None, trace: Trace | None = None
) -> jax.Array:
    """The trace's total proxy reward in [0, 1]."""
    return jnp.sum(token_rewards(params, graded, key, world, mechanisms, trace), -1)


STAGE_PREPARE = 5  # folded into the shared (base, seed) key: the verifiers' own models


def prepare(params: VerifierParams, inputs: PrepareInputs, mechanisms=None, options=()) -> VerifierParams:
    """The run's verifier parameters with every `prepare` hook among `mechanisms` applied (each sees its own
    static parameters: `options`, (name, value) pairs of the level's, else its defaults). The same for every run
    of a base and seed: `inputs.key` is shared by them."""
    out = dict(params.params)
    for name in FACTOR.used(mechanisms):
        mech = FACTOR.mechanisms[name]
        hook = getattr(mech, "prepare", None)
        if hook is None:
            continue
        given = dict(options)
        own = {p.name: given.get(p.name, p.default) for p in mech.own_params if p.static}
        key = jax.random.fold_in(jax.random.fold_in(inputs.key, STAGE_PREPARE), zlib.crc32(name.encode()) >> 1)
        out[name] = {**out[name], **hook(out[name], inputs._replace(key=key, options=own))}
    return params._replace(params=out)


def static_options(level) -> tuple:
    """A verifier level's static parameters as (name, value) pairs (its model's shapes: part of a group's key)."""
    return tuple(sorted(level.static().items()))


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
