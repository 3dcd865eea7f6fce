"""The data factor: the lineage of the post-training prompts and traces.

- difficulty: a distribution over skills and depths, placed relative to the bundled bases by the presets
  (within the narrow base's competence, at its edge, beyond it);
- diversity: fresh prompts every step, or a finite pool of `pool_size` unique prompts drawn once per run
  (a shape: its own compiled group);
- contamination: a share `eval_overlap` of the prompts (of the pool, when there is one) are evaluation items,
  drawn from the first `eval_exposed_share` of the evaluation set (the rest of it stays clean, so a clean
  score can be reported); otherwise prompts come from the training partition of problem space only;
- teacher traces, used by the supervised optimizers (distill): a teacher is the exact solver whose every step is
  wrong with probability `teacher_step_error` (a wrong step propagates), writing a share `teacher_scratchpad_share`
  of its traces with a scratchpad and the rest as direct answers.

The card records the data's provenance: generator, parameters, how the seed is derived, and the filters applied.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fi_sim.factors.distribution import depth_weights, distribution_params, skill_weights
from fi_sim.factors.registry import PerRun, Factor, Mechanism, Param, Preset

FACTOR = Factor("data", "the post-training prompt distribution and its lineage")


def _dataset_ok(value, world):
    from fi_sim.errors import ValidationError
    from fi_sim.world import frozen

    try:
        frozen.load(value, world)
    except ValidationError as err:
        return "a frozen dataset file that fits this world: " + "; ".join(
            f"{p.field} {p.allowed}" for p in err.problems
        )
    return None


def _dataset_identity(value) -> str:
    from fi_sim.world import frozen

    return "sha256:" + frozen.load(value).sha256


FACTOR.add_mechanism(
    Mechanism(
        "frozen",
        "replay a frozen dataset of prompt-response-reward tuples (as released by a paper)",
        (
            Param(
                "dataset",
                "text",
                "runs/headline/frozen.npz",
                "path of the frozen dataset (.npz, see fi_sim.world.frozen)",
                world_check=_dataset_ok,
                static=True,
                identity=_dataset_identity,
            ),
            Param(
                "rescore",
                "bool",
                True,
                "score the frozen responses with the run's verifier (else: use the frozen rewards)",
            ),
        ),
    )
)
FACTOR.add_mechanism(
    Mechanism(
        "prompts",
        "prompts from a distribution over skills and depths, fresh or from a pool, with teacher traces",
        distribution_params()
        + (
            Param(
                "pool_size",
                "int",
                0,
                "unique prompts in a finite pool (0: fresh prompts every step)",
                0,
                1_000_000,
                static=True,
            ),
            Param("eval_overlap", "float", 0.0, "share of prompts that are evaluation items (contamination)", 0.0, 1.0),
            Param(
                "eval_exposed_share",
                "float",
                0.5,
                "share of the evaluation items those prompts are drawn from",
                0.0,
                1.0,
            ),
            Param("teacher_step_error", "float", 0.0, "teacher's per-step error rate q", 0.0, 1.0),
            Param(
                "teacher_scratchpad_share",
                "float",
                1.0,
                "share of teacher traces written with a scratchpad (the rest are direct answers)",
                0.0,
                1.0,
            ),
        ),
    )
)

FACTOR.add_preset(
    Preset(
        "frozen",
        "frozen",
        "replay the headline experiment's frozen dataset, rescored by the run's "
        "verifier (generate it with experiments/headline.py)",
    )
)
EDGE = {"skills": [4, 5], "rare_skills": [0, 1, 2, 3], "rare_weight": 0.2, "depths": [1, 2, 3]}
FACTOR.add_preset(
    Preset(
        "within",
        "prompts",
        "skills 0-3 at depths 1-3: inside the narrow base's competence",
        {"skills": [0, 1, 2, 3], "depths": [1, 2, 3]},
    )
)
FACTOR.add_preset(
    Preset(
        "edge",
        "prompts",
        "problems of depth 2-3, mostly skills 4-5 (rare in the narrow base), skills 0-3 at 20% weight",
        EDGE,
    )
)
FACTOR.add_preset(
    Preset(
        "beyond", "prompts", "skills 4-5 at depth 4: nothing the narrow base can do", {"skills": [4, 5], "depths": [4]}
    )
)
FACTOR.add_preset(
    Preset("edge_pool16", "prompts", "edge, but only 16 unique prompts reused all run", dict(EDGE, pool_size=16))
)
FACTOR.add_preset(
    Preset(
        "edge_contaminated",
        "prompts",
        "edge, with half of the prompts drawn from the evaluation set",
        dict(EDGE, eval_overlap=0.5),
    )
)
FACTOR.add_preset(Preset("teacher_exact", "prompts", "edge prompts with exact teacher traces (for distill)", EDGE))
FACTOR.add_preset(
    Preset(
        "teacher_noisy",
        "prompts",
        "edge prompts with a teacher wrong on 20% of steps",
        dict(EDGE, teacher_step_error=0.2),
    )
)


class DataParams(NamedTuple):
    skill_weights: PerRun
    depth_weights: PerRun
    eval_overlap: PerRun
    eval_exposed_share: PerRun
    teacher_step_error: PerRun
    teacher_scratchpad_share: PerRun
    rescore: PerRun  # frozen data: the run's verifier rescores the frozen responses


def run_params(level, world) -> DataParams:
    p = level.params
    if level.mechanism == "frozen":  # the distribution fields are unused: prompts come from the file
        uniform = np.full(world.num_skills, 1.0 / world.num_skills, np.float32)
        return DataParams(
            uniform,
            np.full(world.max_depth, 1.0 / world.max_depth, np.float32),
            np.float32(0),
            np.float32(0),
            np.float32(0),
            np.float32(1),
            np.float32(p["rescore"]),
        )
    return DataParams(
        skill_weights(p, world),
        depth_weights(p, world),
        np.float32(p["eval_overlap"]),
        np.float32(p["eval_exposed_share"]),
        np.float32(p["teacher_step_error"]),
        np.float32(p["teacher_scratchpad_share"]),
        np.float32(0),
    )


def frozen_dataset(level, world):
    """The frozen dataset a level replays (None for generated prompts): part of the static configuration."""
    if level.mechanism != "frozen":
        return None
    from fi_sim.world import frozen

    return frozen.load(level.params["dataset"], world)


def exposed_share(level) -> float:
    """Share of the evaluation items (a prefix of the evaluation set) these prompts can contain."""
    if level.mechanism == "frozen":
        return 0.0
    return level.params["eval_exposed_share"] if level.params["eval_overlap"] > 0 else 0.0


def provenance(level) -> dict:
    """Where the post-training data comes from, for the interface card."""
    p = level.params
    if level.mechanism == "frozen":
        from pathlib import Path

        from fi_sim.world import frozen

        if not Path(p["dataset"]).exists():
            return {"dataset": p["dataset"], "sha256": None}
        ds = frozen.load(p["dataset"])
        return {
            "dataset": p["dataset"],
            "sha256": ds.sha256,
            "prompts": ds.num_prompts,
            "responses_per_prompt": ds.group_size,
            "generated_by": ds.provenance,
            "rewards": "rescored by the run's verifier" if p["rescore"] else "as frozen",
        }
    filters = ["training partition of problem space (held-out evaluation items excluded)"]
    if p["eval_overlap"] > 0:
        filters = [
            f"{p['eval_overlap']:.0%} of prompts drawn from the first {p['eval_exposed_share']:.0%} of the "
            "evaluation items (contamination)"
        ]
    return {
        "generator": "the world's exact solver as teacher"
        + (f", each step wrong with probability {p['teacher_step_error']}" if p["teacher_step_error"] else ""),
        "prompts": "fresh every step" if not p["pool_size"] else f"a pool of {p['pool_size']} unique prompts",
        "seed": "derived per run: fold_in(fold_in(study key, run id), post-training stage), then by step",
        "filters": filters,
    }


FACTOR.card_extra = lambda level: {"provenance": provenance(level)}
