"""Numerical parity of :class:`~lrdist_jax.BertModel` with transformers' PyTorch ``BertModel``."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from lrdist_jax.models import BertModel, load_hf_bert, resolve_model_dir

__all__ = ["compare_with_torch", "parity_batch"]


def parity_batch(vocab_size: int, *, batch: int = 4, length: int = 16, seed: int = 0):
    """A fixed batch of sentence pairs: ragged padding, two segments, ids within the vocab.

    Returns ``(input_ids, attention_mask, token_type_ids)``, each ``int64[batch, length]``.
    """
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, size=(batch, length))
    mask = np.zeros((batch, length), np.int64)
    types = np.zeros((batch, length), np.int64)
    for i in range(batch):
        n = length - (i * length) // (2 * batch)  # row 0 full, later rows padded
        first = max(1, n // 2)
        mask[i, :n] = 1
        types[i, first:n] = 1
    ids = np.where(mask > 0, ids, 0)
    return ids, mask, types


def compare_with_torch(model_dir: str | os.PathLike) -> dict[str, float]:
    """Max abs differences of ``last_hidden_state`` and ``pooler_output`` against PyTorch.

    Both frameworks load the same folder; the batch is :func:`parity_batch`. Needs torch.
    """
    import torch
    from transformers import BertModel as TorchBertModel

    config, params = load_hf_bert(model_dir)
    path = resolve_model_dir(model_dir)
    try:
        torch_model = TorchBertModel.from_pretrained(str(path)).eval()
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"transformers cannot load {path}: {e}") from e
    ids, mask, types = parity_batch(
        config.vocab_size, length=min(16, config.max_position_embeddings)
    )
    with torch.no_grad():
        ref = torch_model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            token_type_ids=torch.from_numpy(types),
        )
    out = BertModel(config).apply(
        {"params": params}, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)
    )
    hidden = np.abs(np.asarray(out.last_hidden_state) - ref.last_hidden_state.numpy())
    pooled = np.abs(np.asarray(out.pooler_output) - ref.pooler_output.numpy())
    return {"last_hidden_state": float(hidden.max()), "pooler_output": float(pooled.max())}
