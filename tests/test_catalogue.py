"""The full factor catalogue: every verifier's channel, every objective's weights and clipping, the tool and
retry protocols' accounting, and validation and cards for every level."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fi_sim.errors import ValidationError
from fi_sim.factors import FACTOR_NAMES, FACTORS, MODULES
from fi_sim.factors import optimizer as optimizer_factor
from fi_sim.factors import verifier as verifier_factor
from fi_sim.interface import Interface, WorldSettings, stable_run_id
from fi_sim.rollout import stopping
from fi_sim.train import clipped_objective, token_weights
from fi_sim.world import policy
from fi_sim.world import frozen
from fi_sim.world.grading import Graded, grade
from fi_sim.world.tasks import Problems, TaskWorld
from fi_sim.world.tokens import Vocab

WORLD = TaskWorld()
VOCAB = Vocab(WORLD)
R = VOCAB.response_length


def _graded(correct, well_formed=None, answer=None, length=None, step_correct=None, depth=None):
    n = len(correct)
    correct = jnp.asarray(correct)
    return Graded(
        correct=correct,
        well_formed=jnp.ones(n, bool) if well_formed is None else jnp.asarray(well_formed),
        answer=jnp.zeros(n, jnp.int32) if answer is None else jnp.asarray(answer, jnp.int32),
        length=jnp.full(n, 3, jnp.int32) if length is None else jnp.asarray(length, jnp.int32),
        step_correct=jnp.zeros((n, R), bool) if step_correct is None else jnp.asarray(step_correct),
        depth=jnp.full(n, 2, jnp.int32) if depth is None else jnp.asarray(depth, jnp.int32),
        retry=jnp.zeros(n, bool),
        tool_calls=jnp.zeros(n, jnp.int32),
    )


def _verifier(spec):
    return MODULES["verifier"].run_params(FACTORS["verifier"].level(spec))


def _rewards(spec, graded, seed=0):
    return np.asarray(verifier_factor.token_rewards(_verifier(spec), graded, jax.random.key(seed), WORLD))


# ------------------------------------------------------------------------------------------------ verifiers
N = 60_000


def _random_traces(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    answer = jax.random.randint(k1, (N,), 0, WORLD.modulus)
    correct = jax.random.bernoulli(k2, 0.4, (N,))
    return _graded(correct, answer=answer)


def _measured(graded, rewards):
    c = verifier_factor.channel_counts(graded, jnp.asarray(rewards.sum(-1)))
    return float(c.false_positive / c.wrong), float(c.false_negative / c.right), c


def _within_3se(measured, rate, count):
    se = np.sqrt(max(rate * (1 - rate), 1e-12) / float(count))
    return abs(measured - rate) <= 3 * se + 1e-9


def test_outcome_verifiers_measured_channels_match_their_parameters():
    g = _random_traces()
    # (the noisy channel has its own test over 10^5 draws in test_estimators.py)
    cases = {"exact": (0.0, 0.0), "format": (1.0, 0.0), "random": (0.3, 0.7)}
    specs = {"exact": "exact", "format": "format", "random": {"preset": "random", "reward_probability": 0.3}}
    for name, (fp_rate, fn_rate) in cases.items():
        fp, fn, c = _measured(g, _rewards(specs[name], g))
        assert _within_3se(fp, fp_rate, c.wrong) and _within_3se(fn, fn_rate, c.right), (name, fp, fn)


def test_hackable_false_positives_occur_only_on_traces_with_the_pattern():
    g = _random_traces(1)
    spec = {"preset": "hackable", "pattern_rate": 0.3, "hack_acceptance": 0.8}
    params = _verifier(spec)
    r = _rewards(spec, g).sum(-1)
    pattern = np.asarray(verifier_factor.shows_pattern(params.params["hackable"]["pattern_rate"], g, WORLD))
    wrong = ~np.asarray(g.correct)
    assert r[wrong & ~pattern].max() == 0.0  # no false positive without the pattern
    fp_pattern = r[wrong & pattern].mean()
    assert _within_3se(fp_pattern, 0.8, (wrong & pattern).sum())
    assert np.all(r[np.asarray(g.correct)] == 1.0)  # never a false negative
    # the pattern's base rate over uniformly random answers is its parameter (3 of the 10 values)
    assert abs(pattern.mean() - 0.3) < 0.01
    lucky = {v for v in range(WORLD.modulus) if verifier_factor.lucky_rank(WORLD)[v] < 3}
    assert set(np.unique(np.asarray(g.answer)[pattern])) == lucky


def test_partial_and_process_credit_by_hand():
    step_correct = np.zeros((3, R), bool)
    step_correct[0, :3] = [True, False, True]  # depth 3: two of three steps right
    step_correct[1, :2] = [True, True]  # depth 2: both right
    g = _graded(
        [False, True, False],
        well_formed=[True, True, False],
        length=[4, 3, 2],
        step_correct=step_correct,
        depth=[3, 2, 2],
    )
    partial = _rewards("partial", g)
    np.testing.assert_allclose(partial.sum(-1), [2 / 3, 1.0, 0.0], atol=1e-6)
    assert partial[0, 3] == pytest.approx(2 / 3)  # on the last generated token
    process = _rewards("process", g)
    np.testing.assert_allclose(process[0, :4], [1 / 3, 0, 1 / 3, 0], atol=1e-6)  # where each step is written
    np.testing.assert_allclose(process[1, :3], [0.5, 0.5, 0], atol=1e-6)
    assert process[2].sum() == 0  # a malformed trace earns nothing


def test_a_direct_answer_is_one_step_for_step_level_verifiers():
    p = Problems(jnp.array([3, 3]), jnp.array([[1, 2, 0, 0]] * 2), jnp.array([2, 2]))
    sol = WORLD.solve(p)
    wrong = (int(sol.answer[0]) + 1) % WORLD.modulus
    response = jnp.array([[int(sol.answer[0])] + [VOCAB.pad] * (R - 1), [wrong] + [VOCAB.pad] * (R - 1)])
    g = grade(VOCAB, response, 1, sol, p.depth)
    for spec in ("partial", "process"):
        np.testing.assert_allclose(_rewards(spec, g).sum(-1), [1.0, 0.0])


# ------------------------------------------------------------------------------------------------ objectives
def _weights(kind, rewards, taken=None, group=2, normalize=0.0):
    rewards = jnp.asarray(rewards, jnp.float32)
    taken = jnp.ones(rewards.shape[:2], bool) if taken is None else jnp.asarray(taken)
    opt = optimizer_factor.run_params(FACTORS["optimizer"].level(kind))
    return np.asarray(token_weights(opt, rewards, taken, group, normalize))


def test_objective_weights_by_hand():
    # one attempt, one prompt, a group of two samples with outcome rewards on their last tokens
    r = np.zeros((1, 2, 3))
    r[0, 0, 2] = 1.0  # sample 0 right; sample 1 wrong
    w = _weights("reinforce", r)
    np.testing.assert_allclose(w[0, 0], [0.5, 0.5, 0.5])  # reward-to-go 1 minus group mean 0.5
    np.testing.assert_allclose(w[0, 1], [-0.5, -0.5, -0.5])
    np.testing.assert_allclose(_weights("ppo_clip", r), w)
    grpo = _weights("reinforce", r, normalize=1.0)
    np.testing.assert_allclose(grpo[0, 0], [1.0] * 3, atol=1e-5)  # divided by the group std 0.5
    np.testing.assert_allclose(_weights("rs_sft", r)[0], [[1, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(_weights("positive_only", r)[0], [[1, 1, 1], [0, 0, 0]])
    np.testing.assert_allclose(_weights("negative_only", r)[0], [[0, 0, 0], [-1, -1, -1]])
    np.testing.assert_allclose(_weights("distill", r)[0], np.ones((2, 3)))
    # process rewards: reward-to-go gives each token the credit of the steps at or after it
    p = np.zeros((1, 2, 3))
    p[0, 0] = [0.5, 0.5, 0.0]
    w = _weights("reinforce", p)
    np.testing.assert_allclose(w[0, 0], [1.0 - 0.5, 0.5 - 0.5, 0.0 - 0.5])


def test_clipped_objective_by_hand_and_clipping_is_active():
    logp_old = jnp.log(jnp.array([[0.2, 0.2], [0.2, 0.2]]))
    logp = jnp.log(jnp.array([[0.3, 0.2], [0.3, 0.1]]))  # ratios 1.5, 1.0 / 1.5, 0.5
    weights = jnp.array([[1.0, 1.0], [-1.0, -1.0]])
    mask = jnp.ones((2, 2), bool)
    obj, frac = clipped_objective(logp, logp_old, weights, mask, 0.2)
    # +A: min(1.5, 1.2) + min(1.0, 1.0) = 2.2; -A: min(-1.5, -1.2) + min(-0.5, -0.8) = -2.3
    np.testing.assert_allclose(obj, [2.2, -2.3], atol=1e-6)
    assert float(frac) == pytest.approx(0.5)  # two of four tokens clipped
    grad = jax.grad(lambda lp: jnp.sum(clipped_objective(lp, logp_old, weights, mask, 0.2)[0]))(logp)
    np.testing.assert_allclose(grad, [[0.0, 1.0], [-1.5, 0.0]], atol=1e-6)  # no gradient through the clip
    # without clipping (eps = infinity) and with logp_old = "current", the gradient is the weights
    free = jax.grad(
        lambda lp: jnp.sum(
            clipped_objective(lp, jnp.full_like(lp, jnp.nan), weights, mask, optimizer_factor.NO_CLIP)[0]
        )
    )(logp)
    np.testing.assert_allclose(free, weights)


def test_positive_and_negative_only_use_only_their_own_samples():
    rng = np.random.default_rng(0)
    r = np.zeros((1, 8, 3))
    r[0, :, 2] = rng.integers(0, 2, 8)
    right = r[0, :, 2] == 1
    pos, neg = _weights("positive_only", r, group=4), _weights("negative_only", r, group=4)
    assert (pos[0, ~right] == 0).all() and (pos[0, right] > 0).all()
    assert (neg[0, right] == 0).all() and (neg[0, ~right] < 0).all()
    # the objective's gradient ignores the other class's log-probs entirely
    logp = jnp.asarray(rng.normal(size=(8, 3)) - 2, jnp.float32)
    other = logp.at[jnp.asarray(~right)].add(5.0)
    for w, changed in ((pos[0], other), (neg[0], logp.at[jnp.asarray(right)].add(5.0))):

        def f(lp, w=w):
            mask = jnp.ones((8, 3), bool)
            no_clip = optimizer_factor.NO_CLIP
            return jnp.sum(clipped_objective(lp, jnp.full_like(lp, jnp.nan), jnp.asarray(w), mask, no_clip)[0])

        np.testing.assert_allclose(jax.grad(f)(logp), jax.grad(f)(changed))


# ------------------------------------------------------------------------------------------------ scaffolds
def _scaffold(spec):
    return MODULES["scaffold"].run_params(FACTORS["scaffold"].level(spec), VOCAB)


def test_retry_tokens_and_stopping_by_hand_oracle_against_self_judged():
    # two episodes, three attempts each: lengths, tool calls, rewards and the policy's own RETRY judgements
    length = jnp.array([[3, 5], [4, 5], [2, 5]])
    calls = jnp.array([[1, 0], [0, 0], [2, 0]])
    retry = jnp.array([[False, True], [True, True], [False, False]])
    reward = jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    g = Graded(
        correct=reward > 0,
        well_formed=jnp.ones((3, 2), bool),
        answer=jnp.zeros((3, 2), jnp.int32),
        length=length,
        step_correct=jnp.zeros((3, 2, R), bool),
        depth=jnp.ones((3, 2), jnp.int32),
        retry=retry,
        tool_calls=calls,
    )
    oracle = _scaffold({"preset": "retry_oracle"})._replace(tool_cost=np.float32(4))
    self_judged = _scaffold({"preset": "retry_self"})._replace(tool_cost=np.float32(4))
    taken, final, tokens = stopping(g, reward, oracle)
    # oracle: episode 0 stops at attempt 1 (first reward), episode 1 at attempt 2 (the last)
    assert final.tolist() == [1, 2]
    assert np.asarray(taken).T.tolist() == [[True, True, False], [True, True, True]]
    assert tokens.tolist() == [3 + 4 * 1 + 4, 5 + 5 + 5]
    taken, final, tokens = stopping(g, reward, self_judged)
    # self-judged: episode 0 trusts its first attempt (no RETRY), episode 1 retries until the last
    assert final.tolist() == [0, 2]
    assert tokens.tolist() == [3 + 4 * 1, 15]


def _tool_policy_params(config):
    """Untrained parameters whose output always prefers TOOL (a large bias on its logit)."""
    params = policy.init_params(config, jax.random.key(0))
    bias = params["unembed"]["bias"].at[VOCAB.special("TOOL")].set(50.0)
    return {**params, "unembed": {**params["unembed"], "bias": bias}}


def test_tool_calls_write_exact_steps_and_cost_tokens():
    config = policy.PolicyConfig(VOCAB.size, VOCAB.sequence_length, 8, 1, 1)
    params = _tool_policy_params(config)
    p = Problems(jnp.array([7, 2]), jnp.array([[1, 2, 3, 0], [4, 5, 0, 0]]), jnp.array([3, 2]))
    sol = WORLD.solve(p)
    prompts = VOCAB.encode_prompt(p, VOCAB.special("TOOLS"))
    def sample(tools_allowed):
        return policy.sample(config, params, prompts, jax.random.key(1), 1.0, R, R, VOCAB.eos, VOCAB.pad,
                             tool_token=VOCAB.special("TOOL"), num_values=WORLD.modulus, tool_steps=sol.steps,
                             tools_allowed=tools_allowed)

    s = sample(True)
    g = grade(VOCAB, s.response, R, sol, p.depth, actions=s.actions)
    # every step was a tool call; the environment wrote the exact values, then EOS when no step was left
    assert bool(g.correct.all())
    assert g.tool_calls.tolist() == [4, 3]  # d value calls + the call answered with EOS
    assert np.asarray(s.response)[0, :4].tolist() == np.asarray(sol.steps[0, :3]).tolist() + [VOCAB.eos]
    scaffold = _scaffold("tool")
    _, _, tokens = stopping(jax.tree.map(lambda x: x[None], g), jnp.ones((1, 2)), scaffold)
    assert tokens.tolist() == [4 + 4 * 4, 3 + 4 * 3]
    # without the tool protocol the same token is just a malformed trace
    s2 = sample(False)
    assert not bool(grade(VOCAB, s2.response, R, sol, p.depth).well_formed.any())


# ------------------------------------------------------------------------------------------------ validation
def _bad_value(param):
    if param.kind == "text":
        return "/no/such/file.npz"
    if param.kind == "bool":
        return "yes"
    if param.kind == "choice":
        return "no-such-choice"
    if param.kind in ("int_list", "float_list"):
        return [10_000]
    return (param.high if param.high is not None else 1e9) * 10 + 1 if param.kind == "float" else -(10**9)


def _tiny_frozen_dataset(path, reward: float = 1.0):
    M, G = 3, 2
    arrays = {
        "x0": np.zeros(M, np.int32),
        "skills": np.zeros((M, WORLD.max_depth), np.int32),
        "depth": np.ones(M, np.int32),
        "prompts": np.zeros((M, VOCAB.prompt_length), np.int32),
        "context": np.zeros((M, G, R), np.int32),
        "actions": np.zeros((M, G, R), np.int32),
        "logprob": np.zeros((M, G, R), np.float32),
        "reward": np.full((M, G), reward, np.float32),
    }
    frozen.save(frozen.make(arrays, {"generator": "test"}), path)
    return str(path)


def test_every_level_validates_its_parameters_and_writes_them_into_the_card(tmp_path):
    world = WorldSettings()
    defaults = {
        "verifier": "exact",
        "base": "narrow",
        "data": "within",
        "optimizer": "reinforce",
        "scaffold": "direct",
        "budget": "pass@1",
    }
    files = {"dataset": _tiny_frozen_dataset(tmp_path / "frozen.npz")}
    checked = 0
    for fname in FACTOR_NAMES:
        factor = FACTORS[fname]
        for preset in factor.presets.values():
            mech = factor.mechanisms[preset.mechanism]
            spec = {"preset": preset.name, **{p.name: files[p.name] for p in mech.params if p.kind == "text"}}
            card = Interface.from_specs(world, dict(defaults, **{fname: spec})).card().content
            assert set(card["factors"][fname]["params"]) == {p.name for p in mech.params}, preset.name
            for param in mech.params:
                with pytest.raises(ValidationError) as err:
                    factor.level(dict(spec, **{param.name: _bad_value(param)}), world.task_world())
                assert err.value.fields == [f"factors.{fname}.{param.name}"], (preset.name, param.name)
                checked += 1
    assert checked > 100


def test_task_families_solve_exactly():
    for world in (
        TaskWorld(modulus=2, num_skills=2, family="parity", heldout_period=2),
        TaskWorld(modulus=11, num_skills=6, family="dag"),
    ):
        combos = list(itertools.product(range(world.num_skills), repeat=3))
        skills = jnp.asarray([list(c) + [0] for c in combos], jnp.int32)
        answers = np.asarray(
            world.solve(Problems(jnp.ones(len(combos), jnp.int32), skills, jnp.full(len(combos), 3, jnp.int32))).answer
        )
        assert answers.tolist() == [world.brute_force_answer(1, list(c)) for c in combos]
    parity = TaskWorld(modulus=2, num_skills=2, family="parity", heldout_period=2)
    assert parity.brute_force_answer(1, [1, 0, 1, 1]) == 0  # 1 xor 1 xor 0 xor 1 xor 1
    with pytest.raises(ValidationError):
        TaskWorld(family="parity")  # needs modulus 2 and two skills


def test_a_frozen_dataset_that_does_not_fit_the_world_is_refused(tmp_path):
    path = _tiny_frozen_dataset(tmp_path / "ok.npz")
    small = TaskWorld(max_depth=3)
    with pytest.raises(ValidationError) as err:
        FACTORS["data"].level({"preset": "frozen", "dataset": path}, small)
    assert err.value.fields == ["factors.data.dataset"] and "shape" in str(err.value)
    level = FACTORS["data"].level({"preset": "frozen", "dataset": path}, WORLD)
    card = level.card()
    assert card["provenance"]["sha256"] == frozen.load(path).sha256


def test_a_frozen_dataset_enters_a_run_id_by_its_content_not_its_path(tmp_path):
    """Where the released file lies must not change a run's random stream: a copy elsewhere is the same run, a file
    with other content is another run, and the card still records the path as given."""
    import shutil

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    here = _tiny_frozen_dataset(tmp_path / "a" / "frozen.npz")
    there = str(shutil.copy(here, tmp_path / "b" / "renamed.npz"))
    other = _tiny_frozen_dataset(tmp_path / "other.npz", reward=0.0)
    world = WorldSettings()
    specs = {"verifier": "exact", "base": "narrow", "optimizer": "reinforce", "scaffold": "direct", "budget": "pass@1"}

    def run_id(path):
        levels = Interface.from_specs(world, dict(specs, data={"preset": "frozen", "dataset": path})).levels
        return stable_run_id(world, levels, seed=0), levels["data"]

    (a, level_a), (b, _), (c, _) = run_id(here), run_id(there), run_id(other)
    assert a == b and a != c
    assert level_a.card()["params"]["dataset"] == here
    assert level_a.signature()["params"]["dataset"] == "sha256:" + frozen.load(here).sha256
    assert here not in json.dumps(level_a.signature())
