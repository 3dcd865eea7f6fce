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

from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

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
    # For a parameter that names a file: the file's content identity (e.g. "sha256:..."). It stands for the value
    # wherever a run's identity (and so its random stream) is derived, so that where the file lies never changes
    # a run; the card the results carry keeps the path as given.
    identity: Callable[[Any], str] | None = field(default=None, compare=False)

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


# A per-run value: a numpy scalar or array while a run's parameters are built and stacked, a traced jax.Array
# inside the compiled program (the per-run pytrees' fields are typed with it).
PerRun = Any

LOWERED_KINDS = ("float", "int", "bool", "choice")  # kinds a per-run array can carry (lists and text cannot)


def lower_value(param: Param, value: Any) -> np.generic:
    """One validated parameter value as a per-run array (float32, int32, bool, or a choice's index)."""
    if param.kind == "float":
        return np.float32(value)
    if param.kind == "int":
        return np.int32(value)
    if param.kind == "bool":
        return np.bool_(value)
    if param.kind == "choice":
        return np.int32(param.choices.index(value))
    raise TypeError(f"parameter {param.name!r} of kind {param.kind!r} has no per-run array form")


@dataclass(frozen=True)
class Mechanism:
    """One mechanism of a factor: its documented parameters, its lowering and (in a factor's subclass) its
    behaviour.

    `params` are the mechanism's own parameters; a factor may add parameters every mechanism of it shares (the
    optimizer's learning rate, the budget's k), with per-mechanism `defaults`. Whether a parameter is static (a
    shape: it splits a study into compiled groups) or per-run (an array under `vmap`) is declared once, on the
    `Param`. `lower` turns a validated level's parameters into the mechanism's own per-run pytree: by default a
    dict of its non-static scalar parameters as arrays; a subclass may override it.
    """

    name: str
    doc: str
    params: tuple[Param, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # defaults of the factor's shared parameters
    shared: tuple[str, ...] = ()  # names of the factor's shared parameters (set on registration)
    factor: ClassVar[str] = ""  # which factor a mechanism of this type belongs to

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def own_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.name not in self.shared)

    def default_values(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def lower(self, values: Mapping[str, Any], context: Any = None) -> Any:
        """The mechanism's own per-run pytree: its non-static scalar parameters as arrays."""
        return {
            p.name: lower_value(p, values[p.name]) for p in self.own_params if not p.static and p.kind in LOWERED_KINDS
        }

    def static_values(self, values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The mechanism's own static parameters, frozen (part of a compiled group's key)."""
        return tuple((p.name, _freeze(values[p.name])) for p in self.own_params if p.static)


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

    def signature(self) -> dict:
        """The card as a run's identity sees it: every value of a file parameter (see `Param.identity`), wherever
        the card records it, replaced by the file's content identity. Without file parameters, the card itself."""
        from fi_sim.factors import FACTORS

        card = self.card()
        mech = FACTORS[self.factor].mechanisms[self.mechanism]
        swaps = {self.params[p.name]: p.identity(self.params[p.name]) for p in mech.params if p.identity is not None}
        return _swap(card, swaps) if swaps else card

    def static(self) -> dict[str, Any]:
        """Every static parameter of the level (shapes: what splits a study into compiled groups)."""
        from fi_sim.factors import FACTORS

        mech = FACTORS[self.factor].mechanisms[self.mechanism]
        return {p.name: _freeze(self.params[p.name]) for p in mech.params if p.static}


def _swap(tree: Any, swaps: Mapping[str, str]) -> Any:
    """`tree` (dicts, lists, scalars) with every string value found in `swaps` replaced."""
    if isinstance(tree, dict):
        return {k: _swap(v, swaps) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_swap(v, swaps) for v in tree)
    return swaps.get(tree, tree) if isinstance(tree, str) else tree


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
    # parameters every mechanism of the factor has (a mechanism may change their defaults)
    shared: tuple[Param, ...] = ()
    # the mechanism type of this factor (a registration of another type is refused)
    kind: type = Mechanism

    def add_mechanism(self, mechanism: Mechanism, replace_existing: bool = False) -> Mechanism:
        """Register a mechanism (its own parameters after the factor's shared ones); returns the registered
        value. A name already taken is refused unless `replace_existing`."""
        if not isinstance(mechanism, self.kind):
            raise TypeError(f"a {self.name} mechanism must be a {self.kind.__name__}, not {type(mechanism).__name__}")
        if mechanism.name in self.mechanisms and not replace_existing:
            raise ValueError(
                f"the {self.name} mechanism {mechanism.name!r} is already registered "
                "(pass replace_existing=True to replace it)"
            )
        unknown = set(mechanism.defaults) - {p.name for p in self.shared}
        if unknown:
            raise KeyError(f"{self.name}.{mechanism.name} sets defaults of unknown shared parameters {sorted(unknown)}")
        own = tuple(p for p in mechanism.params if p.name not in mechanism.shared)
        clash = {p.name for p in own} & {p.name for p in self.shared}
        if clash:
            raise ValueError(f"{self.name}.{mechanism.name} redeclares shared parameters {sorted(clash)}")
        shared = tuple(
            replace(p, default=mechanism.defaults[p.name]) if p.name in mechanism.defaults else p for p in self.shared
        )
        mechanism = replace(mechanism, params=shared + own, shared=tuple(p.name for p in self.shared))
        self.mechanisms[mechanism.name] = mechanism
        return mechanism

    def index(self, mechanism: str) -> int:
        """A mechanism's position in the registry: the per-run index its `lax.switch` tables use."""
        return list(self.mechanisms).index(mechanism)

    def used(self, mechanisms: "tuple[str, ...] | None") -> tuple[str, ...]:
        """The mechanisms a compiled program contains, in registry order (None: every registered one)."""
        if mechanisms is None:
            return tuple(self.mechanisms)
        return tuple(m for m in self.mechanisms if m in mechanisms)

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
        assert level is not None
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


def position(factor: Factor, kind: Any, names: tuple[str, ...]) -> Any:
    """The per-run registry index `kind` as a position among `names` (the mechanisms a program contains)."""
    if names == tuple(factor.mechanisms):
        return kind
    import jax.numpy as jnp

    lookup = np.zeros(len(factor.mechanisms), np.int32)
    for i, name in enumerate(names):
        lookup[factor.index(name)] = i
    return jnp.asarray(lookup)[kind]


def dispatch(factor: Factor, kind: Any, used: "tuple[str, ...] | None", call: Callable[[Any], Any]) -> Any:
    """`call(mechanism)` for the mechanism a run picked (`kind`, traced), by `lax.switch` over the mechanisms a
    program contains (`used`; None: every registered one). One mechanism needs no switch."""
    import jax

    names = factor.used(used)
    branches = [(lambda m=factor.mechanisms[n]: call(m)) for n in names]
    if len(branches) == 1:
        return branches[0]()
    return jax.lax.switch(position(factor, kind, names), branches)
