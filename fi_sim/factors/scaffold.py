"""The scaffold factor: the protocol the policy reasons in.

- direct: the prompt ends in DIRECT and the first generated token is the answer (a one-token protocol).
- scratchpad: the prompt ends in SCRATCH; the policy writes the intermediate values, then the answer, then EOS.
- tool: the prompt ends in TOOLS; at any step the policy may emit TOOL instead of a value, and the environment
  writes the exact value of the next step in its place. Each call costs `tool_cost` budget tokens.
- retry: up to `max_attempts` independent attempts in the JUDGED protocol (a scratchpad that ends with the
  policy's judgement, EOS for "done" or RETRY for "probably wrong"). The next attempt is started by a failure
  signal from the verifier (`stop_rule = "oracle"`) or by the policy's own RETRY judgement (`"self"`); the
  answer is that of the last attempt made.

A scaffold is one `Scaffold` value whose `protocol` hook turns its parameters into a `Protocol`: the mode
token, the length limit, whether tools are allowed and what a call costs, and who stops an episode. Every
protocol has the same array shapes except the number of attempts, so scaffolds are per-run values inside one
compiled group (no switch is needed: the protocol is data); `attempts` is static (it multiplies the sampling
work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

import numpy as np

from fi_sim.factors.registry import PerRun, Factor, Mechanism, Param, Preset


class Protocol(NamedTuple):
    """A run's scaffold as per-run arrays: everything rollout and stopping read."""

    mode_token: PerRun  # int32: the prompt's last token (one of the vocabulary's mode specials)
    response_limit: PerRun  # int32: tokens the protocol lets the policy generate per attempt
    tools_allowed: PerRun  # bool
    tool_cost: PerRun  # float32: budget tokens per tool call
    self_judged: PerRun  # bool: retries follow the policy's own judgement (else the verifier's)


ScaffoldParams = Protocol  # the name the rest of the package used before scaffolds were values

# protocol(values, vocab) -> Protocol;  attempts(values) -> attempts per episode (static)
ProtocolFn = Callable[[Mapping[str, Any], Any], Protocol]


def protocol(
    vocab, mode: str, limit: int | None = None, tools: bool = False, tool_cost: float = 0, self_judged: bool = False
) -> Protocol:
    """A protocol in the vocabulary's words: mode special ("DIRECT", "SCRATCH", "TOOLS", "JUDGED"), the length
    limit (None: the whole response), tools, their cost, and who stops an episode."""
    return Protocol(
        np.int32(vocab.special(mode)),
        np.int32(vocab.response_length if limit is None else limit),
        np.bool_(tools),
        np.float32(tool_cost),
        np.bool_(self_judged),
    )


@dataclass(frozen=True)
class Scaffold(Mechanism):
    """A reasoning protocol: `protocol(values, vocab)` gives the per-run `Protocol`; `attempts(values)` the
    attempts per episode (static; 1 unless the scaffold retries)."""

    protocol: ProtocolFn | None = None
    attempts: Callable[[Mapping[str, Any]], int] = lambda values: 1
    factor: ClassVar[str] = "scaffold"

    def lower(self, values, context=None) -> Protocol:
        if self.protocol is None:
            raise TypeError(f"the scaffold {self.name!r} has no protocol")
        return self.protocol(values, context)


FACTOR = Factor("scaffold", "the protocol the policy reasons in", kind=Scaffold)
FACTOR.add_mechanism(
    Scaffold(
        "direct",
        "answer in one token, no intermediate steps",
        protocol=lambda p, vocab: protocol(vocab, "DIRECT", limit=1),
    )
)
FACTOR.add_mechanism(
    Scaffold(
        "scratchpad",
        "write every intermediate value, then the answer, then EOS",
        protocol=lambda p, vocab: protocol(vocab, "SCRATCH"),
    )
)
FACTOR.add_mechanism(
    Scaffold(
        "tool",
        "a scratchpad in which TOOL makes the environment write the exact next value",
        (Param("tool_cost", "int", 4, "budget tokens charged per tool call (on top of the TOOL token)", 0, 10_000),),
        protocol=lambda p, vocab: protocol(vocab, "TOOLS", tools=True, tool_cost=p["tool_cost"]),
    )
)
FACTOR.add_mechanism(
    Scaffold(
        "retry",
        "several attempts, each ending in the policy's judgement; stop on the verifier's or own signal",
        (
            Param("max_attempts", "int", 3, "attempts at most (a shape: its own compiled group)", 1, 16, static=True),
            Param(
                "stop_rule",
                "choice",
                "oracle",
                "who starts the next attempt: the verifier's failure signal, or the policy's own RETRY judgement",
                choices=("oracle", "self"),
            ),
        ),
        protocol=lambda p, vocab: protocol(vocab, "JUDGED", self_judged=p["stop_rule"] == "self"),
        attempts=lambda p: int(p["max_attempts"]),
    )
)
FACTOR.add_preset(Preset("direct", "direct", "direct answer"))
FACTOR.add_preset(Preset("scratchpad", "scratchpad", "intermediate values written out"))
FACTOR.add_preset(Preset("tool", "tool", "scratchpad with an exact-step tool at 4 tokens per call"))
FACTOR.add_preset(
    Preset(
        "retry_oracle", "retry", "up to 3 attempts, retried on the verifier's failure signal", {"stop_rule": "oracle"}
    )
)
FACTOR.add_preset(
    Preset(
        "retry_self", "retry", "up to 3 attempts, retried on the policy's own RETRY judgement", {"stop_rule": "self"}
    )
)


def run_params(level, vocab) -> Protocol:
    return FACTOR.mechanisms[level.mechanism].lower(level.params, vocab)


def attempts(level) -> int:
    """Attempts per episode: a static number (1 for every protocol but retry)."""
    return FACTOR.mechanisms[level.mechanism].attempts(level.params)  # type: ignore[attr-defined]
