"""Evaluation of a policy under every budget level from one set of samples.

For each distinct evaluation temperature, the policy answers every held-out evaluation item in n episodes
(one attempt each, or several under the retry scaffold). Every budget level is then an estimator on those
episodes — never a new training run. With c right answers among n episodes of an item:

- pass@k: the unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al. 2021);
- majority vote of k: the n episodes are cut into floor(n / k) disjoint blocks of k; a block votes for its most
  frequent answer among its well-formed episodes; ties share the credit (the expected score under a uniform
  tie-break);
- best of k: in each block, the episode the proxy verifier scores highest (ties share the credit);
- first accepted: in each block, episodes are taken in order until the proxy verifier accepts one (reward
  >= 0.5); the answer is the accepted one, or the block's last;
and an episode that spends more than the budget's `max_tokens` (tool costs included) counts as failed, which
is what stopping its generation at the limit would give.

Each score exists twice — true (against the exact solver) and proxy (as the run's verifier scores it) — and
is also reported by depth, by skill, on the clean items (those no base or data of the run may have seen),
with the tokens one item costs under the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from fi_sim.factors import budget as budget_factor
from fi_sim.factors.budget import (  # noqa: F401  (the estimators, re-exported where they were)
    BudgetSpec,
    EstimatorInputs,
    best_of_k,
    first_accepted,
    majority_vote,
    pass_at_k,
)
from fi_sim.factors.scaffold import Protocol
from fi_sim.factors.verifier import VerifierParams
from fi_sim.rollout import rollout
from fi_sim.world.policy import PolicyConfig
from fi_sim.world.tasks import Problems, TaskWorld
from fi_sim.world.tokens import Vocab


@dataclass(frozen=True)
class EvalStatic:
    world: TaskWorld
    policy: PolicyConfig
    budgets: tuple[BudgetSpec, ...]
    num_samples: int  # n per item and temperature, >= every budget's k
    attempts: int = 1  # attempts per episode (the retry scaffold)
    # the verifiers the program contains (None: every registered one); see PosttrainStatic.mechanisms
    verifiers: tuple[str, ...] | None = None
    # the verifier's static parameters ((name, value) pairs): the shapes of a verifier's own model
    verifier_options: tuple = ()

    @property
    def temperatures(self) -> tuple[float, ...]:
        return tuple(sorted({b.temperature for b in self.budgets}))


class EvalResult(NamedTuple):
    true_score: jax.Array  # [num_budgets]
    proxy_score: jax.Array  # [num_budgets]
    true_by_depth: jax.Array  # [num_budgets, max_depth] (NaN where the eval set has no item of that depth)
    true_by_skill: jax.Array  # [num_budgets, num_skills]: items that use the skill (NaN: none)
    clean_score: jax.Array  # [num_budgets]: true score on the items the run cannot have seen (NaN: none)
    tokens_per_item: jax.Array  # [num_budgets]: generated tokens one item costs under the budget
    true_by_item: jax.Array  # [num_budgets, E]: each item's true score (the clean items are a suffix)
    tokens: jax.Array  # tokens generated during evaluation (all temperatures)


def eval_set(world: TaskWorld, size: int, skill_weights, depth_weights, seed: int) -> Problems:
    """Held-out items from the evaluation partition of problem space (a fixed draw for a given seed)."""
    key = jax.random.fold_in(jax.random.key(seed), 0xE7A1)
    return world.sample(key, jnp.asarray(skill_weights), jnp.asarray(depth_weights), size, heldout=True)


def make_evaluate(static: EvalStatic) -> Callable[..., EvalResult]:
    world, config = static.world, static.policy
    vocab = Vocab(world)
    n = static.num_samples
    temps = static.temperatures

    def evaluate(
        params: Any,
        scaffold: Protocol,
        verifier: VerifierParams,
        items: Problems,
        key: jax.Array,
        exposed_share: Any = 0.0,
    ) -> EvalResult:
        E = items.x0.shape[0]
        solution = world.solve(items)
        rep = lambda x: jnp.repeat(x, n, axis=0)  # noqa: E731  item-major
        prompts = rep(vocab.encode_prompt(items, scaffold.mode_token))
        per_temp = {}
        tokens = jnp.zeros((), jnp.float32)
        for ti, temperature in enumerate(temps):
            ep = rollout(
                world,
                config,
                params,
                prompts,
                jax.tree.map(rep, solution),
                rep(items.depth),
                scaffold,
                verifier,
                jax.random.fold_in(key, ti),
                temperature,
                static.attempts,
                static.verifiers,
            )
            tokens = tokens + jnp.sum(ep.tokens)
            per_temp[temperature] = tuple(x.reshape(E, n) for x in (ep.correct, ep.answer, ep.proxy, ep.tokens))

        idx = jnp.arange(world.max_depth)
        uses = (items.skills[:, :, None] == jnp.arange(world.num_skills)) & (idx < items.depth[:, None])[..., None]
        skill_w = jnp.any(uses, 1).astype(jnp.float32)  # [E, K]
        depth_w = (items.depth[:, None] == jnp.arange(1, world.max_depth + 1)).astype(jnp.float32)
        clean_w = clean_items(E, exposed_share).astype(jnp.float32)

        def subset(score, w):
            count = jnp.sum(w, 0)
            return jnp.where(count > 0, score @ w / jnp.maximum(count, 1), jnp.nan)

        out: dict[str, list] = {k: [] for k in EvalResult._fields if k != "tokens"}
        for b in static.budgets:
            correct, answers, proxy, spent = per_temp[b.temperature]
            if b.max_tokens:
                within = spent <= b.max_tokens
                correct, answers, proxy = correct & within, jnp.where(within, answers, -1), proxy * within
            cost = b.k * jnp.mean(spent, -1)
            rule = budget_factor.FACTOR.mechanisms[b.aggregation]
            inputs = EstimatorInputs(correct, answers, proxy, spent, solution.answer, world.modulus, b.options)
            true_item, proxy_item, rule_cost = rule.estimate(inputs, b.k)  # type: ignore[attr-defined]
            if rule_cost is not None:  # a rule that stops early counts its own tokens
                cost = rule_cost
            out["true_score"].append(jnp.mean(true_item))
            out["proxy_score"].append(jnp.mean(proxy_item))
            out["true_by_depth"].append(subset(true_item, depth_w))
            out["true_by_skill"].append(subset(true_item, skill_w))
            out["clean_score"].append(subset(true_item, clean_w[:, None])[0])
            out["tokens_per_item"].append(jnp.mean(cost))
            out["true_by_item"].append(true_item.astype(jnp.float32))
        return EvalResult(**{k: jnp.stack(v) for k, v in out.items()}, tokens=tokens)

    return evaluate


def clean_items(num_items: int, exposed_share: Any, xp: Any = jnp) -> Any:
    """Which evaluation items a run cannot have seen: the suffix after the exposed prefix of the evaluation set
    (`exposed_share` of it, rounded up). `xp` is jax.numpy (traced) or numpy (assembling results)."""
    share = xp.asarray(exposed_share, xp.float32)
    return xp.arange(num_items) >= xp.ceil(share * xp.float32(num_items))


def num_eval_samples(budgets, minimum: int = 16) -> int:
    """n: at least twice the largest k (so block estimators have two blocks) and at least `minimum`."""
    return int(max([minimum] + [2 * b.k for b in budgets]))
