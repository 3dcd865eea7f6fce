"""Where a run-step's time goes: each stage of the benchmark's run-step timed as its own compiled program.

XLA's CPU runtime reports no per-kernel times to `jax.profiler` (its trace holds one event per executable call
and per thread-pool task, not per fusion), so this profile times the stages instead: each is compiled as
`jit(vmap(stage))` over the same N runs, on the same inputs a run-step builds, and timed interleaved with the
whole run-step (median of `--repeats`, per CPU-second and per wall-second), each on its own inputs (computed
once, by the stages before it). A stage's share is its time over the run-step's; the shares need not sum to 1
(stages compiled together fuse, and the step has glue: the key splits, the log).

    python -m benchmarks.profile [--runs 16] [--repeats 7]

Stages (the default world's REINFORCE run-step, `benchmarks/workload.py`):
- `prompts`: draw 8 prompts, solve them, encode them;
- `sample`: the rollout: 8 samples per prompt with the key-value cache (prefill + decode), graded and scored;
- `weights`: the objective's per-token weights (group-mean baseline);
- `loss_grad`: the loss and its gradient (the policy's forward and backward and the base's forward for the KL);
- `forward`: one forward pass over the batch (what the base's forward for the KL costs inside `loss_grad`);
- `update`: clip and Adam;
- `base forward (in the step)`: the run-step's time less that of the same step with the KL taken to a
  stop-gradient copy of the policy (XLA merges the two forward passes): the base's forward where it runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time


def timed(f):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = f()
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": t1 - t0, "cpu": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)}, out


def stages(steps: int, runs: int):
    """The run-step's program and its stages, each a compiled `vmap` over runs with its inputs (computed once, by
    the stages before it): {name: (function, inputs)}."""
    import jax
    import jax.numpy as jnp

    from benchmarks import workload
    from fi_sim import train
    from fi_sim.factors import optimizer as optimizer_factor
    from fi_sim.rollout import rollout
    from fi_sim.world import policy
    from fi_sim.world.tokens import Vocab

    static = workload.posttrain_static(steps)
    world, config = static.world, static.policy
    vocab = Vocab(world)
    B, G, A = static.prompts_per_step, static.samples_per_prompt, static.attempts
    verifiers, objectives = static.uses("verifier"), static.uses("optimizer")

    def prompts(run, key_data):
        problems = world.sample(jax.random.wrap_key_data(key_data), run.data.skill_weights, run.data.depth_weights, B)
        problems = jax.tree.map(lambda x: jnp.repeat(x, G, axis=0), problems)
        return problems, world.solve(problems), vocab.encode_prompt(problems, run.scaffold.mode_token)

    def sample(base, run, key_data, problems, solution, p):
        return rollout(world, config, base, p, solution, problems.depth, run.scaffold, run.verifier,
                       jax.random.wrap_key_data(key_data), run.optimizer.temperature, A, verifiers)

    def weights(run, p, ep):
        opt = run.optimizer
        w = train.token_weights(opt, ep.token_rewards, ep.taken, G, opt.normalize_advantage, objectives)
        flat = lambda x: x.reshape((A * B * G,) + x.shape[2:])  # noqa: E731
        return jnp.tile(p, (A, 1)), flat(ep.context), flat(ep.actions), flat(ep.mask), flat(w)

    def loss_grad(base, run, batch):
        p, context, actions, mask, w = batch
        clip = optimizer_factor.clip_epsilon(run.optimizer, objectives)
        return jax.value_and_grad(train.surrogate_loss, argnums=1, has_aux=True)(
            config, base, base, p, context, actions, mask, w, jnp.full(actions.shape, jnp.nan), run.optimizer, clip)

    def forward(base, batch):
        return policy.token_logits(config, base, batch[0], batch[1])

    def update(base, run, grads, state):
        return train._update(base, grads, state, run.optimizer.learning_rate, run.optimizer.max_grad_norm,
                             run.optimizer.family)

    base, run, keys = workload.inputs(0, runs)
    call = lambda f, *a: jax.block_until_ready(jax.jit(jax.vmap(f))(*a))  # noqa: E731
    problems, solution, p = call(prompts, run, keys)
    ep = call(sample, base, run, keys, problems, solution, p)
    batch = call(weights, run, p, ep)
    (_, _), grads = call(loss_grad, base, run, batch)
    state = call(lambda b: optax_init(b), base)
    return {
        "run-step": (workload.make_row(steps), (base, run, keys)),
        "run-step, no base forward": (_without_base_forward(steps), (base, run, keys)),
        "prompts": (prompts, (run, keys)),
        "sample": (sample, (base, run, keys, problems, solution, p)),
        "weights": (weights, (run, p, ep)),
        "loss_grad": (loss_grad, (base, run, batch)),
        "forward": (forward, (base, batch)),
        "update": (update, (base, run, grads, state)),
    }


def _without_base_forward(steps: int):
    """The run-step with the KL taken to a stop-gradient copy of the policy instead of the base: XLA merges the
    two identical forward passes, so the difference to the run-step is what the base's forward costs in it."""
    import jax

    from benchmarks import workload
    from fi_sim import train

    loss = train.surrogate_loss

    def surrogate(config, params, base_params, *rest):
        return loss(config, params, jax.lax.stop_gradient(params), *rest)

    posttrain = train.make_posttrain(workload.posttrain_static(steps))

    def run(base, run_params, key_data):
        train.surrogate_loss = surrogate  # read when the program is traced
        try:
            params, log = posttrain(base, run_params, jax.random.wrap_key_data(key_data))
        finally:
            train.surrogate_loss = loss
        return {"proxy_reward": log.proxy_reward, "kl": log.kl,
                "checksum": sum(jax.numpy.sum(x) for x in jax.tree.leaves(params))}

    return run


