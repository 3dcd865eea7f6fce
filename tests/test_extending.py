"""Your own mechanism from outside the package: the public registration API, the `fi_sim.mechanisms` entry
point group, FI_SIM_PLUGINS, and the examples of docs/extending.md. Registrations are made in subprocesses
(or undone), so the session's registries stay the built-ins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fi_sim.errors import ValidationError
from fi_sim.factors import FACTORS, Param, Preset, Verifier, register
from fi_sim.interface import Interface, WorldSettings

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, env_extra: dict | None = None, path_extra: str = "") -> str:
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [path_extra, str(ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def temporary_verifier():
    """A verifier registered for one test, then removed again."""
    import jax.numpy as jnp

    from fi_sim.factors.verifier import outcome

    mech = register(
        Verifier(
            "test_terse",
            "exact, for traces of at most max_length tokens",
            (Param("max_length", "int", 2, "most tokens of a rewarded trace", 1, 64),),
            rewards=lambda p, g, key, world: outcome(
                g, (g.correct & (g.length <= p["max_length"])).astype(jnp.float32)
            ),
        )
    )
    yield mech
    FACTORS["verifier"].mechanisms.pop("test_terse")
    FACTORS["verifier"].presets.pop("test_terse")


def test_a_registered_verifier_is_a_level_like_a_builtin(temporary_verifier):
    verifier = FACTORS["verifier"]
    assert verifier.presets["test_terse"].mechanism == "test_terse"  # a default preset of its own name
    level = verifier.level({"preset": "test_terse", "max_length": 4})
    assert level.params == {"max_length": 4}
    with pytest.raises(ValidationError) as err:
        verifier.level({"preset": "test_terse", "max_length": 0})
    assert err.value.fields == ["factors.verifier.max_length"]
    specs = {
        "verifier": "test_terse",
        "base": "narrow",
        "data": "within",
        "optimizer": "reinforce",
        "scaffold": "direct",
        "budget": "pass@1",
    }
    card = Interface.from_specs(WorldSettings(), specs).card().content["factors"]["verifier"]
    assert card == {
        "level": "test_terse",
        "preset": "test_terse",
        "mechanism": "test_terse",
        "params": {"max_length": 2},
    }
    assert any(r["preset"] == "test_terse" for r in verifier.catalogue())
    # lowered like every verifier: its index and its own parameters, beside every other verifier's
    from fi_sim.factors import verifier as verifier_factor

    params = verifier_factor.run_params(level)
    assert int(params.kind) == list(verifier.mechanisms).index("test_terse")
    assert int(params.params["test_terse"]["max_length"]) == 4


def test_registration_refuses_what_it_cannot_use(temporary_verifier):
    with pytest.raises(ValueError, match="already registered"):
        register(temporary_verifier)
    with pytest.raises(TypeError, match="rewards"):
        register(Verifier("no_behaviour", "a verifier without its reward function"))
    with pytest.raises(TypeError):
        register(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names mechanism"):
        register(Verifier("other", "x", rewards=temporary_verifier.rewards), Preset("p", "exact", "x"))
    assert "no_behaviour" not in FACTORS["verifier"].mechanisms and "other" not in FACTORS["verifier"].mechanisms


PLUGIN = """
import jax.numpy as jnp
from fi_sim.factors import Preset, Verifier, register
from fi_sim.factors.verifier import outcome

register(Verifier("plugin_format", "rewards well-formed traces (from a plugin)",
                  rewards=lambda p, g, key, world: outcome(g, g.well_formed.astype(jnp.float32))),
         Preset("plugin_format", "plugin_format", "the plugin's verifier"))
"""

CHECK = '''
import json
from fi_sim.factors import FACTORS, PLUGINS
from fi_sim.study import loads_study
study = loads_study("""
[study]
name = "plugin"
[factors]
verifier = ["exact", "plugin_format"]
base = ["narrow"]
data = ["within"]
optimizer = ["reinforce"]
scaffold = ["direct"]
budget = ["pass@1"]
""")
print(json.dumps({"plugins": PLUGINS, "mechanisms": list(FACTORS["verifier"].mechanisms),
                  "levels": [lv.mechanism for lv in study.factors["verifier"]]}))
'''


def test_an_installed_package_contributes_through_the_entry_point_group(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fi_sim.mechanisms]\nmy_verifiers = my_plugin\n")
    out = json.loads(_python(CHECK, path_extra=str(tmp_path)))
    assert "my_verifiers" in out["plugins"]
    assert out["mechanisms"][-1] == "plugin_format" and out["levels"] == ["exact", "plugin_format"]


def test_fi_sim_plugins_names_modules_to_import(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    out = json.loads(_python(CHECK, {"FI_SIM_PLUGINS": "my_plugin"}, str(tmp_path)))
    assert out["plugins"] == ["my_plugin"] and out["levels"] == ["exact", "plugin_format"]


def test_a_broken_plugin_warns_and_the_builtins_still_work(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('broken on purpose')\n")
    code = (
        "import warnings\nwarnings.simplefilter('always')\nfrom fi_sim.factors import FACTORS\n"
        "print(sorted(FACTORS['verifier'].mechanisms))"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    env.pop("FI_SIM_PLUGINS", None)
    run = lambda extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(env, **extra), timeout=600
    )
    builtins, done = run({}), run({"FI_SIM_PLUGINS": "broken_plugin"})
    assert builtins.returncode == 0 and "exact" in builtins.stdout
    # the broken plugin is reported, and every built-in verifier is still registered
    assert done.returncode == 0 and "broken on purpose" in done.stderr and done.stdout == builtins.stdout


def test_the_examples_of_docs_extending_run_and_join_the_contract():
    """Every Python block of docs/extending.md, run in order, registers what it says; the mechanisms then pass
    the contract test (tests/test_mechanisms.py, collected after the registrations)."""
    text = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    code = "\n".join(blocks) + textwrap.dedent("""
        import sys, pytest
        from fi_sim.factors import FACTORS
        from fi_sim.world.tasks import FAMILIES
        assert "terse" in FACTORS["verifier"].mechanisms and "above_mean" in FACTORS["optimizer"].mechanisms
        assert "mean_of_k" in FACTORS["budget"].mechanisms and "short_pad" in FACTORS["scaffold"].mechanisms
        assert "add" in FAMILIES
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_mechanisms.py",
                              "-k", "terse or above_mean or mean_of_k or short_pad or add"]))
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "5 passed" in done.stdout, done.stdout[-2000:]
