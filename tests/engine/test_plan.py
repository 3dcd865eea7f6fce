"""Planning: groups by shape, one compile per group, shared stages; sizes from a memory bound; `fi-sim plan`."""

import jax
import pytest

from fi_sim.engine import execute, sizing
from fi_sim.engine.plan import make_plan
from fi_sim.errors import ResultsError
from fi_sim.study import loads_study

from ._helpers import MICRO_STUDY, fi_sim

TWO_SHAPES = MICRO_STUDY.replace(
    'base = [{ preset = "narrow", steps = 10, width = 8, num_layers = 1, num_heads = 1, batch_size = 8 }]',
    'base = [{ preset = "narrow", steps = 10, width = 8, num_layers = 1, num_heads = 1, batch_size = 8 }, '
    '{ preset = "broad", steps = 10, width = 16, num_layers = 1, num_heads = 1, batch_size = 8 }]')


def test_groups_by_shape_and_shared_stages():
    study = loads_study(TWO_SHAPES)
    plan = make_plan(study)
    assert len(plan.groups) == 2  # two model widths: two compiled groups
    assert plan.num_runs == 2 * 2 * 2 * 4  # verifier x base x scaffold x seeds (the budget adds no runs)
    assert len(plan.bases) == 2 * 4  # each base pretrained once per level and seed
    # each base evaluated once per (scaffold, verifier) it is post-trained under, not once per run
    assert len(plan.base_evals) == 2 * 4 * 2 * 2
    assert {r.base_eval for g in plan.groups for r in g.runs} == set(range(len(plan.base_evals)))


def test_device_batch_from_the_memory_bound_and_a_recorded_layout_wins(monkeypatch, micro_reference):
    monkeypatch.setattr(sizing, "CPU_DEVICE_BATCH_CAP", 4)  # keeps this test to one new compile
    study = loads_study(MICRO_STUDY.replace("chunk_size = 2", ""))
    ex = execute.Executor(jax.local_devices()[:1])
    s = sizing.size_plan(study, ex)
    assert s.plan.device_batch == sizing.CPU_DEVICE_BATCH_CAP and s.plan.chunk_size == s.plan.device_batch
    assert s.groups[0].memory_bytes > 0
    budget = int(s.groups[0].memory_bytes * 0.9)
    tight = sizing.size_plan(study, ex, budget_bytes=budget)
    assert tight.plan.device_batch < s.plan.device_batch
    assert tight.groups[0].memory_bytes <= budget or tight.plan.device_batch == 1
    given = sizing.size_plan(study, ex, chunk_size=44)
    assert given.plan.chunk_size == 44 and given.plan.device_batch == 4  # the largest divisor within the cap
    with pytest.raises(ResultsError, match="started with chunk_size 4"):
        sizing.size_plan(study, ex, chunk_size=6, layout={"chunk_size": 4, "device_batch": 2})
    assert sizing.size_plan(study, ex, layout={"chunk_size": 4, "device_batch": 2}).plan.layout()["device_batch"] == 2


def test_flops_count_the_stages():
    study = loads_study(MICRO_STUDY)
    plan = make_plan(study)
    f = sizing.plan_flops(plan)
    assert set(f) == {"pretraining", "base evaluation", "post-training and evaluation"}
    g = plan.groups[0].static
    per_step = sizing.posttrain_flops_per_step(g)
    assert per_step == g.policy.flops_per_token() * 4 * (12 + 4 * 11)  # 2 prompts x 2 samples; L = 12
    assert f["post-training and evaluation"] > 16 * 60 * per_step


def test_fi_sim_plan_prints_groups_chunks_memory_and_time(micro_study_file):
    r = fi_sim("plan", micro_study_file)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for needle in ("16 post-training runs", "1 compiled group", "chunk size 2", "device batch 2",
                   "memory per device", "estimated work", "estimated peak memory", "estimated time"):
        assert needle in out, (needle, out)
