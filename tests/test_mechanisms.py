"""The contract every mechanism joins automatically: each verifier, objective, budget rule, scaffold and task
family in the registries (built-in or registered by a plugin before collection) is checked here, one test per
contract and mechanism.

A mechanism must jit and vmap, keep its shapes, give rewards in [0, 1] (verifiers) and scores in [0, 1] (budget
rules), have finite gradients where it is differentiated, write a valid card, compile once for different
per-run values (`chex.assert_max_traces`), and refuse an out-of-range parameter with a typed error naming it.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fi_sim.errors import ValidationError
from fi_sim.factors import FACTORS, budget, optimizer, scaffold, verifier
from fi_sim.factors.budget import EstimatorInputs
from fi_sim.interface import Interface, WorldSettings
from fi_sim.rollout import stopping
from fi_sim.train import clipped_objective
from fi_sim.world.grading import Graded
from fi_sim.world.tasks import FAMILIES, TaskWorld
from fi_sim.world.tokens import Vocab

WORLD = TaskWorld()
VOCAB = Vocab(WORLD)
R = VOCAB.response_length
N = 64
DEFAULTS = {
    "verifier": "exact",
    "base": "narrow",
    "data": "within",
    "optimizer": "reinforce",
    "scaffold": "direct",
    "budget": "pass@1",
}


def _mechanisms(factor):
    return [pytest.param(name, id=name) for name in FACTORS[factor].mechanisms]


def _preset(factor, mechanism):
    """A preset of the mechanism (every registered mechanism has at least one)."""
    return next(p for p in FACTORS[factor].presets.values() if p.mechanism == mechanism)


def _graded(seed=0, n=N):
    ks = jax.random.split(jax.random.key(seed), 6)
    depth = jax.random.randint(ks[0], (n,), 1, WORLD.max_depth + 1)
    length = jnp.minimum(depth + 1, R)
    step_correct = (jax.random.uniform(ks[1], (n, R)) < 0.6) & (jnp.arange(R) < depth[:, None])
    well_formed = jax.random.uniform(ks[2], (n,)) < 0.9
    correct = well_formed & (jax.random.uniform(ks[3], (n,)) < 0.5)
    answer = jnp.where(well_formed, jax.random.randint(ks[4], (n,), 0, WORLD.modulus), -1)
    return Graded(
        correct=correct,
        well_formed=well_formed,
        answer=answer.astype(jnp.int32),
        length=length.astype(jnp.int32),
        step_correct=step_correct,
        depth=depth.astype(jnp.int32),
        retry=jax.random.uniform(ks[5], (n,)) < 0.3,
        tool_calls=jnp.zeros(n, jnp.int32),
    )


def _bad_value(param):
    if param.kind == "bool":
        return "yes"
    if param.kind == "choice":
        return "no-such-choice"
    if param.kind in ("int_list", "float_list"):
        return [10_000]
    if param.kind == "text":
        return ""
    if param.high is not None:
        return param.high * 10 + 1
    return (param.low - 1) if param.low is not None else "not a number"


def _card_and_validation(factor, mechanism):
    """A valid card with every parameter written out, and a typed error for each bad parameter value."""
    preset = _preset(factor, mechanism)
    mech = FACTORS[factor].mechanisms[mechanism]
    card = Interface.from_specs(WorldSettings(), dict(DEFAULTS, **{factor: preset.name})).card()
    assert card.content["factors"][factor]["mechanism"] == mechanism
    assert set(card.content["factors"][factor]["params"]) == {p.name for p in mech.params}
    assert mech.doc and all(p.doc for p in mech.params)
    for param in mech.params:
        with pytest.raises(ValidationError) as err:
            FACTORS[factor].level({"preset": preset.name, param.name: _bad_value(param)}, WORLD)
        assert err.value.fields == [f"factors.{factor}.{param.name}"], (mechanism, param.name)


def _varied(values, scale):
    """The same per-run structure with different float values (a second call that must not retrace)."""
    return jax.tree.map(lambda x: x * scale if np.issubdtype(np.asarray(x).dtype, np.floating) else x, values)


# ------------------------------------------------------------------------------------------------ verifiers
# the smallest model a verifier with a model of its own may train in the contract (its static parameters)
SMALL_MODEL = (("labelled", 16), ("train_steps", 3), ("width", 8), ("layers", 1), ("batch_size", 8))


def _trace(seed=0, n=N):
    """Random tokens in the shapes of a batch of traces (for the verifiers that read them)."""
    k1, k2 = jax.random.split(jax.random.key(seed + 100))
    prompts = jax.random.randint(k1, (n, VOCAB.prompt_length), 0, VOCAB.size)
    return verifier.Trace(prompts, jax.random.randint(k2, (n, R), 0, VOCAB.size))


def _ready(params, name):
    """The run's verifier parameters with its own model trained (a tiny base at random initialisation)."""
    from fi_sim.factors.scaffold import protocol
    from fi_sim.world import policy

    config = policy.PolicyConfig(VOCAB.size, VOCAB.sequence_length, 8, 1, 1)
    base = policy.init_params(config, jax.random.key(7))
    inputs = verifier.PrepareInputs(WORLD, config, base, protocol(VOCAB, "SCRATCH"), jax.random.key(8), {})
    return verifier.prepare(params, inputs, (name,), SMALL_MODEL)


