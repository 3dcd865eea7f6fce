"""What is true about a trace, independent of any verifier: the ground truth that is always logged.

A verifier (a factor level) sees a `Graded` trace and emits a proxy reward; the study logs both, so that every
metric can name whether it is true or proxy.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from fi_sim.world.chain import Solution
from fi_sim.world.tokens import Vocab


class Graded(NamedTuple):
    correct: jax.Array  # bool [...]: the answer equals the exact solver's answer
    well_formed: jax.Array  # bool [...]: the trace follows its scaffold's format
    answer: jax.Array  # int32 [...]: the value answered (-1: none)
    length: jax.Array  # int32 [...]: tokens generated


def grade(vocab: Vocab, response: jax.Array, limit, solution: Solution) -> Graded:
    parsed = vocab.parse_response(response, limit)
    correct = parsed.well_formed & (parsed.answer == solution.answer)
    return Graded(correct=correct, well_formed=parsed.well_formed, answer=parsed.answer, length=parsed.length)
