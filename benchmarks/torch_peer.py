"""The PyTorch peer: fi_sim's default post-training run written as a researcher would in PyTorch (eager, CPU).

Same model as `fi_sim/world/policy.py` (token + learned position embedding, pre-LayerNorm blocks with causal
multi-head attention and a 4x GELU MLP, final LayerNorm, untied unembedding), same task (chain problems of the
default world: the same skill permutations, depths, held-out partition and token layout), same sampler
(temperature sampling with a key-value cache, prefill then one token at a time; it stops early once every
sequence has ended, as a loop in Python would), same update (REINFORCE: each response's log-likelihood weighted
by its reward minus its group's mean reward, exact KL to the base computed for the log, gradient clipped to
norm 1, Adam, fused). Runs are trained one after another in a Python loop; the benchmark runs one such
loop per core, each single-threaded (`benchmarks/run.py`).

It is a benchmark peer, not a second implementation of fi_sim: it shares no code with it, and only the shapes,
hyperparameters and task tables are read from the JAX side so that both do the same work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PeerConfig:
    vocab_size: int
    sequence_length: int
    width: int
    num_layers: int
    num_heads: int
    prompt_length: int
    response_length: int
    prompts_per_step: int
    samples_per_prompt: int
    learning_rate: float
    max_grad_norm: float
    temperature: float
    kl_coef: float
    # task
    modulus: int
    num_skills: int
    max_depth: int
    heldout_period: int
    permutations: tuple  # [num_skills][modulus]
    skill_weights: tuple
    depth_weights: tuple
    bos: int
    eos: int
    pad: int
    mode_token: int  # SCRATCH: write every step, then the answer, then EOS


# ---------------------------------------------------------------------------------------------- the model
class Block(nn.Module):
    def __init__(self, c: PeerConfig):
        super().__init__()
        self.heads, self.head_dim = c.num_heads, c.width // c.num_heads
        self.ln_attn = nn.LayerNorm(c.width, eps=1e-6)
        self.qkv = nn.Linear(c.width, 3 * c.width)
        self.out = nn.Linear(c.width, c.width)
        self.ln_mlp = nn.LayerNorm(c.width, eps=1e-6)
        self.mlp_in = nn.Linear(c.width, 4 * c.width)
        self.mlp_out = nn.Linear(4 * c.width, c.width)

    def forward(self, x, cache=None):
        """x [B, T, W]; cache (keys, values) [B, H, T0, D] of earlier positions or None. Returns x, new cache."""
        B, T, W = x.shape
        q, k, v = self.qkv(self.ln_attn(x)).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        # a fresh sequence is causal; one new token attends to everything cached before it
        a = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None)
        x = x + self.out(a.transpose(1, 2).reshape(B, T, W))
        x = x + self.mlp_out(F.gelu(self.mlp_in(self.ln_mlp(x)), approximate="tanh"))
        return x, (k, v)


class Policy(nn.Module):
    def __init__(self, c: PeerConfig):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.width)
        self.position = nn.Parameter(torch.randn(c.sequence_length, c.width) * 0.02)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.num_layers))
        self.ln_final = nn.LayerNorm(c.width, eps=1e-6)
        self.unembed = nn.Linear(c.width, c.vocab_size)

    def forward(self, tokens, caches=None, start: int = 0):
        x = self.embed(tokens) + self.position[start : start + tokens.shape[1]]
        new = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if caches is None else caches[i])
            new.append(kv)
        return self.unembed(self.ln_final(x)), new


# ---------------------------------------------------------------------------------------------- the task
class ChainTask:
    def __init__(self, c: PeerConfig, generator: torch.Generator):
        self.c, self.g = c, generator
        self.table = torch.tensor(c.permutations, dtype=torch.long)
        self.skill_w = torch.tensor(c.skill_weights, dtype=torch.float)
        self.depth_w = torch.tensor(c.depth_weights, dtype=torch.float)

    def sample(self, n: int):
        c = self.c
        depth = 1 + torch.multinomial(self.depth_w, n, replacement=True, generator=self.g)
        skills = torch.multinomial(self.skill_w, n * c.max_depth, replacement=True, generator=self.g).view(n, -1)
        idx = torch.arange(c.max_depth)
        skills = torch.where(idx < depth[:, None], skills, 0)
        code = ((skills + 1) * ((idx + 1) * 7 + 3) * (idx < depth[:, None])).sum(-1) + depth
        values = torch.arange(c.modulus)
        in_eval = (values[None] + code[:, None]) % c.heldout_period == 0
        allowed = ~in_eval | (depth == 1)[:, None]  # the training partition
        x0 = torch.multinomial(allowed.float(), 1, generator=self.g)[:, 0]
        return x0, skills, depth

    def solve(self, x0, skills, depth):
        v, steps = x0, []
        for i in range(self.c.max_depth):
            v = torch.where(i < depth, self.table[skills[:, i], v], v)
            steps.append(v)
        return v

    def encode(self, x0, skills, depth):
        c = self.c
        idx = torch.arange(c.max_depth)
        skill_tokens = torch.where(idx < depth[:, None], c.modulus + skills, c.pad)
        n = x0.shape[0]
        return torch.cat([torch.full((n, 1), c.bos), x0[:, None], skill_tokens, torch.full((n, 1), c.mode_token)], 1)

    def reward(self, responses, answer):
        """1 when the trace holds only values before its EOS, at least one, and the last one is the answer."""
        c = self.c
        is_eos = responses == c.eos
        first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(answer, c.response_length))
        pos = torch.arange(c.response_length)
        before = pos[None] < first_eos[:, None]
        is_value = responses < c.modulus
        well_formed = (is_value | ~before).all(1) & (first_eos > 0) & is_eos.any(1)
        last = responses.gather(1, (first_eos - 1).clamp(min=0)[:, None])[:, 0]
        return (well_formed & (last == answer)).float()


# ---------------------------------------------------------------------------------------------- one run
@torch.no_grad()
def sample(model: Policy, prompts, c: PeerConfig, generator):
    logits, caches = model(prompts)
    n, P = prompts.shape
    done = torch.zeros(n, dtype=torch.bool)
    tokens = torch.full((n, c.response_length), c.pad, dtype=torch.long)
    for t in range(c.response_length):
        probs = torch.softmax(logits[:, -1] / c.temperature, -1)
        token = torch.multinomial(probs, 1, generator=generator)[:, 0]
        token = torch.where(done, torch.full_like(token, c.pad), token)
        tokens[:, t] = token
        done = done | (token == c.eos)
        if done.all() or t == c.response_length - 1:
            break
        logits, caches = model(token[:, None], caches, start=P + t)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    ended = torch.cumsum((tokens == c.eos).long(), 1) - (tokens == c.eos).long()  # EOS itself is generated
    mask &= (ended == 0) & (tokens != c.pad)
    return tokens, mask


def train_run(c: PeerConfig, base_state: dict, seed: int, steps: int) -> dict:
    """Post-train one run from the base for `steps` steps; returns its log."""
    g = torch.Generator().manual_seed(seed)
    task = ChainTask(c, g)
    model, base = Policy(c), Policy(c)
    model.load_state_dict(base_state)
    base.load_state_dict(base_state)
    base.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=c.learning_rate, fused=True)
    G = c.samples_per_prompt
    log = {"reward": [], "kl": []}
    for _ in range(steps):
        x0, skills, depth = task.sample(c.prompts_per_step)
        x0, skills, depth = (t.repeat_interleave(G, 0) for t in (x0, skills, depth))
        prompts = task.encode(x0, skills, depth)
        responses, mask = sample(model, prompts, c, g)
        reward = task.reward(responses, task.solve(x0, skills, depth))
        advantage = (reward.view(-1, G) - reward.view(-1, G).mean(1, keepdim=True)).view(-1)
        seq = torch.cat([prompts, responses], 1)[:, :-1]
        logits = model(seq)[0][:, c.prompt_length - 1 :] / c.temperature
        logp_all = F.log_softmax(logits, -1)
        logp = logp_all.gather(-1, responses[..., None])[..., 0]
        seq_logp = (logp * mask).sum(1)
        with torch.no_grad():
            base_logp = F.log_softmax(base(seq)[0][:, c.prompt_length - 1 :] / c.temperature, -1)
        kl = ((logp_all.exp() * (logp_all - base_logp)).sum(-1) * mask).sum(1).mean()
        loss = -(advantage * seq_logp).mean() + c.kl_coef * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.max_grad_norm)
        opt.step()
        log["reward"].append(reward.mean().item())
        log["kl"].append(kl.item())
    return log


def base_state_from_jax(params, c: PeerConfig) -> dict:
    """The torch state dict holding the same weights as a flax policy (so both start from one base)."""
    p = {k: np.asarray(v) for k, v in _flat(params).items()}
    W = c.width
    state = {"embed.weight": p["embed/embedding"], "position": p["position"],
             "ln_final.weight": p["ln_final/scale"], "ln_final.bias": p["ln_final/bias"],
             "unembed.weight": p["unembed/kernel"].T, "unembed.bias": p["unembed/bias"]}
    for i in range(c.num_layers):
        b = f"blocks_{i}/"
        state.update({
            f"blocks.{i}.ln_attn.weight": p[b + "ln_attn/scale"], f"blocks.{i}.ln_attn.bias": p[b + "ln_attn/bias"],
            f"blocks.{i}.ln_mlp.weight": p[b + "ln_mlp/scale"], f"blocks.{i}.ln_mlp.bias": p[b + "ln_mlp/bias"],
            f"blocks.{i}.qkv.weight": p[b + "qkv/kernel"].reshape(W, 3 * W).T,
            f"blocks.{i}.qkv.bias": p[b + "qkv/bias"].reshape(3 * W),
            f"blocks.{i}.out.weight": p[b + "out/kernel"].reshape(W, W).T, f"blocks.{i}.out.bias": p[b + "out/bias"],
            f"blocks.{i}.mlp_in.weight": p[b + "mlp_in/kernel"].T, f"blocks.{i}.mlp_in.bias": p[b + "mlp_in/bias"],
            f"blocks.{i}.mlp_out.weight": p[b + "mlp_out/kernel"].T, f"blocks.{i}.mlp_out.bias": p[b + "mlp_out/bias"],
        })
    return {k: torch.tensor(np.ascontiguousarray(v), dtype=torch.float32) for k, v in state.items()}


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) or hasattr(v, "items"):
            out.update(_flat(v, key + "/"))
        else:
            out[key] = v
    return out


def forward_flops_per_token(c: PeerConfig) -> float:
    w, L = c.width, c.sequence_length
    per_layer = 2 * (3 * w * w + w * w + 2 * 4 * w * w) + 2 * 2 * L * w
    return c.num_layers * per_layer + 2 * w * c.vocab_size