@pytest.mark.parametrize("name", _mechanisms("verifier"))
def test_verifier_contract(name):
    level = FACTORS["verifier"].level(_preset("verifier", name).name, WORLD)
    params = _ready(verifier.run_params(level, WORLD), name)
    graded, trace = _graded(), _trace()
    assert verifier.prepared(name, params.params[name])

    for used in ((name,), None):  # alone (a group that uses only it) and in the full switch table
        chex.clear_trace_counter()

        @jax.jit
        @chex.assert_max_traces(n=1)
        def rewards(p, g, key, used=used):
            return verifier.token_rewards(p, g, key, WORLD, used, trace)

        r = np.asarray(rewards(params, graded, jax.random.key(0)))
        assert r.shape == (N, R) and r.dtype == np.float32
        total = r.sum(-1)
        assert np.all(np.isfinite(r)) and np.all(total >= -1e-6) and np.all(total <= 1 + 1e-6), name
        rewards(_varied(params, 0.5), graded, jax.random.key(1))  # other values: no second trace

    # vmapped over runs, each with its own parameters and key, equal to the runs one by one
    runs = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, _varied(params, 0.5))
    keys = jax.random.split(jax.random.key(3), 2)
    batched = jax.vmap(lambda p, k: verifier.token_rewards(p, graded, k, WORLD, trace=trace))(runs, keys)
    for i in range(2):
        one = verifier.token_rewards(jax.tree.map(lambda x, i=i: x[i], runs), graded, keys[i], WORLD, trace=trace)
        np.testing.assert_allclose(batched[i], one, atol=1e-6)
    # finite gradients with respect to its per-run float parameters
    floats = {k: v for k, v in params.params[name].items() if np.issubdtype(np.asarray(v).dtype, np.floating)}
    if floats:

        def total_reward(f):
            p = params._replace(params={**params.params, name: {**params.params[name], **f}})
            return jnp.sum(verifier.token_rewards(p, graded, jax.random.key(0), WORLD, trace=trace))

        grads = jax.grad(total_reward)(floats)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
    _card_and_validation("verifier", name)


