"""The interface card as a release format: the schema validates every simulated card and the documented
example, refuses broken cards field by field, and `card diff` lists exactly the differing parameters."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fi_sim.cards import card_schema, content_hash, diff_cards, differing_factors, validate_card
from fi_sim.errors import ValidationError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cards.md"


def doc_json_blocks():
    return [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)]


def example():
    return doc_json_blocks()[1]


def test_schema_is_valid_json_schema():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(card_schema())


@pytest.mark.parametrize("study", ["demo.toml", "study_729x8.toml"])
def test_every_simulated_card_validates(study):
    from fi_sim.study import load_study

    cards = load_study(ROOT / "experiments" / study).cards()
    assert cards
    for card in cards:
        body = validate_card(card.to_json())
        assert body["hash"] == card.hash


def test_card_hash_is_the_interface_hash():
    from fi_sim.interface import content_hash as interface_hash

    body = {"a": [1, 2.5], "b": {"c": None}}
    assert content_hash(body) == interface_hash(body)


def test_the_documented_example_validates_and_the_template_does_not():
    template, filled = doc_json_blocks()
    assert validate_card(filled)["release"]["name"].startswith("Edge-Math-RL")
    with pytest.raises(ValidationError):
        validate_card(template)  # placeholders are strings where numbers belong


def test_a_release_card_must_carry_what_only_a_release_has():
    card = example()
    del card["factors"]["base"]["model_id"]
    card["factors"]["verifier"]["measured_error_rates"]["false_positive_rate"] = 1.5
    del card["factors"]["budget"]["estimator"]
    with pytest.raises(ValidationError) as error:
        validate_card(card)
    fields = error.value.fields
    assert "card.factors.base" in fields and "card.factors.budget" in fields
    assert "card.factors.verifier.measured_error_rates.false_positive_rate" in fields
    assert len(error.value.problems) == 3
    # Without a release section the same card is a (simulated-style) card: no release-only fields needed.
    card = example()
    del card["release"], card["factors"]["base"]["model_id"]
    validate_card(card)


def test_wrong_hash_and_unknown_factor_are_refused():
    card = example()
    card["hash"] = "0" * 64
    with pytest.raises(ValidationError) as error:
        validate_card(card)
    assert error.value.fields == ["card.hash"]
    card = example()
    card["factors"]["reward_shaping"] = {"level": "x", "mechanism": "y", "params": {}}
    with pytest.raises(ValidationError) as error:
        validate_card(card)
    assert error.value.fields == ["card.factors"]


def test_diff_lists_exactly_the_differing_parameters():
    a = example()
    b = copy.deepcopy(a)
    b["factors"]["optimizer"]["params"]["entropy_coef"] = 0.001
    b["factors"]["budget"]["params"]["k"] = 1
    b["factors"]["budget"]["estimator"]["k"] = 1
    del b["factors"]["scaffold"]["params"]["tools"]
    b["factors"]["data"]["lineage"]["teacher"] = {"model_id": "example-org/teacher-70b", "revision": "a1"}
    differences = diff_cards(a, b)
    # A null teacher replaced by a model: the null leaf goes, the model's two fields come.
    assert [str(d) for d in differences] == [
        "factors.data.lineage.teacher: null -> (absent)",
        'factors.data.lineage.teacher.model_id: (absent) -> "example-org/teacher-70b"',
        'factors.data.lineage.teacher.revision: (absent) -> "a1"',
        "factors.optimizer.params.entropy_coef: 0.0 -> 0.001",
        "factors.scaffold.params.tools: [] -> (absent)",
        "factors.budget.estimator.k: 16 -> 1",
        "factors.budget.params.k: 16 -> 1",
    ]
    assert differing_factors(differences) == ["data", "optimizer", "scaffold", "budget"]
    entropy = next(d for d in differences if d.path.endswith("entropy_coef"))
    assert (entropy.a, entropy.b) == (0.0, 0.001)
    assert diff_cards(a, copy.deepcopy(a)) == []


def fi_sim(*args):
    return subprocess.run([sys.executable, "-m", "fi_sim.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_card_commands(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    card = example()
    a.write_text(json.dumps(card))
    card["factors"]["verifier"]["params"]["numeric_tolerance"] = 1e-3
    b.write_text(json.dumps(card))
    r = fi_sim("card", "validate", str(a), str(b))
    assert r.returncode == 0 and r.stdout.count("valid interface card") == 2
    r = fi_sim("card", "diff", str(a), str(b))
    assert r.returncode == 0
    assert "factors: verifier" in r.stdout and "factors.verifier.params.numeric_tolerance: 1e-06 -> 0.001" in r.stdout
    del card["factors"]["optimizer"]
    b.write_text(json.dumps(card))
    r = fi_sim("card", "validate", str(b))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "optimizer" in r.stderr
