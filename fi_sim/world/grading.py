"""What is true about a trace, independent of any verifier: the ground truth that is always logged.

A verifier (a factor level) sees a `Graded` trace and emits a proxy reward; the study logs both, so that every
metric can name whether it is true or proxy.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fi_sim.world.tasks import Solution
from fi_sim.world.tokens import Vocab


class Graded(NamedTuple):
    correct: jax.Array  # bool [...]: well formed and the answer equals the exact solver's answer
    well_formed: jax.Array  # bool [...]: the trace follows its scaffold's format
    answer: jax.Array  # int32 [...]: the value answered (-1: none)
    length: jax.Array  # int32 [...]: tokens generated
    step_correct: jax.Array  # bool [..., R]: the value written at response position i is the exact v_{i+1}
    depth: jax.Array  # int32 [...]: steps the protocol writes (the problem's depth; 1 for a direct answer)
    retry: jax.Array  # bool [...]: the policy ended the trace with its RETRY judgement
    tool_calls: jax.Array  # int32 [...]: TOOL actions in the trace


def grade(vocab: Vocab, response: jax.Array, limit, solution: Solution, depth, actions=None) -> Graded:
    """Grade responses (context stream) against the exact solution. `actions` is the policy's action stream
    (differs from `response` where the environment wrote a tool result); it defaults to `response`."""
    parsed = vocab.parse_response(response, limit)
    correct = parsed.well_formed & (parsed.answer == solution.answer)
    R = response.shape[-1]
    D = solution.steps.shape[-1]
    truth = jnp.concatenate([solution.steps, jnp.full(solution.steps.shape[:-1] + (max(R - D, 0),), -1, jnp.int32)],
                            -1)[..., :R]
    step_correct = (parsed.values >= 0) & (parsed.values == truth)
    # a one-token protocol (a direct answer) writes a single step: the answer
    one_token = jnp.asarray(limit) == 1
    first = jnp.arange(R) == 0
    step_correct = jnp.where(one_token[..., None], first & correct[..., None], step_correct)
    actions = response if actions is None else actions
    counted = jnp.arange(R) < parsed.length[..., None]
    tool_calls = jnp.sum((actions == vocab.special("TOOL")) & counted, -1)
    return Graded(correct=correct, well_formed=parsed.well_formed, answer=parsed.answer, length=parsed.length,
                  step_correct=step_correct, depth=jnp.where(one_token, 1, depth).astype(jnp.int32), retry=parsed.retry,
                  tool_calls=tool_calls.astype(jnp.int32))
