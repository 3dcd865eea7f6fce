"""Problem distributions over skills and depths, shared by the base's pretraining mix and the data factor.

A distribution is given in the domain's words — which skills, which depths, which skills appear only rarely —
and becomes two weight vectors (over skill ids and over depths 1..max_depth) that are per-run arrays, so that
different distributions vmap in one compiled group.
"""

from __future__ import annotations

import numpy as np

from fi_sim.factors.registry import Param


def _skills_ok(value, world):
    bad = [s for s in value if not 0 <= s < world.num_skills]
    if bad or len(set(value)) != len(value):
        return f"distinct skill ids in 0..{world.num_skills - 1}"
    return None


def _depths_ok(value, world):
    bad = [d for d in value if not 1 <= d <= world.max_depth]
    if bad or len(set(value)) != len(value):
        return f"distinct depths in 1..{world.max_depth}"
    return None


def distribution_params(skills="all", depths="all", rare_skills=(), rare_weight=0.1) -> tuple[Param, ...]:
    return (
        Param(
            "skills",
            "int_list",
            skills,
            "skill ids drawn at full weight",
            low=0,
            world_check=_skills_ok,
            expand_all=lambda w: list(range(w.num_skills)),
        ),
        Param(
            "depths",
            "int_list",
            depths,
            "problem depths drawn (uniformly)",
            low=1,
            world_check=_depths_ok,
            expand_all=lambda w: list(range(1, w.max_depth + 1)),
        ),
        Param(
            "rare_skills",
            "int_list",
            list(rare_skills),
            "skill ids drawn at `rare_weight` times full weight",
            low=0,
            world_check=_skills_ok,
            allow_empty=True,
        ),
        Param(
            "rare_weight",
            "float",
            rare_weight,
            "weight of a rare skill relative to a full-weight one",
            low=0.0,
            high=1.0,
        ),
    )


def skill_weights(params, world) -> np.ndarray:
    w = np.zeros(world.num_skills, np.float32)
    w[list(params["skills"])] = 1.0
    for s in params["rare_skills"]:
        w[s] = max(w[s], params["rare_weight"])
    return w / w.sum()


def depth_weights(params, world) -> np.ndarray:
    w = np.zeros(world.max_depth, np.float32)
    w[[d - 1 for d in params["depths"]]] = 1.0
    return w / w.sum()
