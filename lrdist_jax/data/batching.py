"""Tokenise once, then batch from numpy arrays with bucketed dynamic padding.

:func:`tokenize` runs the fast (Rust) Hugging Face tokenizer over a whole split in one batched call
and keeps the result as ``int32[N, max_length]`` arrays. :func:`iterate_batches` then cuts batches
out of those arrays. With ``pad="bucket"`` each batch is trimmed to its longest row rounded up to a
multiple of ``bucket``, so ``jax.jit`` sees only ``max_length / bucket`` distinct shapes (paper 1
uses dynamic padding with max length 256); ``pad="max_length"`` keeps the full width (paper 2,
max length 128).

The order of an epoch is a function of ``(seed, epoch)`` only (:func:`epoch_permutation`), so a
run can resume anywhere, even mid-epoch with ``start_batch``. ``shuffle=False`` gives the fixed
dataset order of the Kenneweg et al. code (METHODS.md 1.3: no DataLoader, no shuffling).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import chain

import numpy as np

from lrdist_jax.data.glue import Examples

__all__ = ["epoch_permutation", "iterate_batches", "num_batches", "tokenize"]

_ARRAY_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def tokenize(tokenizer, examples: Examples, *, max_length: int = 128) -> dict[str, np.ndarray]:
    """Tokenise a split once, in a single batched call to a fast tokenizer.

    Pairs are encoded as ``[CLS] a [SEP] b [SEP]`` and truncated longest-first to ``max_length``.

    Args:
        tokenizer: A Hugging Face (fast) tokenizer, e.g. ``lrdist_jax.load_tokenizer("minilm-l6")``.
        examples: The split to encode.
        max_length: Padded width and truncation length.

    Returns:
        ``{"input_ids", "attention_mask", "token_type_ids"}``: ``i32[N, max_length]`` padded on the
        right (``input_ids`` with the tokenizer's pad id, 0 for BERT; the mask and type ids with
        0), and ``"lengths"``: ``i32[N]`` number of real tokens per row.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}.")
    if len(examples) == 0:
        empty = np.zeros((0, max_length), np.int32)
        return {k: empty.copy() for k in _ARRAY_KEYS} | {"lengths": np.zeros((0,), np.int32)}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if getattr(tokenizer, "is_fast", False) and backend is not None:
        out = _encode_rust(tokenizer, backend, examples, max_length)
    else:  # slow (pure Python) tokenizers
        enc = tokenizer(
            examples.text_a,
            examples.text_b,
            max_length=max_length,
            truncation=True,
            padding="max_length",
            return_attention_mask=True,
            return_token_type_ids=True,
            return_tensors="np",
        )
        out = {k: np.asarray(enc[k], dtype=np.int32) for k in _ARRAY_KEYS if k in enc}
    if "token_type_ids" not in out:  # RoBERTa-style tokenizers have no segment ids
        out["token_type_ids"] = np.zeros_like(out["input_ids"])
    out["lengths"] = out["attention_mask"].sum(axis=1, dtype=np.int32)
    return out


