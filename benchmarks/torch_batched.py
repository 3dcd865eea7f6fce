"""The batched PyTorch peer: N post-training runs at once, written the way an expert batches independent runs.

Every parameter is stacked with a leading run dimension ([N, ...]), and every layer is one batched matmul over the
runs (`torch.baddbmm`): the embedding is one lookup into the runs' stacked tables, attention is one
`scaled_dot_product_attention` over (runs x sequences). The model, task, sampler and update are those of
`torch_peer.py` (and of fi_sim's default world): token + position embedding, 2 pre-LayerNorm blocks, final
LayerNorm, untied unembedding; each run draws 8 prompts of the chain task and samples 8 responses to each
(temperature sampling by the Gumbel-max trick, a key-value cache of fixed length, prefill then one token at a
time; it stops once every sequence of every run has ended), scores them with the exact verifier, and updates by
REINFORCE with the group-mean baseline, the exact KL to the base computed for the log, the gradient clipped to
norm 1 per run, and Adam (fused). The loss is the sum of the runs' losses, so each run's gradient is its own.

`Runs(config, base_state, n, compiled=True)` is the same code with its three hot functions (prefill, one decode
step, the loss) under `torch.compile` (static shapes: a new N compiles again; `Runs.compile_s` records it).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from benchmarks.torch_peer import ChainTask, PeerConfig

LINEARS = ("qkv", "out", "mlp_in", "mlp_out")
NORMS = ("ln_attn", "ln_mlp")


def stack_states(states: list[dict]) -> dict:
    """Stacked parameters [N, ...] of N `torch_peer.Policy` state dicts, linear kernels as [N, in, out]."""
    def stacked(name, transpose=False):
        return torch.stack([s[name].t() if transpose else s[name] for s in states]).contiguous()

    p = {"embed": stacked("embed.weight"), "position": stacked("position"),
         "ln_final.scale": stacked("ln_final.weight"), "ln_final.bias": stacked("ln_final.bias"),
         "unembed.w": stacked("unembed.weight", True), "unembed.b": stacked("unembed.bias")}
    layers = 1 + max(int(k.split(".")[1]) for k in states[0] if k.startswith("blocks."))
    for i in range(layers):
        for name in LINEARS:
            p[f"{i}.{name}.w"] = stacked(f"blocks.{i}.{name}.weight", True)
            p[f"{i}.{name}.b"] = stacked(f"blocks.{i}.{name}.bias")
        for name in NORMS:
            p[f"{i}.{name}.scale"] = stacked(f"blocks.{i}.{name}.weight")
            p[f"{i}.{name}.bias"] = stacked(f"blocks.{i}.{name}.bias")
    return p


# ---------------------------------------------------------------------------------------------- the model
def _linear(p, name, x):  # x [N, M, in] -> [N, M, out]: one batched matmul over the runs
    return torch.baddbmm(p[name + ".b"].unsqueeze(1), x, p[name + ".w"])


def _norm(p, name, x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6) * p[name + ".scale"].unsqueeze(1) + p[name + ".bias"].unsqueeze(1)


def _embed(p, tokens, positions):
    """tokens [N, S, T] -> [N, S * T, W] (each run's own table and positions)."""
    N, S, T = tokens.shape
    V, W = p["embed"].shape[1:]
    offset = V * torch.arange(N, device=tokens.device).view(N, 1, 1)
    x = F.embedding(tokens + offset, p["embed"].reshape(N * V, W)) + p["position"][:, positions].unsqueeze(1)
    return x.reshape(N, S * T, W)


def _block(p, i, x, c: PeerConfig, N, S, T, cache=None, pos=None):
    """x [N, S*T, W]. Without a cache: the causal pass over T positions (returns its keys and values); with one
    (keys, values [N*S, H, L, D], T = 1): the token at `pos` (a 0-d tensor) attends to the cache up to it."""
    H, D, W = c.num_heads, c.width // c.num_heads, c.width
    qkv = _linear(p, f"{i}.qkv", _norm(p, f"{i}.ln_attn", x))
    q, k, v = qkv.view(N * S, T, 3, H, D).permute(2, 0, 3, 1, 4)
    if cache is None:
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        positions = torch.arange(cache[0].shape[2], device=x.device)
        k = torch.where((positions == pos).view(1, 1, -1, 1), k, cache[0])
        v = torch.where((positions == pos).view(1, 1, -1, 1), v, cache[1])
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=(positions <= pos).view(1, 1, 1, -1))
    x = x + _linear(p, f"{i}.out", a.transpose(1, 2).reshape(N, S * T, W))
    h = F.gelu(_linear(p, f"{i}.mlp_in", _norm(p, f"{i}.ln_mlp", x)), approximate="tanh")
    return x + _linear(p, f"{i}.mlp_out", h), (k, v)


def forward(p, tokens, c: PeerConfig):
    """Logits [N, S, T, V] of every run's sequences tokens [N, S, T] (causal), and the per-layer keys/values."""
    N, S, T = tokens.shape
    x = _embed(p, tokens, torch.arange(T, device=tokens.device))
    caches = []
    for i in range(c.num_layers):
        x, kv = _block(p, i, x, c, N, S, T)
        caches.append(kv)
    return _linear(p, "unembed", _norm(p, "ln_final", x)).view(N, S, T, -1), caches


def prefill(p, prompts, c: PeerConfig):
    """The prompts' last logits [N, S, V] and a key-value cache padded to the full sequence length."""
    logits, caches = forward(p, prompts, c)
    pad = (0, 0, 0, c.sequence_length - prompts.shape[2])
    return logits[:, :, -1], [(F.pad(k, pad), F.pad(v, pad)) for k, v in caches]


