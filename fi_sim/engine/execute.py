"""The compiled work: `jit(vmap(...))` over fixed-size chunks of bases, base evaluations and runs.

Compiled functions are cached per static configuration, so a group compiles once however many chunks it
has. Keys travel as raw uint32 key data so that they pad, stack and store like any other array.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.engine.runfn import eval_items, make_run
from fi_sim.evaluate import make_evaluate
from fi_sim.train import make_pretrain

def key_data(keys) -> np.ndarray:
    """Typed PRNG keys as raw uint32 data (plain arrays pad, stack and store like any other)."""
    return np.stack([np.asarray(jax.random.key_data(k)) for k in keys])


def stack(trees):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def pad_rows(tree, size: int):
    """Pad the leading axis to `size` by repeating the last row (padded rows are computed and dropped)."""
    def pad(x):
        n = x.shape[0]
        return x if n == size else np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])
    return jax.tree.map(pad, tree)


@functools.lru_cache(maxsize=None)
def pretrain_fn(static):
    """jit(vmap(pretrain)) over (base params, key); returns (policy params, final loss)."""
    pretrain = make_pretrain(static)

    def one(base, key_data):
        params, losses = pretrain(base, jax.random.wrap_key_data(key_data))
        tail = max(1, static.steps // 10)
        return params, jnp.mean(losses[-tail:]) if static.steps else jnp.float32(jnp.nan)

    return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=None)
def base_eval_fn(static, world_settings):
    """jit(vmap(evaluate)) of bases under (scaffold, verifier): once per base job, not once per run."""
    evaluate = make_evaluate(static)
    items = eval_items(world_settings)

    def one(params, scaffold, verifier, eval_key_data):
        r = evaluate(params, scaffold, verifier, items, jax.random.wrap_key_data(eval_key_data))
        return {"base_score": r.true_score, "base_proxy_score": r.proxy_score,
                "base_score_by_depth": r.true_by_depth, "base_eval_tokens": r.tokens}

    return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=None)
def group_fn(static, world_settings):
    """The compiled chunk function of a group: traced once per group static configuration and world."""
    return jax.jit(jax.vmap(make_run(static, eval_items(world_settings))))
