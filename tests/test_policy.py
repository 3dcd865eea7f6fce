"""The policy: cached decoding equals the full forward pass; sampled log-probs equal scored log-probs."""

import jax
import jax.numpy as jnp
import numpy as np

from fi_sim.world import policy
from fi_sim.world.tasks import TaskWorld
from fi_sim.world.tokens import Vocab

WORLD = TaskWorld()
VOCAB = Vocab(WORLD)
CONFIG = policy.PolicyConfig(VOCAB.size, VOCAB.sequence_length, width=16, num_layers=2, num_heads=2)
# compiled once here: the eager op-by-op path would dominate the test's time
sample = jax.jit(policy.sample, static_argnums=(0, 5, 7, 8))


def _prompts(n, key=0):
    p = WORLD.sample(jax.random.key(key), jnp.ones(6), jnp.ones(4), n)
    return VOCAB.encode_prompt(p, VOCAB.special("SCRATCH"))


def test_cached_decoding_matches_the_full_pass():
    params = policy.init_params(CONFIG, jax.random.key(0))
    seq = jax.random.randint(jax.random.key(1), (3, VOCAB.sequence_length), 0, VOCAB.size)
    full = policy.apply(CONFIG, params, seq)
    model = policy.Policy(CONFIG)
    prefill = jax.jit(lambda p, x: model.apply({"params": p}, x, method=policy.Policy.prefill))
    decode = jax.jit(lambda p, c, x, t: model.apply({"params": p}, c, x, t, method=policy.Policy.decode))
    P = VOCAB.prompt_length
    logits, cache = prefill(params, seq[:, :P])
    np.testing.assert_allclose(logits, full[:, :P], atol=1e-5)
    for t in range(P, VOCAB.sequence_length):
        step, cache = decode(params, cache, seq[:, t], t)
        np.testing.assert_allclose(step, full[:, t], atol=1e-5)


def test_sampled_logprobs_equal_scored_logprobs_and_stop_at_eos():
    params = policy.init_params(CONFIG, jax.random.key(2))
    prompts = _prompts(64)
    s = sample(CONFIG, params, prompts, jax.random.key(3), 0.7, VOCAB.response_length,
                      VOCAB.response_length, VOCAB.eos, VOCAB.pad)
    scored = policy.token_logprobs(CONFIG, params, prompts, s.response, temperature=0.7)
    np.testing.assert_allclose(np.where(s.mask, scored, 0), s.logprob, atol=1e-5)
    resp, mask = np.asarray(s.response), np.asarray(s.mask)
    for row, m in zip(resp, mask):
        generated = row[m]
        eos = np.where(generated == VOCAB.eos)[0]
        if len(eos):  # nothing is generated after the first EOS
            assert eos[0] == len(generated) - 1
        assert (row[~m] == VOCAB.pad).all()


def test_limit_of_one_token_generates_exactly_one():
    params = policy.init_params(CONFIG, jax.random.key(4))
    s = sample(CONFIG, params, _prompts(16), jax.random.key(5), 1.0, VOCAB.response_length, 1,
                      VOCAB.eos, VOCAB.pad)
    assert np.asarray(s.mask).sum(1).tolist() == [1] * 16


def test_temperature_sharpens_sampling():
    params = policy.init_params(CONFIG, jax.random.key(6))
    prompts = jnp.repeat(_prompts(1), 400, axis=0)
    cold = sample(CONFIG, params, prompts, jax.random.key(7), 0.05, 5, 1, VOCAB.eos, VOCAB.pad)
    hot = sample(CONFIG, params, prompts, jax.random.key(7), 5.0, 5, 1, VOCAB.eos, VOCAB.pad)
    assert len(np.unique(np.asarray(cold.response[:, 0]))) < len(np.unique(np.asarray(hot.response[:, 0])))
