"""A study: factors x levels, a design over them, seeds, and world settings — read from a TOML file.

Loading validates everything before any compute and reports every problem at once, each naming the field, the
value given and what is allowed. A minimal study file:

    [study]
    name = "demo"
    seeds = 3                      # or a list of seed numbers

    [world]                        # optional: world settings (see WorldSettings)
    max_depth = 4

    [factors]                      # every factor: a list of levels (preset names or tables with overrides)
    verifier = ["exact", { preset = "noisy", name = "noisy30", false_positive_rate = 0.3 }]
    base = ["narrow", "broad"]
    data = ["within", "edge"]
    optimizer = ["reinforce"]
    scaffold = ["direct", "scratchpad"]
    budget = ["pass@1", "pass@k"]

    [design]                       # optional: "full_factorial" (default) or "listed" with cells
    kind = "full_factorial"

    [engine]                       # optional: execution settings that never change results
    chunk_size = 32
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from fi_sim.errors import Problem, ValidationError
from fi_sim.factors import FACTOR_NAMES, FACTORS
from fi_sim.factors.registry import Level
from fi_sim.interface import Interface, InterfaceCard, WorldSettings, canonical_json, content_hash

DESIGNS = ("full_factorial", "listed")
# Runs in one study: 63-bit run ids (fi_sim.interface.stable_run_id) then collide with p < 1e-7.
MAX_RUNS = 1 << 20
TOP_LEVEL = ("study", "world", "factors", "design", "engine")


@dataclass(frozen=True)
class EngineSettings:
    """How the work is split; never what it computes (excluded from the study hash). None: chosen by the engine
    from a memory bound (see `fi-sim plan`); a results directory keeps the values it was started with."""

    chunk_size: int | None = None  # runs per chunk: the unit of durable writes, resume and sharing among processes
    device_batch: int | None = None  # runs computed at once on each device (results depend on it: keep it fixed)
    cpu_parallelism: int | None = None  # XLA's CPU thread pool (results depend on it; see engine/hostcpu.py)

    FIELDS = ("chunk_size", "device_batch", "cpu_parallelism")

    @property
    def parallelism(self) -> int:
        from fi_sim.engine.hostcpu import DEFAULT_CPU_PARALLELISM

        return self.cpu_parallelism or DEFAULT_CPU_PARALLELISM


@dataclass(frozen=True)
class Study:
    name: str
    seeds: tuple[int, ...]
    world: WorldSettings
    factors: Mapping[str, tuple[Level, ...]]
    seed: int = 0
    description: str = ""
    design: str = "full_factorial"
    listed_cells: tuple[tuple[int, ...], ...] = ()
    engine: EngineSettings = field(default_factory=EngineSettings)

    # ------------------------------------------------------------------ design
    def cells(self) -> Iterator[tuple[int, ...]]:
        """Level indices (in FACTOR_NAMES order) of every cell of the design."""
        if self.design == "listed":
            yield from self.listed_cells
        else:
            yield from itertools.product(*(range(len(self.factors[f])) for f in FACTOR_NAMES))

    def interface(self, cell: tuple[int, ...]) -> Interface:
        return Interface(self.world, {f: self.factors[f][i] for f, i in zip(FACTOR_NAMES, cell)})

    def cards(self) -> list[InterfaceCard]:
        return [self.interface(c).card() for c in self.cells()]

    def level_names(self, factor: str) -> list[str]:
        return [level.name for level in self.factors[factor]]

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {
            "study": {"name": self.name, "description": self.description, "seed": self.seed,
                      "seeds": list(self.seeds)},
            "world": self.world.card(),
            "factors": {f: [lvl.card() for lvl in self.factors[f]] for f in FACTOR_NAMES},
            "design": {"kind": self.design, "cells": [list(c) for c in self.listed_cells]},
            "engine": {"chunk_size": self.engine.chunk_size},
        }

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @property
    def hash(self) -> str:
        """Content hash of everything that determines results (engine settings excluded)."""
        d = self.to_dict()
        d.pop("engine")
        return content_hash(d)


# ---------------------------------------------------------------------------------------------- loading
def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def study_from_dict(raw: Mapping[str, Any]) -> Study:
    """Validate a parsed study file; raise one ValidationError listing every problem."""
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        raise ValidationError(Problem("study file", type(raw).__name__, "a TOML document"))
    for key in sorted(set(raw) - set(TOP_LEVEL)):
        problems.append(Problem(key, raw[key], "a top-level table among " + ", ".join(TOP_LEVEL)))

    head = raw.get("study", {})
    if not isinstance(head, Mapping):
        problems.append(Problem("study", head, "a table with name, seeds, seed, description"))
        head = {}
    for key in sorted(set(head) - {"name", "description", "seed", "seeds"}):
        problems.append(Problem(f"study.{key}", head[key], "one of name, description, seed, seeds"))
    name = head.get("name", "study")
    if not isinstance(name, str) or not name:
        problems.append(Problem("study.name", name, "a non-empty string"))
    description = head.get("description", "")
    if not isinstance(description, str):
        problems.append(Problem("study.description", description, "a string"))
    seed = head.get("seed", 0)
    if not _int(seed) or not 0 <= seed < 2**31:
        problems.append(Problem("study.seed", seed, "an integer in 0..2^31-1"))
    seeds_raw = head.get("seeds", 3)
    seeds: tuple[int, ...] = ()
    if _int(seeds_raw) and 1 <= seeds_raw <= 10_000:
        seeds = tuple(range(seeds_raw))
    elif (isinstance(seeds_raw, list) and seeds_raw and all(_int(s) and 0 <= s < 2**31 for s in seeds_raw)
          and len(set(seeds_raw)) == len(seeds_raw)):
        seeds = tuple(seeds_raw)
    else:
        problems.append(Problem("study.seeds", seeds_raw, "a count in 1..10000 or a list of distinct non-negative integers"))

    world: WorldSettings | None = WorldSettings()
    try:
        world = WorldSettings.from_dict(raw.get("world", {}))
    except ValidationError as err:
        problems += err.problems
        world = None
    task_world = world.task_world() if world is not None else None

    factors_raw = raw.get("factors")
    factors: dict[str, tuple[Level, ...]] = {}
    if not isinstance(factors_raw, Mapping):
        problems.append(Problem("factors", factors_raw, "a table with a list of levels for each of " + ", ".join(FACTOR_NAMES)))
        factors_raw = {}
    for key in sorted(set(factors_raw) - set(FACTOR_NAMES)):
        problems.append(Problem(f"factors.{key}", factors_raw[key], "a factor among " + ", ".join(FACTOR_NAMES)))
    for fname in FACTOR_NAMES:
        entry = factors_raw.get(fname)
        where = f"factors.{fname}"
        if isinstance(entry, Mapping):
            extra = sorted(set(entry) - {"levels"})
            for key in extra:
                problems.append(Problem(f"{where}.{key}", entry[key], "only 'levels'"))
            entry, where = entry.get("levels"), f"{where}.levels"
        if not isinstance(entry, list) or not entry:
            presets = ", ".join(sorted(FACTORS[fname].presets))
            problems.append(Problem(where, entry, f"a non-empty list of levels (presets: {presets})"))
            continue
        levels = []
        for i, spec in enumerate(entry):
            level, probs = FACTORS[fname].resolve(spec, f"{where}[{i}]", task_world)
            problems += probs
            if level is not None:
                levels.append(level)
        names = [lvl.name for lvl in levels]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            problems.append(Problem(where, dup, "distinct level names (give a level a 'name' to tell them apart)"))
        factors[fname] = tuple(levels)

    design_raw = raw.get("design", {})
    design, listed = "full_factorial", ()
    if not isinstance(design_raw, Mapping):
        problems.append(Problem("design", design_raw, "a table with kind (and cells for a listed design)"))
        design_raw = {}
    for key in sorted(set(design_raw) - {"kind", "cells"}):
        problems.append(Problem(f"design.{key}", design_raw[key], "kind or cells"))
    design = design_raw.get("kind", "full_factorial")
    if design not in DESIGNS:
        problems.append(Problem("design.kind", design, " or ".join(repr(d) for d in DESIGNS)))
    elif design == "listed":
        listed, probs = _listed_cells(design_raw.get("cells"), factors)
        problems += probs
    elif "cells" in design_raw:
        problems.append(Problem("design.cells", design_raw["cells"], "cells only with kind = 'listed'"))

    engine_raw = raw.get("engine", {})
    engine = EngineSettings()
    if not isinstance(engine_raw, Mapping):
        problems.append(Problem("engine", engine_raw, "a table of engine settings"))
        engine_raw = {}
    for key in sorted(set(engine_raw) - set(EngineSettings.FIELDS)):
        problems.append(Problem(f"engine.{key}", engine_raw[key], "one of " + ", ".join(EngineSettings.FIELDS)))
    sizes = {}
    for key in EngineSettings.FIELDS:
        value = engine_raw.get(key)
        top = 256 if key == "cpu_parallelism" else 65_536
        if value is not None and (not _int(value) or not 1 <= value <= top):
            problems.append(Problem(f"engine.{key}", value, f"an integer in 1..{top} (or leave it out: the default)"))
        else:
            sizes[key] = value
    if len(sizes) == len(EngineSettings.FIELDS):
        engine = EngineSettings(**sizes)

    if not problems and world is not None:
        study = Study(name=name, seeds=seeds, world=world, factors=factors, seed=seed, description=description,
                      design=design, listed_cells=listed, engine=engine)
        runs = num_runs(study)
        if runs > MAX_RUNS:
            problems.append(Problem("study.seeds", seeds_raw,
                                    f"at most {MAX_RUNS:,} post-training runs in one study (seeds x training cells); "
                                    f"this design has {runs:,}: split it into several studies"))
    if problems:
        raise ValidationError(problems)
    return study


def num_runs(study: Study) -> int:
    """Post-training runs of a study: distinct cells of the training factors (the budget adds none) x seeds."""
    train_axes = [i for i, f in enumerate(FACTOR_NAMES) if f != "budget"]
    if study.design == "listed":
        cells = len({tuple(c[i] for i in train_axes) for c in study.listed_cells})
    else:
        cells = 1
        for i in train_axes:
            cells *= len(study.factors[FACTOR_NAMES[i]])
    return cells * len(study.seeds)


def _listed_cells(cells, factors) -> tuple[tuple, list[Problem]]:
    problems = []
    if not isinstance(cells, list) or not cells:
        return (), [Problem("design.cells", cells, "a non-empty list of tables naming a level of every factor")]
    out = []
    for i, cell in enumerate(cells):
        where = f"design.cells[{i}]"
        if not isinstance(cell, Mapping):
            problems.append(Problem(where, cell, "a table naming a level of every factor"))
            continue
        idx = []
        for fname in FACTOR_NAMES:
            names = [lvl.name for lvl in factors.get(fname, ())]
            value = cell.get(fname)
            if value not in names:
                problems.append(Problem(f"{where}.{fname}", value, "one of " + ", ".join(map(repr, names))))
            else:
                idx.append(names.index(value))
        for key in sorted(set(cell) - set(FACTOR_NAMES)):
            problems.append(Problem(f"{where}.{key}", cell[key], "a factor among " + ", ".join(FACTOR_NAMES)))
        if len(idx) == len(FACTOR_NAMES):
            if tuple(idx) in out:
                problems.append(Problem(where, dict(cell), "each cell listed once"))
            out.append(tuple(idx))
    return tuple(out), problems


def load_study(path: str | Path) -> Study:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValidationError(Problem("study file", str(path), "an existing TOML file")) from None
    except (IsADirectoryError, PermissionError) as err:
        raise ValidationError(Problem("study file", str(path), f"a readable TOML file ({err.strerror})")) from None
    return loads_study(text, source=str(path))


def loads_study(text: str, source: str = "<string>") -> Study:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValidationError(Problem(f"study file {source}", "invalid TOML", f"valid TOML ({err})")) from None
    return study_from_dict(raw)
