"""A Flax (linen) BERT encoder with named task heads.

The parameter tree mirrors the Hugging Face Flax BERT names, so layer rules read naturally and the
PyTorch key map is mechanical::

    embeddings/{word_embeddings,position_embeddings,token_type_embeddings}/embedding
    embeddings/LayerNorm/{scale,bias}
    encoder/layer/<i>/attention/self/{query,key,value}/{kernel,bias}
    encoder/layer/<i>/attention/output/{dense/{kernel,bias},LayerNorm/{scale,bias}}
    encoder/layer/<i>/intermediate/dense/{kernel,bias}
    encoder/layer/<i>/output/{dense/{kernel,bias},LayerNorm/{scale,bias}}
    pooler/dense/{kernel,bias}                        (only with add_pooling_layer=True)

:class:`BertClassifier` wraps the body as ``bert/...`` and adds ``heads/<name>/{kernel,bias}``.

Numerics follow PyTorch BERT: exact-erf GELU, LayerNorm epsilon from the config, an additive
``finfo.min`` attention mask, softmax and LayerNorm statistics in float32 even when the compute
dtype is bfloat16. Parameters are always float32.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrdist_jax.models.config import BertConfig, TaskHead
from lrdist_jax.models.dropout import Dropout
from lrdist_jax.models.matmul import dense_matmul
from lrdist_jax.models.spectral import SpectralDense

__all__ = ["BertClassifier", "BertModel", "BertOutput"]

_init = nn.initializers.normal(0.02)


def _gelu_exact(x: jax.Array) -> jax.Array:
    """Exact GELU, ``x / 2 * (1 + erf(x / sqrt(2)))``: PyTorch's formula. Same function as
    ``jax.nn.gelu(approximate=False)``, whose ``erfc`` form XLA:CPU evaluates more slowly."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.5**0.5, x.dtype)))


def _activation(name: str):
    if name == "gelu":
        return _gelu_exact
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return functools.partial(jax.nn.gelu, approximate=True)
    return jax.nn.relu


class BertOutput(NamedTuple):
    """Encoder outputs. ``last_hidden_state: f32[B, T, H]``; ``pooler_output: f32[B, H] | None``."""

    last_hidden_state: jax.Array
    pooler_output: jax.Array | None


def _dense_dot_general(x, w, dimension_numbers, precision=None, preferred_element_type=None):
    """``nn.Dense``'s contraction, routed through :func:`dense_matmul` (same value and
    gradients; a faster weight gradient on the CPU)."""
    if precision is not None or preferred_element_type is not None:
        raise ValueError("_Dense takes neither precision nor preferred_element_type.")
    if dimension_numbers != (((x.ndim - 1,), (0,)), ((), ())):
        raise ValueError(f"_Dense contracts x's last axis, got {dimension_numbers}.")
    return dense_matmul(x, w)


class _Dense(nn.Dense):
    kernel_init: Any = _init
    param_dtype: Any = jnp.float32
    dot_general: Any = _dense_dot_general


class _LayerNorm(nn.Module):
    """LayerNorm with float32 statistics whatever the compute dtype (names ``scale``, ``bias``)."""

    epsilon: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (h,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (h,), jnp.float32)
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(self.dtype)


class BertEmbeddings(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    def setup(self):
        cfg = self.config
        embed = functools.partial(nn.Embed, features=cfg.hidden_size, embedding_init=_init)
        self.word_embeddings = embed(cfg.vocab_size)
        self.position_embeddings = embed(cfg.max_position_embeddings)
        self.token_type_embeddings = embed(cfg.type_vocab_size)
        self.LayerNorm = _LayerNorm(cfg.layer_norm_eps, dtype=self.dtype)
        self.dropout = Dropout(cfg.hidden_dropout_prob, mask_hash=cfg.dropout_hash)

    def embed_tokens(self, input_ids: jax.Array) -> jax.Array:
        """Word-embedding lookup only: ``i32[B, T] -> f32[B, T, H]``."""
        return self.word_embeddings(input_ids)

    def __call__(self, input_ids, token_type_ids, position_ids, inputs_embeds, deterministic):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        x = (
            inputs_embeds.astype(jnp.float32)
            + self.position_embeddings(position_ids)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.LayerNorm(x), deterministic=deterministic)


class BertSelfAttention(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, queries, mask_bias, deterministic):
        """Keys and values from ``x: [B, T, H]``, queries from ``queries: [B, Tq, H]`` (``x``
        itself, or its [CLS] row); returns ``[B, Tq, H]``."""
        cfg = self.config
        b, t, _ = x.shape
        tq = queries.shape[1]
        heads, dh = cfg.num_attention_heads, cfg.head_dim
        dense = functools.partial(_Dense, cfg.hidden_size, dtype=self.dtype)
        q = dense(name="query")(queries).reshape(b, tq, heads, dh)
        k = dense(name="key")(x).reshape(b, t, heads, dh)
        v = dense(name="value")(x).reshape(b, t, heads, dh)
        q = q * jnp.asarray(dh**-0.5, self.dtype)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        probs = jax.nn.softmax(scores + mask_bias, axis=-1)  # f32[B, heads, Tq, T]
        probs = Dropout(cfg.attention_probs_dropout_prob, mask_hash=cfg.dropout_hash)(
            probs, deterministic=deterministic, full_shape=(b, heads, t, t)
        )
        ctx = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v)
        return ctx.reshape(b, tq, cfg.hidden_size)


