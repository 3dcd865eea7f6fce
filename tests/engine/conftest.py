"""Fixtures of the engine's tests: a micro study that compiles and runs in seconds, a reference run of it, and a
helper to run `fi-sim` in a subprocess.

The persistent compilation cache of every test (and every subprocess it starts) is a temporary directory of
the session, never the user's (set in tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest


from ._helpers import MICRO_STUDY  # noqa: E402


@pytest.fixture(scope="session")
def micro_study_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("micro") / "micro.toml"
    path.write_text(MICRO_STUDY)
    return path


@pytest.fixture(scope="session")
def micro_reference(micro_study_file, tmp_path_factory):
    """The micro study run once, uninterrupted, in this process on one device: (directory, dataset)."""
    from fi_sim.engine.runner import run_study
    from fi_sim.study import loads_study

    out = tmp_path_factory.mktemp("reference") / "run"
    ds = run_study(loads_study(MICRO_STUDY), out, study_text=MICRO_STUDY, quiet=True, devices=1)
    return out, ds


