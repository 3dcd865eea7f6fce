"""The engine's promises on the tiny study: a run's result does not depend on its chunk-mates, a group is
traced once, results round-trip through the run directory, and the report is written."""

import chex
import jax
import numpy as np
import pytest

from fi_sim.engine import execute
from fi_sim.engine.plan import make_plan
from fi_sim.engine.runfn import eval_items, make_run, run_params_for
from fi_sim.engine.runner import run_study
from fi_sim.engine.store import load_results
from fi_sim.study import loads_study
from fi_sim.world.policy import init_params


def test_a_run_alone_in_a_padded_chunk_equals_the_same_run_in_a_full_chunk(tiny_results, tiny_study_text, tmp_path):
    _, full = tiny_results
    # the same study reduced to a single listed cell and one seed: that run sits alone in a padded chunk
    one_cell = tiny_study_text.replace("seeds = 2", "seeds = [1]") + """
[design]
kind = "listed"
cells = [{ verifier = "noisy", base = "narrow", data = "edge", optimizer = "reinforce", scaffold = "scratchpad", budget = "pass@1" }]
"""
    alone = run_study(loads_study(one_cell), tmp_path / "alone", quiet=True)
    cell = dict(verifier="noisy", base="narrow", data="edge", optimizer="reinforce", scaffold="scratchpad", seed=1)
    assert int(alone["run_id"].sel(cell)) == int(full["run_id"].sel(cell))
    for name in ("score", "proxy_score", "base_score", "train_proxy_reward", "curve_kl", "train_tokens"):
        a = alone[name].sel(cell)
        b = full[name].sel(cell)
        if "budget" in a.dims:
            a, b = a.sel(budget="pass@1"), b.sel(budget="pass@1")
        assert np.array_equal(a.values, b.values), name  # bitwise
    # the listed design keeps only the budget level it lists
    assert np.isnan(alone["score"].sel(cell).sel(budget="pass@k").item())


def test_a_group_is_traced_once_for_all_its_chunks(tiny_study_text):
    study = loads_study(tiny_study_text)
    plan = make_plan(study)
    group = plan.groups[0]
    run = chex.assert_max_traces(make_run(group.static, eval_items(study.world)), n=1)
    fn = jax.jit(jax.vmap(run))
    base = init_params(group.static.policy, jax.random.key(0))
    for chunk in (group.runs[:4], group.runs[4:8]):
        params = execute.stack([base] * len(chunk))
        runs = execute.stack([run_params_for(study, r.cell) for r in chunk])
        keys = execute.key_data([jax.random.key(r.run_id) for r in chunk])
        jax.block_until_ready(fn(params, runs, keys, keys))
    chex.clear_trace_counter()


def test_results_round_trip_and_are_labelled(tiny_results):
    out, ds = tiny_results
    loaded = load_results(out)
    assert set(loaded.dims) >= {"verifier", "base", "data", "optimizer", "scaffold", "budget", "seed"}
    assert list(loaded["budget"].values) == ["pass@1", "pass@k", "majority@k"]
    for name, var in loaded.data_vars.items():
        assert "description" in var.attrs, name
        if name not in ("status", "run_id"):
            assert var.attrs["truth"] in ("true", "proxy", "channel"), name
            assert "units" in var.attrs
        np.testing.assert_array_equal(var.values, ds[name].values)
    assert (loaded["status"] == 0).all()
    np.testing.assert_allclose(loaded["gain"], loaded["score"] - loaded["base_score"])
    # nothing here is contaminated, so every item is clean: the clean scores are the whole set's
    np.testing.assert_allclose(loaded["base_clean_score"], loaded["base_score"], atol=1e-6)
    np.testing.assert_allclose(loaded["clean_gain"], loaded["gain"], atol=1e-6)
    # the base's score by skill is a fraction, measured for the skills the evaluation items use
    by_skill = loaded["base_score_by_skill"]
    assert float(by_skill.min()) >= 0 and float(by_skill.max()) <= 1
    assert int(by_skill.notnull().sum()) > 0
    # the exact verifier's proxy metrics are the true ones
    exact = loaded.sel(verifier="exact")
    np.testing.assert_array_equal(exact["proxy_score"], exact["score"])
    # the noisy verifier's measured channel is near its parameters (few samples in the tiny study)
    noisy = loaded.sel(verifier="noisy")
    assert abs(float(noisy["reward_false_positive_rate"].mean()) - 0.3) < 0.1
    cards = __import__("json").loads(loaded.attrs["cards"])
    assert len(cards) == 2 * 1 * 2 * 1 * 2 * 3  # one card per design cell (seeds are not cells)


def test_rerunning_a_finished_study_recomputes_nothing_and_changes_nothing(tiny_results, tiny_study_text):
    out, ds = tiny_results
    before = {p: p.stat().st_mtime_ns for p in (out / "chunks").glob("*.npz")}
    again = run_study(loads_study(tiny_study_text), out, quiet=True)
    assert before == {p: p.stat().st_mtime_ns for p in (out / "chunks").glob("*.npz")}
    for name in ds.data_vars:
        np.testing.assert_array_equal(again[name].values, ds[name].values)


def test_report_is_written_with_figures(tiny_results):
    from fi_sim.report import write_report

    out, _ = tiny_results
    path = write_report(out)
    text = path.read_text()
    for heading in ("## Study", "## The gain", "### Main effects", "### Largest pairwise interactions",
                    "## Reward channel"):
        assert heading in text
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "gain_by_cell.png" in pngs and any(p.startswith("interaction_") for p in pngs)
    for p in pngs:
        assert (out / "figures" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_different_study_in_the_same_directory_is_refused(tiny_results, tiny_study_text):
    from fi_sim.errors import ResultsError

    out, _ = tiny_results
    with pytest.raises(ResultsError, match="different study"):
        run_study(loads_study(tiny_study_text.replace("seeds = 2", "seeds = 3")), out, quiet=True)