class BertSelfOutput(nn.Module):
    """Projection + dropout + residual LayerNorm (``attention/output`` and ``output``)."""

    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h, residual, deterministic, full_shape=None):
        cfg = self.config
        h = _Dense(cfg.hidden_size, dtype=self.dtype, name="dense")(h)
        h = Dropout(cfg.hidden_dropout_prob, mask_hash=cfg.dropout_hash)(
            h, deterministic=deterministic, full_shape=full_shape
        )
        return _LayerNorm(cfg.layer_norm_eps, dtype=self.dtype, name="LayerNorm")(h + residual)


class BertAttention(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask_bias, deterministic, cls_only=False):
        rows = x[:, :1] if cls_only else x  # the positions whose output is computed
        h = BertSelfAttention(self.config, self.dtype, name="self")(
            x, rows, mask_bias, deterministic
        )
        return BertSelfOutput(self.config, self.dtype, name="output")(
            h, rows, deterministic, full_shape=x.shape
        )


class BertIntermediate(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = _Dense(self.config.intermediate_size, dtype=self.dtype, name="dense")(x)
        return _activation(self.config.hidden_act)(h)


class BertLayer(nn.Module):
    """One transformer layer. ``cls_only=True`` computes only position 0's output row
    (``f32[B, 1, H]``; keys and values still come from all ``T`` positions)."""

    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask_bias, deterministic, cls_only=False):
        full_shape = x.shape
        x = BertAttention(self.config, self.dtype, name="attention")(
            x, mask_bias, deterministic, cls_only
        )
        h = BertIntermediate(self.config, self.dtype, name="intermediate")(x)
        return BertSelfOutput(self.config, self.dtype, name="output")(
            h, x, deterministic, full_shape=full_shape
        )


class BertLayerCollection(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask_bias, deterministic, cls_only=False):
        n = self.config.num_hidden_layers
        for i in range(n):
            last = cls_only and i == n - 1
            x = BertLayer(self.config, self.dtype, name=str(i))(x, mask_bias, deterministic, last)
        return x


class BertEncoder(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask_bias, deterministic, cls_only=False):
        return BertLayerCollection(self.config, self.dtype, name="layer")(
            x, mask_bias, deterministic, cls_only
        )


class BertPooler(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h):
        return jnp.tanh(_Dense(self.config.hidden_size, dtype=self.dtype, name="dense")(h[:, 0]))


