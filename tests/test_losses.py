"""Task loss against torch.nn.CrossEntropyLoss / MSELoss, including the double-softmax quirk."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from lrdist_jax.losses import task_loss


def _data(seed, b=6, c=3, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.normal(size=(b, c))).astype(np.float32)
    labels = rng.integers(0, c, size=(b,)).astype(np.int32)
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("c", [2, 3])
def test_cross_entropy_matches_torch(seed, c):
    logits, labels = _data(seed, c=c)
    want = torch.nn.CrossEntropyLoss()(torch.tensor(logits), torch.tensor(labels, dtype=torch.long))
    got = task_loss(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(float(got), want.item(), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_double_softmax_matches_torch_and_gradients(seed):
    logits, labels = _data(seed)
    t = torch.tensor(logits, requires_grad=True)
    want = torch.nn.CrossEntropyLoss()(torch.softmax(t, -1), torch.tensor(labels, dtype=torch.long))
    want.backward()
    f = lambda z: task_loss(z, jnp.asarray(labels), double_softmax=True)
    got, grad = jax.value_and_grad(f)(jnp.asarray(logits))
    np.testing.assert_allclose(float(got), want.item(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), t.grad.numpy(), rtol=1e-5, atol=1e-7)
    # The quirk is bounded: with probabilities in [0, 1] the loss is at most log(C - 1 + e).
    plain = float(task_loss(jnp.asarray(logits), jnp.asarray(labels)))
    assert abs(float(got) - plain) > 1e-3
    assert float(got) <= np.log(3 - 1 + np.e)


def test_regression_mse_matches_torch():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5, 1)).astype(np.float32)
    y = rng.normal(size=(5,)).astype(np.float32)
    want = torch.nn.MSELoss()(torch.tensor(logits).squeeze(-1), torch.tensor(y)).item()
    got = task_loss(jnp.asarray(logits), jnp.asarray(y), is_regression=True)
    np.testing.assert_allclose(float(got), want, rtol=1e-6)


def test_bf16_logits_computed_in_float32_and_errors():
    logits, labels = _data(4)
    got = task_loss(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(labels))
    assert got.dtype == jnp.float32
    with pytest.raises(ValueError, match="integer class ids"):
        task_loss(jnp.asarray(logits), jnp.asarray(labels, jnp.float32))
    with pytest.raises(ValueError, match=r"\[batch, num_labels\]"):
        task_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match="labels must have shape"):
        task_loss(jnp.zeros((2, 3)), jnp.zeros((3,), jnp.int32))
