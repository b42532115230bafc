"""Tokenisation and batching: shapes, masks, bucket widths, order, resumption, padding rows."""

import numpy as np
import pytest

from lrdist_jax import load_tokenizer
from lrdist_jax.data import (
    epoch_permutation,
    iterate_batches,
    load_glue,
    num_batches,
    tokenize,
)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def rte(tok):
    ex = load_glue("rte", "dev").head(61)
    return ex, tokenize(tok, ex, max_length=128)


def test_tokenize_shapes_and_padding(tok, rte):
    ex, arr = rte
    assert set(arr) == {"input_ids", "attention_mask", "token_type_ids", "lengths"}
    for k in ("input_ids", "attention_mask", "token_type_ids"):
        assert arr[k].shape == (61, 128) and arr[k].dtype == np.int32
    assert arr["lengths"].dtype == np.int32
    pos = np.arange(128)[None, :]
    np.testing.assert_array_equal(arr["attention_mask"], (pos < arr["lengths"][:, None]))
    assert tok.pad_token_id == 0
    assert np.all(arr["input_ids"][arr["attention_mask"] == 0] == 0)
    assert np.all(arr["token_type_ids"][arr["attention_mask"] == 0] == 0)
    # matches a per-example encoding of the same pair
    one = tok(ex.text_a[3], ex.text_b[3], truncation=True, max_length=128)
    n = len(one["input_ids"])
    assert arr["lengths"][3] == n
    np.testing.assert_array_equal(arr["input_ids"][3, :n], one["input_ids"])
    np.testing.assert_array_equal(arr["token_type_ids"][3, :n], one["token_type_ids"])
    assert arr["token_type_ids"][3].max() == 1  # second segment present
    assert arr["lengths"].max() <= 128


class _CallOnly:
    """A tokenizer exposing only ``__call__`` (forces the generic, non-Rust path)."""

    def __init__(self, tok):
        self._tok = tok

    def __call__(self, *args, **kwargs):
        return self._tok(*args, **kwargs)


@pytest.mark.parametrize("task,max_length", [("rte", 64), ("sst2", 12)])
def test_tokenize_matches_hf_call(tok, task, max_length):
    ex = load_glue(task, "dev").head(40)
    before = (tok.backend_tokenizer.padding, tok.backend_tokenizer.truncation)
    ours = tokenize(tok, ex, max_length=max_length)
    assert (tok.backend_tokenizer.padding, tok.backend_tokenizer.truncation) == before
    generic = tokenize(_CallOnly(tok), ex, max_length=max_length)
    ref = tok(
        ex.text_a,
        ex.text_b,
        max_length=max_length,
        truncation=True,
        padding="max_length",
        return_tensors="np",
    )
    for arr in (ours, generic):
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(arr[k], ref[k])
    assert ours["lengths"].max() == max_length  # truncation happened


def test_tokenize_single_sentence_truncates(tok):
    ex = load_glue("sst2", "dev").head(20)
    arr = tokenize(tok, ex, max_length=16)
    assert arr["input_ids"].shape == (20, 16) and arr["lengths"].max() == 16
    assert np.all(arr["token_type_ids"] == 0)
    assert np.all(arr["input_ids"][:, 0] == tok.cls_token_id)


def test_num_batches():
    assert num_batches(10, 4, True) == 2 and num_batches(10, 4, False) == 3
    assert num_batches(8, 4, False) == 2 and num_batches(3, 4, False) == 1
    with pytest.raises(ValueError):
        num_batches(10, 0)


def test_batch_shapes_and_bucket_rounding(rte):
    ex, arr = rte
    batches = list(iterate_batches(arr, ex.labels, 8, seed=3, bucket=32))
    assert len(batches) == num_batches(61, 8, True) == 7
    widths = set()
    for b in batches:
        seq = b["input_ids"].shape[1]
        longest = int(b["attention_mask"].sum(1).max())
        assert seq % 32 == 0 and seq - 32 < longest <= seq
        assert b["input_ids"].shape == b["attention_mask"].shape == b["token_type_ids"].shape
        assert b["input_ids"].shape[0] == 8 and b["labels"].shape == (8,)
        assert b["weights"].dtype == np.float32 and np.all(b["weights"] == 1)
        widths.add(seq)
    assert widths <= {32, 64, 96, 128}
    full = list(iterate_batches(arr, ex.labels, 8, seed=3, pad="max_length"))
    assert all(b["input_ids"].shape == (8, 128) for b in full)
    for b, f in zip(batches, full, strict=True):  # trimming only drops padding columns
        seq = b["input_ids"].shape[1]
        np.testing.assert_array_equal(b["input_ids"], f["input_ids"][:, :seq])
        assert np.all(f["attention_mask"][:, seq:] == 0)


