"""One room per factor of the feedback interface. `FACTORS` maps a factor's name to its registry."""

from fi_sim.factors import base, budget, data, optimizer, scaffold, verifier
from fi_sim.factors.registry import FACTOR_NAMES, Factor, Level, Mechanism, Param, Preset

MODULES = {
    "verifier": verifier,
    "base": base,
    "data": data,
    "optimizer": optimizer,
    "scaffold": scaffold,
    "budget": budget,
}
FACTORS: dict[str, Factor] = {name: MODULES[name].FACTOR for name in FACTOR_NAMES}

__all__ = ["FACTORS", "FACTOR_NAMES", "MODULES", "Factor", "Level", "Mechanism", "Param", "Preset"]
