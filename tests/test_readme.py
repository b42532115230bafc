"""The README's API tour runs as written."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_names_the_two_commands_and_ci_runs_the_test_one():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_api_tour_runs():
    block = _python_blocks()[0]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    lrs = namespace["lr"].get_group_lrs(namespace["opt_state"])
    assert lrs.shape == (8,) and lrs.dtype == "float32"
    assert float(lrs[0]) == float(np.float32(2e-5))
