"""EWC (arXiv 1612.00796): closed-form Fisher, penalty values, masking, gradient, cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrdist_jax.losses import (
    EWCState,
    ewc_penalty,
    fisher_diagonal,
    load_ewc_state,
    make_ewc_state,
    save_ewc_state,
)


def _linreg(n=12, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.normal(size=(n,)).astype(np.float32)
    params = {"w": rng.normal(size=(d,)).astype(np.float32), "b": np.float32(0.3)}
    return x, y, params


def _loss(p, batch):
    # Mean squared error of a linear model over the batch.
    return jnp.mean(jnp.square(batch["x"] @ p["w"] + p["b"] - batch["y"]))


@pytest.mark.parametrize("bs", [1, 2, 4])
def test_fisher_closed_form_linear_regression(bs):
    x, y, params = _linreg()
    batches = [{"x": x[i : i + bs], "y": y[i : i + bs]} for i in range(0, len(x), bs)]
    fisher = fisher_diagonal(_loss, jax.tree_util.tree_map(jnp.asarray, params), iter(batches))
    # grad of mean_i (w.x_i + b - y_i)^2 over a batch: (2/B) sum_i r_i x_i and (2/B) sum_i r_i.
    r = (x.astype(np.float64) @ params["w"] + params["b"] - y).reshape(-1, bs)
    xs = x.astype(np.float64).reshape(-1, bs, x.shape[1])
    gw = 2.0 / bs * np.einsum("ki,kij->kj", r, xs)
    gb = 2.0 / bs * r.sum(axis=1)
    np.testing.assert_allclose(np.asarray(fisher["w"]), np.mean(gw**2, axis=0), rtol=1e-5)
    np.testing.assert_allclose(float(fisher["b"]), np.mean(gb**2), rtol=1e-5)
    assert fisher["w"].dtype == jnp.float32
    if bs == 1:  # the classic per-example form F_j = 4 mean_i r_i^2 x_ij^2
        want = 4 * np.mean(r[:, 0, None] ** 2 * x.astype(np.float64) ** 2, axis=0)
        np.testing.assert_allclose(np.asarray(fisher["w"]), want, rtol=1e-5)


def test_fisher_empty_batches_raises():
    _, _, params = _linreg()
    with pytest.raises(ValueError, match="empty"):
        fisher_diagonal(_loss, params, [])


def _state():
    anchor = {"body": {"w": jnp.array([1.0, 2.0, 3.0])}, "head": {"k": jnp.array([[0.0, 1.0]])}}
    fisher = {"body": {"w": jnp.array([0.5, 0.0, 2.0])}, "head": {"k": jnp.array([[4.0, 1.0]])}}
    params = {"body": {"w": jnp.array([2.0, 5.0, 1.0])}, "head": {"k": jnp.array([[1.0, 3.0]])}}
    return params, make_ewc_state(params, fisher, anchor=anchor)


def test_penalty_known_values_and_mask():
    params, state = _state()
    # body: 0.5*1 + 0*9 + 2*4 = 8.5 ; head: 4*1 + 1*4 = 8  -> lam * 16.5 (no 1/2 factor)
    np.testing.assert_allclose(float(ewc_penalty(params, state, 1000.0)), 16500.0, rtol=1e-6)
    mask = {"body": {"w": True}, "head": {"k": False}}
    np.testing.assert_allclose(float(ewc_penalty(params, state, 2.0, mask=mask)), 17.0, rtol=1e-6)
    only_head = lambda p: {"body": {"w": False}, "head": {"k": True}}
    np.testing.assert_allclose(float(ewc_penalty(params, state, 2.0, mask=only_head)), 16.0)
    np.testing.assert_allclose(float(ewc_penalty(state.anchor, state, 5.0)), 0.0)
    with pytest.raises(ValueError, match="mask"):
        ewc_penalty(params, state, 1.0, mask={"body": {"w": True}})
    with pytest.raises(ValueError, match="Python bools"):
        ewc_penalty(params, state, 1.0, mask={"body": {"w": jnp.array(True)}, "head": {"k": 1}})


def test_penalty_gradient_and_jit():
    params, state = _state()
    lam = 3.0
    mask = {"body": {"w": True}, "head": {"k": False}}
    g = jax.jit(jax.grad(lambda p: ewc_penalty(p, state, lam, mask=mask)))(params)
    want = 2 * lam * state.fisher["body"]["w"] * (params["body"]["w"] - state.anchor["body"]["w"])
    np.testing.assert_allclose(np.asarray(g["body"]["w"]), np.asarray(want), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g["head"]["k"]), 0.0)
    g_all = jax.grad(lambda p: ewc_penalty(p, state, lam))(params)
    want_k = 2 * lam * state.fisher["head"]["k"] * (params["head"]["k"] - state.anchor["head"]["k"])
    np.testing.assert_allclose(np.asarray(g_all["head"]["k"]), np.asarray(want_k), rtol=1e-6)


def test_make_ewc_state_anchor_choices_and_errors():
    params, state = _state()
    standard = make_ewc_state(params, state.fisher)  # anchor = the given (task-1) params
    np.testing.assert_array_equal(np.asarray(standard.anchor["body"]["w"]), [2.0, 5.0, 1.0])
    assert standard.anchor["body"]["w"].dtype == jnp.float32
    bf = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params)
    assert make_ewc_state(bf, state.fisher).anchor["head"]["k"].dtype == jnp.float32
    with pytest.raises(ValueError, match="same structure"):
        make_ewc_state(params, {"body": state.fisher["body"]})
    with pytest.raises(ValueError, match="shapes differ"):
        make_ewc_state(params, {"body": {"w": jnp.ones(2)}, "head": {"k": jnp.ones((1, 2))}})


def test_cache_round_trip(tmp_path):
    params, state = _state()
    path = tmp_path / "ewc.npz"
    save_ewc_state(path, state)
    loaded = load_ewc_state(path)
    assert isinstance(loaded, EWCState)
    for a, b in zip(
        jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(loaded), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(state)
    np.testing.assert_allclose(
        float(ewc_penalty(params, loaded, 7.0)), float(ewc_penalty(params, state, 7.0))
    )
    # With a target, non-dict containers come back exactly.
    tree = {"layers": [jnp.ones(2), jnp.zeros((2, 2))], "s": jnp.float32(1.0)}
    st = make_ewc_state(tree, jax.tree_util.tree_map(lambda x: x + 2.0, tree))
    save_ewc_state(tmp_path / "list.npz", st)
    back = load_ewc_state(tmp_path / "list.npz", target=tree)
    assert jax.tree_util.tree_structure(back.fisher) == jax.tree_util.tree_structure(tree)
    np.testing.assert_array_equal(np.asarray(back.fisher["layers"][1]), 2.0)
    with pytest.raises(ValueError, match="missing"):
        load_ewc_state(tmp_path / "list.npz", target={**tree, "extra": jnp.ones(1)})
    with pytest.raises(ValueError, match="shape"):
        load_ewc_state(tmp_path / "list.npz", target={**tree, "s": jnp.ones(3)})
