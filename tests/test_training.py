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