def optax_init(params):
    import optax

    return optax.scale_by_adam().init(params)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=16, help="runs per call (the engine's device batch on each device)")
    p.add_argument("--steps", type=int, default=10, help="steps of the whole run-step's program")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=None, help="write the profile as JSON here")
    args = p.parse_args(argv)

    from fi_sim.engine import hostcpu

    hostcpu.configure()
    import jax

    parts = stages(args.steps, args.runs)
    fns = {name: jax.jit(jax.vmap(f)) for name, (f, _) in parts.items()}
    for name, f in fns.items():  # compile and warm up
        jax.block_until_ready(f(*parts[name][1]))
    samples: dict[str, list] = {name: [] for name in fns}
    names = list(fns)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotating order
            t, _ = timed(lambda f=fns[name], x=parts[name][1]: jax.block_until_ready(f(*x)))
            samples[name].append(t)
    per = {name: {k: statistics.median(s[k] for s in samples[name]) / args.runs for k in ("wall", "cpu")}
           for name in names}
    for name in ("run-step", "run-step, no base forward"):
        per[name] = {k: v / args.steps for k, v in per[name].items()}
    own = {name: per[name] for name in names if not name.startswith("run-step")}
    own["base forward (in the step)"] = {k: per["run-step"][k] - per["run-step, no base forward"][k]
                                         for k in ("wall", "cpu")}
    total = per["run-step"]
    print(f"run-step: {1e3 * total['cpu']:.2f} ms per CPU ({1e3 * total['wall']:.2f} ms wall) per run, "
          f"{args.runs} runs per call, median of {args.repeats}")
    print(f"{'stage':>28} {'ms/run CPU':>11} {'share':>7} {'ms/run wall':>12} {'share':>7}")
    for name in sorted(own, key=lambda n: -own[n]["cpu"]):
        print(f"{name:>28} {1e3 * own[name]['cpu']:>11.3f} {own[name]['cpu'] / total['cpu']:>7.1%} "
              f"{1e3 * own[name]['wall']:>12.3f} {own[name]['wall'] / total['wall']:>7.1%}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"per_run_step": total, "stages": own, "runs": args.runs,
                       "repeats": args.repeats, "samples": samples}, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
