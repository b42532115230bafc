"""Spectrally normalised dense layer: the R4F head projection.

References:
  Aghajanyan et al., "Better Fine-Tuning by Reducing Representational Collapse", ICLR 2021
  (arXiv 2008.03156), Section 3: R4F = R3F + spectral normalisation of the classification head.
  Miyato et al., "Spectral Normalization for Generative Adversarial Networks" (arXiv 1802.05957).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["SPECTRAL_COLLECTION", "SpectralDense"]

#: The variable collection holding the power-iteration vectors ``u`` and ``v``.
SPECTRAL_COLLECTION = "spectral"


def _normalize(x: jax.Array, eps: float) -> jax.Array:
    # torch.nn.functional.normalize: x / max(||x||, eps).
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


class SpectralDense(nn.Module):
    """``y = x @ (W / sigma(W)) + b`` with sigma estimated by power iteration.

    Matches ``torch.nn.utils.spectral_norm(nn.Linear(...))`` (``n_power_iterations=1``,
    ``eps=1e-12``, ``dim=0``): in training (``update_stats=True``) every call runs
    ``n_power_iterations`` steps ``v <- norm(W^T u)``, ``u <- norm(W v)`` (no gradient through
    ``u``, ``v``) and stores them; ``sigma = u^T W v`` is differentiated through ``W`` only. In
    evaluation the stored ``u``, ``v`` are used unchanged. Here ``W`` is the torch layout
    ``(out, in)``, i.e. ``kernel.T`` for the Flax kernel of shape ``(in, out)``.

    The vectors live in the ``"spectral"`` collection, which the train step threads through
    (``mutable=["spectral"]``).

    Attributes:
      features: output size.
      n_power_iterations: power-iteration steps per training call (torch default 1).
      eps: normalisation floor (torch default 1e-12).

    Shapes: ``x: f[..., in] -> f32[..., features]``; ``u: f32[features]``, ``v: f32[in]``.
    """

    features: int
    n_power_iterations: int = 1
    eps: float = 1e-12
    kernel_init: Any = nn.initializers.normal(0.02)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, update_stats: bool = False) -> jax.Array:
        in_features = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)

        def init_vec(n):
            key = self.make_rng("params")
            return _normalize(jax.random.normal(key, (n,), jnp.float32), self.eps)

        u = self.variable(SPECTRAL_COLLECTION, "u", init_vec, self.features)
        v = self.variable(SPECTRAL_COLLECTION, "v", init_vec, in_features)

        u_val, v_val = u.value, v.value
        if update_stats and not self.is_initializing():
            w = jax.lax.stop_gradient(kernel)
            for _ in range(self.n_power_iterations):
                v_val = _normalize(w @ u_val, self.eps)
                u_val = _normalize(v_val @ w, self.eps)
            u.value, v.value = u_val, v_val
        sigma = jnp.dot(u_val, v_val @ kernel)
        w_sn = (kernel / sigma).astype(self.dtype)
        y = jnp.dot(x.astype(self.dtype), w_sn) + bias.astype(self.dtype)
        return y.astype(jnp.float32)
