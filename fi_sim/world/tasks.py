"""Task families with exact solutions: a problem is a start value and a sequence of skills, solved step by step.

Every family shares one problem shape, (x0, s_1..s_d) over values in Z_m, and one step trace v_0 = x0,
v_1, ..., v_d (the answer), so every factor level (verifier, scaffold, data, ...) works across families.
Families differ in what a skill does; a family is one `TaskFamily` value (its checks, its static table, its step
function and a plain-Python reference solver) registered with `register_family`:

- **chain**: each of `num_skills` skills is a fixed random permutation of Z_m drawn from the world seed;
  v_i = f_{s_i}(v_{i-1}).
- **parity**: values are bits and the two skills are "keep" and "flip"; v_i = v_{i-1} XOR s_i, so the answer is
  the parity of the skill string (with the start bit). A direct answer needs a d-fold composition, while each
  scratchpad step is one XOR: intermediate steps make the task learnable.
- **dag**: arithmetic over a small dependency graph: skill s is an operation (add or multiply mod m) and a lag;
  v_i = v_{i-1} (op) v_{max(i-1-lag, 0)}. The number of operations is the depth and the step trace is the
  evaluation in topological order; each step reads two earlier values.

The difficulty knob is the depth d; skills are the skill labels.

Problems are fixed-shape arrays (skills padded to `max_depth`) so that sampling, solving and encoding are
jit-able and vmappable. Which problems are held out for evaluation is a fixed partition of the problem space
(`is_heldout`), so the post-training data can never contain an evaluation item unless a factor level asks
for contamination on purpose. The partition covers problems of depth >= 2: a depth-1 problem is a primitive
skill itself (one entry of its permutation table), which cannot be hidden without hiding the skill, so
depth-1 items are shared by training and evaluation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fi_sim.errors import Problem, ValidationError


class Problems(NamedTuple):
    """A batch of problems (leading dimensions are free)."""

    x0: jax.Array  # int32 [...], the start value in Z_m
    skills: jax.Array  # int32 [..., max_depth], skill ids; entries at index >= depth are 0 and ignored
    depth: jax.Array  # int32 [...], in 1..max_depth


class Solution(NamedTuple):
    steps: jax.Array  # int32 [..., max_depth], v_1..v_d; entries at index >= depth are -1
    answer: jax.Array  # int32 [...], v_d


@dataclass(frozen=True)
class TaskFamily:
    """A task family: what a skill does to the values.

    - `check(world)`: problems with the world's settings for this family (a list of `Problem`);
    - `table(world)`: a static int32 table the step function reads (e.g. the skills' permutations; may be empty);
    - `step(world, history, prev, i, skill)`: v_{i+1} (traced), from the values so far (`history` [..., D + 1]
      holding v_0..v_i), the previous value `prev` = v_i, the step index and the skill id;
    - `reference(world, values, skill)`: the same step in plain Python on the list of values so far (for tests).
    """

    name: str
    doc: str
    step: Callable[..., Any]
    reference: Callable[..., int]
    table: Callable[[Any], np.ndarray] = lambda world: np.zeros((0, world.modulus), np.int32)
    check: Callable[[Any], list] = lambda world: []


FAMILIES: dict[str, TaskFamily] = {}


def register_family(family: TaskFamily, replace_existing: bool = False) -> TaskFamily:
    """Make a task family available to `world.family` (in a study's [world] table) by its name."""
    if family.name in FAMILIES and not replace_existing:
        raise ValueError(f"the task family {family.name!r} is already registered (pass replace_existing=True)")
    FAMILIES[family.name] = family
    return family


def _chain_table(world) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, 0xC4A1]))
    return np.stack([rng.permutation(world.modulus) for _ in range(world.num_skills)]).astype(np.int32)


def _permute(world, history, prev, i, skill):
    return world.permutation_table[skill, prev]


def _permute_reference(world, values, skill):
    return int(world.permutations[skill][values[-1]])


def _parity_check(world) -> list:
    if (world.modulus, world.num_skills) != (2, 2):
        return [
            Problem(
                "world.modulus/num_skills",
                (world.modulus, world.num_skills),
                "modulus = 2 and num_skills = 2 for the parity family (keep, flip)",
            )
        ]
    return []


