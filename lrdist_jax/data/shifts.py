"""Distribution shifts inside one task (Kenneweg et al., arXiv 2404.01317; METHODS.md 1.5).

A shift splits a task into part 1 ("unshifted", trained first) and part 2 ("shifted", trained
second); p_s is measured on validation part 2 and p_o on validation part 1.

* **datashift** (:func:`length_split`): meant to split at the median length. ``mode="median"`` does
  that. ``mode="authors"`` replays the authors' ``split_by_length``, which tests the *original*
  index of the i-th shortest example but appends the i-th example, so it is not a length split.
* **embshift** (:func:`cluster_split`): 2-means on pre-fine-tuning [CLS] embeddings, fitted on the
  validation set and applied to the training set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lrdist_jax.data.glue import Examples

__all__ = [
    "ClusterSplit",
    "authors_lengths",
    "cluster_split",
    "length_split",
    "length_split_indices",
]


def authors_lengths(examples: Examples) -> np.ndarray:
    """The lengths the authors' ``split_by_length`` measured: ``len(x)`` of each raw input.

    That is the character count of the sentence for single-sentence tasks, and 2 (the length of the
    ``(a, b)`` tuple) for every sentence-pair example.

    Returns:
        ``i64[N]``.
    """
    if examples.text_b is not None:
        return np.full(len(examples), 2, dtype=np.int64)
    return np.fromiter((len(s) for s in examples.text_a), dtype=np.int64, count=len(examples))


def length_split_indices(lengths: np.ndarray, *, mode: str = "median") -> tuple[np.ndarray, ...]:
    """Index form of :func:`length_split`.

    Args:
        lengths: ``int[N]`` length per example (token lengths, e.g. ``tokenize(...)["lengths"]``).
        mode: ``"median"``: part 1 holds the ``N // 2`` shortest examples and part 2 the rest
            (for odd ``N`` the median example goes to part 2); ties in length are broken by the
            original index (stable sort), so the split is deterministic and every part-1 length is
            <= every part-2 length. ``"authors"``: for ``i, ind in enumerate(np.argsort(lengths))``
            example ``i`` goes to part 1 if ``ind > N / 2`` else to part 2, exactly as the authors'
            code (which uses numpy's default, unstable argsort; ties may order differently across
            numpy versions).

    Returns:
        ``(part1, part2)``: ``i64`` index arrays, each in increasing (dataset) order.
    """
    lengths = np.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}.")
    n = lengths.shape[0]
    if mode == "median":
        order = np.argsort(lengths, kind="stable")
        part1 = np.zeros(n, dtype=bool)
        part1[order[: n // 2]] = True
    elif mode == "authors":
        part1 = np.argsort(lengths) > n / 2  # position i is tested by the index stored there
    else:
        raise ValueError(f"mode must be 'median' or 'authors', got {mode!r}.")
    return np.flatnonzero(part1), np.flatnonzero(~part1)


def length_split(
    examples: Examples, lengths: np.ndarray, *, mode: str = "median"
) -> tuple[Examples, Examples]:
    """Split a task into a short ("unshifted") and a long ("shifted") part (METHODS.md 1.5).

    Args:
        examples: The split to divide (train and validation are split separately, each at its own
            median, as in the authors' code).
        lengths: ``int[N]`` per-example lengths. To replay the authors' code bit for bit, use
            ``mode="authors"`` with :func:`authors_lengths`.
        mode: ``"median"`` (the intended split, default) or ``"authors"``; see
            :func:`length_split_indices`.

    Returns:
        ``(part1, part2)``: part 1 is trained first and gives p_o; part 2 gives p_s. Both keep the
        dataset order.
    """
    lengths = np.asarray(lengths)
    if lengths.shape != (len(examples),):
        raise ValueError(f"lengths has shape {lengths.shape}, expected ({len(examples)},).")
    i1, i2 = length_split_indices(lengths, mode=mode)
    return examples.subset(i1), examples.subset(i2)


class ClusterSplit(NamedTuple):
    """Index arrays (``i64``, increasing): part 1 = cluster label > 0, part 2 = label 0."""

    train1: np.ndarray
    train2: np.ndarray
    val1: np.ndarray
    val2: np.ndarray


def cluster_split(train_emb: np.ndarray, val_emb: np.ndarray, *, seed: int = 0) -> ClusterSplit:
    """The authors' embedding shift: 2-means fitted on validation embeddings, applied to train.

    ``sklearn.cluster.KMeans(n_clusters=2, random_state=seed, n_init=10)`` is fitted on ``val_emb``
    (the authors: ``random_state=0`` and [CLS] last-layer vectors of the model *before*
    fine-tuning); both sets are then assigned with ``predict``. Cluster label > 0 gives part 1
    ("unshifted"), label 0 part 2 ("shifted").

    Args:
        train_emb: ``f32[N, H]`` training embeddings.
        val_emb: ``f32[M, H]`` validation embeddings (``M >= 2``).
        seed: KMeans ``random_state``.

    Returns:
        A :class:`ClusterSplit` of train and validation index arrays.
    """
    from sklearn.cluster import KMeans

    train_emb = np.asarray(train_emb, dtype=np.float32)
    val_emb = np.asarray(val_emb, dtype=np.float32)
    if train_emb.ndim != 2 or val_emb.ndim != 2 or train_emb.shape[1] != val_emb.shape[1]:
        raise ValueError(
            f"embeddings must be [N, H] and [M, H] with the same H, got {train_emb.shape} "
            f"and {val_emb.shape}."
        )
    if val_emb.shape[0] < 2:
        raise ValueError(f"need at least 2 validation embeddings, got {val_emb.shape[0]}.")
    km = KMeans(n_clusters=2, random_state=seed, n_init=10).fit(val_emb)
    val_lab = km.predict(val_emb)  # the authors predict on validation too
    train_lab = km.predict(train_emb)
    return ClusterSplit(
        train1=np.flatnonzero(train_lab > 0),
        train2=np.flatnonzero(train_lab == 0),
        val1=np.flatnonzero(val_lab > 0),
        val2=np.flatnonzero(val_lab == 0),
    )