class BertModel(nn.Module):
    """The BERT encoder (Hugging Face ``BertModel``).

    Attributes:
      config: a :class:`BertConfig`.
      dtype: compute dtype (``jnp.float32`` or ``jnp.bfloat16``); parameters stay float32.
      add_pooling_layer: whether to build the ``pooler`` (dense + tanh on the [CLS] vector).
    """

    config: BertConfig
    dtype: Any = jnp.float32
    add_pooling_layer: bool = True

    def setup(self):
        self.embeddings = BertEmbeddings(self.config, self.dtype)
        self.encoder = BertEncoder(self.config, self.dtype)
        if self.add_pooling_layer:
            self.pooler = BertPooler(self.config, self.dtype)

    def embed_tokens(self, input_ids: jax.Array) -> jax.Array:
        """The word-embedding output ``f32[B, T, H]`` (R3F adds its noise to this)."""
        return self.embeddings.embed_tokens(input_ids)

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        position_ids: jax.Array | None = None,
        *,
        inputs_embeds: jax.Array | None = None,
        deterministic: bool = True,
        cls_only: bool = False,
    ) -> BertOutput:
        """Encodes a batch.

        Args:
          input_ids: ``i32[B, T]`` token ids.
          attention_mask: ``i32[B, T]``, 1 for real tokens and 0 for padding (default all ones).
          token_type_ids: ``i32[B, T]`` segment ids (default zeros).
          position_ids: ``i32[B, T]`` (default ``0..T-1``).
          inputs_embeds: optional ``f32[B, T, H]`` replacing the word-embedding lookup; position
            and token-type embeddings and the LayerNorm are applied after it.
          deterministic: ``False`` enables dropout (needs a ``"dropout"`` RNG).
          cls_only: compute the last layer for the [CLS] position only, for callers that read
            nothing else (a classifier on [CLS] or the pooler): ``last_hidden_state`` is then
            ``f32[B, 1, H]``, equal to ``[:, :1]`` of the full output (the same dropout masks
            too), and the last layer's query projection, attention rows, output projection and
            feed-forward block run on one position instead of ``T`` (about a seventh of a
            6-layer model's FLOPs).

        Returns:
          A :class:`BertOutput`.
        """
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), jnp.int32)
        if token_type_ids is None:
            token_type_ids = jnp.zeros((b, t), jnp.int32)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        mask_bias = jnp.where(
            attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min
        ).astype(jnp.float32)  # f32[B, 1, 1, T]
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, deterministic)
        x = self.encoder(x, mask_bias, deterministic, cls_only)
        pooled = self.pooler(x) if self.add_pooling_layer else None
        to32 = lambda a: None if a is None else a.astype(jnp.float32)
        return BertOutput(to32(x), to32(pooled))


class TaskHeads(nn.Module):
    heads: tuple[TaskHead, ...]
    spectral_norm: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, head, update_stats):
        names = [h.name for h in self.heads]
        if head is not None and head not in names:
            raise ValueError(f"unknown head {head!r}; this model has heads {names}.")
        out = {}
        for h in self.heads:
            if head is not None and h.name != head:
                continue
            if self.spectral_norm:
                layer = SpectralDense(h.num_labels, dtype=self.dtype, name=h.name)
                out[h.name] = layer(features, update_stats=update_stats)
            else:
                layer = _Dense(h.num_labels, dtype=self.dtype, name=h.name)
                out[h.name] = layer(features).astype(jnp.float32)
        return out if head is None else out[head]


class BertClassifier(nn.Module):
    """BERT with one linear head per task on the last-layer [CLS] vector.

    This is the model of Kenneweg et al. (arXiv 2404.01317): the [CLS] vector of the last hidden
    layer feeds ``fc1`` (task 1) or ``fc2`` (task 2); the pooler is not used. ``use_pooler=True``
    gives the Hugging Face ``BertForSequenceClassification`` features (dense + tanh) instead.
    ``spectral_norm=True`` makes every head a :class:`SpectralDense` (R4F).

    Attributes:
      config: the encoder's :class:`BertConfig`.
      heads: the task heads, e.g. ``(TaskHead("task1", 2), TaskHead("task2", 2))``.
      use_pooler: features from the pooler instead of the raw [CLS] vector.
      spectral_norm: R4F spectral normalisation of the head projections.
      dtype: compute dtype.

    Call with ``head=None`` (used by ``init``) for a dict of every head's logits, or with a head
    name for that head's logits ``f32[B, num_labels]``.
    """

    config: BertConfig
    heads: tuple[TaskHead, ...]
    use_pooler: bool = False
    spectral_norm: bool = False
    dtype: Any = jnp.float32

    def setup(self):
        if not self.heads:
            raise ValueError("BertClassifier needs at least one TaskHead.")
        self.bert = BertModel(self.config, self.dtype, add_pooling_layer=self.use_pooler)
        self.task_heads = TaskHeads(self.heads, self.spectral_norm, self.dtype, name="heads")

    def embed_tokens(self, input_ids: jax.Array) -> jax.Array:
        return self.bert.embed_tokens(input_ids)

    def features(self, input_ids, attention_mask=None, token_type_ids=None, **kw) -> jax.Array:
        """The head input ``f32[B, H]``: last-layer [CLS] vector, or the pooler output.

        Both read position 0 only, so the encoder's last layer runs with ``cls_only=True``.
        """
        out = self.bert(input_ids, attention_mask, token_type_ids, cls_only=True, **kw)
        return out.pooler_output if self.use_pooler else out.last_hidden_state[:, 0]

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        *,
        head: str | None = None,
        inputs_embeds: jax.Array | None = None,
        deterministic: bool = True,
    ):
        feats = self.features(
            input_ids,
            attention_mask,
            token_type_ids,
            inputs_embeds=inputs_embeds,
            deterministic=deterministic,
        )
        return self.task_heads(feats, head, not deterministic)
