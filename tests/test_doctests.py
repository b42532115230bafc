"""The runnable examples in the public modules' docstrings."""

import doctest
import importlib

import pytest

MODULES = [
    "lrdist_jax.paths",
    "lrdist_jax.slots",
    "lrdist_jax.schedules",
    "lrdist_jax.distributions",
    "lrdist_jax.transforms._group_lr",
    "lrdist_jax.transforms._clipping",
    "lrdist_jax.losses._classification",
    "lrdist_jax.losses._r3f",
    "lrdist_jax.losses._ewc",
    "lrdist_jax.search.combine",
    "lrdist_jax.search.hyperband",
    "lrdist_jax.models.dropout",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
