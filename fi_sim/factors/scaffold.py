"""The scaffold factor: the protocol the policy reasons in.

- direct: the prompt ends in DIRECT and the first generated token is the answer (a one-token protocol).
- scratchpad: the prompt ends in SCRATCH; the policy writes the intermediate values, then the answer, then EOS.
- tool: the prompt ends in TOOLS; at any step the policy may emit TOOL instead of a value, and the environment
  writes the exact value of the next step in its place. Each call costs `tool_cost` budget tokens.
- retry: up to `max_attempts` independent attempts in the JUDGED protocol (a scratchpad that ends with the
  policy's judgement, EOS for "done" or RETRY for "probably wrong"). The next attempt is started by a failure
  signal from the verifier (`stop_rule = "oracle"`) or by the policy's own RETRY judgement (`"self"`); the
  answer is that of the last attempt made.

All protocols have the same array shapes except the number of attempts, so scaffolds are a per-run choice
inside one compiled group; `max_attempts` is static (it multiplies the sampling work).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fi_sim.factors.registry import Factor, Mechanism, Param, Preset

FACTOR = Factor("scaffold", "the protocol the policy reasons in")
FACTOR.add_mechanism(Mechanism("direct", "answer in one token, no intermediate steps", ()))
FACTOR.add_mechanism(Mechanism("scratchpad", "write every intermediate value, then the answer, then EOS", ()))
FACTOR.add_mechanism(Mechanism(
    "tool", "a scratchpad in which TOOL makes the environment write the exact next value",
    (Param("tool_cost", "int", 4, "budget tokens charged per tool call (on top of the TOOL token)", 0, 10_000),)))
FACTOR.add_mechanism(Mechanism(
    "retry", "several attempts, each ending in the policy's judgement; stop on the verifier's or own signal",
    (Param("max_attempts", "int", 3, "attempts at most (a shape: its own compiled group)", 1, 16, static=True),
     Param("stop_rule", "choice", "oracle", "who starts the next attempt: the verifier's failure signal, or the "
           "policy's own RETRY judgement", choices=("oracle", "self")))))
MECHANISMS = tuple(FACTOR.mechanisms)
FACTOR.add_preset(Preset("direct", "direct", "direct answer"))
FACTOR.add_preset(Preset("scratchpad", "scratchpad", "intermediate values written out"))
FACTOR.add_preset(Preset("tool", "tool", "scratchpad with an exact-step tool at 4 tokens per call"))
FACTOR.add_preset(Preset("retry_oracle", "retry", "up to 3 attempts, retried on the verifier's failure signal",
                         {"stop_rule": "oracle"}))
FACTOR.add_preset(Preset("retry_self", "retry", "up to 3 attempts, retried on the policy's own RETRY judgement",
                         {"stop_rule": "self"}))


class ScaffoldParams(NamedTuple):
    kind: np.ndarray
    mode_token: np.ndarray  # the prompt's last token
    response_limit: np.ndarray  # tokens the protocol lets the policy generate per attempt
    tools_allowed: np.ndarray  # bool
    tool_cost: np.ndarray  # budget tokens per tool call
    self_judged: np.ndarray  # bool: retries follow the policy's own judgement (else the verifier's)


_MODE = {"direct": "DIRECT", "scratchpad": "SCRATCH", "tool": "TOOLS", "retry": "JUDGED"}


def run_params(level, vocab) -> ScaffoldParams:
    mech = level.mechanism
    return ScaffoldParams(
        kind=np.int32(MECHANISMS.index(mech)),
        mode_token=np.int32(vocab.special(_MODE[mech])),
        response_limit=np.int32(1 if mech == "direct" else vocab.response_length),
        tools_allowed=np.bool_(mech == "tool"),
        tool_cost=np.float32(level.params.get("tool_cost", 0)),
        self_judged=np.bool_(level.params.get("stop_rule") == "self"),
    )


def attempts(level) -> int:
    """Attempts per episode: a static number (1 for every protocol but retry)."""
    return int(level.params.get("max_attempts", 1))
