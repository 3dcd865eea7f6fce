"""What one post-training run computes, as a pure function of (base params, run params, keys).

`make_run(static, items)` returns the function that post-trains from a base, evaluates the trained policy on
the held-out items and reports every metric; the engine (`execute.py`) compiles it with `jit(vmap(...))`.
`run_params_for` turns a study cell into the per-run arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.evaluate import eval_set, make_evaluate
from fi_sim.factors import MODULES
from fi_sim.interface import TRAINING_FACTORS
from fi_sim.train import RunParams, make_posttrain
from fi_sim.world.tokens import Vocab

MAX_CURVE_POINTS = 50


def curve_stride(steps: int) -> int:
    """Window (in steps) of each logged curve point: the smallest divisor of `steps` giving <= 50 points."""
    for window in range(1, steps + 1):
        if steps % window == 0 and steps // window <= MAX_CURVE_POINTS:
            return window
    return steps


def run_params_for(study, cell) -> RunParams:
    world = study.world.chain()
    vocab = Vocab(world)
    levels = {f: study.factors[f][i] for f, i in zip(TRAINING_FACTORS, cell)}
    return RunParams(
        verifier=MODULES["verifier"].run_params(levels["verifier"], world),
        data=MODULES["data"].run_params(levels["data"], world),
        optimizer=MODULES["optimizer"].run_params(levels["optimizer"], world),
        scaffold=MODULES["scaffold"].run_params(levels["scaffold"], vocab),
    )


def make_run(static, items):
    """The whole life of one post-training run, as a pure function of (base params, run params, key, eval key).

    The evaluation key is shared by every run of the same base and seed, and by that base's own evaluation
    (`make_base_eval`): common random numbers, so gains are paired differences and contrasts between cells
    are not blurred by evaluation noise.
    """
    posttrain = make_posttrain(static.posttrain)
    evaluate = make_evaluate(static.evaluate)
    steps = static.posttrain.steps
    window = curve_stride(steps)
    tail = max(1, steps // 10)

    def run(base_params, run: RunParams, key_data, eval_key_data):
        key, eval_key = jax.random.wrap_key_data(key_data), jax.random.wrap_key_data(eval_key_data)
        trained, log = posttrain(base_params, run, key)
        after = evaluate(trained, run.scaffold, run.verifier, items, eval_key)

        def curve(x):
            return jnp.mean(x.reshape(-1, window), axis=1)

        wrong, right = jnp.sum(log.wrong), jnp.sum(log.right)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(trained)]))
        return {
            "score": after.true_score,
            "proxy_score": after.proxy_score,
            "score_by_depth": after.true_by_depth,
            "train_proxy_reward": jnp.mean(log.proxy_reward[-tail:]),
            "train_true_accuracy": jnp.mean(log.true_accuracy[-tail:]),
            "reward_false_positive_rate": jnp.where(wrong > 0, jnp.sum(log.false_positive) / jnp.maximum(wrong, 1), jnp.nan),
            "reward_false_negative_rate": jnp.where(right > 0, jnp.sum(log.false_negative) / jnp.maximum(right, 1), jnp.nan),
            "kl_to_base": jnp.mean(log.kl[-tail:]),
            "train_tokens": jnp.sum(log.tokens),
            "eval_tokens": after.tokens,
            "curve_proxy_reward": curve(log.proxy_reward),
            "curve_true_accuracy": curve(log.true_accuracy),
            "curve_kl": curve(log.kl),
            "finite": finite & jnp.all(jnp.isfinite(after.true_score)),
        }

    return run


def eval_items(world_settings):
    skills, depths = eval_weights(world_settings)
    return eval_set(world_settings.chain(), world_settings.eval_size, skills, depths, world_settings.seed)


def eval_weights(w) -> tuple[np.ndarray, np.ndarray]:
    """Skill and depth weights of the held-out evaluation set (uniform over the listed ones; [] = all)."""
    skills = np.zeros(w.num_skills, np.float32)
    skills[list(w.eval_skills) or slice(None)] = 1.0
    depths = np.zeros(w.max_depth, np.float32)
    depths[[d - 1 for d in w.eval_depths] or slice(None)] = 1.0
    return skills / skills.sum(), depths / depths.sum()
