"""The interface card as a release format: its JSON Schema, validation of a hand-written card, and diffs.

A release that ships only prompt-response pairs leaves out what decides the gain: the verifier and its error
rates, the base model and revision, the data's lineage, every optimizer hyperparameter (defaults included),
the scaffold, and how the score was estimated (samples, estimator, denominator). The schema
(``fi_sim/schemas/interface_card.schema.json``, :func:`card_schema`) describes a simulated study's cards and a
real release's card alike; a card with a ``release`` section must also carry the fields only a real release
has. docs/cards.md has a template and a filled example.

* :func:`validate_card` checks a card (a dict, JSON text or a file) against the schema, and its content hash
  where it has one, raising a :class:`~fi_sim.errors.ValidationError` with one problem per violation;
* :func:`diff_cards` lists the factors and parameters on which two cards differ.

This module needs only ``jsonschema``; it imports nothing from the simulator.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fi_sim.errors import Problem, ValidationError, invalid

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "interface_card.schema.json"
FACTOR_ORDER = ("verifier", "base", "data", "optimizer", "scaffold", "budget")
_ABSENT = object()


def content_hash(obj: Any) -> str:
    """sha256 of the canonical JSON, as :func:`fi_sim.interface.content_hash` (kept here so that checking a
    card does not import the simulator)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=1)
def card_schema() -> dict:
    """The interface card's JSON Schema (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text())


def _load(card: Any, field: str) -> Any:
    if isinstance(card, Path) or (isinstance(card, str) and not card.lstrip().startswith(("{", "["))):
        path = Path(card)
        if not path.is_file():
            raise invalid(field, str(card), "a JSON file holding an interface card")
        text = path.read_text()
    elif isinstance(card, str):
        text = card
    else:
        return card
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        raise invalid(field, f"{card if isinstance(card, (str, Path)) and len(str(card)) < 200 else 'text'}", f"valid JSON ({error})") from None
    # `fi-sim card STUDY.toml` prints a list of cards; a list of one is one card.
    if isinstance(loaded, list) and len(loaded) == 1:
        loaded = loaded[0]
    return loaded


def validate_card(card: Any, field: str = "card") -> dict:
    """Check a card (dict, JSON text, or path of a JSON file) against the schema; returns it as a dict.

    Every schema violation is one :class:`~fi_sim.errors.Problem` (its JSON path, the value, what the schema
    allows). A card that carries a ``hash`` must match its content hash (sha256 of its canonical JSON).
    """
    from jsonschema import Draft202012Validator

    body = _load(card, field)
    if not isinstance(body, dict):
        raise invalid(field, type(body).__name__, "a JSON object (one interface card)")
    validator = Draft202012Validator(card_schema())
    problems = []
    for error in sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in error.absolute_path)
        value = error.instance if not isinstance(error.instance, (dict, list)) else f"{type(error.instance).__name__} {_short(error.instance)}"
        problems.append(Problem(f"{field}.{where}" if where else field, value, _allowed(error)))
    if "hash" in body and not problems:
        content = {k: v for k, v in body.items() if k != "hash"}
        actual = content_hash(content)
        if body["hash"] != actual:
            problems.append(Problem(f"{field}.hash", body["hash"], f"the content hash {actual} (or no hash)"))
    if problems:
        raise ValidationError(problems)
    return body


def _short(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed(error) -> str:
    """What the schema allows at the failing place, in words."""
    kind = error.validator
    if kind == "required":
        return error.message.replace("is a required property", "is required here")
    if kind == "additionalProperties":
        return f"only the properties the schema names ({error.message})"
    if kind in ("type", "minimum", "maximum", "exclusiveMinimum", "const", "enum", "pattern", "minLength", "minItems", "minProperties", "oneOf"):
        schema = error.schema if isinstance(error.schema, dict) else {}
        desc = schema.get("description", "")
        return f"{error.message.split(' is ')[-1] if ' is ' in error.message else error.message}" + (f" ({desc})" if desc else "")
    return error.message


@dataclass(frozen=True)
class CardDifference:
    """One place where two cards differ: a dotted path, and the value in each (``None`` path side: absent)."""

    path: str
    a: Any
    b: Any

    @property
    def factor(self) -> str | None:
        parts = self.path.split(".")
        return parts[1] if len(parts) > 1 and parts[0] == "factors" else None

    def __str__(self) -> str:
        def show(v):
            return "(absent)" if v is _ABSENT else json.dumps(v, sort_keys=True, default=str)

        return f"{self.path}: {show(self.a)} -> {show(self.b)}"


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict) and obj:
        out = {}
        for k in obj:
            out.update(_flatten(obj[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def diff_cards(a: Any, b: Any, *, ignore: tuple[str, ...] = ("hash", "fi_sim_version")) -> list[CardDifference]:
    """Every leaf (a parameter, a level name, a lineage entry list) on which cards ``a`` and ``b`` differ.

    Both are validated first. Paths are dotted (``factors.verifier.params.false_positive_rate``); a leaf only
    one card has shows ``(absent)`` on the other side. Factors come in the interface's order, then the rest;
    ``ignore`` leaves out bookkeeping fields that differ whenever anything does.
    """
    first, second = validate_card(a, "card A"), validate_card(b, "card B")
    flat_a = {k: v for k, v in _flatten(first).items() if k.split(".")[0] not in ignore}
    flat_b = {k: v for k, v in _flatten(second).items() if k.split(".")[0] not in ignore}
    paths = sorted(set(flat_a) | set(flat_b), key=_path_order)
    return [CardDifference(p, flat_a.get(p, _ABSENT), flat_b.get(p, _ABSENT)) for p in paths if flat_a.get(p, _ABSENT) != flat_b.get(p, _ABSENT)]


def _path_order(path: str) -> tuple:
    parts = path.split(".")
    if parts[0] == "factors" and len(parts) > 1 and parts[1] in FACTOR_ORDER:
        return (0, FACTOR_ORDER.index(parts[1]), path)
    return (1, 0, path)


def differing_factors(differences: list[CardDifference]) -> list[str]:
    """The factors (in the interface's order) on which two cards differ."""
    named = {d.factor for d in differences if d.factor}
    return [f for f in FACTOR_ORDER if f in named]


__all__ = ["card_schema", "validate_card", "diff_cards", "differing_factors", "CardDifference", "SCHEMA_PATH"]
