"""R3F: a symmetric-KL penalty between clean and noise-perturbed predictions.

With ``f`` the model from the word-embedding output on, ``x`` the word embeddings and ``z`` a small
noise, R3F minimises ``CE(f(x), y) + lam * KL_S(f(x) || f(x + z))`` where
``KL_S(P || Q) = KL(P || Q) + KL(Q || P)`` (fairseq ``sentence_prediction_r3f``). R4F adds spectral
normalisation of the classification head (:class:`lrdist_jax.models.SpectralDense`); its
power-iteration vectors are the ``carry`` threaded through both passes here.

References:
  Aghajanyan, Shrivastava, Gupta, Goyal, Zettlemoyer, Gupta, "Better Fine-Tuning by Reducing
  Representational Collapse", ICLR 2021 (arXiv 2008.03156, https://arxiv.org/abs/2008.03156).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from lrdist_jax.losses._classification import task_loss

__all__ = ["NOISE_KINDS", "r3f_loss", "sample_noise", "symmetric_kl"]

#: Noise distributions of fairseq's ``--noise-type``.
NOISE_KINDS = ("uniform", "normal")

LogitsFn = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, Any]]


def sample_noise(
    rng: jax.Array, shape: Sequence[int], *, eps: float = 1e-5, kind: str = "uniform"
) -> jax.Array:
    """Draws the R3F embedding noise in float32.

    Args:
      rng: a PRNG key (use a fresh one every step).
      shape: the noise shape, e.g. ``(B, T, H)`` for the word-embedding output.
      eps: the scale: ``U(-eps, eps)`` for ``"uniform"``, standard deviation for ``"normal"``.
      kind: ``"uniform"`` (fairseq ``sentence_prediction_r3f`` default) or ``"normal"``
        (``N(0, eps^2)``, the ``label_smoothed_cross_entropy_r3f`` default).

    Returns:
      ``f32[*shape]`` noise.

    Examples:
      >>> import jax
      >>> from lrdist_jax.losses import sample_noise
      >>> z = sample_noise(jax.random.key(0), (2, 3, 4), eps=1e-5)
      >>> z.shape, str(z.dtype), bool(abs(z).max() <= 1e-5)
      ((2, 3, 4), 'float32', True)

    References:
      Aghajanyan et al., arXiv 2008.03156, section 3 (noise distributions).
    """
    if kind == "uniform":
        return jax.random.uniform(rng, tuple(shape), jnp.float32, minval=-eps, maxval=eps)
    if kind == "normal":
        return eps * jax.random.normal(rng, tuple(shape), jnp.float32)
    raise ValueError(f"sample_noise: unknown noise kind {kind!r}; use one of {NOISE_KINDS}.")


def symmetric_kl(p_logits: ArrayLike, q_logits: ArrayLike) -> jax.Array:
    """Mean over the batch of ``KL(P || Q) + KL(Q || P)``, in float32.

    ``P = softmax(p_logits)`` and ``Q = softmax(q_logits)`` over the last axis. This equals
    fairseq's ``(F.kl_div(log_softmax(q), softmax(p), reduction="sum") + F.kl_div(log_softmax(p),
    softmax(q), reduction="sum")) / batch_size``. Gradients flow through both arguments.

    Args:
      p_logits: ``f[B, C]`` (clean) logits; any leading shape, the mean is over all but the last
        axis.
      q_logits: ``f[B, C]`` (noised) logits, same shape.

    Returns:
      ``f32[]`` the mean symmetric KL per example.

    Examples:
      >>> import jax.numpy as jnp
      >>> from lrdist_jax.losses import symmetric_kl
      >>> float(symmetric_kl(jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 2.0]])))
      0.0
      >>> p, q = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, jnp.log(3.0)]])  # (1/2, 1/2), (1/4, 3/4)
      >>> round(float(symmetric_kl(p, q)), 4)  # log(3) / 4
      0.2747

    References:
      Aghajanyan et al., arXiv 2008.03156, equation of R3F (``KL_S``).
    """
    p_logits = jnp.asarray(p_logits)
    q_logits = jnp.asarray(q_logits)
    if p_logits.shape != q_logits.shape:
        raise ValueError(
            f"symmetric_kl: logits shapes differ: {p_logits.shape} vs {q_logits.shape}."
        )
    logp = jax.nn.log_softmax(p_logits.astype(jnp.float32), axis=-1)
    logq = jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1)
    # KL(P||Q) + KL(Q||P) = sum_c (P_c - Q_c)(log P_c - log Q_c).
    per_example = jnp.sum((jnp.exp(logp) - jnp.exp(logq)) * (logp - logq), axis=-1)
    return jnp.mean(per_example)


def r3f_loss(
    logits_fn: LogitsFn,
    embeds: jax.Array,
    labels: jax.Array,
    rng: jax.Array,
    *,
    lam: float | jax.Array = 1.0,
    eps: float = 1e-5,
    noise: str = "uniform",
    is_regression: bool = False,
    double_softmax: bool = False,
    carry: Any = None,
) -> tuple[jax.Array, dict[str, Any]]:
    """The R3F objective ``mean CE + lam * mean KL_S(clean || noised)``.

    Two forward passes in training mode:

    1. clean: ``logits_fn(embeds, rng_clean, carry)``;
    2. noised: ``logits_fn(stop_gradient(embeds) + z, rng_noised, carry)`` with ``z`` from
       :func:`sample_noise`, added in float32 (a 1e-5 noise would round away in bf16/fp16). The
       ``stop_gradient`` (fairseq's ``.detach()``) means the embedding table gets no gradient
       through this branch; every later parameter does.

    The two passes get independent dropout keys. ``carry`` (e.g. the R4F ``"spectral"``
    collection) is threaded through the clean then the noised pass, so R4F runs two power
    iterations per step as in fairseq. The KL has gradient through both sides (no stop-gradient on
    the clean logits). For regression (``is_regression=True``) there is no KL term and no noised
    pass (fairseq adds no KL for regression targets). The KL is on ``softmax(logits)`` even when
    ``double_softmax=True`` (that switch only changes the task loss).

    ``embeds`` is the word-embedding lookup output ``f32[B, T, H]``; the model adds position and
    token-type embeddings and the embedding LayerNorm after it, so the noise lands before them as in
    fairseq's ``forward_embedding``. For :class:`lrdist_jax.models.BertClassifier`::

        def logits_fn(e, dropout_rng, spectral):
            logits, new = model.apply(
                {"params": params, "spectral": spectral}, ids, mask, types, head="task1",
                inputs_embeds=e, deterministic=False, rngs={"dropout": dropout_rng},
                mutable=["spectral"])
            return logits, new["spectral"]

        embeds = model.apply({"params": params}, ids, method=BertClassifier.embed_tokens)

    Args:
      logits_fn: ``(inputs_embeds f32[B, T, H], dropout_rng, carry) -> (logits f32[B, C], carry)``.
      embeds: ``f[B, T, H]`` word-embedding output (with gradient to the embedding table).
      labels: ``i32[B]`` class ids (``f32[B]`` targets for regression).
      rng: PRNG key; split into the clean dropout, noised dropout and noise keys.
      lam: weight of the symmetric KL (fairseq ``--r3f-lambda``, default 1.0).
      eps: noise scale (fairseq ``--eps``, default 1e-5).
      noise: ``"uniform"`` (default of ``sentence_prediction_r3f``) or ``"normal"``.
      is_regression: MSE on ``logits[:, 0]``, no KL term, no noised pass.
      double_softmax: the Kenneweg et al. task-loss quirk (see :func:`task_loss`).
      carry: state passed through ``logits_fn`` (``None`` if unused).

    Returns:
      ``(loss f32[], aux)`` with ``aux = {"ce": f32[], "kl": f32[], "logits": f32[B, C],
      "noised_logits": f32[B, C] (absent for regression), "carry": the final carry}``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lrdist_jax.losses import r3f_loss
      >>> w = jnp.ones((4, 3)) * 0.1
      >>> def logits_fn(e, dropout_rng, carry):
      ...     return e.mean(axis=1) @ w, carry + 1  # count the forward passes
      >>> embeds = jnp.ones((2, 5, 4))
      >>> loss, aux = r3f_loss(logits_fn, embeds, jnp.array([0, 2]), jax.random.key(0), carry=0)
      >>> aux["carry"], bool(jnp.isclose(loss, aux["ce"] + aux["kl"]))
      (2, True)

    References:
      Aghajanyan et al., "Better Fine-Tuning by Reducing Representational Collapse",
      ICLR 2021, https://arxiv.org/abs/2008.03156 (fairseq ``examples/rxf``).
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"r3f_loss: unknown noise {noise!r}; use one of {NOISE_KINDS}.")
    rng_clean, rng_noised, rng_noise = jax.random.split(rng, 3)
    logits, carry = logits_fn(embeds, rng_clean, carry)
    ce = task_loss(logits, labels, is_regression=is_regression, double_softmax=double_softmax)
    if is_regression:
        aux = {"ce": ce, "kl": jnp.zeros((), jnp.float32), "logits": logits, "carry": carry}
        return ce, aux
    z = sample_noise(rng_noise, embeds.shape, eps=eps, kind=noise)
    noised_embeds = jax.lax.stop_gradient(embeds).astype(jnp.float32) + z
    noised_logits, carry = logits_fn(noised_embeds, rng_noised, carry)
    kl = symmetric_kl(logits, noised_logits)
    loss = ce + jnp.asarray(lam, jnp.float32) * kl
    aux = {"ce": ce, "kl": kl, "logits": logits, "noised_logits": noised_logits, "carry": carry}
    return loss, aux
