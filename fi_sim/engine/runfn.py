"""What one post-training run computes, as a pure function of (base params, run params, keys).

`make_run(static, items)` returns the function that post-trains from a base, evaluates the trained policy on
the held-out items and reports every metric; the engine (`execute.py`) compiles it with `jit(vmap(...))`.
`run_params_for` turns a study cell into the per-run arrays.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim import metrics
from fi_sim.evaluate import EvalStatic, make_evaluate
from fi_sim.factors import FACTORS, MODULES
from fi_sim.interface import TRAINING_FACTORS
from fi_sim.train import PosttrainStatic, RunParams, make_posttrain
from fi_sim.world.tasks import Problems
from fi_sim.world.tokens import Vocab

MAX_CURVE_POINTS = 50


def curve_stride(steps: int) -> int:
    """Window (in steps) of each logged curve point: the smallest divisor of `steps` giving <= 50 points."""
    for window in range(1, steps + 1):
        if steps % window == 0 and steps // window <= MAX_CURVE_POINTS:
            return window
    return steps


def exposed_share(study, cell) -> float:
    """The prefix of the evaluation set a run may have seen: leaked into its base, or in its prompts."""
    levels = {f: study.factors[f][i] for f, i in zip(TRAINING_FACTORS, cell)}
    return max(levels["base"].params["leak_share"], MODULES["data"].exposed_share(levels["data"]))


def run_params_for(study, cell) -> RunParams:
    """A training cell's per-run arrays: each factor's level lowered by its mechanism."""
    world = study.world.task_world()
    vocab = Vocab(world)
    levels = {f: study.factors[f][i] for f, i in zip(TRAINING_FACTORS, cell)}
    return RunParams(
        verifier=MODULES["verifier"].run_params(levels["verifier"], world),
        data=MODULES["data"].run_params(levels["data"], world),
        optimizer=MODULES["optimizer"].run_params(levels["optimizer"], world),
        scaffold=MODULES["scaffold"].run_params(levels["scaffold"], vocab),
        exposed_share=np.float32(exposed_share(study, cell)),
    )


# factors whose mechanisms are picked per run by a switch table: a group's program contains only those it uses
SWITCHED = ("verifier", "optimizer")
COMPILE_ONLY_USED = True


# static parameters the post-training program reads by name (fields of PosttrainStatic); every other static
# parameter of a training level lands in PosttrainStatic.options, so it is part of the group's key without a
# field of its own (a new static parameter can never be silently shared by runs that differ in it)
CONSUMED = {
    ("optimizer", "steps"),
    ("optimizer", "prompts_per_step"),
    ("optimizer", "samples_per_prompt"),
    ("optimizer", "inner_epochs"),
    ("data", "pool_size"),
    ("data", "dataset"),
    ("scaffold", "max_attempts"),
}


def _shape_statics(study, cell, policy_config, budgets, num_samples) -> tuple[PosttrainStatic, EvalStatic]:
    """The static (shape) configuration of a training cell, from the parameters declared static."""
    world = study.world.task_world()
    levels = {f: study.factors[f][i] for f, i in zip(TRAINING_FACTORS, cell)}
    static = {(f, name): value for f in TRAINING_FACTORS if f != "base" for name, value in levels[f].static().items()}
    opt = {name: value for (f, name), value in static.items() if f == "optimizer"}
    attempts = MODULES["scaffold"].attempts(levels["scaffold"])
    options = tuple((f, name, value) for (f, name), value in sorted(static.items()) if (f, name) not in CONSUMED)
    return (
        PosttrainStatic(
            world,
            policy_config,
            opt["steps"],
            opt["prompts_per_step"],
            opt["samples_per_prompt"],
            opt["inner_epochs"],
            static.get(("data", "pool_size"), 0),
            attempts,
            MODULES["data"].frozen_dataset(levels["data"], world),
            options=options,
        ),
        EvalStatic(
            world,
            policy_config,
            budgets,
            num_samples,
            attempts,
            verifier_options=MODULES["verifier"].static_options(levels["verifier"]),
        ),
    )


_GROUP_USES: dict = {}


def _group_uses(study, budgets, num_samples) -> dict:
    """For each shape configuration of the study (a compiled group), the switched mechanisms its runs use."""
    from fi_sim.engine.plan import policy_config, training_cells

    key = (id(study), study.hash, budgets, num_samples)
    if key not in _GROUP_USES:
        uses: dict = {}
        for cell in training_cells(study):
            base = study.factors["base"][cell[TRAINING_FACTORS.index("base")]]
            shape = _shape_statics(study, cell, policy_config(study, base), budgets, num_samples)
            for f in SWITCHED:
                uses.setdefault(shape, {}).setdefault(f, set()).add(
                    study.factors[f][cell[TRAINING_FACTORS.index(f)]].mechanism
                )
        _GROUP_USES.clear()  # one study at a time is enough (plans are built once per study)
        _GROUP_USES[key] = {
            shape: tuple((f, FACTORS[f].used(tuple(names[f]))) for f in SWITCHED) for shape, names in uses.items()
        }
    return _GROUP_USES[key]


def run_statics(study, cell, policy_config, budgets, num_samples) -> tuple[PosttrainStatic, EvalStatic]:
    """The static configuration of a training cell: what splits a study into compiled groups (its shapes), and
    the switched mechanisms its group uses (so the group's program contains only those)."""
    posttrain, evaluate = _shape_statics(study, cell, policy_config, budgets, num_samples)
    if not COMPILE_ONLY_USED:
        return posttrain, evaluate
    mechanisms = _group_uses(study, budgets, num_samples)[(posttrain, evaluate)]
    return (replace(posttrain, mechanisms=mechanisms), replace(evaluate, verifiers=dict(mechanisms)["verifier"]))


def make_run(static: Any, items: Problems) -> Callable[..., dict[str, jax.Array]]:
    """The whole life of one post-training run, as a pure function of (base params, run params, key, eval key).

    The evaluation key is shared by every run of the same base and seed, and by that base's own evaluation
    (`make_base_eval`): common random numbers, so gains are paired differences and contrasts between cells
    are not blurred by evaluation noise.
    """
    posttrain = make_posttrain(static.posttrain)
    evaluate = make_evaluate(static.evaluate)
    steps = static.posttrain.steps
    window = curve_stride(steps)
    tail = metrics.tail_steps(steps)

    def run(base_params: Any, run: RunParams, key_data: jax.Array, eval_key_data: jax.Array) -> dict[str, jax.Array]:
        key, eval_key = jax.random.wrap_key_data(key_data), jax.random.wrap_key_data(eval_key_data)
        run = run._replace(verifier=prepare_verifier(static.evaluate, base_params, run.scaffold, run.verifier, eval_key))
        trained, log = posttrain(base_params, run, key)
        after = evaluate(trained, run.scaffold, run.verifier, items, eval_key, run.exposed_share)

        def curve(x):
            return jnp.mean(x.reshape(-1, window), axis=1)

        def rate(part, whole):  # a measured rate per window: summed counts, NaN where the window has none
            part, whole = jnp.sum(part.reshape(-1, window), 1), jnp.sum(whole.reshape(-1, window), 1)
            return jnp.where(whole > 0, part / jnp.maximum(whole, 1), jnp.nan)

        wrong, right = jnp.sum(log.wrong), jnp.sum(log.right)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(trained)]))
        return metrics.outputs(
            "run",
            {
                "score": after.true_score,
                "proxy_score": after.proxy_score,
                "score_by_depth": after.true_by_depth,
                "score_by_skill": after.true_by_skill,
                "clean_score": after.clean_score,
                "eval_tokens_per_item": after.tokens_per_item,
                "train_proxy_reward": jnp.mean(log.proxy_reward[-tail:]),
                "train_true_accuracy": jnp.mean(log.true_accuracy[-tail:]),
                "reward_false_positive_rate": jnp.where(
                    wrong > 0, jnp.sum(log.false_positive) / jnp.maximum(wrong, 1), jnp.nan
                ),
                "reward_false_negative_rate": jnp.where(
                    right > 0, jnp.sum(log.false_negative) / jnp.maximum(right, 1), jnp.nan
                ),
                "kl_to_base": jnp.mean(log.kl[-tail:]),
                "entropy": jnp.mean(log.entropy[-tail:]),
                "clip_fraction": jnp.mean(log.clip_fraction),
                "train_tool_calls": jnp.sum(log.tool_calls),
                "train_tokens": jnp.sum(log.tokens),
                "eval_tokens": after.tokens,
                "curve_proxy_reward": curve(log.proxy_reward),
                "curve_true_accuracy": curve(log.true_accuracy),
                "curve_kl": curve(log.kl),
                "curve_entropy": curve(log.entropy),
                "curve_false_positive_rate": rate(log.false_positive, log.wrong),
                "curve_false_negative_rate": rate(log.false_negative, log.right),
                "finite": finite & jnp.all(jnp.isfinite(after.true_score)),
            },
        )

    return run


def prepare_verifier(static: EvalStatic, base_params: Any, scaffold: Any, verifier: Any, eval_key: jax.Array) -> Any:
    """The run's verifier with its own model trained where it has one (`Verifier.prepare`), from the base and the
    key every run of that base and seed shares (and the base's own evaluation), so they all get the same model."""
    from fi_sim.factors.verifier import PrepareInputs

    inputs = PrepareInputs(static.world, static.policy, base_params, scaffold, eval_key, {})
    return MODULES["verifier"].prepare(verifier, inputs, static.verifiers, static.verifier_options)


def eval_items(world_settings: Any) -> Problems:
    """The study's held-out evaluation items (a property of its world)."""
    return world_settings.task_world().eval_items()
