"""The feedback interface: one level of each of the six factors, in a world, and its card.

An `Interface` is what produced a post-training gain: verifier, base, data, optimizer, scaffold and budget.
Its `InterfaceCard` writes every parameter out (not just preset names), plus the world and the fi_sim version,
as canonical JSON with a content hash. The card is what a paper should ship beside its prompt-response pairs:
the same pairs under a different card give a different gain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from fi_sim import __version__
from fi_sim.errors import Problem, ValidationError
from fi_sim.factors import FACTOR_NAMES, FACTORS
from fi_sim.factors.registry import Level
from fi_sim.world.tasks import FAMILIES, TaskWorld

CARD_VERSION = 1
TRAINING_FACTORS = ("verifier", "base", "data", "optimizer", "scaffold")  # budget only changes evaluation


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def content_hash(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


@dataclass(frozen=True)
class WorldSettings:
    """The simulated world a study runs in: the task family and the held-out evaluation set."""

    family: str = "chain"
    modulus: int = 10
    num_skills: int = 6
    max_depth: int = 4
    seed: int = 0
    heldout_period: int = 5
    eval_size: int = 256  # held-out evaluation items
    eval_skills: tuple = ()  # () = every skill
    eval_depths: tuple = ()  # () = every depth
    eval_min_samples: int = 16  # n per item, raised to 2 x the largest budget k

    FIELDS = ("family", "modulus", "num_skills", "max_depth", "seed", "heldout_period", "eval_size",
              "eval_skills", "eval_depths", "eval_min_samples")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field_name: str = "world") -> "WorldSettings":
        problems = []
        if not isinstance(raw, Mapping):
            raise ValidationError(Problem(field_name, raw, "a table of world settings"))
        unknown = sorted(set(raw) - set(cls.FIELDS))
        for key in unknown:
            problems.append(Problem(f"{field_name}.{key}", raw[key], "one of " + ", ".join(cls.FIELDS)))
        values = {}
        defaults = cls()
        for name in cls.FIELDS:
            value = raw.get(name, getattr(defaults, name))
            if name == "family":
                if value not in FAMILIES:
                    problems.append(Problem(f"{field_name}.family", value, " or ".join(map(repr, FAMILIES))))
            elif name in ("eval_skills", "eval_depths"):
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                    problems.append(Problem(f"{field_name}.{name}", value, "a list of integers ([] = all)"))
                    value = ()
                value = tuple(value)
            elif not isinstance(value, int) or isinstance(value, bool):
                problems.append(Problem(f"{field_name}.{name}", value, "an integer"))
                continue
            values[name] = value
        if problems:
            raise ValidationError(problems)
        settings = cls(**values)
        settings.validate(field_name)
        return settings

    def validate(self, field_name: str = "world") -> None:
        problems: list[Problem] = []
        try:
            self.task_world()
        except ValidationError as err:
            problems.extend(Problem(p.field.replace("world", field_name, 1), p.value, p.allowed) for p in err.problems)
        if not 1 <= self.eval_size <= 100_000:
            problems.append(Problem(f"{field_name}.eval_size", self.eval_size, "an integer in 1..100000"))
        if not 1 <= self.eval_min_samples <= 4096:
            problems.append(Problem(f"{field_name}.eval_min_samples", self.eval_min_samples, "an integer in 1..4096"))
        if any(not 0 <= s < self.num_skills for s in self.eval_skills):
            problems.append(Problem(f"{field_name}.eval_skills", list(self.eval_skills),
                                    f"skill ids in 0..{self.num_skills - 1}"))
        if any(not 1 <= d <= self.max_depth for d in self.eval_depths):
            problems.append(Problem(f"{field_name}.eval_depths", list(self.eval_depths),
                                    f"depths in 1..{self.max_depth}"))
        if problems:
            raise ValidationError(problems)

    def task_world(self) -> TaskWorld:
        return TaskWorld(self.modulus, self.num_skills, self.max_depth, self.seed, self.heldout_period, self.family,
                         self.eval_size, tuple(self.eval_skills), tuple(self.eval_depths))

    def card(self) -> dict:
        d = asdict(self)
        d["eval_skills"] = list(self.eval_skills) or list(range(self.num_skills))
        d["eval_depths"] = list(self.eval_depths) or list(range(1, self.max_depth + 1))
        return d


@dataclass(frozen=True)
class Interface:
    """One level of each factor, in a world."""

    world: WorldSettings
    levels: Mapping[str, Level] = field(default_factory=dict)

    def __post_init__(self):
        missing = [f for f in FACTOR_NAMES if f not in self.levels]
        if missing:
            raise ValidationError(Problem("interface", sorted(self.levels), f"a level for every factor: {', '.join(FACTOR_NAMES)}"))

    @classmethod
    def from_specs(cls, world: WorldSettings, specs: Mapping[str, Any]) -> "Interface":
        """Build from preset names or {preset, overrides} tables, one per factor; every problem reported."""
        task_world = world.task_world()
        levels: dict[str, Level] = {}
        problems: list[Problem] = []
        for name in FACTOR_NAMES:
            if name not in specs:
                problems.append(Problem(f"interface.{name}", None, "a preset of " + ", ".join(sorted(FACTORS[name].presets))))
                continue
            level, probs = FACTORS[name].resolve(specs[name], f"interface.{name}", task_world)
            problems += probs
            if level is not None:
                levels[name] = level
        if problems:
            raise ValidationError(problems)
        return cls(world, levels)

    def card(self) -> "InterfaceCard":
        return InterfaceCard.of(self)


@dataclass(frozen=True)
class InterfaceCard:
    """The interface written out in full, as canonical JSON with a content hash."""

    content: Mapping[str, Any]
    hash: str

    @classmethod
    def of(cls, interface: Interface) -> "InterfaceCard":
        content = {
            "card_version": CARD_VERSION,
            "fi_sim_version": __version__,
            "world": interface.world.card(),
            "factors": {name: interface.levels[name].card() for name in FACTOR_NAMES},
        }
        return cls(content, content_hash(content))

    def to_json(self, indent: int | None = 2) -> str:
        body = dict(self.content, hash=self.hash)
        if indent is None:
            return canonical_json(body)
        return json.dumps(body, sort_keys=True, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "InterfaceCard":
        body = json.loads(text)
        claimed = body.pop("hash", None)
        actual = content_hash(body)
        if claimed != actual:
            raise ValidationError(Problem("card.hash", claimed, f"the content hash {actual}"))
        return cls(body, actual)


def training_signature(world: WorldSettings, levels: Mapping[str, Level]) -> dict:
    """What determines a post-training run (all factors but the budget): the basis of a stable run id. A file a
    level reads (a frozen dataset) enters by its content, not its path (`Level.signature`)."""
    return {"world": world.card(), "factors": {f: levels[f].signature() for f in TRAINING_FACTORS}}


RUN_ID_BITS = 63  # a run's identity: at the largest accepted study (MAX_RUNS) two ids collide with p < 1e-5


def stable_run_id(world: WorldSettings, levels: Mapping[str, Level], seed: int) -> int:
    """A run's id: a 63-bit hash of its training signature and seed, so it does not depend on the rest of the
    study and two runs' ids do not collide at any accepted study size (see `run_key_word`)."""
    digest = content_hash({"run": training_signature(world, levels), "seed": int(seed)})
    return int(digest[:16], 16) & ((1 << RUN_ID_BITS) - 1)


def run_key_word(run_id: int) -> int:
    """The 31-bit word folded into the study key to make a run's PRNG key: `fold_in(study_key, word)`.

    It is the top of the run id (the id's first 32 hash bits, masked to 31), which is what fi_sim's run ids were
    before they grew to 63 bits, so every published run keeps its random stream bit for bit. Two runs of one
    study share a word with probability about n^2 / 2^32 for n runs; they are still different runs (different
    cells, or different seeds and so different bases), whose sampling noise is then correlated. `make_plan`
    counts such pairs and says so; the identities used to store, resume and assemble runs are the full ids."""
    return (run_id >> 32) & 0x7FFFFFFF
