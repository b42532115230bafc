"""R4F (arXiv 2008.03156): SpectralDense against torch.nn.utils.spectral_norm(nn.Linear)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from lrdist_jax.losses import r3f_loss
from lrdist_jax.models import SPECTRAL_COLLECTION, BertClassifier, BertConfig, TaskHead
from lrdist_jax.models.spectral import SpectralDense

IN, OUT = 6, 4


def _torch_layer(seed):
    torch.manual_seed(seed)
    return torch.nn.utils.spectral_norm(torch.nn.Linear(IN, OUT))


def _variables_from_torch(layer):
    return {
        "params": {
            "kernel": jnp.asarray(layer.weight_orig.detach().numpy().T),
            "bias": jnp.asarray(layer.bias.detach().numpy()),
        },
        SPECTRAL_COLLECTION: {
            "u": jnp.asarray(layer.weight_u.numpy().copy()),
            "v": jnp.asarray(layer.weight_v.numpy().copy()),
        },
    }


def _apply(variables, x, train):
    return SpectralDense(OUT).apply(variables, x, update_stats=train, mutable=[SPECTRAL_COLLECTION])


@pytest.mark.parametrize("seed", [0, 1])
def test_training_forward_grads_and_consecutive_steps_match_torch(seed):
    layer = _torch_layer(seed)
    layer.train()
    variables = _variables_from_torch(layer)
    rng = np.random.default_rng(seed)
    lr = 0.5

    def loss_fn(params, spectral, x, r):
        y, new = _apply({"params": params, SPECTRAL_COLLECTION: spectral}, x, True)
        return jnp.sum(y * r), (y, new[SPECTRAL_COLLECTION])

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    params, spectral = variables["params"], variables[SPECTRAL_COLLECTION]
    for _ in range(3):
        x = rng.normal(size=(5, IN)).astype(np.float32)
        r = rng.normal(size=(5, OUT)).astype(np.float32)
        u_before = np.asarray(spectral["u"])

        y_t = layer(torch.tensor(x))
        (y_t * torch.tensor(r)).sum().backward()
        (_, (y, spectral)), g = grad_fn(params, spectral, jnp.asarray(x), jnp.asarray(r))

        np.testing.assert_allclose(np.asarray(y), y_t.detach().numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(spectral["u"]), layer.weight_u.numpy(), atol=1e-5)
        np.testing.assert_allclose(np.asarray(spectral["v"]), layer.weight_v.numpy(), atol=1e-5)
        assert not np.allclose(np.asarray(spectral["u"]), u_before, atol=1e-6)
        np.testing.assert_allclose(
            np.asarray(g["kernel"]), layer.weight_orig.grad.numpy().T, rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(np.asarray(g["bias"]), layer.bias.grad.numpy(), atol=1e-5)

        # Same SGD step on both sides, so the next power iteration sees a new kernel.
        with torch.no_grad():
            for p in (layer.weight_orig, layer.bias):
                p -= lr * p.grad
                p.grad = None
        params = jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g)


def test_eval_forward_uses_stored_vectors_without_update():
    layer = _torch_layer(2)
    layer.train()
    layer(torch.randn(3, IN))  # one training call so u, v are not the initial draws
    variables = _variables_from_torch(layer)
    layer.eval()
    x = np.random.default_rng(3).normal(size=(5, IN)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=False)
    y_t = layer(xt)
    y_t.sum().backward()
    y, new = _apply(variables, jnp.asarray(x), False)
    np.testing.assert_allclose(np.asarray(y), y_t.detach().numpy(), rtol=1e-5, atol=1e-5)
    for k in ("u", "v"):
        np.testing.assert_array_equal(
            np.asarray(new[SPECTRAL_COLLECTION][k]), np.asarray(variables[SPECTRAL_COLLECTION][k])
        )
    np.testing.assert_allclose(layer.weight_u.numpy(), np.asarray(variables["spectral"]["u"]))

    def loss(params):
        out = SpectralDense(OUT).apply(
            {"params": params, SPECTRAL_COLLECTION: variables[SPECTRAL_COLLECTION]}, x
        )
        return out.sum()

    g = jax.grad(loss)(variables["params"])
    np.testing.assert_allclose(
        np.asarray(g["kernel"]), layer.weight_orig.grad.numpy().T, rtol=1e-4, atol=1e-5
    )


def _power_iteration(kernel, u, steps):
    w = np.asarray(kernel, np.float64).T  # torch layout (out, in)
    u = np.asarray(u, np.float64)
    for _ in range(steps):
        v = w.T @ u
        v /= np.linalg.norm(v)
        u = w @ v
        u /= np.linalg.norm(u)
    return u, v


def test_bert_classifier_spectral_norm_trains_with_mutable_collection():
    cfg = BertConfig.tiny(
        vocab_size=64, max_position_embeddings=16, num_hidden_layers=1, intermediate_size=32
    )
    model = BertClassifier(cfg, (TaskHead("task1", 3),), spectral_norm=True)
    ids = jnp.array([[2, 5, 7, 9], [3, 13, 17, 0]], jnp.int32)
    mask = (ids > 0).astype(jnp.int32)
    labels = jnp.array([1, 2])
    variables = jax.jit(model.init)(jax.random.key(0), ids, mask)
    assert set(variables) == {"params", SPECTRAL_COLLECTION}
    spectral0 = variables[SPECTRAL_COLLECTION]
    assert set(spectral0["heads"]["task1"]) == {"u", "v"}
    tx = optax.adam(1e-2)

    def loss_fn(params, spectral, rng):
        def logits_fn(e, dropout_rng, carry):
            logits, new = model.apply(
                {"params": params, SPECTRAL_COLLECTION: carry},
                ids,
                mask,
                head="task1",
                inputs_embeds=e,
                deterministic=False,
                rngs={"dropout": dropout_rng},
                mutable=[SPECTRAL_COLLECTION],
            )
            return logits, new[SPECTRAL_COLLECTION]

        embeds = model.apply({"params": params}, ids, method=BertClassifier.embed_tokens)
        return r3f_loss(logits_fn, embeds, labels, rng, carry=spectral)

    @jax.jit
    def step(params, spectral, opt_state, rng):
        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params, spectral, rng)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), aux["carry"], opt_state, loss

    params, spectral = variables["params"], spectral0
    opt_state = tx.init(params)
    u_first = None
    losses = []
    for i in range(8):
        kernel_before = params["heads"]["task1"]["kernel"]
        params, spectral, opt_state, loss = step(params, spectral, opt_state, jax.random.key(i))
        losses.append(float(loss))
        if i == 0:
            u_first = spectral["heads"]["task1"]["u"]
            # Two power iterations (clean + noised pass) on the kernel of that step.
            u_want, _ = _power_iteration(kernel_before, spectral0["heads"]["task1"]["u"], 2)
            np.testing.assert_allclose(np.asarray(u_first), u_want, atol=1e-5)
    assert losses[-1] < losses[0]
    assert not np.allclose(np.asarray(spectral["heads"]["task1"]["u"]), np.asarray(u_first))

    # Evaluation (deterministic=True) leaves the vectors alone even when the collection is mutable.
    _, new = model.apply(
        {"params": params, SPECTRAL_COLLECTION: spectral},
        ids,
        mask,
        head="task1",
        deterministic=True,
        mutable=[SPECTRAL_COLLECTION],
    )
    for k in ("u", "v"):
        np.testing.assert_array_equal(
            np.asarray(new[SPECTRAL_COLLECTION]["heads"]["task1"][k]),
            np.asarray(spectral["heads"]["task1"][k]),
        )
