"""Tests for lrdist_jax.transforms._group_lr: layer-group Adam with learning rates as state."""

import doctest

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lrdist_jax.paths import label_params
from lrdist_jax.transforms import _group_lr
from lrdist_jax.transforms._group_lr import (
    GroupLrState,
    get_group_lrs,
    layerwise_adam,
    partitioned_adam,
    scale_by_group_lr,
    set_group_lrs,
    start_phase,
)

LRS = [3e-3, 1e-2, 5e-4]


def _params():
    rng = np.random.default_rng(0)
    return {
        "emb": {"embedding": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)},
        "layer": {
            "0": {"kernel": jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)},
            "1": {"bias": jnp.ones(3)},
        },
        "head": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)},
    }


LABELS = {
    "emb": {"embedding": 0},
    "layer": {"0": {"kernel": 1}, "1": {"bias": 1}},
    "head": {"kernel": 2},
}


def _grads(step, params):
    rng = np.random.default_rng(100 + step)
    return jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32) + 0.1 * x, params
    )


def _trees_equal(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(bool(jnp.all(x == y)) for x, y in pairs)


def _run(tx, params, opt_state, steps, start):
    @jax.jit
    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    for i in range(start, start + steps):
        params, opt_state = step(params, opt_state, _grads(i, params))
    return params, opt_state


def _reset_schedule_counts(state):
    # Reference-path phase change: optax schedules restart at count 0, Adam state carries over.
    return jax.tree.map(
        lambda x: (
            optax.ScaleByScheduleState(count=jnp.zeros_like(x.count))
            if isinstance(x, optax.ScaleByScheduleState)
            else x
        ),
        state,
        is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState),
    )


@pytest.mark.parametrize(
    "schedule, wd, labels_fn",
    [("cosine_warmup", 0.0, False), ("linear", 0.01, True)],
)
def test_parity_with_partitioned_adam_across_a_phase_change(schedule, wd, labels_fn):
    params0 = _params()
    rules = [(r"emb/.*", 0), (r"layer/.*", 1), (r".*", 2)]
    labels = (lambda p: label_params(p, rules)) if labels_fn else LABELS
    mask = None
    if wd:
        mask = {
            "emb": {"embedding": False},
            "layer": {"0": {"kernel": True}, "1": {"bias": False}},
            "head": {"kernel": True},
        }
    kw = dict(schedule=schedule, weight_decay=wd, weight_decay_mask=mask)
    T1, W1, T2, W2 = 12, 3, 10, 2

    fast = layerwise_adam(labels, LRS, total_steps=T1, warmup_steps=W1, **kw)
    ref1 = partitioned_adam(labels, LRS, total_steps=T1, warmup_steps=W1, **kw)
    ref2 = partitioned_adam(labels, LRS, total_steps=T2, warmup_steps=W2, **kw)

    p_fast, s_fast = _run(fast, params0, fast.init(params0), T1, 0)
    p_ref, s_ref = _run(ref1, params0, ref1.init(params0), T1, 0)
    np.testing.assert_allclose(
        np.concatenate([x.ravel() for x in jax.tree.leaves(p_fast)]),
        np.concatenate([x.ravel() for x in jax.tree.leaves(p_ref)]),
        rtol=1e-5,
        atol=1e-6,
    )
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), p_fast, params0)
    assert min(jax.tree.leaves(moved)) > 1e-4

    s_fast = start_phase(s_fast, total_steps=T2, warmup_steps=W2)
    s_ref = _reset_schedule_counts(s_ref)
    p_fast, _ = _run(fast, p_fast, s_fast, T2, T1)
    p_ref, _ = _run(ref2, p_ref, s_ref, T2, T1)
    for a, b in zip(jax.tree.leaves(p_fast), jax.tree.leaves(p_ref), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_each_group_moves_by_its_own_rate():
    params = _params()
    tx = scale_by_group_lr(LABELS, LRS, schedule="constant")
    grads = jax.tree.map(jnp.ones_like, params)
    updates, state = tx.update(grads, tx.init(params))
    assert float(updates["emb"]["embedding"][0, 0]) == pytest.approx(-LRS[0])
    assert float(updates["layer"]["1"]["bias"][0]) == pytest.approx(-LRS[1])
    assert float(updates["head"]["kernel"][0, 0]) == pytest.approx(-LRS[2])
    assert int(state.count) == 1


def test_new_rates_and_new_phase_do_not_recompile():
    params = _params()
    tx = layerwise_adam(LABELS, LRS, total_steps=8, warmup_steps=2)
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(1)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    state = tx.init(params)
    p1, state = step(params, state, _grads(0, params))
    p1, state = step(p1, state, _grads(1, params))
    state2 = set_group_lrs(state, [1e-5, 2e-5, 3e-5])
    p2, state2 = step(p1, state2, _grads(2, params))
    state3 = start_phase(state2, total_steps=20, warmup_steps=5, reset_moments=True)
    p3, state3 = step(p2, state3, _grads(3, params))
    assert len(traces) == 1
    np.testing.assert_allclose(get_group_lrs(state2), np.float32([1e-5, 2e-5, 3e-5]))
    g = state3[-1]
    assert isinstance(g, GroupLrState)
    assert (int(g.count), int(g.total_steps), int(g.warmup_steps)) == (1, 20, 5)
    assert int(state3[0].count) == 1  # Adam restarted at the phase change
    # with reset moments and count 0 -> cosine-warmup factor 0: the first phase-3 step is a no-op
    assert _trees_equal(p3, p2)


def test_state_helpers_are_functional_and_validated():
    params = _params()
    tx = layerwise_adam(LABELS, LRS, total_steps=8, warmup_steps=2)
    state = tx.init(params)
    _, state = tx.update(_grads(0, params), state, params)
    _, state = tx.update(_grads(1, params), state, params)
    new = set_group_lrs(state, np.array([1, 2, 3], np.float64))
    assert get_group_lrs(new).dtype == jnp.float32
    np.testing.assert_allclose(get_group_lrs(state), np.float32(LRS))  # input untouched
    kept = start_phase(state, total_steps=4, warmup_steps=0)
    assert int(kept[0].count) == 2 and int(kept[-1].count) == 0
    assert _trees_equal(kept[0].mu, state[0].mu)
    reset = start_phase(state, total_steps=4, warmup_steps=0, reset_moments=True)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(reset[0].nu))
    with pytest.raises(ValueError, match="3 groups"):
        set_group_lrs(state, [1e-5, 1e-5])
    with pytest.raises(ValueError, match="finite"):
        set_group_lrs(state, [1e-5, float("nan"), 1e-5])
    with pytest.raises(ValueError, match="no GroupLrState"):
        get_group_lrs(optax.adam(1e-3).init(params))
    # nested inside another combinator
    nested = optax.chain(optax.clip_by_global_norm(1.0), tx).init(params)
    np.testing.assert_allclose(get_group_lrs(set_group_lrs(nested, [1, 1, 1])), 1.0)


