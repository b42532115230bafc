"""dense_matmul: the same value and gradients as lax.dot_general, on either weight-gradient path;
and the exact GELU the BERT uses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from lrdist_jax.models import matmul
from lrdist_jax.models.bert import _gelu_exact
from lrdist_jax.models.matmul import dense_matmul


def _plain(x, w):
    return jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


@pytest.mark.parametrize("shape", [(7, 5), (3, 6, 5), (2, 3, 4, 5)])
def test_value_and_gradients_match_dot_general(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (shape[-1], 9))
    t = jax.random.normal(jax.random.key(2), (*shape[:-1], 9))

    def loss(f):
        return lambda x, w: jnp.sum(jnp.tanh(f(x, w)) * t)

    np.testing.assert_allclose(dense_matmul(x, w), _plain(x, w), rtol=1e-6, atol=1e-6)
    got = jax.jit(jax.grad(loss(dense_matmul), argnums=(0, 1)))(x, w)
    want = jax.jit(jax.grad(loss(_plain), argnums=(0, 1)))(x, w)
    for g, r in zip(got, want, strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_both_weight_gradient_paths_agree():
    x2 = jax.random.normal(jax.random.key(3), (64, 12))
    g2 = jax.random.normal(jax.random.key(4), (64, 10))
    want = np.asarray(x2).T @ np.asarray(g2)
    for path in (matmul._weight_grad_cpu, matmul._weight_grad):
        np.testing.assert_allclose(jax.jit(path)(x2, g2), want, rtol=1e-5, atol=1e-4)


def test_cpu_weight_gradient_is_a_row_major_product():
    """On the CPU the weight gradient's dot contracts its left operand's last axis (x^T is
    materialised behind a barrier), the form XLA:CPU runs through YNNPACK."""
    x = jnp.ones((4, 8, 6))
    w = jnp.ones((6, 3))
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(dense_matmul(x, w)), argnums=1))
    hlo = grad.lower(x, w).as_text()
    assert "optimization_barrier" in hlo
    assert jax.grad(lambda w: jnp.sum(dense_matmul(x, w)))(w).shape == w.shape


def test_bfloat16_gradients_keep_dtypes():
    x = jnp.ones((2, 3, 4), jnp.bfloat16)
    w = jnp.ones((4, 5), jnp.bfloat16)
    dx, dw = jax.grad(lambda x, w: jnp.sum(dense_matmul(x, w).astype(jnp.float32)), (0, 1))(x, w)
    assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(dw, np.float32), np.full((4, 5), 6.0))


def test_gelu_exact_matches_torch_and_jax():
    x = np.linspace(-12.0, 12.0, 20001, dtype=np.float32)
    got = np.asarray(jax.jit(_gelu_exact)(x))
    want = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_allclose(got, jax.nn.gelu(x, approximate=False), atol=2e-6)
    grad = jax.vmap(jax.grad(_gelu_exact))(x)
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.gelu(xt).sum().backward()
    np.testing.assert_allclose(grad, xt.grad.numpy(), atol=1e-5)
