"""Component-wise gradient norm clipping (arXiv 2210.10325) against a NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrdist_jax.transforms._clipping import (
    ClipByComponentNormState,
    clip_by_component_norm,
    component_norms,
)


def _random_tree(seed, scales=(0.1, 1.0, 10.0, 0.01)):
    rng = np.random.default_rng(seed)
    return {
        "dense": {
            "kernel": (scales[0] * rng.normal(size=(4, 3))).astype(np.float32),
            "bias": (scales[1] * rng.normal(size=(3,))).astype(np.float32),
        },
        "emb": {"embedding": (scales[2] * rng.normal(size=(5, 2))).astype(np.float32)},
        "ln": [(scales[3] * rng.normal(size=(2,))).astype(np.float32)],
    }


def _np_clip(tree, c, groups, eps):
    """Reference: torch.nn.utils.clip_grad_norm_ applied to each group of leaves (NumPy)."""
    flat = {
        "dense/kernel": tree["dense"]["kernel"],
        "dense/bias": tree["dense"]["bias"],
        "emb/embedding": tree["emb"]["embedding"],
        "ln/0": tree["ln"][0],
    }
    out, clipped_elems, n_clipped = {}, 0, 0
    for members in groups.values():
        norm = np.sqrt(sum(np.sum(flat[m].astype(np.float64) ** 2) for m in members))
        coef = min(1.0, c / (norm + eps))
        if c < norm + eps:
            n_clipped += 1
            clipped_elems += sum(flat[m].size for m in members)
        for m in members:
            out[m] = flat[m] * coef
    total = sum(v.size for v in flat.values())
    return out, clipped_elems / total, n_clipped


def _flat(tree):
    return {
        "dense/kernel": tree["dense"]["kernel"],
        "dense/bias": tree["dense"]["bias"],
        "emb/embedding": tree["emb"]["embedding"],
        "ln/0": tree["ln"][0],
    }


PER_LEAF = {k: [k] for k in ["dense/kernel", "dense/bias", "emb/embedding", "ln/0"]}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("c", [0.05, 0.5, 3.0])
def test_per_leaf_matches_numpy(seed, c):
    grads = _random_tree(seed)
    tx = clip_by_component_norm(c)
    state = tx.init(grads)
    out, state = tx.update(jax.tree_util.tree_map(jnp.asarray, grads), state)
    ref, rate, n = _np_clip(grads, c, PER_LEAF, 1e-6)
    for k, v in _flat(out).items():
        np.testing.assert_allclose(np.asarray(v), ref[k], rtol=1e-5, atol=1e-7)
    assert isinstance(state, ClipByComponentNormState)
    np.testing.assert_allclose(float(state.clip_rate), rate, rtol=1e-6)
    assert int(state.num_clipped) == n


def test_clip_rate_counts_elements_not_components():
    grads = {"big": jnp.full((10,), 10.0), "small": jnp.full((2,), 1e-3)}
    _, state = clip_by_component_norm(1.0).update(grads, None)
    assert int(state.num_clipped) == 1
    np.testing.assert_allclose(float(state.clip_rate), 10 / 12, rtol=1e-6)


def test_label_groups_match_numpy():
    grads = _random_tree(3)
    labels = {
        "dense": {"kernel": "a", "bias": "b"},
        "emb": {"embedding": "a"},
        "ln": ["b"],
    }
    groups = {"a": ["dense/kernel", "emb/embedding"], "b": ["dense/bias", "ln/0"]}
    c = 1.0
    out, state = clip_by_component_norm(c, labels=labels).update(grads, None)
    ref, rate, n = _np_clip(grads, c, groups, 1e-6)
    for k, v in _flat(out).items():
        np.testing.assert_allclose(np.asarray(v), ref[k], rtol=1e-5, atol=1e-7)
    assert int(state.num_clipped) == n
    np.testing.assert_allclose(float(state.clip_rate), rate, rtol=1e-6)
    # A callable producing the same labels gives the same result (params or updates as input).
    fn = lambda tree: labels
    out2, _ = clip_by_component_norm(c, labels=fn).update(grads, None)
    out3, _ = clip_by_component_norm(c, labels=fn).update(grads, None, params=grads)
    for o in (out2, out3):
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b)), o, out
        )


def test_component_norms_names_and_values():
    grads = _random_tree(4)
    norms = component_norms(grads)
    assert set(norms) == set(PER_LEAF)
    for k, v in _flat(grads).items():
        np.testing.assert_allclose(float(norms[k]), np.linalg.norm(v), rtol=1e-5)
    grouped = component_norms(
        grads, {"dense": {"kernel": 0, "bias": 0}, "emb": {"embedding": 1}, "ln": [1]}
    )
    assert set(grouped) == {0, 1}
    f = _flat(grads)
    want0 = np.sqrt(np.sum(f["dense/kernel"] ** 2) + np.sum(f["dense/bias"] ** 2))
    np.testing.assert_allclose(float(grouped[0]), want0, rtol=1e-5)


def test_differs_from_global_norm_on_multi_leaf_tree():
    # Global norm is ~10, so global clipping shrinks the small leaf too; per-leaf clipping
    # leaves the small leaf untouched.
    grads = {"big": jnp.full((4,), 5.0), "small": jnp.full((4,), 0.1)}
    ours, _ = clip_by_component_norm(1.0, eps=0.0).update(grads, None)
    glob, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    np.testing.assert_allclose(np.asarray(ours["small"]), 0.1, rtol=1e-6)
    assert float(jnp.max(jnp.abs(glob["small"] - ours["small"]))) > 0.05
    np.testing.assert_allclose(float(jnp.linalg.norm(ours["big"])), 1.0, rtol=1e-6)


@pytest.mark.parametrize("c", [0.1, 1.0, 100.0])
def test_coincides_with_global_norm_on_single_leaf(c):
    g = {"w": jnp.asarray(np.random.default_rng(5).normal(size=(7, 3)), jnp.float32)}
    ours, _ = clip_by_component_norm(c, eps=0.0).update(g, None)
    glob, _ = optax.clip_by_global_norm(c).update(g, optax.EmptyState())
    np.testing.assert_allclose(np.asarray(ours["w"]), np.asarray(glob["w"]), rtol=1e-6)
    # A single label covering every leaf is global clipping as well.
    tree = _random_tree(6)
    one = jax.tree_util.tree_map(lambda _: "all", tree)
    ours, _ = clip_by_component_norm(c, labels=one, eps=0.0).update(tree, None)
    glob, _ = optax.clip_by_global_norm(c).update(tree, optax.EmptyState())
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5),
        ours,
        glob,
    )


def test_jit_and_chain_before_adam():
    grads = jax.tree_util.tree_map(jnp.asarray, _random_tree(7))
    tx = optax.chain(clip_by_component_norm(0.05), optax.adam(1e-3))
    state = tx.init(grads)
    eager, _ = tx.update(grads, state, grads)
    jitted, new_state = jax.jit(tx.update)(grads, state, grads)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6),
        eager,
        jitted,
    )
    _, rate, n = _np_clip(_random_tree(7), 0.05, PER_LEAF, 1e-6)
    assert 0 < n < 4
    assert int(new_state[0].num_clipped) == n
    np.testing.assert_allclose(float(new_state[0].clip_rate), rate, rtol=1e-6)
    # Threshold as a traced array: no recompilation needed to change it.
    f = jax.jit(lambda c, g: clip_by_component_norm(c).update(g, None)[0])
    a = f(jnp.float32(0.05), grads)
    b, _ = clip_by_component_norm(0.05).update(grads, None)
    np.testing.assert_allclose(np.asarray(a["dense"]["bias"]), np.asarray(b["dense"]["bias"]))


@pytest.mark.parametrize("c", [0.01, 0.05, 0.1, 0.5, 1, 5, 1e5])
def test_paper_thresholds(c):
    grads = jax.tree_util.tree_map(jnp.asarray, _random_tree(8))
    out, state = jax.jit(clip_by_component_norm(c).update)(grads, None)
    for k, v in component_norms(out).items():
        assert float(v) <= c * (1 + 1e-5), k
    if c == 1e5:
        assert int(state.num_clipped) == 0 and float(state.clip_rate) == 0.0
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6),
            out,
            grads,
        )
    assert 0.0 <= float(state.clip_rate) <= 1.0


def test_dtype_preserved_and_bad_labels():
    g = {"w": jnp.ones((3,), jnp.bfloat16)}
    out, _ = clip_by_component_norm(0.1).update(g, None)
    assert out["w"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="label tree"):
        clip_by_component_norm(0.1, labels={"x": "a"}).update(g, None)
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_component_norm(-1.0)