def _dag_step(world, history, prev, i, skill):
    op, lag = world.dag_skill(skill)
    j = jnp.maximum(i - lag, 0)
    other = jnp.take_along_axis(history, jnp.broadcast_to(j, history.shape[:-1])[..., None], -1)[..., 0]
    return jnp.where(op == 0, prev + other, prev * other) % world.modulus


def _dag_reference(world, values, skill):
    op, lag = skill % 2, skill // 2
    a, b = values[-1], values[max(len(values) - 1 - lag, 0)]
    return (a + b) % world.modulus if op == 0 else (a * b) % world.modulus


def _dag_check(world) -> list:
    if world.num_skills % 2:
        return [
            Problem(
                "world.num_skills", world.num_skills, "an even number for the dag family (add and multiply at each lag)"
            )
        ]
    return []


register_family(
    TaskFamily(
        "chain",
        "each skill is a fixed random permutation of Z_m (from the world seed)",
        _permute,
        _permute_reference,
        table=_chain_table,
    )
)
register_family(
    TaskFamily(
        "parity",
        "bits; the skills keep and flip: the answer is the parity of the skill string",
        _permute,
        _permute_reference,
        table=lambda world: np.array([[0, 1], [1, 0]], np.int32),
        check=_parity_check,
    )
)
register_family(
    TaskFamily(
        "dag",
        "arithmetic over a dependency graph: a skill is an operation and a lag",
        _dag_step,
        _dag_reference,
        check=_dag_check,
    )
)


