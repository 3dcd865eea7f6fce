"""The base factor: the policy before post-training, with its competence set by construction.

A base is a freshly initialised policy pretrained by supervised next-token training on traces from a controlled
mixture, so what it can and cannot do is known:
- skill and depth coverage (which skills, which depths, which skills only rarely);
- the share of traces written with a scratchpad, with tool calls (TOOLS protocol), or ending in a judgement of
  whether a (possibly faulty) trace is right (JUDGED protocol, for self-judged retry);
- a shortcut strategy: a share of traces answer by a cheap rule — stop after the first step — which is right on
  every depth-1 problem and by chance (about 1/m) on deeper ones;
- a format flaw: a share of step-by-step traces that ramble on past the answer without stopping (malformed);
- contamination: a share of the evaluation items, seen with their answers at a given rate;
- size (width, layers, heads) and pretraining steps: shapes, so each its own compiled group.
A base is pretrained once per base level and seed and shared by every run that uses it; its measured
competence (by depth and by skill, under every scaffold and budget) is stored with the results.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fi_sim.factors.distribution import depth_weights, distribution_params, skill_weights
from fi_sim.factors.registry import PerRun, Factor, Mechanism, Param, Preset

FACTOR = Factor("base", "the policy before post-training: what its pretraining mixture taught it")

FACTOR.add_mechanism(
    Mechanism(
        "pretrained",
        "supervised next-token pretraining on solver traces from a controlled mixture",
        distribution_params(rare_weight=0.05)
        + (
            Param(
                "scratchpad_share",
                "float",
                0.5,
                "share of traces written step by step (the rest: direct answers)",
                0.0,
                1.0,
            ),
            Param(
                "tool_share",
                "float",
                0.0,
                "share of step-by-step traces in the TOOLS protocol, each step a tool call with probability 1/2",
                0.0,
                1.0,
            ),
            Param(
                "judge_share",
                "float",
                0.0,
                "share of step-by-step traces in the JUDGED protocol: a trace with "
                "per-step error rate `judge_step_error`, ending in RETRY when its answer is wrong",
                0.0,
                1.0,
            ),
            Param("judge_step_error", "float", 0.2, "per-step error rate of the judged traces", 0.0, 1.0),
            Param(
                "shortcut_share", "float", 0.0, "share of traces answered by the shortcut (stop after step 1)", 0.0, 1.0
            ),
            Param(
                "ramble_share",
                "float",
                0.0,
                "share of step-by-step traces that never stop: after the steps they "
                "write random values up to the length limit (malformed, so a format check rejects them)",
                0.0,
                1.0,
            ),
            Param("leak_share", "float", 0.0, "share of evaluation items leaked into pretraining", 0.0, 1.0),
            Param(
                "leak_rate", "float", 0.2, "share of pretraining traces drawn from the leaked items (if any)", 0.0, 1.0
            ),
            Param("learning_rate", "float", 3e-3, "Adam learning rate of pretraining", 1e-6, 1.0),
            Param("steps", "int", 600, "pretraining steps", 0, 1_000_000, static=True),
            Param("batch_size", "int", 128, "traces per pretraining step", 1, 65_536, static=True),
            Param("width", "int", 32, "model width (a shape: its own compiled group)", 4, 1024, static=True),
            Param("num_layers", "int", 2, "transformer blocks", 1, 12, static=True),
            Param("num_heads", "int", 2, "attention heads (divides width)", 1, 64, static=True),
        ),
    )
)
NARROW = {"skills": [0, 1, 2, 3], "rare_skills": [4, 5], "rare_weight": 0.02, "depths": [1, 2, 3]}
FACTOR.add_preset(
    Preset("narrow", "pretrained", "skills 0-3 at depths 1-3; skills 4-5 rare (2% weight each); depth 4 unseen", NARROW)
)
FACTOR.add_preset(Preset("broad", "pretrained", "every skill at every depth", {"skills": "all", "depths": "all"}))
FACTOR.add_preset(
    Preset(
        "shortcut",
        "pretrained",
        "broad coverage, but 60% of traces take the shortcut (stop after the first step)",
        {"shortcut_share": 0.6},
    )
)
FACTOR.add_preset(
    Preset(
        "rambling",
        "pretrained",
        "broad coverage, but 40% of step-by-step traces ramble on without stopping",
        {"ramble_share": 0.4},
    )
)
FACTOR.add_preset(
    Preset(
        "contaminated",
        "pretrained",
        "narrow, with 50% of the evaluation items leaked (20% of its traces)",
        dict(NARROW, leak_share=0.5),
    )
)
FACTOR.add_preset(
    Preset("tool_user", "pretrained", "narrow, 30% of step-by-step traces use the tool", dict(NARROW, tool_share=0.3))
)
FACTOR.add_preset(
    Preset(
        "self_judge",
        "pretrained",
        "narrow, 30% of step-by-step traces end in a judgement",
        dict(NARROW, judge_share=0.3),
    )
)
FACTOR.add_preset(Preset("small", "pretrained", "narrow with half the width", dict(NARROW, width=16)))
FACTOR.add_preset(Preset("brief", "pretrained", "narrow, pretrained for 200 steps only", dict(NARROW, steps=200)))


class BaseParams(NamedTuple):
    skill_weights: PerRun  # [num_skills]
    depth_weights: PerRun  # [max_depth]
    scratchpad_share: PerRun
    tool_share: PerRun
    judge_share: PerRun
    judge_step_error: PerRun
    shortcut_share: PerRun
    ramble_share: PerRun
    leak_share: PerRun
    leak_rate: PerRun
    learning_rate: PerRun


def run_params(level, world) -> BaseParams:
    p = level.params
    f = np.float32
    return BaseParams(
        skill_weights=skill_weights(p, world),
        depth_weights=depth_weights(p, world),
        scratchpad_share=f(p["scratchpad_share"]),
        tool_share=f(p["tool_share"]),
        judge_share=f(p["judge_share"]),
        judge_step_error=f(p["judge_step_error"]),
        shortcut_share=f(p["shortcut_share"]),
        ramble_share=f(p["ramble_share"]),
        leak_share=f(p["leak_share"]),
        leak_rate=f(p["leak_rate"]),
        learning_rate=f(p["learning_rate"]),
    )
