"""Per-phase learning-rate schedules whose parameters are data (METHODS.md §1.3).

The schedule factor is a function of the step ``count`` within the current training phase
and of the phase lengths ``total_steps`` (``T``) and ``warmup_steps`` (``W``), all passed as
arrays. Kept in an optimiser state, a new phase with other lengths reuses the compiled train
step; only the schedule *kind* is static.

Kinds:

- ``"cosine_warmup"``: the authors' ``CosineWarmupScheduler``, a product (not a switch) of a
  half cosine and a linear warmup: ``0.5 * (1 + cos(pi * t / T))``, multiplied by ``t / W``
  while ``t <= W``. It is 0 at ``t = 0`` (the first update of a phase does not move the
  weights, as in the authors' code) and reaches 0 at ``T``. ``W = 0`` means no warmup.
- ``"linear"``: warmup ``t / W`` for ``t < W`` (none when ``W = 0``), then linear decay from 1
  at ``W`` to 0 at ``T`` (Hugging Face ``get_linear_schedule_with_warmup``, fairseq
  ``polynomial_decay`` with power 1 and end lr 0).
- ``"constant"``: 1.

``t`` is clipped to ``T``, so steps past the end of a phase use the factor at ``T`` (0 for the
decaying kinds) instead of the cosine rising again.

References:
  Kenneweg et al., "Intelligent Learning Rate Distribution to reduce Catastrophic Forgetting in
  Transformers", arXiv 2404.01317 (code: ``embedder.py``, ``CosineWarmupScheduler``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["SCHEDULE_KINDS", "phase_lengths", "schedule_factor"]

SCHEDULE_KINDS = ("cosine_warmup", "linear", "constant")


def phase_lengths(num_examples: int, epochs: int, batch_size: int) -> tuple[int, int]:
    """Phase lengths ``(T, W)`` of the authors' schedule for one ``fit`` call.

    ``T = ceil(N * epochs / bs)`` and ``W = ceil(N * epochs * 0.1 / bs)`` (10% warmup),
    evaluated in the same floating-point order as the authors' code.

    Args:
      num_examples: training-set size ``N`` of the phase.
      epochs: epochs in the phase.
      batch_size: batch size ``bs``.

    Returns:
      ``(total_steps, warmup_steps)``.

    Examples:
      >>> phase_lengths(3668, 5, 4)
      (4585, 459)
    """
    for name, v in (("num_examples", num_examples), ("epochs", epochs), ("batch_size", batch_size)):
        if v <= 0:
            raise ValueError(f"{name} must be positive, got {v}")
    total = math.ceil(num_examples * epochs / batch_size)
    warmup = math.ceil(num_examples * epochs * 0.1 / batch_size)
    return total, warmup


def schedule_factor(
    kind: str, count: ArrayLike, total_steps: ArrayLike, warmup_steps: ArrayLike
) -> jax.Array:
    """The learning-rate multiplier at step ``count`` of a phase.

    Args:
      kind: ``"cosine_warmup"``, ``"linear"`` or ``"constant"`` (static).
      count: i32[] or f32[] step within the phase, starting at 0.
      total_steps: phase length ``T`` (> 0).
      warmup_steps: warmup length ``W`` (>= 0).

    Returns:
      f32[] factor.

    Examples:
      >>> float(schedule_factor("cosine_warmup", 0, 100, 10))
      0.0
      >>> round(float(schedule_factor("cosine_warmup", 5, 100, 10)), 5)  # 0.5*(1+cos(pi/20))/2
      0.49692
      >>> float(schedule_factor("linear", 25, 100, 0))
      0.75
    """
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {', '.join(SCHEDULE_KINDS)}")
    if kind == "constant":
        return jnp.ones((), jnp.float32)
    t_total = jnp.maximum(jnp.asarray(total_steps, jnp.float32), 1.0)
    w = jnp.asarray(warmup_steps, jnp.float32)
    t = jnp.minimum(jnp.asarray(count, jnp.float32), t_total)
    has_warmup = w > 0
    safe_w = jnp.where(has_warmup, w, 1.0)
    if kind == "cosine_warmup":
        cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * t / t_total))
        warm = jnp.where(has_warmup & (t <= w), t / safe_w, 1.0)
        return (cosine * warm).astype(jnp.float32)
    # linear
    decay_len = jnp.maximum(t_total - jnp.where(has_warmup, w, 0.0), 1.0)
    decay = jnp.clip((t_total - t) / decay_len, 0.0, 1.0)
    warm = jnp.where(has_warmup & (t < w), t / safe_w, 1.0)
    return jnp.where(has_warmup & (t < w), warm, decay).astype(jnp.float32)
