"""The chain task family: composing primitive skills on Z_m.

A world has `num_skills` primitive skills, each a fixed random permutation of Z_m drawn from the world seed.
A problem is (x0, s_1..s_d): start from the value x0 and apply skill s_1, then s_2, ... The answer is
f_{s_d}(...f_{s_1}(x0)), and the exact solver also gives every intermediate value v_i = f_{s_i}(v_{i-1}),
which is the step trace that a scratchpad writes out.

Problems are fixed-shape arrays (skills padded to `max_depth`) so that sampling, solving and encoding are
jit-able and vmappable. Which problems are held out for evaluation is a fixed partition of the problem space
(`is_heldout`), so the post-training data can never contain an evaluation item unless a factor level asks
for contamination on purpose. The partition covers chains of depth >= 2: a depth-1 problem is a primitive
skill itself (one entry of its permutation table), which cannot be hidden without hiding the skill, so
depth-1 items are shared by training and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.errors import Problem, ValidationError


class Problems(NamedTuple):
    """A batch of chain problems (leading dimensions are free)."""

    x0: jax.Array  # int32 [...], the start value in Z_m
    skills: jax.Array  # int32 [..., max_depth], skill ids; entries at index >= depth are 0 and ignored
    depth: jax.Array  # int32 [...], in 1..max_depth


class Solution(NamedTuple):
    steps: jax.Array  # int32 [..., max_depth], v_1..v_d; entries at index >= depth are -1
    answer: jax.Array  # int32 [...], v_d


@dataclass(frozen=True)
class ChainWorld:
    """Static description of the chain world. Hashable, so it can be a static jit argument."""

    modulus: int = 10
    num_skills: int = 6
    max_depth: int = 4
    seed: int = 0
    # One problem in `heldout_period` (a fixed partition of problem space) is reserved for evaluation.
    heldout_period: int = 5
    permutations: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        problems = []
        if not (2 <= self.modulus <= 64):
            problems.append(Problem("world.modulus", self.modulus, "an integer in 2..64"))
        if not (1 <= self.num_skills <= 32):
            problems.append(Problem("world.num_skills", self.num_skills, "an integer in 1..32"))
        if not (1 <= self.max_depth <= 16):
            problems.append(Problem("world.max_depth", self.max_depth, "an integer in 1..16"))
        if not (2 <= self.heldout_period <= self.modulus):
            problems.append(
                Problem("world.heldout_period", self.heldout_period, f"an integer in 2..modulus ({self.modulus})")
            )
        if problems:
            raise ValidationError(problems)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xC4A1]))
        perms = np.stack([rng.permutation(self.modulus) for _ in range(self.num_skills)]).astype(np.int32)
        object.__setattr__(self, "permutations", tuple(map(tuple, perms.tolist())))

    @property
    def permutation_table(self) -> jax.Array:
        """int32 [num_skills, modulus]: row s is the permutation f_s."""
        return jnp.asarray(np.asarray(self.permutations, dtype=np.int32))

    # ------------------------------------------------------------------ exact solver
    def solve(self, problems: Problems) -> Solution:
        """Exact answer and every intermediate value, vectorised over any leading dimensions."""
        table = self.permutation_table
        x0 = jnp.asarray(problems.x0)
        skills = jnp.asarray(problems.skills)
        depth = jnp.asarray(problems.depth)

        def step(value, i):
            applied = table[skills[..., i], value]
            active = i < depth
            new = jnp.where(active, applied, value)
            return new, jnp.where(active, new, -1)

        # scan over the step axis: move it to the front
        answer, steps = jax.lax.scan(step, x0, jnp.arange(self.max_depth))
        return Solution(steps=jnp.moveaxis(steps, 0, -1).astype(jnp.int32), answer=answer.astype(jnp.int32))

    # ------------------------------------------------------------------ held-out partition
    def partition_code(self, skills: jax.Array, depth: jax.Array) -> jax.Array:
        """An integer code of the skill sequence; (x0 + code) % heldout_period == 0 marks evaluation items."""
        idx = jnp.arange(self.max_depth)
        active = idx < depth[..., None]
        weights = (idx + 1) * 7 + 3
        return jnp.sum(jnp.where(active, (skills + 1) * weights, 0), axis=-1) + depth

    def is_heldout(self, problems: Problems) -> jax.Array:
        """True for evaluation-only problems (never for depth 1, see the module docstring)."""
        code = self.partition_code(problems.skills, problems.depth)
        return ((problems.x0 + code) % self.heldout_period == 0) & (problems.depth >= 2)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        key: jax.Array,
        skill_weights: jax.Array,
        depth_weights: jax.Array,
        num: int,
        heldout: bool = False,
    ) -> Problems:
        """Sample `num` problems: depth ~ depth_weights (over 1..max_depth), each skill ~ skill_weights iid,
        and x0 uniform over the values that put the problem in the training partition (or, with
        `heldout=True`, in the evaluation partition; at depth 1, over all values). Weights need not be normalised; they are traced, so a
        distribution can be a per-run (vmapped) parameter."""
        k_depth, k_skill, k_x0 = jax.random.split(key, 3)
        depth = 1 + jax.random.categorical(k_depth, jnp.log(jnp.maximum(depth_weights, 1e-30)), shape=(num,))
        skills = jax.random.categorical(
            k_skill, jnp.log(jnp.maximum(skill_weights, 1e-30)), shape=(num, self.max_depth)
        )
        idx = jnp.arange(self.max_depth)
        skills = jnp.where(idx[None, :] < depth[:, None], skills, 0)
        code = self.partition_code(skills, depth)
        values = jnp.arange(self.modulus)
        in_eval = (values[None, :] + code[:, None]) % self.heldout_period == 0  # [num, m]
        primitive = (depth == 1)[:, None]  # depth-1 items belong to both partitions
        allowed = (in_eval if heldout else ~in_eval) | primitive
        count = jnp.sum(allowed, axis=-1)
        u = jax.random.uniform(k_x0, (num,))
        pick = jnp.floor(u * count).astype(jnp.int32)  # uniform index among the allowed values
        x0 = jnp.argmax(jnp.cumsum(allowed, axis=-1) > pick[:, None], axis=-1)
        return Problems(x0=x0.astype(jnp.int32), skills=skills.astype(jnp.int32), depth=depth.astype(jnp.int32))

    def brute_force_answer(self, x0: int, skills: list[int]) -> int:
        """Reference implementation for tests: compose the permutations one by one in Python."""
        value = int(x0)
        for s in skills:
            value = int(self.permutations[s][value])
        return value
