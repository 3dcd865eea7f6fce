"""One room per factor of the feedback interface. `FACTORS` maps a factor's name to its registry.

Your own mechanism, from outside the package: build a `Verifier`, `Objective`, `BudgetRule`, `Scaffold` (or a
`TaskFamily` for the world) and `register` it with its presets; a study then names its presets like a built-in
level's, with the same validation, cards, `fi-sim levels` listing and engine path. An installed package
registers the same way from an entry point in the group `fi_sim.mechanisms` (the entry point names a module to
import, or a function to call); the modules named in the environment variable `FI_SIM_PLUGINS` (comma-separated)
are imported too. See docs/extending.md.
"""

from __future__ import annotations

import importlib
import os
import warnings
from typing import Any

from fi_sim.factors import base, budget, data, optimizer, scaffold, verifier
from fi_sim.factors import reward_model  # noqa: F401  (registers the learned verifier)
from fi_sim.factors.budget import BudgetRule, EstimatorInputs
from fi_sim.factors.optimizer import BatchInputs, Objective, WeightInputs
from fi_sim.factors.registry import FACTOR_NAMES, Factor, Level, Mechanism, Param, Preset
from fi_sim.factors.scaffold import Protocol, Scaffold
from fi_sim.factors.verifier import Verifier
from fi_sim.world.tasks import TaskFamily, register_family

MODULES = {
    "verifier": verifier,
    "base": base,
    "data": data,
    "optimizer": optimizer,
    "scaffold": scaffold,
    "budget": budget,
}
FACTORS: dict[str, Factor] = {name: MODULES[name].FACTOR for name in FACTOR_NAMES}
ENTRY_POINT_GROUP = "fi_sim.mechanisms"
PLUGINS_VARIABLE = "FI_SIM_PLUGINS"


def register(mechanism: Any, *presets: Preset, replace_existing: bool = False) -> Any:
    """Register a mechanism in its factor (or a task family in the world) with its presets.

    `mechanism` is a `Verifier`, `Objective`, `BudgetRule` or `Scaffold` (its factor follows from its type) or a
    `TaskFamily`. Without presets, one preset named like the mechanism, at its parameters' defaults, is added.
    Returns the registered value (with the factor's shared parameters added to its own). A name already taken is
    refused unless `replace_existing`."""
    if isinstance(mechanism, TaskFamily):
        if presets:
            raise TypeError("a task family has no presets: a study selects it with [world] family = NAME")
        return register_family(mechanism, replace_existing)
    if not isinstance(mechanism, Mechanism) or mechanism.factor not in FACTORS:
        raise TypeError(
            f"register() takes a Verifier, Objective, BudgetRule, Scaffold or TaskFamily, not "
            f"{type(mechanism).__name__}"
        )
    factor = FACTORS[mechanism.factor]
    hooks = {"verifier": "rewards", "optimizer": "weights", "budget": "estimate", "scaffold": "protocol"}
    if not callable(getattr(mechanism, hooks[factor.name], None)):
        raise TypeError(f"a {factor.name} mechanism needs its behaviour: `{hooks[factor.name]}`")
    taken = [p.name for p in presets if p.name in factor.presets and not replace_existing]
    if taken:
        raise ValueError(f"the {factor.name} presets {taken} are already registered (pass replace_existing=True)")
    presets = presets or (Preset(mechanism.name, mechanism.name, mechanism.doc),)
    for preset in presets:
        if preset.mechanism != mechanism.name:
            raise ValueError(f"preset {preset.name!r} names mechanism {preset.mechanism!r}, not {mechanism.name!r}")
    previous = factor.mechanisms.get(mechanism.name)
    registered = factor.add_mechanism(mechanism, replace_existing)
    try:
        for preset in presets:
            factor.add_preset(preset)
    except KeyError:  # a preset setting an unknown parameter: undo the registration
        if previous is None:
            factor.mechanisms.pop(mechanism.name)
        else:
            factor.mechanisms[mechanism.name] = previous
        raise
    return registered


def load_plugins() -> list[str]:
    """Import the mechanisms contributed by installed packages (entry point group `fi_sim.mechanisms`) and by
    the modules named in FI_SIM_PLUGINS. A plugin that fails to load is reported, not fatal. Returns the names
    loaded."""
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            if callable(target) and not isinstance(target, type(os)):
                target()
            loaded.append(ep.name)
        except Exception as error:  # a broken plugin must not stop the built-ins
            warnings.warn(f"fi_sim: the mechanism plugin {ep.name!r} ({ep.value}) failed to load: {error!r}")
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_VARIABLE, "").split(","))):
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as error:
            warnings.warn(f"fi_sim: the module {name!r} named in {PLUGINS_VARIABLE} failed to import: {error!r}")
    return loaded


__all__ = [
    "FACTORS",
    "FACTOR_NAMES",
    "MODULES",
    "BatchInputs",
    "BudgetRule",
    "EstimatorInputs",
    "Factor",
    "Level",
    "Mechanism",
    "Objective",
    "Param",
    "Preset",
    "Protocol",
    "Scaffold",
    "TaskFamily",
    "Verifier",
    "WeightInputs",
    "load_plugins",
    "register",
]

PLUGINS = load_plugins()
