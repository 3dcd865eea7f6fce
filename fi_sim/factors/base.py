"""The base factor: the policy before post-training, with its competence set by construction.

A base is a freshly initialised policy pretrained by supervised next-token training on exact solver traces
from a controlled mixture — which skills, which depths, how often with a scratchpad — so what it can and cannot
do is known. A base is pretrained once per base level and seed and shared by every run that uses it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fi_sim.factors.distribution import depth_weights, distribution_params, skill_weights
from fi_sim.factors.registry import Factor, Mechanism, Param, Preset

FACTOR = Factor("base", "the policy before post-training: what its pretraining mixture taught it")

FACTOR.add_mechanism(
    Mechanism(
        "pretrained",
        "supervised next-token pretraining on exact solver traces from a controlled mixture",
        distribution_params(rare_weight=0.05)
        + (
            Param("scratchpad_share", "float", 0.5, "share of pretraining traces written with a scratchpad", 0.0, 1.0),
            Param("learning_rate", "float", 3e-3, "Adam learning rate of pretraining", 1e-6, 1.0),
            Param("steps", "int", 600, "pretraining steps", 0, 1_000_000, static=True),
            Param("batch_size", "int", 128, "traces per pretraining step", 1, 65_536, static=True),
            Param("width", "int", 32, "model width (a shape: its own compiled group)", 4, 1024, static=True),
            Param("num_layers", "int", 2, "transformer blocks", 1, 12, static=True),
            Param("num_heads", "int", 2, "attention heads (divides width)", 1, 64, static=True),
        ),
    )
)
FACTOR.add_preset(Preset("narrow", "pretrained",
                         "skills 0-3 at depths 1-3; skills 4-5 rare (2% weight each); depth 4 unseen",
                         {"skills": [0, 1, 2, 3], "rare_skills": [4, 5], "rare_weight": 0.02, "depths": [1, 2, 3]}))
FACTOR.add_preset(Preset("broad", "pretrained", "every skill at every depth", {"skills": "all", "depths": "all"}))


class BaseParams(NamedTuple):
    skill_weights: np.ndarray  # [num_skills]
    depth_weights: np.ndarray  # [max_depth]
    scratchpad_share: np.ndarray
    learning_rate: np.ndarray


def run_params(level, world) -> BaseParams:
    p = level.params
    return BaseParams(
        skill_weights=skill_weights(p, world),
        depth_weights=depth_weights(p, world),
        scratchpad_share=np.float32(p["scratchpad_share"]),
        learning_rate=np.float32(p["learning_rate"]),
    )
