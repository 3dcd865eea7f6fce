"""Factor levels as data: mechanisms, their documented parameters, named presets, and validation.

A *factor* (verifier, base, data, optimizer, scaffold, budget) offers *mechanisms* (for the verifier: exact,
noisy, ...). A mechanism declares its parameters with defaults, bounds and documentation. A *preset* is a named
mechanism plus parameter values. A study names a preset for each level and may override parameters; the
result, once validated, is a `Level` with every parameter written out — which is what the interface card
records.

Parameters are vmappable unless marked `static`: a static parameter changes array shapes (steps, batch sizes,
model width) and so splits a study into separately compiled groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from fi_sim.errors import Problem, ValidationError

WorldCheck = Callable[[Any, Any], "str | None"]  # (value, world) -> message describing what is allowed, or None


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "float" | "int" | "bool" | "int_list" | "float_list" | "choice" | "text"
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    static: bool = False
    world_check: WorldCheck | None = field(default=None, compare=False)
    allow_empty: bool = False
    # For list parameters: the string "all" expands to this function of the world (e.g. every skill id).
    expand_all: Callable[[Any], list] | None = field(default=None, compare=False)

    def allowed(self) -> str:
        what = {
            "float": "a number",
            "int": "an integer",
            "bool": "true or false",
            "int_list": "a list of integers",
            "float_list": "a list of numbers",
            "choice": "one of " + ", ".join(repr(c) for c in self.choices),
            "text": "a string",
        }[self.kind]
        if self.expand_all is not None:
            what = "'all' or " + what
        if self.kind in ("float", "int", "int_list", "float_list") and (self.low is not None or self.high is not None):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            what += f" in [{lo}, {hi}]"
        return what

    def check(self, value: Any, world: Any) -> tuple[Any, str | None]:
        """Coerce a value to canonical form; return (value, None) or (value, what is allowed)."""
        bad = (value, self.allowed())
        if self.kind == "bool":
            return (value, None) if isinstance(value, bool) else bad
        if self.kind == "choice":
            return (value, None) if value in self.choices else bad
        if self.kind == "text":
            if not isinstance(value, str) or not value:
                return bad
            message = self.world_check(value, world) if self.world_check is not None and world is not None else None
            return value, message
        if value == "all" and self.expand_all is not None:
            if world is None:
                return value, None
            value = self.expand_all(world)
        if self.kind in ("float", "int"):
            scalars = [value]
        else:
            if not isinstance(value, (list, tuple)) or (not value and not self.allow_empty):
                return bad
            scalars = list(value)
        out = []
        for v in scalars:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return bad
            if self.kind in ("int", "int_list"):
                if float(v) != int(v):
                    return bad
                v = int(v)
            else:
                v = float(v)
                if v != v:  # NaN
                    return bad
            if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
                return bad
            out.append(v)
        value = out[0] if self.kind in ("float", "int") else out
        if self.world_check is not None and world is not None:
            message = self.world_check(value, world)
            if message:
                return value, message
        return value, None


@dataclass(frozen=True)
class Mechanism:
    name: str
    doc: str
    params: tuple[Param, ...]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass(frozen=True)
class Preset:
    name: str
    mechanism: str
    doc: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Level:
    """One validated level of one factor: every parameter written out."""

    factor: str
    name: str
    preset: str
    mechanism: str
    params: Mapping[str, Any]

    def card(self) -> dict:
        from fi_sim.factors import FACTORS  # the factor may add derived records (e.g. data provenance)

        card = {
            "level": self.name,
            "preset": self.preset,
            "mechanism": self.mechanism,
            "params": {k: self.params[k] for k in sorted(self.params)},
        }
        factor = FACTORS.get(self.factor)
        if factor is not None and factor.card_extra is not None:
            card.update(factor.card_extra(self))
        return card

    def static_items(self, factor: "Factor") -> tuple:
        mech = factor.mechanisms[self.mechanism]
        return tuple((p.name, _freeze(self.params[p.name])) for p in mech.params if p.static)


def _freeze(v):
    return tuple(v) if isinstance(v, list) else v


@dataclass
class Factor:
    name: str
    doc: str
    mechanisms: dict[str, Mechanism] = field(default_factory=dict)
    presets: dict[str, Preset] = field(default_factory=dict)
    # derived records a level's card carries beside its parameters (e.g. the data's provenance)
    card_extra: Callable[["Level"], dict] | None = None

    def add_mechanism(self, mechanism: Mechanism) -> Mechanism:
        self.mechanisms[mechanism.name] = mechanism
        return mechanism

    def add_preset(self, preset: Preset) -> Preset:
        mech = self.mechanisms[preset.mechanism]
        unknown = set(preset.values) - {p.name for p in mech.params}
        if unknown:  # a programming error in a preset table, not user input
            raise KeyError(f"preset {self.name}.{preset.name} sets unknown parameters {sorted(unknown)}")
        self.presets[preset.name] = preset
        return preset

    def resolve(self, spec: Any, field_name: str, world: Any = None) -> tuple[Level | None, list[Problem]]:
        """Turn a study's level entry into a Level, collecting every problem instead of stopping at the first.

        `spec` is a preset name, or a table with `preset` (and optional `name`) and parameter overrides.
        """
        problems: list[Problem] = []
        if isinstance(spec, str):
            spec = {"preset": spec}
        if not isinstance(spec, Mapping):
            return None, [Problem(field_name, spec, f"a preset name or a table with 'preset' ({self._preset_list()})")]
        spec = dict(spec)
        preset_name = spec.pop("preset", None)
        label = spec.pop("name", preset_name)
        if preset_name not in self.presets:
            return None, [Problem(f"{field_name}.preset", preset_name, f"one of {self._preset_list()}")]
        if not isinstance(label, str) or not label:
            problems.append(Problem(f"{field_name}.name", label, "a non-empty string"))
        preset = self.presets[preset_name]
        mech = self.mechanisms[preset.mechanism]
        known = {p.name for p in mech.params}
        for key in sorted(set(spec) - known):
            problems.append(
                Problem(
                    f"{field_name}.{key}",
                    spec[key],
                    f"a parameter of mechanism {mech.name!r}: " + (", ".join(sorted(known)) or "(none)"),
                )
            )
        params: dict[str, Any] = {}
        for p in mech.params:
            raw = spec.get(p.name, preset.values.get(p.name, p.default))
            value, message = p.check(raw, world)
            if message:
                problems.append(Problem(f"{field_name}.{p.name}", raw, message))
            params[p.name] = value
        if problems:
            return None, problems
        return Level(self.name, label, preset_name, mech.name, params), []

    def level(self, spec: Any, world: Any = None, field_name: str | None = None) -> Level:
        """Resolve or raise ValidationError (convenience for code and tests)."""
        level, problems = self.resolve(spec, field_name or f"factors.{self.name}", world)
        if problems:
            raise ValidationError(problems)
        return level

    def _preset_list(self) -> str:
        return ", ".join(sorted(self.presets))

    def catalogue(self) -> list[dict]:
        """Every preset with its mechanism and the full documented parameter list (for `fi-sim levels`)."""
        rows = []
        for preset in self.presets.values():
            mech = self.mechanisms[preset.mechanism]
            rows.append(
                {
                    "factor": self.name,
                    "preset": preset.name,
                    "mechanism": mech.name,
                    "doc": preset.doc,
                    "params": [
                        {
                            "name": p.name,
                            "value": preset.values.get(p.name, p.default),
                            "allowed": p.allowed(),
                            "static": p.static,
                            "doc": p.doc,
                        }
                        for p in mech.params
                    ],
                }
            )
        return rows


FACTOR_NAMES = ("verifier", "base", "data", "optimizer", "scaffold", "budget")
