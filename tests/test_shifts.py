"""Distribution shifts (METHODS.md 1.5): median length split, the authors' index split, 2-means."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from lrdist_jax.data import (
    Examples,
    authors_lengths,
    cluster_split,
    length_split,
    length_split_indices,
)


def _examples(n, pair=False):
    a = [f"s{i}" + "x" * (i % 7) for i in range(n)]
    b = [f"t{i}" for i in range(n)] if pair else None
    return Examples(a, b, np.arange(n, dtype=np.int32))


def _authors_loop(lengths):
    """The authors' ``split_by_length`` loop, written out as in their code (on indices)."""
    new_x, new_x2 = [], []
    lensent = len(lengths)
    for i, ind in enumerate(np.argsort(lengths)):
        if ind > lensent / 2:
            new_x.append(i)
        else:
            new_x2.append(i)
    return new_x, new_x2


@pytest.mark.parametrize("n", [1, 2, 9, 10, 101])
def test_median_split_sizes_and_ordering(n):
    rng = np.random.default_rng(n)
    lengths = rng.integers(3, 12, size=n)  # many ties
    p1, p2 = length_split_indices(lengths)
    assert len(p1) == n // 2 and len(p2) == n - n // 2
    np.testing.assert_array_equal(np.sort(np.concatenate([p1, p2])), np.arange(n))
    assert np.all(np.diff(p1) > 0) and np.all(np.diff(p2) > 0)  # dataset order kept
    if len(p1) and len(p2):
        assert lengths[p1].max() <= lengths[p2].min()


def test_median_ties_are_deterministic():
    p1, p2 = length_split_indices(np.full(6, 4))
    np.testing.assert_array_equal(p1, [0, 1, 2])  # ties broken by original index
    np.testing.assert_array_equal(p2, [3, 4, 5])
    p1, p2 = length_split_indices(np.array([3, 9, 3, 9, 5]))
    np.testing.assert_array_equal(p1, [0, 2])
    np.testing.assert_array_equal(p2, [1, 3, 4])


def test_length_split_examples():
    ex = _examples(11)
    lengths = np.array([len(s) for s in ex.text_a])
    short, long = length_split(ex, lengths)
    assert len(short) == 5 and len(long) == 6
    assert max(len(s) for s in short.text_a) <= min(len(s) for s in long.text_a)
    for part in (short, long):  # labels stay aligned with their text
        assert all(part.text_a[j].startswith(f"s{lab}") for j, lab in enumerate(part.labels))
    with pytest.raises(ValueError, match="expected \\(11,\\)"):
        length_split(ex, lengths[:5])
    with pytest.raises(ValueError, match="mode must be"):
        length_split(ex, lengths, mode="mean")


def test_authors_split_hand_example():
    # lengths [5, 1, 4, 2, 3]: argsort = [1, 3, 4, 2, 0]; position i goes to part 1 iff the index
    # stored there exceeds 5/2, i.e. positions 1 (ind 3) and 2 (ind 4). It is not a length split:
    # part 1 gets the examples of length 1 and 4, part 2 those of length 5, 2 and 3.
    p1, p2 = length_split_indices(np.array([5, 1, 4, 2, 3]), mode="authors")
    np.testing.assert_array_equal(p1, [1, 2])
    np.testing.assert_array_equal(p2, [0, 3, 4])


@pytest.mark.parametrize("seed", range(5))
def test_authors_split_equals_their_loop(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    lengths = rng.permutation(n) * 3 + 1  # distinct: no dependence on argsort tie order
    p1, p2 = length_split_indices(lengths, mode="authors")
    ref1, ref2 = _authors_loop(lengths)
    np.testing.assert_array_equal(p1, ref1)
    np.testing.assert_array_equal(p2, ref2)


def test_authors_split_on_pairs_ignores_content():
    # For pair tasks the authors measured len((a, b)) == 2 for every example.
    ex = _examples(10, pair=True)
    lengths = authors_lengths(ex)
    np.testing.assert_array_equal(lengths, np.full(10, 2))
    p1, p2 = length_split(ex, lengths, mode="authors")
    ref1, ref2 = _authors_loop(lengths)
    assert list(p1.labels) == ref1 and list(p2.labels) == ref2
    single = _examples(4)
    np.testing.assert_array_equal(authors_lengths(single), [len(s) for s in single.text_a])


def _blobs(rng, n, centers):
    which = rng.integers(0, 2, size=n)
    return (centers[which] + rng.normal(size=(n, centers.shape[1]))).astype(np.float32), which


def test_cluster_split_recovers_blobs():
    rng = np.random.default_rng(0)
    centers = np.stack([np.full(8, -6.0), np.full(8, 6.0)])
    val, val_which = _blobs(rng, 40, centers)
    train, train_which = _blobs(rng, 120, centers)
    split = cluster_split(train, val, seed=0)
    for p1, p2, which, n in (
        (split.train1, split.train2, train_which, 120),
        (split.val1, split.val2, val_which, 40),
    ):
        np.testing.assert_array_equal(np.sort(np.concatenate([p1, p2])), np.arange(n))
        # each part is exactly one blob (which blob is part 1 depends on the cluster labels)
        assert len(np.unique(which[p1])) == 1 and len(np.unique(which[p2])) == 1
        assert which[p1][0] != which[p2][0]
    # train and val agree on which blob is "part 1"
    assert train_which[split.train1][0] == val_which[split.val1][0]
    # part 1 is cluster label > 0 of a KMeans fitted on the validation set only
    km = KMeans(n_clusters=2, random_state=0, n_init=10).fit(val)
    np.testing.assert_array_equal(split.train1, np.flatnonzero(km.predict(train) > 0))
    np.testing.assert_array_equal(split.val2, np.flatnonzero(km.predict(val) == 0))


def test_cluster_split_shape_errors():
    with pytest.raises(ValueError, match="same H"):
        cluster_split(np.zeros((4, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        cluster_split(np.zeros((4, 3)), np.zeros((1, 3)))