def decode(p, token, caches, pos, c: PeerConfig):
    """Logits [N, S, V] for one token [N, S] at position `pos` (0-d tensor), and the updated cache."""
    N, S = token.shape
    x = _embed(p, token.unsqueeze(-1), pos.view(1))
    new = []
    for i in range(c.num_layers):
        x, kv = _block(p, i, x, c, N, S, 1, caches[i], pos)
        new.append(kv)
    return _linear(p, "unembed", _norm(p, "ln_final", x)), new


def loss(p, base, seq, responses, mask, advantage, c: PeerConfig):
    """REINFORCE with the exact KL to the base: the sum over runs of each run's loss, and the runs' KL [N]."""
    logits = forward(p, seq, c)[0][:, :, c.prompt_length - 1:] / c.temperature
    logp_all = F.log_softmax(logits, -1)
    logp = logp_all.gather(-1, responses.unsqueeze(-1)).squeeze(-1)
    seq_logp = (logp * mask).sum(-1)  # [N, S]
    with torch.no_grad():
        base_logp = F.log_softmax(forward(base, seq, c)[0][:, :, c.prompt_length - 1:] / c.temperature, -1)
    kl = ((logp_all.exp() * (logp_all - base_logp)).sum(-1) * mask).sum(-1).mean(-1)  # [N]
    return (-(advantage * seq_logp).mean(-1) + c.kl_coef * kl).sum(), kl.detach()


# ---------------------------------------------------------------------------------------------- N runs
class Runs:
    """N runs from one base, trained together (see the module's docstring)."""

    def __init__(self, c: PeerConfig, base_state: dict, n: int, compiled: bool = False):
        self.c, self.n, self.compiled = c, n, compiled
        self.base = {k: v.detach() for k, v in stack_states([base_state] * n).items()}
        self.prefill, self.decode, self.loss = prefill, decode, loss
        self.compile_s = 0.0
        if compiled:
            self.prefill, self.decode, self.loss = (torch.compile(f, dynamic=False) for f in (prefill, decode, loss))
            t = time.perf_counter()
            self.train(seed=0, steps=1)  # compiles all three at this N
            self.compile_s = time.perf_counter() - t

    def sample(self, p, prompts, generator):
        """Responses [N, S, R] and the mask of the generated tokens (EOS included, nothing after it)."""
        c = self.c
        N, S, P = prompts.shape
        logits, caches = self.prefill(p, prompts, c)
        noise = -torch.log(-torch.log(torch.rand((c.response_length, N, S, c.vocab_size), generator=generator)
                                       .clamp_(min=1e-20)))
        done = torch.zeros((N, S), dtype=torch.bool)
        tokens = torch.full((N, S, c.response_length), c.pad, dtype=torch.long)
        for t in range(c.response_length):
            token = torch.argmax(logits / c.temperature + noise[t], -1)  # Gumbel-max: a sample at temperature
            token = torch.where(done, c.pad, token)
            tokens[:, :, t] = token
            done = done | (token == c.eos)
            if t == c.response_length - 1 or bool(done.all()):
                break
            logits, caches = self.decode(p, token, caches, torch.tensor(P + t), c)
        eos = (tokens == c.eos).long()
        mask = (torch.cumsum(eos, -1) - eos == 0) & (tokens != c.pad)
        return tokens, mask

    def train(self, seed: int, steps: int) -> dict:
        """Post-train the N runs from the base for `steps` steps; returns the per-step log [steps, N]."""
        c, N = self.c, self.n
        B, G = c.prompts_per_step, c.samples_per_prompt
        g = torch.Generator().manual_seed(seed)
        task = ChainTask(c, g)
        p = {k: v.clone().requires_grad_(True) for k, v in self.base.items()}
        params = list(p.values())
        opt = torch.optim.Adam(params, lr=c.learning_rate, fused=True)
        rewards, kls = [], []
        for _ in range(steps):
            x0, skills, depth = task.sample(N * B)
            x0, skills, depth = (t.repeat_interleave(G, 0) for t in (x0, skills, depth))
            prompts = task.encode(x0, skills, depth).view(N, B * G, -1)
            with torch.no_grad():
                responses, mask = self.sample(p, prompts, g)
            reward = task.reward(responses.view(N * B * G, -1), task.solve(x0, skills, depth)).view(N, B, G)
            advantage = (reward - reward.mean(-1, keepdim=True)).view(N, B * G)
            seq = torch.cat([prompts, responses], -1)[:, :, :-1]
            total, kl = self.loss(p, self.base, seq, responses, mask, advantage, c)
            opt.zero_grad(set_to_none=False)
            total.backward()
            clip_per_run([q.grad for q in params], c.max_grad_norm)
            opt.step()
            rewards.append(reward.mean((1, 2)))
            kls.append(kl)
        return {"reward": torch.stack(rewards), "kl": torch.stack(kls),
                "checksum": torch.stack([q.detach().sum(tuple(range(1, q.dim()))) for q in params]).sum(0)}


def clip_per_run(grads: list, max_norm: float) -> None:
    """Scale each run's gradient to global norm at most `max_norm` (in place; runs are the leading axis)."""
    n = grads[0].shape[0]
    norm = torch.stack([g.pow(2).reshape(n, -1).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norm + 1e-12)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view((n,) + (1,) * (g.dim() - 1)))
