"""fi_sim: simulated attribution studies of post-training reasoning.

The top-level package stays light: heavy parts (JAX, the simulator) are imported on first use, so that
`fi_sim.attribution` and `fi_sim.errors` can be used without the simulator.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_results": ("fi_sim.engine.store", "load_results"),
    "Interface": ("fi_sim.interface", "Interface"),
    "InterfaceCard": ("fi_sim.interface", "InterfaceCard"),
    "Study": ("fi_sim.study", "Study"),
    "load_study": ("fi_sim.study", "load_study"),
    "run_study": ("fi_sim.engine.runner", "run_study"),
    "to_table": ("fi_sim.tables", "to_table"),
    "export_table": ("fi_sim.tables", "export"),
    "validate_card": ("fi_sim.cards", "validate_card"),
    "diff_cards": ("fi_sim.cards", "diff_cards"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'fi_sim' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
