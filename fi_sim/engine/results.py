"""Assemble chunk files into the labelled results Dataset.

One dimension per factor (coordinates: level names), `seed`, and where a metric has them, `depth` (of the
evaluation item) and `step` (of post-training). Training-side metrics have no `budget` dimension (the budget only
changes evaluation). Every variable's attrs say what it measures, its units, and whether it is `true` (against
the exact solver), `proxy` (as the run's verifier scores it) or a measurement of the reward channel itself.
A run that is not ok (non-finite, diverged, or collapsed: see `fi_sim.engine.faults`) is marked in `status` and
its metrics are NaN, never averaged.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import xarray as xr

from fi_sim import __version__, metrics
from fi_sim.engine import faults
from fi_sim.engine.runfn import curve_stride, exposed_share
from fi_sim.engine.plan import Plan, base_eval_name, chunk_name
from fi_sim.engine.store import RunDirectory
from fi_sim.errors import ResultsError
from fi_sim.evaluate import clean_items
from fi_sim.factors import FACTOR_NAMES
from fi_sim.interface import TRAINING_FACTORS

TRAIN_DIMS = TRAINING_FACTORS + ("seed",)
BUDGET_DIMS = FACTOR_NAMES + ("seed",)
FRACTION = metrics.FRACTION

# name -> (dims kind, source, truth, units, description), from the one schema `fi_sim.metrics.Metrics`. Source:
# "run" (a post-training run's output), "base" (its base's evaluation), "derived" (computed here from the others).
VARIABLES = metrics.variables()
STATUS = {"not_run": -1, **{name: code for code, name in faults.NAMES.items()}}


def _layout(rd: RunDirectory) -> dict:
    """The layout the runs were computed at (device batch, canonical or not, platform), from the manifest."""
    try:
        layout = dict((rd.manifest().get("plan") or {}).get("layout") or {})
    except ResultsError:
        return {}
    if "canonical_device_batch" in layout:
        layout["canonical"] = layout["device_batch"] == layout["canonical_device_batch"]
    return layout


def _dims(kind: str) -> tuple[str, ...]:
    return {
        "budget": BUDGET_DIMS,
        "budget_depth": BUDGET_DIMS + ("depth",),
        "budget_skill": BUDGET_DIMS + ("skill",),
        "train": TRAIN_DIMS,
        "train_step": TRAIN_DIMS + ("step",),
    }[kind]


def assemble(plan: Plan, rd: RunDirectory) -> xr.Dataset:
    study = plan.study
    coords: dict[str, list] = {f: study.level_names(f) for f in FACTOR_NAMES}
    coords["seed"] = list(study.seeds)
    coords["depth"] = list(range(1, study.world.max_depth + 1))
    coords["skill"] = list(range(study.world.num_skills))
    steps = sorted({(i + 1) * curve_stride(g.static.posttrain.steps)
                    for g in plan.groups for i in range(g.static.posttrain.steps // curve_stride(g.static.posttrain.steps))})
    coords["step"] = steps
    sizes = {d: len(v) for d, v in coords.items()}
    seed_pos = {s: i for i, s in enumerate(study.seeds)}
    step_pos = {s: i for i, s in enumerate(steps)}

    data = {}
    for name, (kind, *_rest) in VARIABLES.items():
        dims = _dims(kind)
        data[name] = np.full([sizes[d] for d in dims], np.nan, np.float64)
    status = np.full([sizes[d] for d in TRAIN_DIMS], STATUS["not_run"], np.int8)
    run_ids = np.full([sizes[d] for d in TRAIN_DIMS], -1, np.int64)
    num_budgets = sizes["budget"]
    bi = FACTOR_NAMES.index("budget")

    base_eval: dict[int, dict] = {}
    for _, chunk in plan.base_eval_chunks():
        arrays, _ = rd.read("base_evals", base_eval_name(chunk))
        for row, job in enumerate(chunk):
            if int(arrays["job"][row]) != job.index:
                raise ResultsError(f"{rd.path}: base evaluation chunk {base_eval_name(chunk)} does not match the plan")
            base_eval[job.index] = {k: v[row] for k, v in arrays.items()}

    for group, ci, runs in plan.chunks():
        arrays, _ = rd.read("chunks", chunk_name(group.index, ci))
        window = curve_stride(group.static.posttrain.steps)
        step_idx = [step_pos[(i + 1) * window] for i in range(group.static.posttrain.steps // window)]
        for row, run in enumerate(runs):
            if int(arrays["run_id"][row]) != run.run_id:
                raise ResultsError(f"{rd.path}: chunk {chunk_name(group.index, ci)} holds run "
                                   f"{int(arrays['run_id'][row])} where the plan has {run.run_id}")
            tcell = tuple(run.cell) + (seed_pos[run.seed],)
            code = int(arrays["status"][row]) if "status" in arrays else (
                STATUS["ok"] if bool(arrays["finite"][row]) else STATUS["nonfinite"])
            base = base_eval[run.base_eval]
            if code == faults.OK and faults.collapsed(arrays["train_true_accuracy"][row], arrays["score"][row],
                                                      base["base_score"], arrays["kl_to_base"][row])[0]:
                code = faults.COLLAPSED  # needs the base's scores, so decided here rather than per chunk
            status[tcell] = code
            run_ids[tcell] = run.run_id
            if code != STATUS["ok"]:
                continue
            if "base_score_by_item" in base:  # the base scored on the items this run cannot have seen
                clean = clean_items(base["base_score_by_item"].shape[-1], exposed_share(study, run.cell), np)
            # full index: training factors with the budget axis inserted before seed
            for b in range(num_budgets):
                cell6 = list(run.cell)
                cell6.insert(bi, b)
                idx = tuple(cell6) + (seed_pos[run.seed],)
                for name, (kind, source, *_r) in VARIABLES.items():
                    if kind.startswith("budget") and source == "run":
                        data[name][idx] = arrays[name][row, b]
                    elif kind.startswith("budget") and source == "base" and name in base:
                        data[name][idx] = base[name][b]  # (absent from directories written before it existed)
                if "base_score_by_item" in base:
                    items = base["base_score_by_item"][b]
                    data["base_clean_score"][idx] = np.mean(items[clean]) if clean.any() else np.nan
            for name, (kind, source, *_r) in VARIABLES.items():
                if kind == "train":
                    data[name][tcell] = arrays[name][row]
                elif kind == "train_step":
                    data[name][tcell + (step_idx,)] = arrays[name][row]

    if study.design == "listed":  # keep only the budget levels each listed cell asks for
        mask = np.zeros([sizes[f] for f in FACTOR_NAMES], bool)
        for cell in study.cells():
            mask[cell] = True
        for name, (kind, *_r) in VARIABLES.items():
            if kind.startswith("budget"):
                m = mask.reshape(mask.shape + (1,) * (data[name].ndim - mask.ndim))
                data[name] = np.where(m, data[name], np.nan)

    data["gain"] = data["score"] - data["base_score"]
    data["proxy_gain"] = data["proxy_score"] - data["base_proxy_score"]
    data["clean_gain"] = data["clean_score"] - data["base_clean_score"]
    for code, why in faults.WHY.items():
        count = int(np.sum(status == code))
        if count:
            warnings.warn(f"{count} run(s) {why}; marked in `status` and left out (NaN)")

    variables = {}
    for name, (kind, _source, truth, units, description) in VARIABLES.items():
        variables[name] = xr.Variable(_dims(kind), data[name],
                                      attrs={"description": description, "units": units, "truth": truth})
    variables["status"] = xr.Variable(TRAIN_DIMS, status, attrs={
        "description": "outcome of each post-training run",
        "flag_values": np.array(list(STATUS.values()), np.int8),
        "flag_meanings": " ".join(STATUS),
    })
    variables["run_id"] = xr.Variable(TRAIN_DIMS, run_ids, attrs={"description": "stable run id (-1: not run)"})
    ds = xr.Dataset(variables, coords=coords)
    ds["depth"].attrs["description"] = "depth of the evaluation item (its number of steps)"
    ds["skill"].attrs["description"] = "skill id used by the evaluation item (at any step)"
    ds["step"].attrs["description"] = "post-training step at the end of each logged window"
    ds.attrs.update({
        "title": f"fi_sim study {study.name}",
        "description": study.description,
        "fi_sim_version": __version__,
        "study_hash": study.hash,
        "layout": json.dumps(_layout(rd), sort_keys=True),
        "study": study.to_json(),
        "cards": json.dumps([json.loads(c.to_json(indent=None)) for c in study.cards()]),
    })
    return ds
