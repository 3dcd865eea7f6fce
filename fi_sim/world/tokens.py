"""The token vocabulary and the fixed sequence layout of the chain world.

Vocabulary: the values 0..m-1, then one token per skill, then a few specials. A sequence is a prompt of fixed
length followed by a response of fixed length:

    prompt   = [BOS, x0, s_1, ..., s_D, MODE]          D = max_depth; skill slots past the depth hold PAD
    response = [r_0, ..., r_{R-1}]                      R = max_depth + 1

MODE names the scaffold (DIRECT: answer at once; SCRATCH: write v_1..v_d, then EOS). The layout is fixed on
purpose: the scratchpad step that writes v_i sits at a constant offset from the prompt slot of s_i, so a small
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

from fi_sim.world.chain import ChainWorld, Problems, Solution

SPECIALS = ("PAD", "BOS", "EOS", "DIRECT", "SCRATCH")


class ParsedResponse(NamedTuple):
    answer: jax.Array  # int32 [...], the value answered, -1 if none
    well_formed: jax.Array  # bool [...], the trace follows the scaffold's format
    length: jax.Array  # int32 [...], generated tokens up to and including the first EOS (or the limit)
    num_values: jax.Array  # int32 [...], value tokens written before EOS


@dataclass(frozen=True)
class Vocab:
    world: ChainWorld

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
        R = self.response_length
        pos = jnp.arange(R)
        depth = problems.depth[..., None]
        steps = jnp.concatenate(
            [solution.steps, jnp.full(solution.steps.shape[:-1] + (1,), -1, jnp.int32)], axis=-1
        )
        scratch = jnp.where(pos < depth, steps, jnp.where(pos == depth, self.eos, self.pad))
        direct = jnp.where(pos == 0, solution.answer[..., None], jnp.where(pos == 1, self.eos, self.pad))
        return jnp.where(jnp.asarray(scratchpad)[..., None], scratch, direct).astype(jnp.int32)

    # ------------------------------------------------------------------ parsing
    def parse_response(self, response: jax.Array, limit) -> ParsedResponse:
        """Read a generated response of which only the first `limit` tokens count.

        The answer is the last value token before the first EOS (or before the limit). A trace is well formed
        when it holds only value tokens before its EOS, at least one of them, and EOS comes within the limit —
        or, for a one-token protocol (limit == 1, a direct answer), when that token is a value.
        """
        R = response.shape[-1]
        pos = jnp.arange(R)
        limit = jnp.asarray(limit)[..., None]
        counted = pos < limit
        is_eos = (response == self.eos) & counted
        first_eos = jnp.where(jnp.any(is_eos, -1), jnp.argmax(is_eos, -1), jnp.squeeze(limit, -1))
        before = pos < first_eos[..., None]
        is_value = (response >= 0) & (response < self.num_values)
        num_values = jnp.sum(before & is_value, -1)
        only_values = jnp.all(jnp.where(before, is_value, True), -1)
        last_idx = jnp.maximum(first_eos - 1, 0)
        last_tok = jnp.take_along_axis(response, last_idx[..., None], -1)[..., 0]
        has_answer = (first_eos > 0) & (last_tok >= 0) & (last_tok < self.num_values)
        answer = jnp.where(has_answer, last_tok, -1)
        one_token = jnp.squeeze(limit, -1) == 1
        eos_found = jnp.any(is_eos, -1)
        well_formed = only_values & (num_values >= 1) & (eos_found | one_token)
        length = jnp.minimum(first_eos + eos_found.astype(first_eos.dtype), jnp.squeeze(limit, -1))
        return ParsedResponse(answer.astype(jnp.int32), well_formed, length.astype(jnp.int32), num_values)

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
