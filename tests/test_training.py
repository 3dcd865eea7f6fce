"""Real training, small and seeded: a base's competence is what its pretraining mix says, and post-training
with an exact verifier at the edge of that competence raises true pass@1."""

import jax
import numpy as np
import pytest

from fi_sim.engine.execute import stack
from fi_sim.evaluate import EvalStatic, eval_set, make_evaluate
from fi_sim.factors import FACTORS, MODULES
from fi_sim.factors.budget import BudgetSpec
from fi_sim.factors.distribution import depth_weights, skill_weights
from fi_sim.train import PosttrainStatic, PretrainStatic, RunParams, make_posttrain, make_pretrain
from fi_sim.world.tasks import TaskWorld
from fi_sim.world.policy import PolicyConfig
from fi_sim.world.tokens import Vocab

WORLD = TaskWorld()
VOCAB = Vocab(WORLD)
CONFIG = PolicyConfig(VOCAB.size, VOCAB.sequence_length, width=32, num_layers=2, num_heads=2)
PASS1 = (BudgetSpec("pass@1", "pass_at_k", 1, 1.0),)


def _level(factor, spec):
    return FACTORS[factor].level(spec, WORLD)


@pytest.fixture(scope="module")
def bases():
    """Three bases pretrained in one vmapped call: narrow with no trace of skills 4-5, the default narrow
    (skills 4-5 rare), and a contaminated one (half the evaluation items leaked with their answers)."""
    levels = [_level("base", {"preset": "narrow", "rare_skills": []}), _level("base", "narrow"),
              _level("base", "contaminated")]
    params = stack([MODULES["base"].run_params(lv, WORLD) for lv in levels])
    pretrain = jax.jit(jax.vmap(make_pretrain(PretrainStatic(WORLD, CONFIG, 600, 128))))
    trained, losses = pretrain(params, jax.random.split(jax.random.key(11), 3))
    assert np.all(np.asarray(losses[:, -50:]).mean(1) < np.asarray(losses[:, :50]).mean(1))
    return [jax.tree.map(lambda x, i=i: x[i], trained) for i in range(3)]


def _scratchpad_accuracy(params, skills, depths, size=256, seed=0):
    items = eval_set(WORLD, size, skill_weights({"skills": skills, "rare_skills": [], "rare_weight": 0}, WORLD),
                     depth_weights({"depths": depths}, WORLD), seed)
    evaluate = jax.jit(make_evaluate(EvalStatic(WORLD, CONFIG, PASS1, 4)))
    scaffold = MODULES["scaffold"].run_params(_level("scaffold", "scratchpad"), VOCAB)
    verifier = MODULES["verifier"].run_params(_level("verifier", "exact"))
    return float(evaluate(params, scaffold, verifier, items, jax.random.key(seed)).true_score[0])


def test_narrow_base_knows_its_skills_and_depths_and_nothing_else(bases):
    narrow = bases[0]
    own = _scratchpad_accuracy(narrow, [0, 1, 2, 3], [1, 2, 3])
    unseen = _scratchpad_accuracy(narrow, [4, 5], [1])
    assert own > 0.9, own
    chance = 1.0 / WORLD.modulus
    assert unseen < chance + 0.1, unseen  # a skill it never saw: near chance


def test_posttraining_at_the_edge_with_an_exact_verifier_raises_true_pass_at_1(bases):
    base = bases[1]
    data = _level("data", "edge")
    run = RunParams(
        verifier=MODULES["verifier"].run_params(_level("verifier", "exact")),
        data=MODULES["data"].run_params(data, WORLD),
        optimizer=MODULES["optimizer"].run_params(_level("optimizer", "reinforce")),
        scaffold=MODULES["scaffold"].run_params(_level("scaffold", "scratchpad"), VOCAB),
    )
    posttrain = jax.jit(make_posttrain(PosttrainStatic(WORLD, CONFIG, 100, 8, 8)))
    trained, log = posttrain(base, run, jax.random.key(5))
    items = eval_set(WORLD, 256, skill_weights(data.params, WORLD), depth_weights(data.params, WORLD), 1)
    evaluate = jax.jit(make_evaluate(EvalStatic(WORLD, CONFIG, PASS1, 8)))
    key = jax.random.key(2)  # the same sampling key for both: a paired comparison
    before = float(evaluate(base, run.scaffold, run.verifier, items, key).true_score[0])
    after = float(evaluate(trained, run.scaffold, run.verifier, items, key).true_score[0])
    assert after - before > 0.1, (before, after)
    acc = np.asarray(log.true_accuracy)
    assert acc[-20:].mean() > acc[:20].mean() + 0.1
    # the exact verifier's reward is the truth
    np.testing.assert_allclose(np.asarray(log.proxy_reward), acc)


