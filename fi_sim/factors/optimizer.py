"""The optimizer factor: how the verifier's signal becomes an update.

Every mechanism is one clipped, weighted log-likelihood objective over training sequences,

    J = mean over sequences of sum over tokens of min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t),
    r_t = pi(a_t) / pi_old(a_t),

minus an exact KL(policy || base) penalty and plus an entropy bonus (both per generated token), optimised
through optax (Adam or SGD) with a per-run learning rate. Mechanisms differ only in which sequences are
trained on and how the per-token weights A_t come from the rewards, so they share one compiled batch:

- reinforce: the policy's samples; A_t = reward-to-go minus the mean total reward of the prompt's group (a
  group-mean baseline; with `normalize_advantage`, divided by the group's standard deviation as in GRPO).
- ppo_clip: the same advantages, `inner_epochs` updates per batch against the sampling policy, ratio clipped
  at `clip_epsilon` (the clip is active from the second epoch on).
- rs_sft: rejection-sampling SFT: supervised on the samples the verifier accepts (reward >= 0.5).
- positive_only: reinforce only the rewarded samples (weight = reward), no baseline, no negative signal.
- negative_only: only push down unrewarded samples (weight = -(1 - reward)), no positive signal.
- distill: supervised on the data factor's teacher traces (the policy's own samples are not trained on).

Outside ppo_clip the clip is off (eps = infinity) and there is one epoch, so r_t = 1 and the gradient is the
plain weighted likelihood gradient.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fi_sim.factors.registry import Factor, Mechanism, Param, Preset

FACTOR = Factor("optimizer", "how the reward becomes a parameter update")

NO_CLIP = 1e9
FAMILIES = ("adam", "sgd")


def _params(inner_epochs: int = 1, clip: bool = False) -> tuple[Param, ...]:
    common = (
        Param("learning_rate", "float", 5e-4, "learning rate", 1e-7, 10.0),
        Param("optimizer_family", "choice", "adam", "optax update rule", choices=FAMILIES),
        Param("kl_coef", "float", 0.0, "weight of the exact KL(policy || base) penalty per generated token", 0.0, 100.0),
        Param("entropy_coef", "float", 0.0, "weight of the entropy bonus per generated token", 0.0, 100.0),
        Param("normalize_advantage", "bool", False, "divide advantages by the group's reward std (GRPO)"),
        Param("temperature", "float", 1.0, "sampling temperature during training", 0.05, 10.0),
        Param("max_grad_norm", "float", 1.0, "global gradient-norm clip", 1e-6, 1e6),
        Param("steps", "int", 150, "post-training steps", 1, 1_000_000, static=True),
        Param("prompts_per_step", "int", 8, "prompts per step", 1, 65_536, static=True),
        Param("samples_per_prompt", "int", 8, "responses per prompt (the group for the baseline)", 2, 1024,
              static=True),
        Param("inner_epochs", "int", inner_epochs, "updates per sampled batch", 1, 64, static=True),
    )
    if clip:
        common += (Param("clip_epsilon", "float", 0.2, "PPO ratio clip", 1e-4, 10.0),)
    return common


FACTOR.add_mechanism(Mechanism("reinforce", "policy gradient with a group-mean baseline", _params()))
FACTOR.add_mechanism(Mechanism("ppo_clip", "clipped ratio objective over several epochs per batch",
                               _params(inner_epochs=4, clip=True)))
FACTOR.add_mechanism(Mechanism("rs_sft", "supervised on the samples the verifier accepts", _params()))
FACTOR.add_mechanism(Mechanism("positive_only", "reinforce rewarded samples only", _params()))
FACTOR.add_mechanism(Mechanism("negative_only", "push down unrewarded samples only", _params()))
FACTOR.add_mechanism(Mechanism("distill", "supervised on the data factor's teacher traces", _params()))
MECHANISMS = tuple(FACTOR.mechanisms)

FACTOR.add_preset(Preset("reinforce", "reinforce", "REINFORCE with a group-mean baseline, Adam, no KL penalty"))
FACTOR.add_preset(Preset("reinforce_kl", "reinforce", "the same with a KL penalty to the base (coefficient 0.2)",
                         {"kl_coef": 0.2}))
FACTOR.add_preset(Preset("grpo", "reinforce", "group-normalised advantages (GRPO without clipping)",
                         {"normalize_advantage": True}))
FACTOR.add_preset(Preset("ppo_clip", "ppo_clip", "GRPO-style advantages, 4 epochs per batch, ratio clip 0.2",
                         {"normalize_advantage": True}))
FACTOR.add_preset(Preset("rs_sft", "rs_sft", "rejection-sampling SFT on verifier-accepted samples"))
FACTOR.add_preset(Preset("positive_only", "positive_only", "positive sample reinforcement only"))
FACTOR.add_preset(Preset("negative_only", "negative_only", "negative sample reinforcement only"))
FACTOR.add_preset(Preset("distill", "distill", "distillation SFT on teacher traces"))
FACTOR.add_preset(Preset("reinforce_sgd", "reinforce", "REINFORCE through plain SGD",
                         {"optimizer_family": "sgd", "learning_rate": 0.05}))
FACTOR.add_preset(Preset("reinforce_entropy", "reinforce", "REINFORCE with an entropy bonus (0.01)",
                         {"entropy_coef": 0.01}))


class OptimizerParams(NamedTuple):
    kind: np.ndarray  # index into MECHANISMS
    learning_rate: np.ndarray
    family: np.ndarray  # index into FAMILIES
    kl_coef: np.ndarray
    entropy_coef: np.ndarray
    normalize_advantage: np.ndarray
    temperature: np.ndarray
    max_grad_norm: np.ndarray
    clip_epsilon: np.ndarray


def run_params(level, world=None) -> OptimizerParams:
    p = level.params
    return OptimizerParams(
        kind=np.int32(MECHANISMS.index(level.mechanism)),
        learning_rate=np.float32(p["learning_rate"]),
        family=np.int32(FAMILIES.index(p["optimizer_family"])),
        kl_coef=np.float32(p["kl_coef"]),
        entropy_coef=np.float32(p["entropy_coef"]),
        normalize_advantage=np.float32(p["normalize_advantage"]),
        temperature=np.float32(p["temperature"]),
        max_grad_norm=np.float32(p["max_grad_norm"]),
        clip_epsilon=np.float32(p.get("clip_epsilon", NO_CLIP)),
    )
