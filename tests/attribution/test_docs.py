"""The python examples in docs/attribution.md run as written."""

import pathlib
import re
import warnings

import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "attribution.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_has_examples():
    assert len(blocks()) >= 3


@pytest.mark.parametrize("index", range(len(blocks())))
def test_doc_example_runs(index, capsys):
    code = blocks()[index]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a documented example should run cleanly
        exec(compile(code, f"{DOC.name}[{index}]", "exec"), {"__name__": "__doc_example__"})
    assert capsys.readouterr().out
