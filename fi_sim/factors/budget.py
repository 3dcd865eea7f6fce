"""The budget factor: inference-time compute at evaluation.

A budget level is k samples per prompt at a temperature, aggregated as pass@k (the unbiased estimator from
n >= k samples) or as a majority vote. Budget levels never retrain: every level is computed from one set of
n samples of the trained policy per distinct temperature, so the budget is static evaluation configuration
shared by all runs of a study, not a per-run parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from fi_sim.factors.registry import Factor, Mechanism, Param, Preset

FACTOR = Factor("budget", "inference-time compute at evaluation")

_COMMON = (
    Param("k", "int", 1, "samples per prompt", 1, 1024, static=True),
    Param("temperature", "float", 1.0, "sampling temperature at evaluation", 0.05, 10.0, static=True),
)
FACTOR.add_mechanism(Mechanism("pass_at_k", "solved if any of k samples is right (unbiased estimator)", _COMMON))
FACTOR.add_mechanism(Mechanism("majority_vote", "the most frequent answer of k samples (ties share credit)", _COMMON))
FACTOR.add_preset(Preset("pass@1", "pass_at_k", "one sample at temperature 1", {"k": 1}))
FACTOR.add_preset(Preset("pass@k", "pass_at_k", "pass@8 at temperature 1", {"k": 8}))
FACTOR.add_preset(Preset("majority@k", "majority_vote", "majority vote of 8 samples at temperature 1", {"k": 8}))


@dataclass(frozen=True)
class BudgetSpec:
    """A budget level as static evaluation configuration."""

    name: str
    aggregation: str  # mechanism name
    k: int
    temperature: float


def spec(level) -> BudgetSpec:
    return BudgetSpec(level.name, level.mechanism, int(level.params["k"]), float(level.params["temperature"]))
