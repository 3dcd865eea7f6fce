"""The toy policy: a small decoder-only transformer over the world's vocabulary.

Architecture (chosen for the task world's fixed layout, see `tokens.py`): token embedding plus a learned
absolute position embedding, `num_layers` pre-LayerNorm blocks of causal multi-head self-attention and a GELU
MLP (4x width), a final LayerNorm and an untied output projection. Absolute positions are deliberate: every
scratchpad step is a fixed-offset attention hop, whereas depth-d direct answers need d hops in one pass, so
the model's depth bounds what it can compute without a scratchpad.

Everything is pure: `apply(params, tokens)` for the full sequence, `prefill` / `decode` with an explicit
key-value cache for sampling, `sample` at a (traced, per-run) temperature, and `token_logprobs` of given tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fi_sim.errors import Problem, ValidationError


@dataclass(frozen=True)
class PolicyConfig:
    """Shape of the policy: a static configuration (a change compiles a separate group)."""

    vocab_size: int
    sequence_length: int
    width: int = 32
    num_layers: int = 2
    num_heads: int = 2

    def __post_init__(self):
        problems = []
        if self.width < 4 or self.width > 1024:
            problems.append(Problem("model.width", self.width, "an integer in 4..1024"))
        if not 1 <= self.num_layers <= 12:
            problems.append(Problem("model.num_layers", self.num_layers, "an integer in 1..12"))
        if self.num_heads < 1 or self.width % self.num_heads:
            problems.append(Problem("model.num_heads", self.num_heads, f"a divisor of width ({self.width})"))
        if problems:
            raise ValidationError(problems)

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    def flops_per_token(self) -> int:
        """Forward multiply-adds x 2 for one token with full causal context, matmuls only (the usual 2N + attention)."""
        w, L = self.width, self.sequence_length
        per_layer = 2 * (3 * w * w + w * w + 2 * 4 * w * w) + 2 * 2 * L * w  # qkv, out, mlp, scores+mix (avg <= L)
        return self.num_layers * per_layer + 2 * w * self.vocab_size


class KVCache(NamedTuple):
    keys: jax.Array  # [layers, B, L, heads, head_dim]
    values: jax.Array


class _Block(nn.Module):
    config: PolicyConfig

    def setup(self):
        c = self.config
        self.ln_attn = nn.LayerNorm()
        self.qkv = nn.DenseGeneral((3, c.num_heads, c.head_dim))
        self.out = nn.DenseGeneral(c.width, axis=(-2, -1))
        self.ln_mlp = nn.LayerNorm()
        self.mlp_in = nn.Dense(4 * c.width)
        self.mlp_out = nn.Dense(c.width)

    def _mlp(self, x):
        return x + self.mlp_out(nn.gelu(self.mlp_in(self.ln_mlp(x))))

    def _attend(self, q, k, v, mask):
        scale = 1.0 / jnp.sqrt(jnp.asarray(self.config.head_dim, q.dtype))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)

    def __call__(self, x):
        """Full causal pass over x [B, T, width]; also returns this block's keys and values."""
        qkv = self.qkv(self.ln_attn(x))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        T = x.shape[1]
        mask = jnp.tril(jnp.ones((T, T), bool))[None, None]
        x = x + self.out(self._attend(q, k, v, mask))
        return self._mlp(x), (k, v)

    def step(self, x, keys, values, pos):
        """One new position: x [B, 1, width]; keys/values [B, L, heads, head_dim] hold the cache."""
        qkv = self.qkv(self.ln_attn(x))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        keys = jax.lax.dynamic_update_slice_in_dim(keys, k, pos, axis=1)
        values = jax.lax.dynamic_update_slice_in_dim(values, v, pos, axis=1)
        mask = (jnp.arange(keys.shape[1]) <= pos)[None, None, None, :]
        x = x + self.out(self._attend(q, keys, values, mask))
        return self._mlp(x), keys, values


class Policy(nn.Module):
    config: PolicyConfig

    def setup(self):
        c = self.config
        self.embed = nn.Embed(c.vocab_size, c.width)
        self.position = self.param("position", nn.initializers.normal(0.02), (c.sequence_length, c.width))
        self.blocks = [_Block(c) for _ in range(c.num_layers)]
        self.ln_final = nn.LayerNorm()
        self.unembed = nn.Dense(c.vocab_size)

    def __call__(self, tokens):
        """Logits [B, T, vocab] for tokens [B, T] (T <= sequence_length), causal."""
        logits, _ = self.prefill(tokens)
        return logits

    def prefill(self, tokens):
        """Full pass that also returns the key-value cache, padded to the full sequence length."""
        c = self.config
        T = tokens.shape[1]
        x = self.embed(tokens) + self.position[:T]
        ks, vs = [], []
        for block in self.blocks:
            x, (k, v) = block(x)
            pad = [(0, 0), (0, c.sequence_length - T), (0, 0), (0, 0)]
            ks.append(jnp.pad(k, pad))
            vs.append(jnp.pad(v, pad))
        logits = self.unembed(self.ln_final(x))
        return logits, KVCache(jnp.stack(ks), jnp.stack(vs))

    def decode(self, cache: KVCache, token, pos):
        """Logits [B, vocab] for one token [B] at position `pos`, and the updated cache."""
        x = self.embed(token[:, None]) + jax.lax.dynamic_slice_in_dim(self.position, pos, 1)[None]
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block.step(x, cache.keys[i], cache.values[i], pos)
            ks.append(k)
            vs.append(v)
        logits = self.unembed(self.ln_final(x))[:, 0]
        return logits, KVCache(jnp.stack(ks), jnp.stack(vs))