def _encode_rust(tokenizer, backend, examples: Examples, max_length: int) -> dict:
    """Encode with the Rust ``tokenizers`` backend directly (the Python ``__call__`` wrapper costs
    several times the encoding itself on large splits). Works on a copy, so the caller's tokenizer
    keeps its truncation/padding settings."""
    from tokenizers import Tokenizer

    rust = Tokenizer.from_str(backend.to_str())
    rust.enable_truncation(max_length, strategy="longest_first")
    rust.no_padding()  # pad in numpy: converting short lists is much cheaper than full rows
    inputs = (
        examples.text_a
        if examples.text_b is None
        else list(zip(examples.text_a, examples.text_b, strict=True))
    )
    enc = rust.encode_batch(inputs, add_special_tokens=True)
    lengths = np.fromiter((len(e.ids) for e in enc), dtype=np.int64, count=len(enc))
    mask = np.arange(max_length)[None, :] < lengths[:, None]
    total = int(lengths.sum())
    pad_id = tokenizer.pad_token_id or 0
    out = {}
    for key, attr, fill in (
        ("input_ids", "ids", pad_id),
        ("token_type_ids", "type_ids", 0),
    ):
        arr = np.full((len(enc), max_length), fill, dtype=np.int32)
        flat = chain.from_iterable(getattr(e, attr) for e in enc)
        arr[mask] = np.fromiter(flat, dtype=np.int32, count=total)
        out[key] = arr
    out["attention_mask"] = mask.astype(np.int32)
    return out


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Number of batches of ``batch_size`` in ``n`` examples (last partial one optional)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a permutation of ``range(n)`` fixed by ``(seed, epoch)``.

    Returns:
        ``i64[n]``. The same arguments always give the same order (resumable); different epochs
        give independent orders.
    """
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}.")
    return np.random.default_rng([seed, epoch]).permutation(n)


def _lengths_of(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    if "lengths" in arrays:
        return np.asarray(arrays["lengths"])
    return np.asarray(arrays["attention_mask"]).sum(axis=1)


def iterate_batches(
    arrays: Mapping[str, np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool = True,
    pad: str = "bucket",
    bucket: int = 32,
    start_batch: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the batches of one epoch.

    Args:
        arrays: Output of :func:`tokenize` (``lengths`` optional; it is recomputed from the mask).
        labels: ``i32[N]`` class ids or ``f32[N]`` scores.
        batch_size: Rows per batch (every yielded batch has exactly this many).
        shuffle: Use :func:`epoch_permutation` ``(N, seed, epoch)``; ``False`` keeps dataset order.
        seed: Shuffling seed.
        epoch: Epoch index (changes the order when shuffling).
        drop_remainder: Drop the last partial batch (training). If ``False`` it is padded up to
            ``batch_size`` by repeating its first row with weight 0 (evaluation).
        pad: ``"bucket"`` trims each batch to its longest row rounded up to a multiple of
            ``bucket`` (capped at the array width); ``"max_length"`` keeps the full width.
        bucket: Width granularity for ``pad="bucket"``.
        start_batch: Skip the first ``start_batch`` batches of the epoch (mid-epoch resume); the
            result equals the full epoch with its first ``start_batch`` batches dropped.

    Yields:
        ``{"input_ids", "attention_mask", "token_type_ids"}``: ``i32[B, L]``; ``"labels"``:
        ``[B]`` in the labels' dtype; ``"weights"``: ``f32[B]``, 1 for real rows and 0 for
        padding rows (always present, so jitted steps see one pytree structure).

    Raises:
        ValueError: inconsistent sizes, an unknown ``pad``, ``start_batch`` out of range, or
            ``drop_remainder=True`` with fewer examples than ``batch_size`` (no batch at all).
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    for k in _ARRAY_KEYS:
        if k not in arrays:
            raise ValueError(f"arrays lacks {k!r}; pass the output of tokenize().")
        if arrays[k].shape[0] != n:
            raise ValueError(f"arrays[{k!r}] has {arrays[k].shape[0]} rows but labels has {n}.")
    if pad not in ("bucket", "max_length"):
        raise ValueError(f"pad must be 'bucket' or 'max_length', got {pad!r}.")
    if bucket < 1:
        raise ValueError(f"bucket must be >= 1, got {bucket}.")
    total = num_batches(n, batch_size, drop_remainder)
    if drop_remainder and n < batch_size:
        raise ValueError(
            f"{n} examples with batch_size={batch_size} and drop_remainder=True give no batch; "
            f"lower the batch size or use drop_remainder=False."
        )
    if not 0 <= start_batch <= total:
        raise ValueError(f"start_batch={start_batch} out of range [0, {total}].")

    width = arrays["input_ids"].shape[1]
    lengths = _lengths_of(arrays)
    order = epoch_permutation(n, seed, epoch) if shuffle else np.arange(n)
    for b in range(start_batch, total):
        idx = order[b * batch_size : (b + 1) * batch_size]
        real = idx.shape[0]
        if real < batch_size:
            idx = np.concatenate([idx, np.full(batch_size - real, idx[0], dtype=idx.dtype)])
        if pad == "bucket":
            longest = int(lengths[idx].max())
            seq = min(width, max(bucket, -(-longest // bucket) * bucket))
        else:
            seq = width
        batch = {k: arrays[k][idx, :seq] for k in _ARRAY_KEYS}
        batch["labels"] = labels[idx]
        weights = np.ones((batch_size,), np.float32)
        weights[real:] = 0.0
        batch["weights"] = weights
        yield batch
