"""The budget factor: inference-time compute at evaluation.

A budget level is k samples per prompt at a temperature, aggregated as
- pass@k: solved if any of k samples is right (the unbiased estimator from n >= k samples);
- majority vote: the most frequent answer of k samples (ties share the credit);
- best of k: the sample the proxy verifier scores highest (ties share the credit) — with a noisy verifier,
  best-of-n plateaus at the share of accepted samples that are right;
- first accepted: samples are drawn one by one until the proxy verifier accepts one (at most k); the answer is
  the accepted one, or the k-th; tokens are counted only up to the stop;
with at most `max_tokens` generated tokens per sample (a sample that needs more fails). Budget levels never
retrain: every level is computed from one set of n samples of the trained policy per distinct temperature, so
the budget is static evaluation configuration shared by all runs of a study.
"""

from __future__ import annotations

from dataclasses import dataclass

from fi_sim.factors.registry import Factor, Mechanism, Param, Preset

FACTOR = Factor("budget", "inference-time compute at evaluation")

_COMMON = (
    Param("k", "int", 1, "samples per prompt", 1, 1024, static=True),
    Param("temperature", "float", 1.0, "sampling temperature at evaluation", 0.05, 10.0, static=True),
    Param("max_tokens", "int", 0, "most generated tokens per sample, tool costs included (0: no limit)", 0, 1_000_000,
          static=True),
)
FACTOR.add_mechanism(Mechanism("pass_at_k", "solved if any of k samples is right (unbiased estimator)", _COMMON))
FACTOR.add_mechanism(Mechanism("majority_vote", "the most frequent answer of k samples (ties share credit)", _COMMON))
FACTOR.add_mechanism(Mechanism("best_of_k", "the sample the proxy verifier scores highest (ties share credit)",
                               _COMMON))
FACTOR.add_mechanism(Mechanism("first_accepted", "draw up to k samples, stop at the first the proxy verifier "
                               "accepts", _COMMON))
FACTOR.add_preset(Preset("pass@1", "pass_at_k", "one sample at temperature 1", {"k": 1}))
FACTOR.add_preset(Preset("pass@k", "pass_at_k", "pass@8 at temperature 1", {"k": 8}))
FACTOR.add_preset(Preset("majority@k", "majority_vote", "majority vote of 8 samples at temperature 1", {"k": 8}))
FACTOR.add_preset(Preset("best_of_k", "best_of_k", "best of 8 by the proxy verifier", {"k": 8}))
FACTOR.add_preset(Preset("first_accepted", "first_accepted", "up to 8 samples until the verifier accepts",
                         {"k": 8}))
FACTOR.add_preset(Preset("greedy_ish", "pass_at_k", "one sample at temperature 0.1", {"k": 1, "temperature": 0.1}))


@dataclass(frozen=True)
class BudgetSpec:
    """A budget level as static evaluation configuration."""

    name: str
    aggregation: str  # mechanism name
    k: int
    temperature: float
    max_tokens: int = 0  # 0: no limit


def spec(level) -> BudgetSpec:
    p = level.params
    return BudgetSpec(level.name, level.mechanism, int(p["k"]), float(p["temperature"]), int(p.get("max_tokens", 0)))