def init_params(config: PolicyConfig, key: jax.Array):
    return Policy(config).init(key, jnp.zeros((1, config.sequence_length), jnp.int32))["params"]


def apply(config: PolicyConfig, params, tokens):
    return Policy(config).apply({"params": params}, tokens)


class Sample(NamedTuple):
    response: jax.Array  # int32 [B, R]: the context stream (tool results stand where the policy called TOOL)
    mask: jax.Array  # bool [B, R]; the tokens the policy actually generated
    logprob: jax.Array  # float [B, R]; log-prob of each generated action at the sampling temperature
    actions: jax.Array  # int32 [B, R]: what the policy chose (TOOL where it called the tool)


def sample(config: PolicyConfig, params, prompts, key, temperature, response_length: int, limit, eos: int, pad: int,
           *, stop_token: int = -1, tool_token: int = -1, num_values: int = 0, tool_steps=None, tools_allowed=False):
    """Sample responses to prompts [B, P] autoregressively with a KV cache.

    Generation stops at the first EOS (or `stop_token`) or after `limit` tokens (a per-run scaffold parameter,
    traced); later positions hold PAD and are masked out. `temperature` is traced (> 0).

    Tools: with `tools_allowed` (traced), a sampled `tool_token` is an action whose result the environment
    writes into the context in its place: the exact value of the next step, taken from `tool_steps` [B, D]
    (the solver's v_1..v_D, -1 past the depth) by counting the values (ids < `num_values`) already written —
    or EOS when no step is left. The policy is scored on its action (TOOL), and conditions on the result.
    """
    model = Policy(config)
    B, P = prompts.shape
    logits, cache = model.apply({"params": params}, prompts, method=Policy.prefill)
    if tool_steps is None:
        tool_steps = jnp.full((B, 1), -1, jnp.int32)
    D = tool_steps.shape[1]

    def step(carry, t):
        last_logits, cache, done, written = carry
        scaled = last_logits / temperature
        action = jax.random.categorical(jax.random.fold_in(key, t), scaled, axis=-1)
        logp = jnp.take_along_axis(jax.nn.log_softmax(scaled, -1), action[:, None], -1)[:, 0]
        active = (~done) & (t < limit)
        action = jnp.where(active, action, pad)
        called = jnp.asarray(tools_allowed) & (action == tool_token) & active
        result = jnp.take_along_axis(tool_steps, jnp.minimum(written, D - 1)[:, None], 1)[:, 0]
        result = jnp.where((written < D) & (result >= 0), result, eos)
        token = jnp.where(called, result, action)
        written = written + (active & (token >= 0) & (token < num_values)).astype(jnp.int32)
        done = done | (token == eos) | (token == stop_token) | ~active
        next_logits, cache = model.apply({"params": params}, cache, token, P + t, method=Policy.decode)
        return (next_logits, cache, done, written), (token, action, active, jnp.where(active, logp, 0.0))

    carry = (logits[:, -1], cache, jnp.zeros((B,), bool), jnp.zeros((B,), jnp.int32))
    # The last decode call is wasted work, but keeps the step uniform (cheap at these lengths).
    _, (tokens, actions, active, logp) = jax.lax.scan(step, carry, jnp.arange(response_length))
    return Sample(tokens.T.astype(jnp.int32), active.T, logp.T, actions.T.astype(jnp.int32))


def token_logits(config: PolicyConfig, params, prompts, responses):
    """Logits [B, R, vocab] that predict each response token, from one full causal pass."""
    seq = jnp.concatenate([prompts, responses], axis=1)
    logits = apply(config, params, seq[:, :-1])
    return logits[:, prompts.shape[1] - 1 :]


def token_logprobs(config: PolicyConfig, params, prompts, responses, temperature=1.0, actions=None):
    """Log-probabilities [B, R] of the policy's actions (default: the response tokens themselves), each given
    the context before it (prompt and earlier response tokens, tool results included)."""
    logits = token_logits(config, params, prompts, responses) / temperature
    actions = responses if actions is None else actions
    return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), actions[..., None], -1)[..., 0]
