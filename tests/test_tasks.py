"""The chain world: exact solver against brute force, the held-out partition, the tokenizer round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fi_sim.errors import ValidationError
from fi_sim.world.tasks import TaskWorld, Problems
from fi_sim.world.tokens import Vocab

WORLD = TaskWorld(modulus=10, num_skills=6, max_depth=4, seed=3)


def test_permutations_are_permutations_and_depend_on_the_seed():
    table = np.asarray(WORLD.permutation_table)
    assert table.shape == (6, 10)
    for row in table:
        assert sorted(row.tolist()) == list(range(10))
    other = np.asarray(TaskWorld(modulus=10, num_skills=6, max_depth=4, seed=4).permutation_table)
    assert not np.array_equal(table, other)


@settings(max_examples=60, deadline=None)
@given(x0=st.integers(0, 9), skills=st.lists(st.integers(0, 5), min_size=1, max_size=4))
def test_solver_matches_brute_force_composition(x0, skills):
    d = len(skills)
    padded = skills + [0] * (WORLD.max_depth - d)
    sol = WORLD.solve(Problems(jnp.int32(x0), jnp.asarray(padded, jnp.int32), jnp.int32(d)))
    assert int(sol.answer) == WORLD.brute_force_answer(x0, skills)
    steps = np.asarray(sol.steps)
    for i in range(d):
        assert steps[i] == WORLD.brute_force_answer(x0, skills[: i + 1])
    assert (steps[d:] == -1).all()


def test_sampling_respects_the_distribution_and_the_partition():
    skill_w = jnp.array([0, 0, 1, 1, 0, 0], jnp.float32)
    depth_w = jnp.array([0, 1, 1, 0], jnp.float32)
    train = WORLD.sample(jax.random.key(0), skill_w, depth_w, 4000)
    heldout = WORLD.sample(jax.random.key(1), skill_w, depth_w, 4000, heldout=True)
    for p in (train, heldout):
        depth = np.asarray(p.depth)
        assert set(np.unique(depth)) == {2, 3}
        skills = np.asarray(p.skills)
        active = np.arange(4)[None] < depth[:, None]
        assert set(np.unique(skills[active])) == {2, 3}
        assert (skills[~active] == 0).all()
    assert not np.asarray(WORLD.is_heldout(train)).any()
    assert np.asarray(WORLD.is_heldout(heldout)).all()
    # x0 is uniform over the allowed values: every value 0..9 appears in the training partition
    assert set(np.unique(np.asarray(train.x0))) == set(range(10))


def test_depth_one_items_are_primitives_shared_by_both_partitions():
    p = WORLD.sample(jax.random.key(2), jnp.ones(6), jnp.array([1.0, 0, 0, 0]), 500, heldout=True)
    assert not np.asarray(WORLD.is_heldout(p)).any()
    assert len(np.unique(np.asarray(p.x0))) == 10


def test_invalid_world_names_the_field():
    with pytest.raises(ValidationError) as err:
        TaskWorld(modulus=10, num_skills=0, max_depth=40)
    assert set(err.value.fields) == {"world.num_skills", "world.max_depth"}
    assert "got 40" in str(err.value) and "1..16" in str(err.value)


@settings(max_examples=60, deadline=None)
@given(tokens=st.lists(st.integers(0, Vocab(WORLD).size - 1), min_size=1, max_size=20))
def test_tokenizer_round_trip(tokens):
    vocab = Vocab(WORLD)
    text = vocab.detokenize(tokens)
    assert vocab.tokenize(text).tolist() == tokens


def test_prompt_and_target_layout():
    vocab = Vocab(WORLD)
    p = Problems(jnp.array([7]), jnp.array([[2, 5, 0, 0]]), jnp.array([2]))
    sol = WORLD.solve(p)
    v1 = WORLD.brute_force_answer(7, [2])
    v2 = WORLD.brute_force_answer(7, [2, 5])
    prompt = vocab.encode_prompt(p, vocab.special("SCRATCH"))
    assert vocab.detokenize(prompt[0]) == "<BOS> 7 f2 f5 <PAD> <PAD> <SCRATCH>"
    scratch = vocab.target_response(p, sol, True)
    assert vocab.detokenize(scratch[0]) == f"{v1} {v2} <EOS> <PAD> <PAD>"
    direct = vocab.target_response(p, sol, False)
    assert vocab.detokenize(direct[0]) == f"{v2} <EOS> <PAD> <PAD> <PAD>"


def test_parse_response_reads_the_answer_and_the_format():
    vocab = Vocab(WORLD)
    cases = {
        "3 4 <EOS> <PAD> <PAD>": (4, True, 3),
        "3 f1 <EOS> <PAD> <PAD>": (-1, False, 3),
        "<EOS> <PAD> <PAD> <PAD> <PAD>": (-1, False, 1),
        "1 2 3 4 5": (5, False, 5),  # no EOS within the limit
    }
    for text, (answer, ok, length) in cases.items():
        parsed = vocab.parse_response(jnp.asarray(vocab.tokenize(text)), 5)
        assert (int(parsed.answer), bool(parsed.well_formed), int(parsed.length)) == (answer, ok, length), text
    one = vocab.parse_response(jnp.asarray(vocab.tokenize("6 2 <EOS> <PAD> <PAD>")), 1)  # direct: first token only
    assert (int(one.answer), bool(one.well_formed), int(one.length)) == (6, True, 1)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), depths=st.sampled_from([(), (2, 3), (4,)]),
       family=st.sampled_from(["chain", "parity", "dag"]))
def test_eval_items_are_concrete_and_the_same_integers_as_drawn_op_by_op(seed, depths, family):
    modulus, period = (2, 2) if family == "parity" else (10, 5)
    world = TaskWorld(modulus=modulus, num_skills=2 if family == "parity" else 4, max_depth=4, seed=seed,
                      heldout_period=period, family=family, eval_size=64, eval_depths=depths)
    with jax.disable_jit():
        eager = world.draw_eval_items()

    def traced():  # called while a program is traced, the items are still concrete (a constant of the program)
        inside = world.eval_items()
        assert not any(isinstance(x, jax.core.Tracer) for x in inside)
        return inside

    for got, want in zip(jax.jit(traced)(), eager):
        assert np.asarray(got).dtype == np.asarray(want).dtype
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert world.eval_items() is world.eval_items()  # drawn once per world