@dataclass(frozen=True)
class TaskWorld:
    """Static description of a task world. Hashable, so it can be a static jit argument."""

    modulus: int = 10
    num_skills: int = 6
    max_depth: int = 4
    seed: int = 0
    # One problem in `heldout_period` (a fixed partition of problem space) is reserved for evaluation.
    heldout_period: int = 5
    family: str = "chain"
    # the held-out evaluation set: `eval_size` items from the evaluation partition, uniform over the listed
    # skills and depths (empty: all), drawn from the world seed
    eval_size: int = 256
    eval_skills: tuple = ()
    eval_depths: tuple = ()
    # the family's static table (for chain and parity: row s is the permutation of skill s)
    permutations: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValidationError(Problem("world.family", self.family, " or ".join(map(repr, FAMILIES))))
        problems = list(FAMILIES[self.family].check(self))
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
        table = np.asarray(FAMILIES[self.family].table(self), np.int32)
        object.__setattr__(self, "permutations", tuple(map(tuple, table.tolist())))

    @property
    def permutation_table(self) -> jax.Array:
        """The family's static table as an array (chain and parity: int32 [num_skills, modulus], row s is f_s)."""
        return jnp.asarray(np.asarray(self.permutations, dtype=np.int32))

    def dag_skill(self, skill):
        """(operation, lag) of a dag skill: operation 0 adds, 1 multiplies; lag in 0..num_skills/2 - 1."""
        return skill % 2, skill // 2

    def step_value(self, history, i, skill):
        """v_{i+1} from the values so far. history: [..., max_depth + 1] holding v_0..v_i (later entries ignored)."""
        prev = jnp.take_along_axis(history, jnp.broadcast_to(jnp.asarray(i), history.shape[:-1])[..., None], -1)[..., 0]
        return FAMILIES[self.family].step(self, history, prev, i, skill)

    # ------------------------------------------------------------------ exact solver
    def solve(self, problems: Problems, key=None, step_error=0.0) -> Solution:
        """Exact answer and every intermediate value, vectorised over any leading dimensions.

        With a `key` and a per-step error rate, a faulty solver (a teacher): each step is replaced, with that
        probability, by a uniformly drawn different value, and later steps build on the wrong value."""
        x0 = jnp.asarray(problems.x0)
        skills = jnp.asarray(problems.skills)
        depth = jnp.asarray(problems.depth)
        history = jnp.zeros(x0.shape + (self.max_depth + 1,), jnp.int32).at[..., 0].set(x0)
        if key is None:
            errs = jnp.zeros((self.max_depth,) + x0.shape, bool)
            shifts = jnp.zeros((self.max_depth,) + x0.shape, jnp.int32)
        else:
            k_err, k_val = jax.random.split(key)
            errs = jax.random.uniform(k_err, (self.max_depth,) + x0.shape) < step_error
            shifts = jax.random.randint(k_val, (self.max_depth,) + x0.shape, 1, self.modulus)

        def step(carry, inputs):
            history, value = carry
            i, err, shift = inputs
            new = self.step_value(history, i, skills[..., i])
            new = jnp.where(err, (new + shift) % self.modulus, new)
            active = i < depth
            value = jnp.where(active, new, value)
            history = history.at[..., i + 1].set(value)
            return (history, value), jnp.where(active, value, -1)

        # scan over the step axis: move it to the front
        (_, answer), steps = jax.lax.scan(step, (history, x0), (jnp.arange(self.max_depth), errs, shifts))
        return Solution(steps=jnp.moveaxis(steps, 0, -1).astype(jnp.int32), answer=answer.astype(jnp.int32))

    # ------------------------------------------------------------------ held-out partition
    def partition_code(self, skills: jax.Array, depth: jax.Array) -> jax.Array:
        """A hash of the skill sequence; (x0 + code) % heldout_period == 0 marks evaluation items.

        The hash mixes non-linearly (multiply, xor-shift), so which problems are held out is unrelated to how
        they are solved: a linear code would, for parity, make the held-out split a parity of the skills and
        leak the answer to a model trained on the other split."""
        h = jnp.asarray(depth, jnp.uint32) * jnp.uint32(0x9E3779B1) + jnp.uint32(self.seed)
        for i in range(self.max_depth):
            s = jnp.where(i < depth, skills[..., i] + 1, 0).astype(jnp.uint32)
            h = (h ^ s) * jnp.uint32(0x85EBCA6B)
            h = h ^ (h >> 13)
            h = h * jnp.uint32(0xC2B2AE35)
            h = h ^ (h >> 16)
        return (h % jnp.uint32(self.heldout_period)).astype(jnp.int32)

    def is_heldout(self, problems: Problems) -> jax.Array:
        """True for evaluation-only problems (never for depth 1, see the module docstring)."""
        code = self.partition_code(problems.skills, problems.depth)
        return ((problems.x0 + code) % self.heldout_period == 0) & (problems.depth >= 2)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        key: jax.Array,
        skill_weights: ArrayLike,
        depth_weights: ArrayLike,
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

    def eval_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Skill and depth weights of the evaluation set (uniform over the listed ones; empty = all)."""
        skills = np.zeros(self.num_skills, np.float32)
        skills[list(self.eval_skills) or slice(None)] = 1.0
        depths = np.zeros(self.max_depth, np.float32)
        depths[[d - 1 for d in self.eval_depths] or slice(None)] = 1.0
        return skills / skills.sum(), depths / depths.sum()

    def eval_items(self) -> Problems:
        """The fixed held-out evaluation items (from the evaluation partition of problem space).

        Drawn once per world by one compiled program (op by op it took 3 s of every process's start) and always
        returned as concrete arrays, also when called while a program is traced: a program then embeds the
        items as a constant instead of computing them for XLA to fold at compile time. The same integers as
        drawing them op by op (`draw_eval_items` under `jax.disable_jit()`; tested)."""
        return _eval_items(self)

    def draw_eval_items(self) -> Problems:
        """The evaluation items as a traceable computation (see `eval_items`)."""
        skills, depths = self.eval_weights()
        key = jax.random.fold_in(jax.random.key(self.seed), 0xE7A1)
        return self.sample(key, jnp.asarray(skills), jnp.asarray(depths), self.eval_size, heldout=True)

    def brute_force_answer(self, x0: int, skills: list[int]) -> int:
        """Reference implementation for tests: apply the skills one by one in plain Python."""
        values = [int(x0)]
        for s in skills:
            values.append(int(FAMILIES[self.family].reference(self, values, s)))
        return values[-1]


@functools.lru_cache(maxsize=64)
def _eval_items(world: TaskWorld) -> Problems:
    # compiled ahead of time and called: an executable runs (is not traced) also where the caller is tracing
    return jax.jit(TaskWorld.draw_eval_items, static_argnums=0).lower(world).compile()()
