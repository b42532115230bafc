"""Tests for lrdist_jax.paths: key-path strings and regex labelling (dicts and nnx.State)."""

import doctest

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from lrdist_jax import paths
from lrdist_jax.paths import label_params, param_paths, path_str


def _tree():
    return {
        "bert": {
            "embeddings": {"word_embeddings": {"embedding": jnp.zeros((4, 2))}},
            "encoder": {"layer": [{"kernel": jnp.zeros(2)}, {"kernel": jnp.zeros(2)}]},
        },
        "heads": {"task1": {"bias": jnp.zeros(2), "kernel": jnp.zeros((2, 2))}},
    }


def test_path_str_joins_keys_and_indices():
    got = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(_tree())[0]]
    assert got == [
        "bert/embeddings/word_embeddings/embedding",
        "bert/encoder/layer/0/kernel",
        "bert/encoder/layer/1/kernel",
        "heads/task1/bias",
        "heads/task1/kernel",
    ]
    # Same as jax's own simple keystr.
    for p, _ in jax.tree_util.tree_flatten_with_path(_tree())[0]:
        assert path_str(p) == jax.tree_util.keystr(p, simple=True, separator="/")
    assert path_str((jax.tree_util.DictKey("a"), jax.tree_util.SequenceKey(3)), sep=".") == "a.3"


def test_label_params_first_match_wins_and_keeps_structure():
    rules = [(r".*/layer/1/.*", "top"), (r"bert/.*", "body"), (r".*", "head")]
    labels = label_params(_tree(), rules)
    assert jax.tree.structure(labels) == jax.tree.structure(_tree())
    assert labels["bert"]["encoder"]["layer"][1]["kernel"] == "top"
    assert labels["bert"]["encoder"]["layer"][0]["kernel"] == "body"
    assert labels["bert"]["embeddings"]["word_embeddings"]["embedding"] == "body"
    assert labels["heads"]["task1"]["kernel"] == "head"


def test_label_params_uses_fullmatch():
    # "heads" would match re.search("head") but not re.fullmatch.
    with pytest.raises(ValueError, match="matched no rule"):
        label_params(_tree(), [(r"bert/.*", 0), (r"head", 1)], strict=False)


def test_strict_lists_every_unmatched_path_and_every_unused_rule():
    rules = [(r"bert/embeddings/.*", 0), (r"nope/.*", 1), (r"also_nope", 2)]
    with pytest.raises(ValueError) as e:
        label_params(_tree(), rules)
    msg = str(e.value)
    for p in [
        "bert/encoder/layer/0/kernel",
        "bert/encoder/layer/1/kernel",
        "heads/task1/bias",
        "heads/task1/kernel",
    ]:
        assert p in msg
    assert "4 parameter path(s)" in msg
    assert "'nope/.*'" in msg and "'also_nope'" in msg and "2 rule(s)" in msg
    assert "bert/embeddings/word_embeddings/embedding" not in msg


def test_default_and_non_strict():
    labels = label_params(_tree(), [(r"heads/.*", 1), (r"unused", 7)], default=0, strict=False)
    assert jax.tree.leaves(labels) == [0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="unused"):
        label_params(_tree(), [(r"heads/.*", 1), (r"unused", 7)], default=0)


def test_bad_rules_are_reported():
    with pytest.raises(ValueError, match="starts with '/'"):
        label_params(_tree(), [(r"/bert/.*", 0)])
    with pytest.raises(ValueError, match="not a valid regex"):
        label_params(_tree(), [(r"bert/(", 0)])
    with pytest.raises(ValueError, match="pair"):
        label_params(_tree(), ["bert/.*"])


class _Block(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(2, 2, rngs=rngs)


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List([_Block(rngs), _Block(rngs)])
        self.head = nnx.Linear(2, 1, rngs=rngs)


def test_nnx_state_paths_and_labels():
    state = nnx.state(_Net(nnx.Rngs(0)), nnx.Param)
    assert param_paths(state) == [
        "head/bias",
        "head/kernel",
        "layers/0/dense/bias",
        "layers/0/dense/kernel",
        "layers/1/dense/bias",
        "layers/1/dense/kernel",
    ]
    labels = label_params(state, [(r"layers/(\d+)/.*", 0), (r"head/.*", 1)])
    assert jax.tree.structure(labels) == jax.tree.structure(state)
    assert jax.tree.leaves(labels) == [1, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="head/kernel"):
        label_params(state, [(r"layers/.*", 0)])


def test_doctests():
    assert doctest.testmod(paths).failed == 0