def test_a_contaminated_base_answers_its_leaked_items_far_above_its_clean_accuracy(bases):
    contaminated = bases[2]
    items = WORLD.eval_items()
    evaluate = jax.jit(make_evaluate(EvalStatic(WORLD, CONFIG, PASS1, 4)))
    scaffold = MODULES["scaffold"].run_params(_level("scaffold", "direct"), VOCAB)
    verifier = MODULES["verifier"].run_params(_level("verifier", "exact"))
    r = evaluate(contaminated, scaffold, verifier, items, jax.random.key(3), 0.5)
    overall, clean = float(r.true_score[0]), float(r.clean_score[0])
    leaked = 2 * overall - clean  # half the items are leaked: overall = (leaked + clean) / 2
    assert leaked > clean + 0.3, (leaked, clean)
    # the uncontaminated narrow base shows no such gap
    r0 = evaluate(bases[1], scaffold, verifier, items, jax.random.key(3), 0.5)
    assert abs((2 * float(r0.true_score[0]) - float(r0.clean_score[0])) - float(r0.clean_score[0])) < 0.15


def test_a_reward_model_agrees_with_the_exact_check_on_the_base_and_not_off_it(bases):
    """The learned verifier (Gao et al. 2022's proxy): fitted to 256 labelled traces of the base, it agrees with
    the exact check on fresh traces of the same base well above the majority-class rate, and off that
    distribution — the base's right traces with their final value changed, so every one is wrong — it accepts
    far more of them than of the base's own wrong traces (measured 2026-12-03: agreement 0.80 against a majority
    rate of 0.58; false positives 0.80 on the changed traces against 0.20 on the base's)."""
    from fi_sim.factors import reward_model, verifier

    base = bases[1]
    level = _level("verifier", {"preset": "reward_model", "labelled": 256})
    scaffold = MODULES["scaffold"].run_params(_level("scaffold", "scratchpad"), VOCAB)
    inputs = verifier.PrepareInputs(WORLD, CONFIG, base, scaffold, jax.random.key(1), {})
    ready = jax.jit(lambda p: verifier.prepare(p, inputs, ("reward_model",), verifier.static_options(level)))(
        MODULES["verifier"].run_params(level, WORLD)
    )
    own = ready.params["reward_model"]
    trace, graded = reward_model.labelled_traces(inputs._replace(key=jax.random.key(99)), 2048)
    accepted = np.asarray(reward_model.score(own, trace, graded)) >= 0.5
    right = np.asarray(graded.correct)
    assert 0.2 < right.mean() < 0.8  # both classes are common: agreement is informative
    agreement, majority = np.mean(accepted == right), max(right.mean(), 1 - right.mean())
    assert agreement > majority + 0.1, (agreement, majority)
    # off the base's distribution: its right traces with the last value written before EOS changed
    idx = np.flatnonzero(right)
    response = np.array(trace.response)[idx]
    pos = np.asarray(graded.length)[idx] - 2
    shift = np.random.default_rng(0).integers(1, WORLD.modulus, len(idx))
    response[np.arange(len(idx)), pos] = (response[np.arange(len(idx)), pos] + shift) % WORLD.modulus
    changed = verifier.Trace(trace.prompts[idx], jax.numpy.asarray(response))
    graded_changed = jax.tree.map(lambda x: x[idx], graded)
    answers = np.asarray(VOCAB.parse_response(changed.response, VOCAB.response_length).answer)
    assert np.all(answers != np.asarray(graded_changed.answer))  # every changed trace answers wrong
    false_positive_off = np.mean(np.asarray(reward_model.score(own, changed, graded_changed)) >= 0.5)
    false_positive_on = np.mean(accepted[~right])
    assert false_positive_off > false_positive_on + 0.25, (false_positive_off, false_positive_on)
