"""The token vocabulary and the fixed sequence layout of the task world (any family).

Vocabulary: the values 0..m-1, then one token per skill, then a few specials. A sequence is a prompt of fixed
length followed by a response of fixed length:

    prompt   = [BOS, x0, s_1, ..., s_D, MODE]          D = max_depth; skill slots past the depth hold PAD
    response = [r_0, ..., r_{R-1}]                      R = max_depth + 1

MODE names the protocol (DIRECT: answer at once; SCRATCH: write v_1..v_d, then EOS; TOOLS: a scratchpad in
which the policy may emit TOOL instead of a value, and the environment writes the exact value in its place;
JUDGED: a scratchpad that ends with the policy's own judgement, EOS for "done" or RETRY for "this attempt is
probably wrong"). The layout is fixed on purpose: the scratchpad step that writes v_i sits at a constant offset from the prompt slot of s_i, so a small
transformer can learn each step as one attention hop plus a lookup, while a direct answer to a deep chain needs
d sequential hops inside one forward pass, more than a shallow model has. This is what makes the scaffold a
real factor of learnability rather than a label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.world.tasks import TaskWorld, Problems, Solution

SPECIALS = ("PAD", "BOS", "EOS", "DIRECT", "SCRATCH", "TOOLS", "JUDGED", "TOOL", "RETRY")


class ParsedResponse(NamedTuple):
    answer: jax.Array  # int32 [...], the value answered, -1 if none
    well_formed: jax.Array  # bool [...], the trace follows the scaffold's format
    length: jax.Array  # int32 [...], generated tokens up to and including the terminator (or the limit)
    num_values: jax.Array  # int32 [...], value tokens written before the terminator
    values: jax.Array  # int32 [..., R], the written values in order (-1 past num_values): the step trace
    retry: jax.Array  # bool [...], the trace ended with the policy's RETRY judgement


@dataclass(frozen=True)
class Vocab:
    world: TaskWorld

    @property
    def num_values(self) -> int:
        return self.world.modulus

    def skill_token(self, skill):
        return self.world.modulus + skill

    def special(self, name: str) -> int:
        return self.world.modulus + self.world.num_skills + SPECIALS.index(name)

    @property
    def pad(self) -> int:
        return self.special("PAD")

    @property
    def bos(self) -> int:
        return self.special("BOS")

    @property
    def eos(self) -> int:
        return self.special("EOS")

    @property
    def size(self) -> int:
        return self.world.modulus + self.world.num_skills + len(SPECIALS)

    @property
    def prompt_length(self) -> int:
        return self.world.max_depth + 3

    @property
    def response_length(self) -> int:
        return self.world.max_depth + 1

    @property
    def sequence_length(self) -> int:
        return self.prompt_length + self.response_length

    # ------------------------------------------------------------------ encoding
    def encode_prompt(self, problems: Problems, mode_token) -> jax.Array:
        """int32 [..., prompt_length]. `mode_token` broadcasts against the batch (a per-run scaffold choice)."""
        idx = jnp.arange(self.world.max_depth)
        skills = jnp.where(idx < problems.depth[..., None], self.skill_token(problems.skills), self.pad)
        batch = problems.x0.shape
        bos = jnp.full(batch + (1,), self.bos, jnp.int32)
        mode = jnp.broadcast_to(jnp.asarray(mode_token, jnp.int32), batch)[..., None]
        return jnp.concatenate([bos, problems.x0[..., None], skills, mode], axis=-1).astype(jnp.int32)

    def target_response(self, problems: Problems, solution: Solution, scratchpad) -> jax.Array:
        """The exact solver's response, int32 [..., response_length]: with a scratchpad v_1..v_d then EOS,
        directly v_d then EOS; PAD after. `scratchpad` is a bool that broadcasts against the batch."""
        return self.write_trace(solution.steps, solution.answer, problems.depth, scratchpad)[0]

    def write_trace(self, steps, answer, depth, scratchpad, terminator=None, tool_mask=None):
        """A trace as (context, actions), each int32 [..., response_length].

        Step by step (`scratchpad` true): the values `steps[:depth]`, then `terminator` (default EOS); a step
        where `tool_mask` is true is a tool call: the action is TOOL and the context holds the value. Directly:
        `answer`, then EOS. PAD after the end. All arguments broadcast against the batch."""
        R = self.response_length
        pos = jnp.arange(R)
        depth = jnp.asarray(depth)[..., None]
        terminator = self.eos if terminator is None else jnp.asarray(terminator)[..., None]
        padded = jnp.concatenate([steps, jnp.full(steps.shape[:-1] + (R - steps.shape[-1],), -1, jnp.int32)], -1)
        scratch = jnp.where(pos < depth, padded, jnp.where(pos == depth, terminator, self.pad))
        direct = jnp.where(pos == 0, jnp.asarray(answer)[..., None], jnp.where(pos == 1, self.eos, self.pad))
        context = jnp.where(jnp.asarray(scratchpad)[..., None], scratch, direct).astype(jnp.int32)
        actions = context
        if tool_mask is not None:
            mask = jnp.concatenate([tool_mask, jnp.zeros(tool_mask.shape[:-1] + (R - tool_mask.shape[-1],), bool)], -1)
            calls = mask & (pos < depth) & jnp.asarray(scratchpad)[..., None]
            actions = jnp.where(calls, self.special("TOOL"), context)
        return context, actions.astype(jnp.int32)

    # ------------------------------------------------------------------ parsing
    def parse_response(self, response: jax.Array, limit) -> ParsedResponse:
        """Read a generated response (the context stream, where tool results stand in place of TOOL) of which
        only the first `limit` tokens count.

        The trace ends at its first terminator, EOS or RETRY (or at the limit). The answer is the last value
        token before it. A trace is well formed when it holds only value tokens before its terminator, at least
        one of them, and the terminator comes within the limit — or, for a one-token protocol (limit == 1, a
        direct answer), when that token is a value.
        """
        R = response.shape[-1]
        pos = jnp.arange(R)
        limit = jnp.asarray(limit)
        counted = pos < limit[..., None]
        retry_tok = self.special("RETRY")
        is_end = ((response == self.eos) | (response == retry_tok)) & counted
        ended = jnp.any(is_end, -1)
        end = jnp.where(ended, jnp.argmax(is_end, -1), limit)
        before = pos < end[..., None]
        is_value = (response >= 0) & (response < self.num_values)
        num_values = jnp.sum(before & is_value, -1)
        only_values = jnp.all(jnp.where(before, is_value, True), -1)
        last_tok = jnp.take_along_axis(response, jnp.maximum(end - 1, 0)[..., None], -1)[..., 0]
        has_answer = (end > 0) & (last_tok >= 0) & (last_tok < self.num_values)
        answer = jnp.where(has_answer, last_tok, -1)
        one_token = limit == 1
        well_formed = only_values & (num_values >= 1) & (ended | one_token)
        length = jnp.minimum(end + ended.astype(end.dtype), limit)
        values = jnp.where(before & is_value, response, -1)
        end_tok = jnp.take_along_axis(response, jnp.minimum(end, R - 1)[..., None], -1)[..., 0]
        retry = ended & (end_tok == retry_tok)
        return ParsedResponse(answer.astype(jnp.int32), well_formed, length.astype(jnp.int32), num_values,
                              values.astype(jnp.int32), retry)

    # ------------------------------------------------------------------ text (for humans and tests)
    def token_name(self, token: int) -> str:
        token = int(token)
        m, K = self.world.modulus, self.world.num_skills
        if 0 <= token < m:
            return str(token)
        if m <= token < m + K:
            return f"f{token - m}"
        if m + K <= token < self.size:
            return f"<{SPECIALS[token - m - K]}>"
        raise ValueError(f"token {token} is outside the vocabulary of size {self.size}")

    def detokenize(self, tokens) -> str:
        return " ".join(self.token_name(t) for t in np.asarray(tokens).reshape(-1))

    def tokenize(self, text: str) -> np.ndarray:
        """Inverse of `detokenize`."""
        out = []
        m, K = self.world.modulus, self.world.num_skills
        for word in text.split():
            if word.startswith("<") and word.endswith(">"):
                out.append(m + K + SPECIALS.index(word[1:-1]))
            elif word.startswith("f"):
                out.append(m + int(word[1:]))
            else:
                out.append(int(word))
        return np.asarray(out, dtype=np.int32)
