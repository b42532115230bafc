"""Task losses: softmax cross-entropy (optionally the authors' "double softmax") and MSE.

References:
  Kenneweg et al., "Intelligent Learning Rate Distribution to reduce Catastrophic Forgetting in
  Transformers", IDEAL 2022 (arXiv 2404.01317). Their model applies softmax to the logits and feeds
  the result to ``torch.nn.CrossEntropyLoss`` (METHODS.md section 1.1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["task_loss"]


def task_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    is_regression: bool = False,
    double_softmax: bool = False,
) -> jax.Array:
    """Mean task loss over the batch, computed in float32.

    * classification: softmax cross-entropy with integer labels, equal to
      ``torch.nn.CrossEntropyLoss()(logits, labels)``;
    * ``double_softmax=True``: ``CE(log_softmax(softmax(logits)))``, the quirk of the Kenneweg et
      al. code (softmax output given to ``CrossEntropyLoss``). It is bounded and has smaller
      gradients; use it only to replay the authors' code;
    * ``is_regression=True``: mean squared error on ``logits[:, 0]`` (e.g. STS-B), equal to
      ``torch.nn.MSELoss()(logits.squeeze(-1), labels)``.

    Args:
      logits: ``f32[B, C]`` model outputs (``C = 1`` for regression).
      labels: ``i32[B]`` class ids, or ``f32[B]`` targets for regression.
      is_regression: MSE instead of cross-entropy.
      double_softmax: apply softmax before the cross-entropy (ignored for regression).

    Returns:
      ``f32[]`` mean loss.

    Examples:
      >>> import jax.numpy as jnp
      >>> from lrdist_jax.losses import task_loss
      >>> logits = jnp.array([[0.0, 0.0], [2.0, 0.0]])
      >>> round(float(task_loss(logits, jnp.array([0, 0]))), 4)  # (log 2 + log(1 + e^-2)) / 2
      0.41
      >>> round(float(task_loss(jnp.array([[1.5]]), jnp.array([1.0]), is_regression=True)), 4)
      0.25

    References:
      Kenneweg et al., arXiv 2404.01317 (double softmax, METHODS.md section 1.1).
    """
    logits = jnp.asarray(logits).astype(jnp.float32)
    labels = jnp.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(
            f"task_loss: logits must have shape [batch, num_labels], got {logits.shape}."
        )
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"task_loss: labels must have shape [batch] = {logits.shape[:1]}, got {labels.shape}."
        )
    if is_regression:
        return jnp.mean(jnp.square(logits[:, 0] - labels.astype(jnp.float32)))
    if jnp.issubdtype(labels.dtype, jnp.floating):
        raise ValueError(
            "task_loss: classification labels must be integer class ids, got dtype "
            f"{labels.dtype}; pass is_regression=True for real-valued targets."
        )
    if double_softmax:
        logits = jax.nn.softmax(logits, axis=-1)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, labels.astype(jnp.int32)[:, None], axis=-1)[:, 0]
    return jnp.mean(nll)
