"""Planning: groups by shape, one compile per group, shared stages; the canonical layout; `fi-sim plan`."""

import json

import jax
import pytest

from fi_sim.engine import execute, sizing
from fi_sim.engine.plan import make_plan
from fi_sim.errors import ResultsError, ValidationError
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


def test_the_device_batch_is_canonical_and_memory_is_checked_not_chased(monkeypatch, micro_reference):
    """The device batch is a function of the study and the platform only: free memory and the chunk size never
    change it; a study that does not fit is refused before computing, naming what it needs and what to do."""
    monkeypatch.setitem(sizing.CANONICAL_DEVICE_BATCH, "cpu", 4)  # keeps this test to one new compile
    study = loads_study(MICRO_STUDY.replace("chunk_size = 2", ""))
    ex = execute.Executor(jax.local_devices()[:1])
    s = sizing.size_plan(study, ex)
    assert s.plan.device_batch == 4 and s.canonical and s.plan.chunk_size == 4
    mem = s.groups[0].memory_bytes
    assert mem > 0
    # the old memory bound (half the free RAM) would have shrunk the batch here; the layout must not move
    monkeypatch.setattr(sizing, "available_host_memory", lambda: int(1.5 * mem))
    tight = sizing.size_plan(study, ex)
    assert tight.plan.device_batch == 4 and tight.canonical
    monkeypatch.setattr(sizing, "available_host_memory", lambda: int(0.5 * mem))
    with pytest.raises(ResultsError, match=r"needs .* GiB at device batch 4 .*available.*--device-batch"):
        sizing.size_plan(study, ex)
    monkeypatch.undo()
    monkeypatch.setitem(sizing.CANONICAL_DEVICE_BATCH, "cpu", 4)
    given = sizing.size_plan(study, ex, chunk_size=44)
    assert given.plan.chunk_size == 44 and given.plan.device_batch == 4  # the chunk size changes no bit
    other = sizing.size_plan(study, ex, device_batch=2)
    assert not other.canonical and other.layout()["canonical_device_batch"] == 4 and "NOT the canonical" in other.chosen_by
    assert sizing.canonical_device_batch(loads_study(MICRO_STUDY), "cpu") == 2  # capped by the study's chunk size
    assert sizing.canonical_device_batch(study, "gpu") == sizing.ACCELERATOR_DEVICE_BATCH
    with pytest.raises(ResultsError, match="started with chunk_size 4"):
        sizing.size_plan(study, ex, chunk_size=6, layout={"chunk_size": 4, "device_batch": 2})
    with pytest.raises(ResultsError, match="computed on gpu"):
        sizing.size_plan(study, ex, layout={"chunk_size": 4, "device_batch": 2, "platform": "gpu"})
    assert sizing.size_plan(study, ex, layout={"chunk_size": 4, "device_batch": 2}).plan.layout()["device_batch"] == 2


def test_two_memory_budgets_give_bitwise_equal_results(monkeypatch, micro_reference, tmp_path):
    """Under a memory budget that the old bound (half the free RAM per device) would have met by shrinking the
    device batch, the study runs at its canonical layout and equals the reference bit for bit."""
    from fi_sim.engine.runner import run_study

    from ._helpers import assert_same_results

    study = loads_study(MICRO_STUDY)
    ex = execute.Executor(jax.local_devices()[:1])
    mem = sizing.size_plan(study, ex).groups[0].memory_bytes
    monkeypatch.setattr(sizing, "available_host_memory", lambda: int(1.5 * mem))
    ds = run_study(study, tmp_path / "tight", quiet=True, devices=1)
    assert json.loads(ds.attrs["layout"])["device_batch"] == 2 and json.loads(ds.attrs["layout"])["canonical"]
    assert_same_results(ds, micro_reference[1])


def test_run_ids_do_not_collide_and_keep_their_published_key_words():
    from fi_sim.interface import run_key_word, stable_run_id
    from fi_sim.study import MAX_RUNS, num_runs

    study = loads_study(MICRO_STUDY.replace("seeds = 4", "seeds = 10000"))
    assert num_runs(study) == 40_000 <= MAX_RUNS
    plan = make_plan(study)  # the old 31-bit ids collided at this size ("run id collision; change study.seed")
    ids = [r.run_id for g in plan.groups for r in g.runs]
    assert len(set(ids)) == len(ids) == 40_000 and max(ids) < 2**63
    # the key word is the old 31-bit id, so published runs keep their random streams
    levels = {f: study.factors[f][0] for f in ("verifier", "base", "data", "optimizer", "scaffold")}
    from fi_sim.interface import content_hash, training_signature

    old = int(content_hash({"run": training_signature(study.world, levels), "seed": 3})[:8], 16) & 0x7FFFFFFF
    assert run_key_word(stable_run_id(study.world, levels, 3)) == old
    big = MICRO_STUDY.replace('scaffold = ["direct", "scratchpad"]', 'scaffold = ["direct", "scratchpad"]\n'
                              ).replace("seeds = 4", "seeds = 10000").replace(
        'data = ["within"]', 'data = ["within", "edge", "beyond", "edge_pool16"] ')
    big = big.replace('optimizer = [', 'optimizer = [{ preset = "reinforce", name = "a", steps = 60 }, '
                      '{ preset = "reinforce", name = "b", steps = 60 }, { preset = "reinforce", name = "c", steps = 60 }, '
                      '{ preset = "reinforce", name = "d", steps = 60 }, ').replace(
        ', prompts_per_step = 2, samples_per_prompt = 2 }]', ', name = "e", prompts_per_step = 2, samples_per_prompt = 2 }]')
    with pytest.raises(ValidationError, match="study.seeds.*at most 1,048,576 post-training runs"):
        loads_study(big.replace('verifier = ["exact", "noisy"]', 'verifier = ["exact", "noisy", "random", "format"]'))


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


def test_a_memory_limit_from_the_environment(monkeypatch):
    free = sizing._free_host_memory()
    monkeypatch.setenv(sizing.MEMORY_LIMIT_ENV, "1e9")
    assert sizing.available_host_memory() == min(10**9, free)
    monkeypatch.setenv(sizing.MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(ValidationError, match="FI_SIM_MEMORY_LIMIT"):
        sizing.available_host_memory()
