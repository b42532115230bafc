"""The dense layer's matmul, with a weight gradient XLA:CPU computes at YNNPACK speed.

For ``y = x @ w`` (``x: [..., I]``, ``w: [I, O]``) reverse-mode autodiff produces the weight
gradient ``dw = x^T @ g`` as one ``dot_general`` that contracts the token axis, axis 0 of both
``x`` and ``g`` flattened to ``[N, I]`` and ``[N, O]``. XLA:CPU (jaxlib 0.10) sends a dot whose
left operand is contracted on its leading axis to Eigen, after copying the other operand into a
transposed layout, and runs it asynchronously beside the YNNPACK dots of the input gradients,
so the two kinds of dot compete for the same cores.

:func:`dense_matmul` returns the same ``x @ w`` and the same input gradient, but on the CPU it
computes the weight gradient as ``x^T @ g`` with ``x^T: [I, N]`` materialised first (behind an
``optimization_barrier``, so XLA cannot fold the transpose back into the dot): a row-major
``[I, N] @ [N, O]`` product, which XLA:CPU gives to YNNPACK. On the MiniLM train step (batch
32, length 128) this made the whole step about 10% faster (``docs/performance.md``, fourth
round). Other platforms keep the plain ``dot_general``, whose transposes their matmul units
absorb.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from lrdist_jax.models.matmul import dense_matmul
    >>> x, w = jnp.ones((2, 3, 4)), jnp.ones((4, 5))
    >>> dense_matmul(x, w).shape
    (2, 3, 5)
"""

from __future__ import annotations

import jax
from jax import lax

__all__ = ["dense_matmul"]


def _matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


@jax.custom_vjp
def dense_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w`` contracting ``x``'s last axis: ``[..., I] x [I, O] -> [..., O]``.

    Same value and gradients as ``lax.dot_general`` (reverse mode only: a ``custom_vjp``
    function has no forward-mode derivative).
    """
    return _matmul(x, w)


def _fwd(x, w):
    return _matmul(x, w), (x, w)


def _weight_grad_cpu(x2: jax.Array, g2: jax.Array) -> jax.Array:
    return lax.optimization_barrier(x2.T) @ g2


def _weight_grad(x2: jax.Array, g2: jax.Array) -> jax.Array:
    return lax.dot_general(x2, g2, (((0,), (0,)), ((), ())))


def _bwd(res, g):
    x, w = res
    dx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))
    x2 = x.reshape(-1, x.shape[-1])
    g2 = g.reshape(-1, g.shape[-1])
    dw = lax.platform_dependent(x2, g2, cpu=_weight_grad_cpu, default=_weight_grad)
    return dx.astype(x.dtype), dw.astype(w.dtype)


dense_matmul.defvjp(_fwd, _bwd)
