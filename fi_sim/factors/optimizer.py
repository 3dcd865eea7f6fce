"""The optimizer factor: how the verifier's signal becomes an update.

REINFORCE with a group-mean baseline: each step draws prompts, samples several responses per prompt, and
weights each response's log-likelihood by its reward minus the mean reward of its group (optionally divided
by the group's standard deviation, as in GRPO). An optional KL penalty to the frozen base, computed exactly
over the vocabulary at every generated position, holds the policy near where it started. Updates go through
optax's Adam scaling with a per-run learning rate, so learning rates vmap.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fi_sim.factors.registry import Factor, Mechanism, Param, Preset

FACTOR = Factor("optimizer", "how the reward becomes a parameter update")

FACTOR.add_mechanism(
    Mechanism(
        "reinforce",
        "policy gradient with a group-mean baseline through Adam",
        (
            Param("learning_rate", "float", 5e-4, "Adam learning rate", 1e-7, 1.0),
            Param("kl_coef", "float", 0.0, "weight of the exact KL(policy || base) penalty per generated token", 0.0, 100.0),
            Param("normalize_advantage", "bool", False, "divide advantages by the group's reward std (GRPO)"),
            Param("temperature", "float", 1.0, "sampling temperature during training", 0.05, 10.0),
            Param("max_grad_norm", "float", 1.0, "global gradient-norm clip", 1e-6, 1e6),
            Param("steps", "int", 150, "post-training steps", 1, 1_000_000, static=True),
            Param("prompts_per_step", "int", 8, "prompts per step", 1, 65_536, static=True),
            Param("samples_per_prompt", "int", 8, "responses per prompt (the group for the baseline)", 2, 1024,
                  static=True),
        ),
    )
)
MECHANISMS = tuple(FACTOR.mechanisms)
FACTOR.add_preset(Preset("reinforce", "reinforce", "REINFORCE with a group-mean baseline, no KL penalty"))
FACTOR.add_preset(Preset("reinforce_kl", "reinforce", "the same with a KL penalty to the base (coefficient 0.2)",
                         {"kl_coef": 0.2}))
FACTOR.add_preset(Preset("grpo", "reinforce", "group-normalised advantages (GRPO without clipping)",
                         {"normalize_advantage": True}))


class OptimizerParams(NamedTuple):
    kind: np.ndarray
    learning_rate: np.ndarray
    kl_coef: np.ndarray
    normalize_advantage: np.ndarray
    temperature: np.ndarray
    max_grad_norm: np.ndarray


def run_params(level, world=None) -> OptimizerParams:
    p = level.params
    return OptimizerParams(
        kind=np.int32(MECHANISMS.index(level.mechanism)),
        learning_rate=np.float32(p["learning_rate"]),
        kl_coef=np.float32(p["kl_coef"]),
        normalize_advantage=np.float32(p["normalize_advantage"]),
        temperature=np.float32(p["temperature"]),
        max_grad_norm=np.float32(p["max_grad_norm"]),
    )