# ------------------------------------------------------------------------------------------------ objectives
@pytest.mark.parametrize("name", _mechanisms("optimizer"))
def test_objective_contract(name):
    level = FACTORS["optimizer"].level(_preset("optimizer", name).name, WORLD)
    opt = optimizer.run_params(level, WORLD)
    A, G = 2, 4
    rewards = jnp.where(jnp.arange(R) == 2, jax.random.uniform(jax.random.key(0), (A, N, 1)), 0.0)
    taken = jnp.ones((A, N), bool).at[1, ::3].set(False)

    for used in ((name,), None):
        chex.clear_trace_counter()

        @jax.jit
        @chex.assert_max_traces(n=1)
        def weights(o, r, used=used):
            return optimizer.token_weights(o, r, taken, G, o.normalize_advantage, used)

        w = weights(opt, rewards)
        assert w.shape == (A, N, R) and bool(jnp.all(jnp.isfinite(w))), name
        weights(_varied(opt, 0.5), rewards * 0.5)
        eps = optimizer.clip_epsilon(opt, used)
        assert eps.shape == () and float(eps) > 0

    logp = jnp.log(jax.random.uniform(jax.random.key(1), (A * N, R), minval=0.05, maxval=1.0))
    w = optimizer.token_weights(opt, rewards, taken, G, opt.normalize_advantage).reshape(A * N, R)

    def objective(lp):
        old = jax.lax.stop_gradient(lp) - 0.1  # a ratio away from 1, so a clip would be active
        return jnp.sum(clipped_objective(lp, old, w, jnp.ones_like(lp, bool), optimizer.clip_epsilon(opt))[0])

    assert bool(jnp.all(jnp.isfinite(jax.grad(objective)(logp))))
    batched = jax.vmap(lambda o: optimizer.token_weights(o, rewards, taken, G, o.normalize_advantage))(
        jax.tree.map(lambda a: jnp.stack([a, a]), opt)
    )
    np.testing.assert_allclose(batched[0], batched[1])
    _card_and_validation("optimizer", name)


# ------------------------------------------------------------------------------------------------ budget rules
@pytest.mark.parametrize("name", _mechanisms("budget"))
def test_budget_rule_contract(name):
    level = FACTORS["budget"].level(_preset("budget", name).name, WORLD)
    spec = budget.spec(level)
    n = max(16, 2 * spec.k)
    E = 12
    ks = jax.random.split(jax.random.key(0), 4)
    correct = jax.random.uniform(ks[0], (E, n)) < 0.4
    answers = jnp.where(correct, 3, jax.random.randint(ks[1], (E, n), -1, WORLD.modulus)).astype(jnp.int32)
    proxy = jnp.where(jax.random.uniform(ks[2], (E, n)) < 0.5, 1.0, 0.0)
    spent = jax.random.randint(ks[3], (E, n), 1, R + 1).astype(jnp.float32)
    rule = FACTORS["budget"].mechanisms[name]
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def estimate(c, a, p, s):
        return rule.estimate(EstimatorInputs(c, a, p, s, jnp.full(E, 3), WORLD.modulus, spec.options), spec.k)

    true, prx, cost = estimate(correct, answers, proxy, spent)
    for score in (true, prx):
        assert score.shape == (E,) and bool(jnp.all((score >= 0) & (score <= 1))), name
    assert cost is None or (cost.shape == (E,) and bool(jnp.all(cost >= 0)))
    estimate(~correct, answers, 1.0 - proxy, spent + 1)  # other values: no second trace
    vm = jax.vmap(
        lambda c: rule.estimate(
            EstimatorInputs(c, answers, proxy, spent, jnp.full(E, 3), WORLD.modulus, spec.options), spec.k
        )[0]
    )(jnp.stack([correct, correct]))
    np.testing.assert_allclose(vm[0], true, atol=1e-6)
    _card_and_validation("budget", name)


# ------------------------------------------------------------------------------------------------ scaffolds
@pytest.mark.parametrize("name", _mechanisms("scaffold"))
def test_scaffold_contract(name):
    level = FACTORS["scaffold"].level(_preset("scaffold", name).name, WORLD)
    protocol = scaffold.run_params(level, VOCAB)
    assert isinstance(protocol, scaffold.Protocol)
    assert all(np.shape(x) == () for x in protocol)
    assert int(protocol.mode_token) in [VOCAB.special(m) for m in ("DIRECT", "SCRATCH", "TOOLS", "JUDGED")]
    assert 1 <= int(protocol.response_limit) <= R
    attempts = scaffold.attempts(level)
    assert isinstance(attempts, int) and attempts >= 1
    graded = jax.tree.map(lambda x: jnp.stack([x] * attempts), _graded())
    reward = jnp.stack([jnp.full(N, 0.0)] * attempts)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def stop(p, g, r):
        return stopping(g, r, p)

    taken, final, tokens = stop(protocol, graded, reward)
    assert taken.shape == (attempts, N) and final.shape == (N,) and tokens.shape == (N,)
    assert bool(jnp.all(tokens >= 0)) and bool(jnp.all(taken[0]))
    stop(_varied(protocol, 2.0), graded, reward + 1.0)
    _card_and_validation("scaffold", name)


