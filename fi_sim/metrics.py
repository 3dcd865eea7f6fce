"""One typed schema of every metric a study reports: what a run outputs, what a base evaluation outputs, and
the variables of the results dataset are all built from `Metrics` below.

Each field's metadata (`metric(...)`) gives its dimensions (`dims`: the kind of results variable), its
`source` (a post-training run's output, its base's evaluation, or derived when results are assembled), whether
it is `true` (against the exact solver), `proxy` (as the run's verifier scores it) or a measurement of the reward
`channel`, its units and its description. A row function returns `outputs(source, values)`, which refuses a
missing or unknown name at trace time — before any compute — rather than at assembly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

FRACTION = "fraction of held-out items"
DIMS = ("budget", "budget_depth", "budget_skill", "train", "train_step", "budget_item", "scalar")
SOURCES = ("run", "base", "derived")
TRUTH = ("true", "proxy", "channel")
TAIL_DIVISOR = 10  # end-of-training metrics average the last 1/TAIL_DIVISOR (10%) of the steps


def tail_steps(steps: int) -> int:
    """Steps in the end-of-training window: the last 10% of `steps` (rounded down), at least one."""
    return max(1, steps // TAIL_DIVISOR)


@dataclass(frozen=True)
class Metric:
    name: str
    dims: str  # one of DIMS
    source: str  # one of SOURCES
    truth: str  # one of TRUTH
    units: str
    description: str
    variable: bool = True  # a variable of the results dataset (else an output used while assembling)


def metric(dims: str, source: str, truth: str, units: str, description: str, variable: bool = True) -> Any:
    assert dims in DIMS and source in SOURCES and truth in TRUTH, (dims, source, truth)
    return field(default=None, metadata={"metric": (dims, source, truth, units, description, variable)})


@dataclass(frozen=True)
class Metrics:
    """Every metric, in the order of the results dataset's variables."""

    gain: Any = metric(
        "budget",
        "derived",
        "true",
        FRACTION,
        "score after post-training minus the base's score "
        "under the same budget, on the same held-out items with the same sampling key",
    )
    score: Any = metric("budget", "run", "true", FRACTION, "score of the post-trained policy under the budget")
    base_score: Any = metric("budget", "base", "true", FRACTION, "score of the run's base under the same budget")
    proxy_gain: Any = metric("budget", "derived", "proxy", FRACTION, "gain as the run's verifier would measure it")
    proxy_score: Any = metric(
        "budget", "run", "proxy", FRACTION, "score of the post-trained policy as the run's verifier scores it"
    )
    base_proxy_score: Any = metric(
        "budget", "base", "proxy", FRACTION, "score of the base as the run's verifier scores it"
    )
    clean_score: Any = metric(
        "budget",
        "run",
        "true",
        FRACTION,
        "score of the post-trained policy on the evaluation items neither its base nor its data can have seen",
    )
    base_clean_score: Any = metric(
        "budget",
        "derived",
        "true",
        FRACTION,
        "score of the run's base on the run's clean evaluation items (those of `clean_score`)",
    )
    clean_gain: Any = metric(
        "budget",
        "derived",
        "true",
        FRACTION,
        "clean_score minus base_clean_score: the gain on "
        "the items neither the base nor the data can have seen (against `gain`: what "
        "contamination adds)",
    )
    score_by_depth: Any = metric(
        "budget_depth", "run", "true", FRACTION, "score of the post-trained policy by problem depth"
    )
    base_score_by_depth: Any = metric("budget_depth", "base", "true", FRACTION, "score of the base by problem depth")
    score_by_skill: Any = metric(
        "budget_skill", "run", "true", FRACTION, "score of the post-trained policy on the items that use each skill"
    )
    base_score_by_skill: Any = metric(
        "budget_skill", "base", "true", FRACTION, "score of the base on the items that use each skill"
    )
    eval_tokens_per_item: Any = metric(
        "budget", "run", "true", "tokens", "tokens one evaluation item costs under the budget (tool costs included)"
    )
    train_proxy_reward: Any = metric(
        "train", "run", "proxy", "mean reward", "mean verifier reward over the last 10% of steps"
    )
    train_true_accuracy: Any = metric(
        "train", "run", "true", "fraction of samples", "share of truly correct episodes over the last 10% of steps"
    )
    reward_false_positive_rate: Any = metric(
        "train", "run", "channel", "probability", "measured P(reward | answer wrong) over all post-training samples"
    )
    reward_false_negative_rate: Any = metric(
        "train", "run", "channel", "probability", "measured P(no reward | answer right) over all post-training samples"
    )
    kl_to_base: Any = metric(
        "train", "run", "true", "nats per sequence", "mean KL(policy || base) over the last 10% of steps"
    )
    entropy: Any = metric("train", "run", "true", "nats per token", "mean policy entropy over the last 10% of steps")
    clip_fraction: Any = metric(
        "train", "run", "true", "fraction of tokens", "share of trained tokens whose ratio was clipped (PPO)"
    )
    train_tool_calls: Any = metric("train", "run", "true", "calls", "tool calls during post-training")
    train_tokens: Any = metric(
        "train", "run", "true", "tokens", "tokens generated during post-training, tool costs included"
    )
    eval_tokens: Any = metric(
        "train", "run", "true", "tokens", "tokens generated evaluating the post-trained policy (all budgets)"
    )
    curve_proxy_reward: Any = metric(
        "train_step", "run", "proxy", "mean reward", "mean verifier reward per window of steps"
    )
    curve_true_accuracy: Any = metric(
        "train_step", "run", "true", "fraction of samples", "share of truly correct episodes per window"
    )
    curve_kl: Any = metric("train_step", "run", "true", "nats per sequence", "KL(policy || base) per window of steps")
    curve_entropy: Any = metric(
        "train_step", "run", "true", "nats per token", "mean policy entropy over trained tokens per window of steps"
    )
    curve_false_positive_rate: Any = metric(
        "train_step", "run", "channel", "probability", "measured P(reward | answer wrong) per window (NaN: none wrong)"
    )
    curve_false_negative_rate: Any = metric(
        "train_step", "run", "channel", "probability", "measured P(no reward | answer right) per window (NaN: none right)"
    )
    # outputs used while assembling, not variables of their own
    finite: Any = metric("scalar", "run", "true", "flag", "every trained parameter and score is finite", variable=False)
    base_score_by_item: Any = metric(
        "budget_item",
        "base",
        "true",
        FRACTION,
        "the base's score on each evaluation item (for base_clean_score)",
        variable=False,
    )
    base_eval_tokens: Any = metric(
        "scalar", "base", "true", "tokens", "tokens generated evaluating the base (all budgets)", variable=False
    )


SCHEMA: tuple[Metric, ...] = tuple(Metric(f.name, *f.metadata["metric"]) for f in fields(Metrics))


def names(source: str) -> tuple[str, ...]:
    return tuple(m.name for m in SCHEMA if m.source == source)


def outputs(source: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A row function's outputs, checked against the schema (at trace time: before any compute)."""
    expected = names(source)
    missing, unknown = set(expected) - set(values), set(values) - set(expected)
    if missing or unknown:
        raise KeyError(
            f"the {source} outputs do not match fi_sim.metrics.Metrics: missing {sorted(missing)}, "
            f"unknown {sorted(unknown)}"
        )
    return {name: values[name] for name in expected}


def variables() -> dict[str, tuple[str, str, str, str, str]]:
    """The results dataset's variables: name -> (dims kind, source, truth, units, description)."""
    return {m.name: (m.dims, m.source, m.truth, m.units, m.description) for m in SCHEMA if m.variable}
