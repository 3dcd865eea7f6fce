"""The scaffold factor: the protocol the policy reasons in.

`direct`: the prompt ends in DIRECT and the first generated token is the answer (a one-token protocol).
`scratchpad`: the prompt ends in SCRATCH; the policy writes the intermediate values, then the answer, then EOS.
Both have the same array shapes, so the scaffold is a per-run choice inside one compiled group.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fi_sim.factors.registry import Factor, Mechanism, Preset

FACTOR = Factor("scaffold", "the protocol the policy reasons in")
FACTOR.add_mechanism(Mechanism("direct", "answer in one token, no intermediate steps", ()))
FACTOR.add_mechanism(Mechanism("scratchpad", "write every intermediate value, then the answer, then EOS", ()))
MECHANISMS = tuple(FACTOR.mechanisms)
FACTOR.add_preset(Preset("direct", "direct", "direct answer"))
FACTOR.add_preset(Preset("scratchpad", "scratchpad", "intermediate values written out"))


class ScaffoldParams(NamedTuple):
    kind: np.ndarray
    mode_token: np.ndarray  # the prompt's last token
    response_limit: np.ndarray  # tokens the protocol lets the policy generate


def run_params(level, vocab) -> ScaffoldParams:
    if level.mechanism == "direct":
        return ScaffoldParams(np.int32(0), np.int32(vocab.special("DIRECT")), np.int32(1))
    return ScaffoldParams(np.int32(1), np.int32(vocab.special("SCRATCH")), np.int32(vocab.response_length))