# ------------------------------------------------------------------------------------------------ task families
@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in FAMILIES])
def test_task_family_contract(name):
    world = None
    for kwargs in ({}, {"modulus": 2, "num_skills": 2, "heldout_period": 2}, {"modulus": 11}):
        try:
            world = TaskWorld(family=name, **kwargs)
            break
        except ValidationError:
            continue
    assert world is not None, f"{name}: no small world accepted"
    problems = world.sample(jax.random.key(0), jnp.ones(world.num_skills), jnp.ones(world.max_depth), 64)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def solve(p):
        return world.solve(p)

    solution = solve(problems)
    assert solution.steps.shape == (64, world.max_depth) and solution.answer.shape == (64,)
    assert bool(jnp.all((solution.answer >= 0) & (solution.answer < world.modulus)))
    for i in range(16):  # the traced step function agrees with the plain-Python reference
        d = int(problems.depth[i])
        skills = [int(s) for s in problems.skills[i, :d]]
        assert int(solution.answer[i]) == world.brute_force_answer(int(problems.x0[i]), skills), (name, i)
    solve(problems._replace(x0=(problems.x0 + 1) % world.modulus))  # other values: no second trace
    batched = jax.vmap(world.solve)(jax.tree.map(lambda x: x.reshape((2, 32) + x.shape[1:]), problems))
    np.testing.assert_array_equal(np.asarray(batched.answer).reshape(-1), np.asarray(solution.answer))
    with pytest.raises(ValidationError):
        TaskWorld(family=name, modulus=1)


def test_every_registered_mechanism_has_a_preset_and_a_hook():
    hooks = {"verifier": "rewards", "optimizer": "weights", "budget": "estimate", "scaffold": "protocol"}
    for factor, hook in hooks.items():
        for name, mech in FACTORS[factor].mechanisms.items():
            assert callable(getattr(mech, hook)), (factor, name)
            assert any(p.mechanism == name for p in FACTORS[factor].presets.values()), (factor, name)


# ------------------------------------------------------------------------------------------------ groups
GROUPS_STUDY = """
[study]
name = "groups"
seeds = 1
[world]
eval_size = 8
eval_min_samples = 2
[factors]
verifier = ["exact", "noisy"]
base = [{ preset = "narrow", steps = 2, width = 8, num_heads = 1, batch_size = 4 }]
data = ["teacher_exact"]
optimizer = [{ preset = "distill", steps = 2, prompts_per_step = 2, samples_per_prompt = 2 },
             { preset = "reinforce", steps = 3, prompts_per_step = 2, samples_per_prompt = 2 }]
scaffold = ["direct"]
budget = ["pass@1"]
"""


def test_a_group_compiles_only_the_mechanisms_its_runs_use():
    from dataclasses import replace

    from fi_sim.engine.plan import make_plan
    from fi_sim.engine.runfn import run_params_for
    from fi_sim.study import loads_study
    from fi_sim.train import make_posttrain
    from fi_sim.world import policy

    study = loads_study(GROUPS_STUDY)
    plan = make_plan(study)
    groups = {g.static.posttrain.steps: g for g in plan.groups}
    assert set(groups) == {2, 3}  # steps are a shape: two groups
    assert dict(groups[2].static.posttrain.mechanisms) == {"verifier": ("exact", "noisy"), "optimizer": ("distill",)}
    assert dict(groups[3].static.posttrain.mechanisms) == {"verifier": ("exact", "noisy"), "optimizer": ("reinforce",)}
    assert groups[3].static.evaluate.verifiers == ("exact", "noisy")

    # the program of the group without distillation builds no teacher traces: it is smaller than the program
    # that contains every registered mechanism
    static = groups[3].static.posttrain
    run = run_params_for(study, groups[3].runs[0].cell)
    params = policy.init_params(static.policy, jax.random.key(0))

    def size(s):
        return len(str(jax.make_jaxpr(make_posttrain(s))(params, run, jax.random.key(1))))

    assert size(static) < size(replace(static, mechanisms=()))