def test_bad_labels_are_reported():
    params = _params()
    bad = dict(LABELS, head={"kernel": 5})
    with pytest.raises(ValueError, match=r"(?s)ints in \[0, 3\).*head/kernel: 5"):
        layerwise_adam(bad, LRS).init(params)
    with pytest.raises(ValueError, match="unknown schedule"):
        layerwise_adam(LABELS, LRS, schedule="cos")


class _LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16, name="trunk")(x))
        return nn.Dense(1, name="out")(x)


def _regression_data():
    x = jax.random.normal(jax.random.key(1), (32, 4))
    y = jnp.sin(x @ jnp.array([1.0, -2.0, 0.5, 1.5]))[:, None]
    return x, y


def test_linen_model_with_user_rules_trains():
    model = _LinenMLP()
    x, y = _regression_data()
    params = model.init(jax.random.key(0), x)["params"]
    labels = label_params(params, [(r"trunk/.*", 0), (r"out/.*", 1)])
    tx = layerwise_adam(labels, [1e-2, 3e-2], schedule="constant")
    loss_fn = lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    state = tx.init(params)
    losses = []
    for _ in range(30):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]


class _NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.trunk = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.trunk(x)))


def test_nnx_model_functional_step_trains():
    model = _NnxMLP(nnx.Rngs(0))
    x, y = _regression_data()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    labels = label_params(params, [(r"trunk/.*", 0), (r"out/.*", 1)])
    tx = layerwise_adam(labels, [1e-2, 3e-2], total_steps=40, warmup_steps=2)

    def loss_fn(p):
        return jnp.mean((nnx.merge(graphdef, p, rest)(x) - y) ** 2)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    state = tx.init(params)
    losses = []
    for _ in range(30):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]


def test_nnx_optimizer_with_label_function():
    model = _NnxMLP(nnx.Rngs(0))
    x, y = _regression_data()
    labels = lambda p: label_params(p, [(r"trunk/.*", 0), (r"out/.*", 1)])
    tx = layerwise_adam(labels, [1e-2, 3e-2], schedule="constant")
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, g = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        optimizer.update(model, g)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(20)]
    assert losses[-1] < 0.8 * losses[0]


def test_doctests():
    assert doctest.testmod(_group_lr).failed == 0