def test_bucket_capped_at_width(rte):
    ex, arr = rte
    short = {k: v[:, :40] for k, v in arr.items() if k != "lengths"}
    short["attention_mask"] = np.ones_like(short["attention_mask"])
    b = next(iterate_batches(short, ex.labels, 4, bucket=32))
    assert b["input_ids"].shape == (4, 40)


def test_every_example_once_per_epoch(rte):
    ex, arr = rte
    ids = np.arange(61, dtype=np.int32)
    for epoch in range(2):
        seen = np.concatenate(
            [b["labels"] for b in iterate_batches(arr, ids, 8, epoch=epoch, drop_remainder=False)]
        )
        weights = np.concatenate(
            [b["weights"] for b in iterate_batches(arr, ids, 8, epoch=epoch, drop_remainder=False)]
        )
        np.testing.assert_array_equal(np.sort(seen[weights == 1]), ids)
    dropped = np.concatenate([b["labels"] for b in iterate_batches(arr, ids, 8)])
    assert len(dropped) == 56 and len(np.unique(dropped)) == 56


def test_rows_follow_the_permutation(rte):
    ex, arr = rte
    ids = np.arange(61, dtype=np.int32)
    perm = epoch_permutation(61, 5, 2)
    b = list(iterate_batches(arr, ids, 8, seed=5, epoch=2, pad="max_length"))[1]
    np.testing.assert_array_equal(b["labels"], perm[8:16])
    np.testing.assert_array_equal(b["input_ids"], arr["input_ids"][perm[8:16]])


def test_order_reproducible_and_epoch_dependent():
    p = epoch_permutation(100, 0, 0)
    np.testing.assert_array_equal(p, epoch_permutation(100, 0, 0))
    np.testing.assert_array_equal(np.sort(p), np.arange(100))
    assert not np.array_equal(p, epoch_permutation(100, 0, 1))
    assert not np.array_equal(p, epoch_permutation(100, 1, 0))
    with pytest.raises(ValueError):
        epoch_permutation(10, -1, 0)


def test_fixed_order_when_not_shuffled(rte):
    ex, arr = rte
    ids = np.arange(61, dtype=np.int32)
    for epoch in (0, 3):
        got = np.concatenate(
            [b["labels"] for b in iterate_batches(arr, ids, 8, shuffle=False, epoch=epoch)]
        )
        np.testing.assert_array_equal(got, np.arange(56))


def test_last_batch_weights_and_padding_rows(rte):
    ex, arr = rte
    batches = list(iterate_batches(arr, ex.labels, 8, shuffle=False, drop_remainder=False))
    assert len(batches) == 8
    last = batches[-1]
    np.testing.assert_array_equal(last["weights"], [1, 1, 1, 1, 1, 0, 0, 0])
    # padding rows repeat a real row (valid attention, no all-masked rows)
    assert np.all(last["attention_mask"][:, 0] == 1)
    np.testing.assert_array_equal(last["input_ids"][5:], np.repeat(last["input_ids"][:1], 3, 0))
    assert sum(float(b["weights"].sum()) for b in batches) == 61


def test_start_batch_equals_skipping(rte):
    ex, arr = rte
    kw = dict(seed=7, epoch=1, drop_remainder=False)
    full = list(iterate_batches(arr, ex.labels, 8, **kw))
    resumed = list(iterate_batches(arr, ex.labels, 8, start_batch=3, **kw))
    assert len(resumed) == len(full) - 3
    for a, b in zip(full[3:], resumed, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert list(iterate_batches(arr, ex.labels, 8, start_batch=7)) == []
    with pytest.raises(ValueError, match="start_batch=9"):
        next(iterate_batches(arr, ex.labels, 8, start_batch=9))


def test_errors(rte):
    ex, arr = rte
    with pytest.raises(ValueError, match="give no batch"):
        next(iterate_batches(arr, ex.labels, 100))
    with pytest.raises(ValueError, match="rows but labels"):
        next(iterate_batches(arr, ex.labels[:10], 4))
    with pytest.raises(ValueError, match="pad must be"):
        next(iterate_batches(arr, ex.labels, 4, pad="longest"))
