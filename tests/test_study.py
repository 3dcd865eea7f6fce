"""Study files are validated before any compute, and every problem is reported at once, each naming the
field, the value given and what is allowed. Interface cards write every parameter out, with a content hash."""

import copy
import json
import tomllib
from pathlib import Path

import pytest

from fi_sim.engine.plan import make_plan
from fi_sim.errors import ValidationError
from fi_sim.interface import Interface, InterfaceCard, WorldSettings
from fi_sim.study import load_study, study_from_dict

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.toml"


def raw_demo() -> dict:
    return tomllib.loads(DEMO.read_text())


def test_the_demo_study_loads_and_plans():
    study = load_study(DEMO)
    assert len(list(study.cells())) == 64
    plan = make_plan(study)
    assert plan.num_runs == 32 * len(study.seeds)  # the budget adds no training
    assert len(plan.bases) == 2 * len(study.seeds)  # one base per base level and seed
    assert len(plan.groups) == 1  # every level of the demo has the same shapes


def _mutate(path: str, value):
    raw = raw_demo()
    node = raw
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


MALFORMED = [
    ("factors.verifier.1", "noisier", "factors.verifier[1].preset"),
    ("factors.verifier.1", {"preset": "noisy", "false_positive_rate": 1.5}, "factors.verifier[1].false_positive_rate"),
    ("factors.verifier.1", {"preset": "noisy", "flase_positive_rate": 0.1}, "factors.verifier[1].flase_positive_rate"),
    ("factors.base.1", "narrow", "factors.base"),  # two levels named "narrow"
    ("factors.data.0", {"preset": "within", "skills": [0, 9]}, "factors.data[0].skills"),
    ("factors.data.0", {"preset": "within", "depths": [0]}, "factors.data[0].depths"),
    ("factors.optimizer.0", {"preset": "reinforce", "learning_rate": -1}, "factors.optimizer[0].learning_rate"),
    ("factors.optimizer.0", {"preset": "reinforce", "steps": 2.5}, "factors.optimizer[0].steps"),
    ("factors.optimizer.0", {"preset": "reinforce", "normalize_advantage": "yes"},
     "factors.optimizer[0].normalize_advantage"),
    ("factors.budget", [], "factors.budget"),
    ("factors.budget.0", {"preset": "pass@k", "k": 0}, "factors.budget[0].k"),
    ("factors.scaffold.0", 7, "factors.scaffold[0]"),
    ("factors.tools", ["hammer"], "factors.tools"),
    ("study.seeds", 0, "study.seeds"),
    ("study.seeds", [1, 1], "study.seeds"),
    ("study.seed", -3, "study.seed"),
    ("study.name", "", "study.name"),
    ("study.colour", "blue", "study.colour"),
    ("world.modulus", 100, "world.modulus"),
    ("world.eval_size", 0, "world.eval_size"),
    ("world.family", "sudoku", "world.family"),
    ("world.eval_depths", [9], "world.eval_depths"),
    ("engine.chunk_size", 0, "engine.chunk_size"),
    ("design.kind", "latin_square", "design.kind"),
    ("design.cells", [], "design.cells"),
    ("extras", {}, "extras"),
]


@pytest.mark.parametrize("path,value,field", MALFORMED)
def test_each_malformed_field_is_named(path, value, field):
    with pytest.raises(ValidationError) as err:
        study_from_dict(_mutate(path, value))
    assert field in err.value.fields, (field, err.value.fields)
    problem = next(p for p in err.value.problems if p.field == field)
    assert problem.allowed  # says what is allowed
    assert repr(problem.value)[:10] in str(err.value) or str(problem.value) in str(err.value)


def test_a_missing_factor_is_named():
    raw = raw_demo()
    del raw["factors"]["scaffold"]
    with pytest.raises(ValidationError) as err:
        study_from_dict(raw)
    assert err.value.fields == ["factors.scaffold"]


def test_every_problem_is_reported_at_once():
    raw = raw_demo()
    raw["study"]["seeds"] = -1
    raw["factors"]["verifier"][1] = {"preset": "noisy", "false_negative_rate": 2}
    raw["world"]["eval_size"] = 0
    raw["factors"]["data"][1] = "over_the_rainbow"
    with pytest.raises(ValidationError) as err:
        study_from_dict(raw)
    assert set(err.value.fields) == {"study.seeds", "factors.verifier[1].false_negative_rate", "world.eval_size",
                                     "factors.data[1].preset"}


def test_a_listed_design_must_name_real_levels():
    raw = raw_demo()
    raw["design"] = {"kind": "listed", "cells": [{"verifier": "exact", "base": "medium", "data": "within",
                                                   "optimizer": "reinforce", "scaffold": "direct", "budget": "pass@1"}]}
    with pytest.raises(ValidationError) as err:
        study_from_dict(raw)
    assert err.value.fields == ["design.cells[0].base"]


def test_interface_card_writes_every_parameter_and_hashes_its_content():
    world = WorldSettings()
    specs = {"verifier": "noisy", "base": "narrow", "data": "edge", "optimizer": "reinforce_kl",
             "scaffold": "scratchpad", "budget": "pass@1"}
    card = Interface.from_specs(world, specs).card()
    content = card.content
    assert content["factors"]["verifier"]["params"] == {"false_negative_rate": 0.2, "false_positive_rate": 0.2}
    assert content["factors"]["optimizer"]["params"]["kl_coef"] == 0.2
    assert content["factors"]["base"]["params"]["skills"] == [0, 1, 2, 3]  # written out, not just "narrow"
    assert content["world"]["eval_skills"] == list(range(world.num_skills))
    assert "fi_sim_version" in content
    again = Interface.from_specs(world, copy.deepcopy(specs)).card()
    assert again.hash == card.hash and again.to_json(indent=None) == card.to_json(indent=None)
    changed = Interface.from_specs(world, dict(specs, verifier={"preset": "noisy", "false_positive_rate": 0.21}))
    assert changed.card().hash != card.hash
    assert InterfaceCard.from_json(card.to_json()).hash == card.hash
    tampered = json.loads(card.to_json())
    tampered["factors"]["verifier"]["params"]["false_positive_rate"] = 0.0
    with pytest.raises(ValidationError, match="card.hash"):
        InterfaceCard.from_json(json.dumps(tampered))
