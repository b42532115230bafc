"""Tests for lrdist_jax.slots: the authors' BERT learning-rate slot rule (METHODS.md 1.2)."""

import dataclasses
import doctest
import math

import jax
import jax.numpy as jnp
import pytest

from lrdist_jax import slots
from lrdist_jax.models import BertClassifier, BertConfig, TaskHead
from lrdist_jax.paths import param_paths
from lrdist_jax.slots import bert_lr_slots, bert_slot_rules, slot_layers, slot_names


def _fake_bert(num_layers, prefix=("bert",)):
    layer = {
        "attention": {"self": {"query": {"kernel": 0.0}}},
        "output": {"LayerNorm": {"scale": 0.0}},
    }
    body = {
        "embeddings": {"word_embeddings": {"embedding": 0.0}, "LayerNorm": {"bias": 0.0}},
        "encoder": {"layer": {str(i): dict(layer) for i in range(num_layers)}},
        "pooler": {"dense": {"kernel": 0.0}},
    }
    tree = {"heads": {"task1": {"kernel": 0.0}, "task2": {"bias": 0.0}}}
    node = tree
    for p in prefix[:-1]:
        node = node.setdefault(p, {})
    if prefix:
        node[prefix[-1]] = body
    else:
        tree.update(body)
    return tree


def _by_path(params, labels):
    return dict(zip(param_paths(params), jax.tree.leaves(labels), strict=True))


def _authors_rule(n, L, layer):
    # Literal transcription of the float rule of the authors' embedder.py (METHODS.md 1.2).
    for i in range(1, n - 1):
        lo = math.ceil((float(L) / (n - 2)) * (i - 1))
        hi = math.ceil((float(L) / (n - 2)) * i)
        if layer in range(lo, hi):
            return i
    return None


def test_ten_slot_layout_exactly():
    assert slot_layers(10, 12) == [
        [], [0, 1], [2], [3, 4], [5], [6, 7], [8], [9, 10], [11], []
    ]  # fmt: skip
    params = _fake_bert(12)
    got = _by_path(params, bert_lr_slots(10)(params))
    expect_layer_slot = {0: 1, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5, 8: 6, 9: 7, 10: 7, 11: 8}
    for path, slot in got.items():
        if "/embeddings/" in path:
            assert slot == 0, path
        elif "/encoder/layer/" in path:
            k = int(path.split("/encoder/layer/")[1].split("/")[0])
            assert slot == expect_layer_slot[k], path
        else:  # pooler and heads
            assert slot == 9, path
    assert slot_names(10) == [
        "embeddings", "layers 0-1", "layer 2", "layers 3-4", "layer 5",
        "layers 6-7", "layer 8", "layers 9-10", "layer 11", "head/other",
    ]  # fmt: skip


@pytest.mark.parametrize("num_layers", [6, 12])
def test_every_valid_layout_matches_the_authors_float_rule(num_layers):
    for n in range(3, num_layers + 3):
        layers = slot_layers(n, num_layers)
        assert len(layers) == n and layers[0] == [] and layers[-1] == []
        assert sorted(sum(layers, [])) == list(range(num_layers))
        assert all(layers[1:-1])
        for i, group in enumerate(layers):
            for k in group:
                assert _authors_rule(n, num_layers, k) == i


@pytest.mark.parametrize("prefix", [("bert",), (), ("model", "backbone")])
def test_prefix_agnostic(prefix):
    params = _fake_bert(6, prefix)
    got = _by_path(params, bert_lr_slots(8, num_layers=6)(params))
    for path, slot in got.items():
        if "embeddings/" in path:
            assert slot == 0
        elif "encoder/layer/" in path:
            assert slot == 1 + int(path.split("encoder/layer/")[1].split("/")[0])
        else:
            assert slot == 7


def test_refuses_empty_slots_and_names_maximum():
    with pytest.raises(ValueError, match="maximum valid num_slots is num_layers \\+ 2 = 14"):
        slot_layers(15, 12)
    with pytest.raises(ValueError, match="= 8"):
        bert_lr_slots(9, num_layers=6)
    with pytest.raises(ValueError, match="1 \\(flat\\)"):
        bert_slot_rules(2)


def test_one_slot_trains_everything():
    params = _fake_bert(12)
    assert set(jax.tree.leaves(bert_lr_slots(1)(params))) == {0}
    assert slot_names(1) == ["all"]


def test_layer_count_mismatch_is_refused():
    with pytest.raises(ValueError, match="num_layers=12.*layers \\[0, 1, 2, 3, 4, 5\\]"):
        bert_lr_slots(10)(_fake_bert(6))
    with pytest.raises(ValueError, match="no encoder/layer"):
        bert_lr_slots(10)({"dense": {"kernel": 0.0}})


def test_real_bert_classifier_tree():
    cfg = dataclasses.replace(BertConfig.tiny(), num_hidden_layers=6, vocab_size=64)
    model = BertClassifier(cfg, (TaskHead("task1", 2), TaskHead("task2", 3)))
    ids = jnp.ones((1, 4), jnp.int32)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), ids, ids, jnp.zeros_like(ids), head="task1")
    )["params"]
    got = _by_path(shapes, bert_lr_slots(5, num_layers=6)(shapes))
    counts = {s: sum(1 for v in got.values() if v == s) for s in range(5)}
    assert all(c > 0 for c in counts.values())
    assert all(v == 0 for p, v in got.items() if p.startswith("bert/embeddings/"))
    assert all(v == 4 for p, v in got.items() if p.startswith("heads/"))
    assert got["bert/encoder/layer/3/output/dense/kernel"] == 2


def test_doctests():
    assert doctest.testmod(slots).failed == 0
