"""Data-parallel sharding on 8 simulated CPU devices (tests/conftest.py sets XLA_FLAGS)."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

from lrdist_jax.models import BertClassifier, BertConfig, TaskHead
from lrdist_jax.sharding import (
    DATA_AXIS,
    _select_devices,
    check_batch_size,
    data_sharding,
    distributed_environment,
    gather_to_host,
    host_batch_slice,
    initialize_distributed,
    is_main_process,
    make_data_mesh,
    pad_batch,
    replicate,
    replicated_sharding,
    shard_batch,
)

B, T = 16, 12


@pytest.fixture(scope="module")
def setup():
    if jax.device_count() < 8:
        pytest.skip(f"needs 8 simulated devices, got {jax.device_count()}")
    config = BertConfig.tiny(max_position_embeddings=32)
    model = BertClassifier(config, (TaskHead("task1", 2),))
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(3):
        ids = rng.integers(1, 200, size=(B, T), dtype=np.int32)
        mask = np.ones((B, T), np.int32)
        mask[: B // 2, T // 2 :] = 0  # padded rows in half the batch
        batches.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros((B, T), np.int32),
                "labels": rng.integers(0, 2, size=(B,), dtype=np.int32),
            }
        )
    params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(batches[0]["input_ids"]))["params"]
    return model, params, batches


def _make_step(model, tx, mesh):
    repl, data = replicated_sharding(mesh), data_sharding(mesh)

    def loss_fn(params, batch, rng):
        logits = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            head="task1",
            deterministic=False,  # dropout on: its masks must not depend on the sharding
            rngs={"dropout": rng},
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

    def step(params, opt_state, batch, rng):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    return jax.jit(step, in_shardings=(repl, repl, data, repl), out_shardings=(repl,) * 4)


def _train(setup, num_devices):
    model, params, batches = setup
    mesh = make_data_mesh(num_devices)
    tx = optax.adam(1e-3)
    params, opt_state = replicate((params, tx.init(params)), mesh)
    step = _make_step(model, tx, mesh)
    losses, grads = [], []
    for i, host_batch in enumerate(batches):
        rng = replicate(jax.random.fold_in(jax.random.key(1), i), mesh)
        batch = shard_batch(host_batch, mesh)
        params, opt_state, loss, g = step(params, opt_state, batch, rng)
        losses.append(float(loss))
        grads.append(g)
    return gather_to_host(params), losses, gather_to_host(grads[0])


def test_eight_devices_match_one_device(setup):
    p1, l1, g1 = _train(setup, 1)
    p8, l8, g8 = _train(setup, 8)
    np.testing.assert_allclose(l8, l1, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g8, g1)
    # the parameters really moved (3 Adam steps of lr 1e-3), so the comparison is not trivial
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), p1, setup[1]))
    assert max(moved) > 1e-3
    # Adam divides each gradient entry by its own RMS, so entries whose gradient is pure round-off
    # (the attention key bias has a zero gradient in exact arithmetic) move by O(lr) with a sign
    # set by the reduction order; after 3 steps such entries can differ by ~2e-6 (0.07% of the
    # 3e-3 a parameter can move), hence atol 5e-6 rather than 1e-6 for the parameters.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=5e-6), p8, p1)


def test_batch_is_sharded_and_params_replicated(setup):
    _, params, batches = setup
    mesh = make_data_mesh()
    assert mesh.axis_names == (DATA_AXIS,) and mesh.size == 8
    batch = shard_batch(batches[0], mesh)
    ids = batch["input_ids"]
    assert ids.shape == (B, T)
    assert ids.sharding.spec == PartitionSpec(DATA_AXIS)
    shards = sorted(ids.addressable_shards, key=lambda s: s.index[0].start)
    assert len(shards) == 8 and {s.device for s in shards} == set(jax.devices())
    for k, s in enumerate(shards):
        assert s.data.shape == (B // 8, T)
        np.testing.assert_array_equal(s.data, batches[0]["input_ids"][k * 2 : (k + 1) * 2])
    assert batch["labels"].addressable_shards[0].data.shape == (B // 8,)
    kernel = replicate(params, mesh)["heads"]["task1"]["kernel"]
    assert kernel.is_fully_replicated and len(kernel.addressable_shards) == 8
    assert all(s.data.shape == kernel.shape for s in kernel.addressable_shards)


def test_indivisible_batch_raises_clear_error(setup):
    mesh = make_data_mesh(8)
    batch = {k: v[:10] for k, v in setup[2][0].items()}
    with pytest.raises(ValueError, match=r"batch size 10 .* 8 devices") as err:
        shard_batch(batch, mesh)
    assert "--devices" in str(err.value) and "multiple of 8" in str(err.value)
    # a 5-device mesh takes the same 10 rows
    assert shard_batch(batch, make_data_mesh(5))["labels"].addressable_shards[0].data.shape == (2,)


def test_shard_batch_rejects_ragged_batches():
    mesh = make_data_mesh(2)
    with pytest.raises(ValueError, match="disagree"):
        shard_batch({"a": np.zeros((4, 2)), "b": np.zeros((6,))}, mesh)


def test_check_batch_size():
    assert check_batch_size(32, 8) == 4
    assert check_batch_size(32, 8, process_count=2) == 4
    with pytest.raises(ValueError, match=r"batch size 30 .* 8 devices.*--devices 6"):
        check_batch_size(30, 8)
    with pytest.raises(ValueError, match=r"batch size 6 .* 4 hosts"):
        check_batch_size(6, 2, process_count=4)


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("batch_size", [8, 32, 36])
def test_host_batch_slice_partitions_the_batch(count, batch_size):
    rows = [np.arange(batch_size)[host_batch_slice(batch_size, i, count)] for i in range(count)]
    assert {len(r) for r in rows} == {batch_size // count}
    np.testing.assert_array_equal(np.concatenate(rows), np.arange(batch_size))


def test_host_batch_slice_errors_and_defaults():
    with pytest.raises(ValueError, match=r"batch size 6 .* 4 hosts"):
        host_batch_slice(6, 0, 4)
    with pytest.raises(ValueError, match="outside"):
        host_batch_slice(8, 2, 2)
    assert host_batch_slice(8) == slice(0, 8)  # one process here


def test_make_data_mesh_device_counts():
    mesh = make_data_mesh(3)
    assert mesh.size == 3 and list(mesh.devices.flat) == jax.devices()[:3]
    assert make_data_mesh().size == jax.device_count()
    with pytest.raises(ValueError, match=r"num_devices=9 .* only 8"):
        make_data_mesh(9)
    with pytest.raises(ValueError, match="at least one"):
        make_data_mesh(0)


def test_device_selection_with_several_processes():
    fake = [types.SimpleNamespace(id=i, process_index=i // 4) for i in range(8)]  # 2 hosts x 4
    chosen = _select_devices(fake, 4)
    assert [d.id for d in chosen] == [0, 1, 4, 5]  # 2 per host, in process order
    assert [d.id for d in _select_devices(fake, 8)] == list(range(8))
    with pytest.raises(ValueError, match="multiple of 2"):
        _select_devices(fake, 3)


def test_pad_batch_and_masked_sharded_evaluation():
    x = np.arange(10, dtype=np.float32)
    padded, valid = pad_batch({"x": x, "y": x[:, None] * 2}, 8)
    assert padded["x"].shape == (16,) and padded["y"].shape == (16, 1)
    np.testing.assert_array_equal(valid, np.arange(16) < 10)
    np.testing.assert_array_equal(padded["x"][10:], np.full(6, 9.0))
    mesh = make_data_mesh(8)
    g = shard_batch({"x": padded["x"], "valid": valid.astype(np.float32)}, mesh)
    mean = jax.jit(lambda b: jnp.sum(b["x"] * b["valid"]) / jnp.sum(b["valid"]))(g)
    np.testing.assert_allclose(float(mean), x.mean(), rtol=1e-6)
    same, valid = pad_batch({"x": x[:8]}, 8)
    assert same["x"].shape == (8,) and valid.all()


def test_gather_to_host_round_trip():
    mesh = make_data_mesh(4)
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    out = gather_to_host({"x": shard_batch({"x": x}, mesh)["x"], "r": replicate(x, mesh)})
    np.testing.assert_array_equal(out["x"], x)
    np.testing.assert_array_equal(out["r"], x)


@pytest.mark.parametrize("num_devices", [1, 8])
def test_replicate_never_aliases_its_input(num_devices):
    mesh = make_data_mesh(num_devices)
    x = jax.device_put(jnp.arange(4.0), jax.devices()[0])
    donate = jax.jit(lambda a: a + 1, donate_argnums=0)
    y = donate(replicate(x, mesh))
    y = donate(replicate(replicate(y, mesh), mesh))  # already replicated: copied again
    np.testing.assert_array_equal(np.asarray(x), np.arange(4.0))  # x survived both donations
    np.testing.assert_array_equal(np.asarray(y), np.arange(4.0) + 2)


def test_replicate_multi_process_path(monkeypatch):
    # make_array_from_callback, used with several processes, on one process (same values)
    import lrdist_jax.sharding as sharding

    mesh = make_data_mesh(4)
    monkeypatch.setattr(sharding, "_mesh_processes", lambda m: [0, 1])
    tree = {"w": np.arange(6.0).reshape(2, 3), "key": jax.random.key(3)}
    out = replicate(tree, mesh)
    assert out["w"].sharding == replicated_sharding(mesh)
    np.testing.assert_array_equal(out["w"].addressable_shards[3].data, tree["w"])
    assert jax.dtypes.issubdtype(out["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(out["key"]), jax.random.key_data(tree["key"]))


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"TPU_WORKER_HOSTNAMES": "w0"}, None),
        ({"JAX_NUM_PROCESSES": "1"}, None),
        ({"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}, "TPU_WORKER_HOSTNAMES lists 4 hosts"),
        ({"JAX_NUM_PROCESSES": "2"}, "JAX_NUM_PROCESSES=2"),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234"}, "JAX_COORDINATOR_ADDRESS is set"),
        ({"LRDIST_DISTRIBUTED": "1"}, "LRDIST_DISTRIBUTED=1"),
        ({"SLURM_NTASKS": "4"}, "SLURM_NTASKS=4"),
    ],
)
def test_distributed_environment(env, expected):
    assert distributed_environment(env) == expected


@pytest.fixture
def fake_initialize(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    return calls


def test_initialize_distributed_is_a_noop_on_one_host(fake_initialize):
    assert initialize_distributed(env={}) is False
    assert initialize_distributed(env={"TPU_WORKER_HOSTNAMES": "localhost"}) is False
    assert fake_initialize == []


def test_initialize_distributed_multi_host(fake_initialize):
    env = {
        "JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
    }
    assert initialize_distributed(env=env) is True
    assert fake_initialize[-1] == dict(coordinator_address=None, num_processes=4, process_id=3)
    assert initialize_distributed(env={"TPU_WORKER_HOSTNAMES": "a,b"}) is True
    assert fake_initialize[-1] == dict(
        coordinator_address=None, num_processes=None, process_id=None
    )
    assert initialize_distributed("h:1", 2, 0, env={}) is True
    assert fake_initialize[-1] == dict(coordinator_address="h:1", num_processes=2, process_id=0)
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two'"):
        initialize_distributed(env={"JAX_NUM_PROCESSES": "two"})


def test_is_main_process():
    assert jax.process_count() == 1 and is_main_process()
