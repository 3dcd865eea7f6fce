"""The data factor: the lineage of the post-training prompts.

The slice offers prompt distributions over skills and depths, placed relative to the bundled bases: within the
narrow base's competence, at its edge, and beyond it. Prompts are always drawn from the training partition of
problem space, so no evaluation item is seen in post-training.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fi_sim.factors.distribution import depth_weights, distribution_params, skill_weights
from fi_sim.factors.registry import Factor, Mechanism, Preset

FACTOR = Factor("data", "the post-training prompt distribution")

FACTOR.add_mechanism(Mechanism("prompts", "fresh prompts every step from a distribution over skills and depths",
                               distribution_params()))
FACTOR.add_preset(Preset("within", "prompts", "skills 0-3 at depths 1-3: inside the narrow base's competence",
                         {"skills": [0, 1, 2, 3], "depths": [1, 2, 3]}))
FACTOR.add_preset(Preset("edge", "prompts",
                         "chains of depth 2-3, mostly skills 4-5 (rare in the narrow base), skills 0-3 at 20% weight",
                         {"skills": [4, 5], "rare_skills": [0, 1, 2, 3], "rare_weight": 0.2, "depths": [2, 3]}))
FACTOR.add_preset(Preset("beyond", "prompts", "skills 4-5 at depth 4: nothing the narrow base can do",
                         {"skills": [4, 5], "depths": [4]}))

class DataParams(NamedTuple):
    skill_weights: np.ndarray
    depth_weights: np.ndarray


def run_params(level, world) -> DataParams:
    return DataParams(skill_weights(level.params, world), depth_weights(level.params, world))
