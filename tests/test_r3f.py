"""R3F (arXiv 2008.03156): noise, symmetric KL, the two-pass loss and where the noise enters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lrdist_jax.losses import r3f_loss, sample_noise, symmetric_kl, task_loss
from lrdist_jax.models import BertClassifier, BertConfig, TaskHead

WORD = ("bert", "embeddings", "word_embeddings", "embedding")


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _set(tree, path, value):
    tree = jax.tree_util.tree_map(lambda x: x, tree)  # copy the dict structure
    node = tree
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return tree


# ---------------------------------------------------------------------------- noise and KL


def test_sample_noise_distributions():
    key = jax.random.key(0)
    u = sample_noise(key, (32, 32, 16), eps=1e-3, kind="uniform")
    assert u.dtype == jnp.float32 and u.shape == (32, 32, 16)
    assert float(jnp.max(jnp.abs(u))) <= 1e-3
    np.testing.assert_allclose(float(jnp.std(u)), 1e-3 / np.sqrt(3), rtol=0.03)
    n = sample_noise(key, (32, 32, 16), eps=1e-3, kind="normal")
    np.testing.assert_allclose(float(jnp.std(n)), 1e-3, rtol=0.03)
    assert abs(float(jnp.mean(n))) < 1e-4
    assert float(jnp.max(jnp.abs(n))) > 1e-3  # unbounded, unlike the uniform noise
    other = sample_noise(jax.random.key(1), (32, 32, 16), eps=1e-3)
    assert not np.allclose(np.asarray(u), np.asarray(other))
    with pytest.raises(ValueError, match="unknown noise kind"):
        sample_noise(key, (2,), kind="gaussian")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_symmetric_kl_matches_fairseq_torch(seed):
    rng = np.random.default_rng(seed)
    p = (2 * rng.normal(size=(5, 3))).astype(np.float32)
    q = (p + rng.normal(size=(5, 3))).astype(np.float32)
    tp, tq = torch.tensor(p), torch.tensor(q)
    # fairseq examples/rxf sentence_prediction_r3f: symmetric_kl_loss / batch size.
    want = (
        F.kl_div(F.log_softmax(tq, -1), F.softmax(tp, -1), reduction="sum")
        + F.kl_div(F.log_softmax(tp, -1), F.softmax(tq, -1), reduction="sum")
    ) / p.shape[0]
    got = symmetric_kl(jnp.asarray(p), jnp.asarray(q))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), want.item(), rtol=1e-5)
    np.testing.assert_allclose(float(symmetric_kl(q, p)), want.item(), rtol=1e-5)
    assert float(symmetric_kl(p, p)) == pytest.approx(0.0, abs=1e-7)


def test_symmetric_kl_gradient_flows_through_both_sides():
    rng = np.random.default_rng(5)
    p = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    q = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    gp, gq = jax.grad(symmetric_kl, argnums=(0, 1))(p, q)
    tp = torch.tensor(np.asarray(p), requires_grad=True)
    tq = torch.tensor(np.asarray(q), requires_grad=True)
    loss = (
        F.kl_div(F.log_softmax(tq, -1), F.softmax(tp, -1), reduction="sum")
        + F.kl_div(F.log_softmax(tp, -1), F.softmax(tq, -1), reduction="sum")
    ) / 4
    loss.backward()
    np.testing.assert_allclose(np.asarray(gp), tp.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gq), tq.grad.numpy(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------- toy logits_fn


def _toy(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}
    embeds = jnp.asarray(rng.normal(size=(2, 5, 4)), jnp.float32)
    labels = jnp.array([0, 2])

    def make_fn(p):
        def logits_fn(e, dropout_rng, carry):
            keep = jax.random.bernoulli(dropout_rng, 0.8, e.shape)
            h = jnp.where(keep, e / 0.8, 0.0).mean(axis=1)
            return jnp.tanh(h @ p["w"]) * 3, carry

        return logits_fn

    return params, embeds, labels, make_fn


def test_loss_is_ce_plus_lam_kl_and_lam_zero_is_plain_ce():
    params, embeds, labels, make_fn = _toy()
    key = jax.random.key(3)

    def r3f(p, lam):
        return r3f_loss(make_fn(p), embeds, labels, key, lam=lam, eps=0.1)

    vg = jax.jit(jax.value_and_grad(r3f, has_aux=True))
    (loss, aux), grads = vg(params, 0.7)
    want_kl = symmetric_kl(aux["logits"], aux["noised_logits"])
    np.testing.assert_allclose(float(aux["kl"]), float(want_kl), rtol=1e-6)
    np.testing.assert_allclose(float(aux["ce"]), float(task_loss(aux["logits"], labels)), rtol=1e-6)
    np.testing.assert_allclose(float(loss), float(aux["ce"] + 0.7 * aux["kl"]), rtol=1e-6)
    assert float(aux["kl"]) > 1e-4

    # lam = 0: value and gradients of the plain CE on the clean pass (same dropout key).
    (loss0, aux0), g0 = vg(params, 0.0)
    clean_key = jax.random.split(key, 3)[0]

    def plain(p):
        return task_loss(make_fn(p)(embeds, clean_key, None)[0], labels)

    lp, gp = jax.jit(jax.value_and_grad(plain))(params)
    np.testing.assert_allclose(float(loss0), float(lp), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g0["w"]), np.asarray(gp["w"]), rtol=1e-6, atol=1e-8)
    # ... while lam > 0 changes the gradient.
    assert not np.allclose(np.asarray(grads["w"]), np.asarray(gp["w"]), atol=1e-6)


def test_carry_threaded_through_clean_then_noised_pass():
    _, embeds, labels, _ = _toy()
    seen = []

    def logits_fn(e, dropout_rng, carry):
        seen.append((carry, e, dropout_rng))
        return e.mean(axis=1)[:, :3], carry + [len(carry)]

    loss, aux = r3f_loss(logits_fn, embeds, labels, jax.random.key(0), eps=1e-3, carry=[])
    assert aux["carry"] == [0, 1]
    assert [c for c, _, _ in seen] == [[], [0]]
    (_, clean, k1), (_, noised, k2) = seen
    assert clean is embeds
    diff = np.asarray(noised - embeds)
    assert noised.dtype == jnp.float32
    assert 0 < np.abs(diff).max() <= 1e-3
    # Independent dropout keys for the two passes.
    assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))

    seen.clear()
    _, aux = r3f_loss(
        logits_fn,
        embeds,
        labels.astype(jnp.float32),
        jax.random.key(0),
        carry=[],
        is_regression=True,
    )
    assert aux["carry"] == [0] and len(seen) == 1 and float(aux["kl"]) == 0.0
    assert "noised_logits" not in aux


def test_noise_added_in_float32_to_bf16_embeddings():
    _, embeds, labels, _ = _toy()
    got = {}

    def logits_fn(e, dropout_rng, carry):
        got.setdefault("inputs", []).append(e)
        return e.astype(jnp.float32).mean(axis=1)[:, :3], carry

    e16 = embeds.astype(jnp.bfloat16) * 10
    r3f_loss(logits_fn, e16, labels, jax.random.key(0), eps=1e-5)
    clean, noised = got["inputs"]
    assert clean.dtype == jnp.bfloat16 and noised.dtype == jnp.float32
    diff = np.asarray(noised) - np.asarray(clean.astype(jnp.float32))
    # In bf16 the 1e-5 noise would round away entirely on entries of size ~10.
    assert np.count_nonzero(diff) > 0.9 * diff.size and np.abs(diff).max() <= 1e-5


def test_jit_and_bad_noise():
    params, embeds, labels, make_fn = _toy()
    f = jax.jit(lambda p, k: r3f_loss(make_fn(p), embeds, labels, k, noise="normal")[0])
    eager = r3f_loss(make_fn(params), embeds, labels, jax.random.key(1), noise="normal")[0]
    np.testing.assert_allclose(float(f(params, jax.random.key(1))), float(eager), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown noise"):
        r3f_loss(make_fn(params), embeds, labels, jax.random.key(1), noise="gauss")


# ---------------------------------------------------------------------------- tiny BERT


@pytest.fixture(scope="module")
def bert():
    cfg = BertConfig.tiny(
        vocab_size=64, max_position_embeddings=16, num_hidden_layers=1, intermediate_size=32
    )
    model = BertClassifier(cfg, (TaskHead("task1", 3),))
    ids = jnp.array([[2, 5, 7, 9, 11, 0], [3, 13, 17, 19, 0, 0]], jnp.int32)
    mask = (ids > 0).astype(jnp.int32)
    types = jnp.array([[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 0]], jnp.int32)
    params = jax.jit(model.init)(jax.random.key(0), ids, mask, types)["params"]
    labels = jnp.array([1, 2])
    return model, params, ids, mask, types, labels


def _bert_fns(model, ids, mask, types, deterministic):
    def make_logits_fn(params):
        def logits_fn(e, dropout_rng, carry):
            logits = model.apply(
                {"params": params},
                ids,
                mask,
                types,
                head="task1",
                inputs_embeds=e,
                deterministic=deterministic,
                rngs={"dropout": dropout_rng},
            )
            return logits, carry

        return logits_fn

    def embed(params):
        return model.apply({"params": params}, ids, method=BertClassifier.embed_tokens)

    return make_logits_fn, embed


def test_noised_branch_gives_no_gradient_to_word_embeddings(bert):
    model, params, ids, mask, types, labels = bert
    make_logits_fn, embed = _bert_fns(model, ids, mask, types, deterministic=True)
    key = jax.random.key(7)

    def loss_fn(p):
        return r3f_loss(make_logits_fn(p), embed(p), labels, key, eps=0.05)

    (_, aux), g = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    noised_const = jax.lax.stop_gradient(aux["noised_logits"])
    assert float(aux["kl"]) > 1e-6

    def clean_only(p):
        # The same objective with the noised logits frozen: only the clean branch differentiates.
        logits = make_logits_fn(p)(embed(p), key, None)[0]
        return task_loss(logits, labels) + symmetric_kl(logits, noised_const)

    g_ref = jax.jit(jax.grad(clean_only))(params)
    np.testing.assert_allclose(
        np.asarray(_get(g, WORD)), np.asarray(_get(g_ref, WORD)), rtol=1e-5, atol=1e-9
    )
    # The KL's clean side does reach the table (so the comparison above is not vacuous) ...
    g_ce = jax.jit(
        jax.grad(lambda p: task_loss(make_logits_fn(p)(embed(p), key, None)[0], labels))
    )(params)
    assert not np.allclose(np.asarray(_get(g_ref, WORD)), np.asarray(_get(g_ce, WORD)), atol=1e-9)
    # ... and every later parameter does get gradient through the noised branch.
    for path in [("heads", "task1", "kernel"), ("bert", "embeddings", "LayerNorm", "scale")]:
        assert not np.allclose(np.asarray(_get(g, path)), np.asarray(_get(g_ref, path)), atol=1e-9)


def test_noise_enters_before_position_embeddings_and_layernorm(bert):
    model, params, ids, mask, types, labels = bert
    make_logits_fn, embed = _bert_fns(model, ids, mask, types, deterministic=True)
    # Tokens in the batch are all distinct, so a per-position noise is a per-row table change.
    flat = np.asarray(ids).ravel()
    pos = [i for i, t in enumerate(flat) if t != 0]
    assert len(set(flat[pos])) == len(pos)
    z = np.zeros((*ids.shape, 32), np.float32)
    z.reshape(-1, 32)[pos] = np.random.default_rng(0).normal(size=(len(pos), 32)) * 0.5
    via_inputs = make_logits_fn(params)(embed(params) + z, jax.random.key(0), None)[0]
    table = np.array(_get(params, WORD))
    table[flat[pos]] += z.reshape(-1, 32)[pos]
    perturbed = _set(params, WORD, jnp.asarray(table))
    via_table = model.apply({"params": perturbed}, ids, mask, types, head="task1")
    np.testing.assert_allclose(np.asarray(via_inputs), np.asarray(via_table), rtol=1e-5, atol=1e-6)
    clean = model.apply({"params": params}, ids, mask, types, head="task1")
    assert not np.allclose(np.asarray(clean), np.asarray(via_table), atol=1e-4)


def test_two_passes_use_different_dropout_masks(bert):
    model, params, ids, mask, types, labels = bert
    for deterministic in (True, False):
        make_logits_fn, embed = _bert_fns(model, ids, mask, types, deterministic)

        # eps = 0: the two passes differ only through dropout.
        def aux_fn(p, k, make_logits_fn=make_logits_fn, embed=embed):
            return r3f_loss(make_logits_fn(p), embed(p), labels, k, eps=0.0)[1]

        f = jax.jit(aux_fn)
        aux = f(params, jax.random.key(2))
        same = np.allclose(np.asarray(aux["logits"]), np.asarray(aux["noised_logits"]), atol=1e-6)
        assert same == deterministic
        assert (float(aux["kl"]) > 1e-8) == (not deterministic)
