"""Budget estimators against brute-force enumeration, and the noisy verifier's measured channel."""

import itertools
from math import comb

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fi_sim.evaluate import majority_vote, pass_at_k
from fi_sim.factors import FACTORS, MODULES
from fi_sim.world.grading import Graded
from fi_sim.world.tasks import TaskWorld


@settings(max_examples=80, deadline=None)
@given(correct=st.lists(st.booleans(), min_size=1, max_size=10), data=st.data())
def test_pass_at_k_equals_enumeration_over_all_k_subsets(correct, data):
    n = len(correct)
    k = data.draw(st.integers(1, n))
    subsets = list(itertools.combinations(range(n), k))
    brute = np.mean([any(correct[i] for i in s) for s in subsets])
    assert len(subsets) == comb(n, k)
    got = float(pass_at_k(jnp.asarray(sum(correct)), n, k))
    assert abs(got - brute) < 1e-6


def _brute_majority(answers, truth, k):
    blocks = len(answers) // k
    scores = []
    for b in range(blocks):
        block = [a for a in answers[b * k : (b + 1) * k] if a >= 0]
        if not block:
            scores.append(0.0)
            continue
        counts = {a: block.count(a) for a in set(block)}
        best = max(counts.values())
        tied = [a for a, c in counts.items() if c == best]
        scores.append((truth in tied) / len(tied))  # uniform tie-break, in expectation
    return float(np.mean(scores))


@settings(max_examples=40, deadline=None)
@given(answers=st.lists(st.integers(-1, 4), min_size=2, max_size=12), truth=st.integers(0, 4), data=st.data())
def test_majority_vote_equals_brute_force_with_shared_ties(answers, truth, data):
    k = data.draw(st.integers(1, len(answers)))
    a = jnp.asarray(answers)[None]
    rewards = (a == truth).astype(jnp.float32)
    true, proxy = majority_vote(a, jnp.asarray([truth]), rewards, k, 5)
    expected = _brute_majority(answers, truth, k)
    assert abs(float(true[0]) - expected) < 1e-6
    assert abs(float(proxy[0]) - expected) < 1e-6  # an exact verifier's proxy equals the truth


def test_noisy_verifier_measured_rates_match_its_parameters():
    level = FACTORS["verifier"].level({"preset": "noisy", "false_positive_rate": 0.15, "false_negative_rate": 0.3})
    params = MODULES["verifier"].run_params(level)
    n = 100_000
    correct = jax.random.bernoulli(jax.random.key(0), 0.5, (n,))
    graded = Graded(correct=correct, well_formed=jnp.ones(n, bool), answer=jnp.zeros(n, jnp.int32),
                    length=jnp.ones(n, jnp.int32), step_correct=jnp.zeros((n, 5), bool),
                    depth=jnp.ones(n, jnp.int32), retry=jnp.zeros(n, bool), tool_calls=jnp.zeros(n, jnp.int32))
    reward = np.asarray(MODULES["verifier"].reward(params, graded, jax.random.key(1), TaskWorld()))
    correct = np.asarray(correct)
    for rate, mask, hit in ((0.15, ~correct, reward == 1), (0.3, correct, reward == 0)):
        m = mask.sum()
        measured = (hit & mask).sum() / m
        se = np.sqrt(rate * (1 - rate) / m)
        assert abs(measured - rate) < 3 * se, (measured, rate, se)
    counts = MODULES["verifier"].channel_counts(graded, jnp.asarray(reward))
    assert abs(float(counts.false_positive / counts.wrong) - 0.15) < 0.01


def test_exact_verifier_is_the_truth():
    params = MODULES["verifier"].run_params(FACTORS["verifier"].level("exact"))
    correct = jnp.array([True, False, True, False])
    graded = Graded(correct, jnp.ones(4, bool), jnp.zeros(4, jnp.int32), jnp.ones(4, jnp.int32),
                    jnp.zeros((4, 5), bool), jnp.ones(4, jnp.int32), jnp.zeros(4, bool), jnp.zeros(4, jnp.int32))
    reward = MODULES["verifier"].reward(params, graded, jax.random.key(0), TaskWorld())
    assert np.asarray(reward).tolist() == [1, 0, 1, 0]
