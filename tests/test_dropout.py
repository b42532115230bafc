"""The fused dropout: Threefry known answers, bit-identity with flax's Dropout, sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from lrdist_jax.models.dropout import Dropout, dropout, threefry2x32
from lrdist_jax.sharding import make_data_mesh

# Known-answer vectors of Threefry-2x32, 20 rounds (Random123 distribution, kat_vectors).
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.mark.parametrize("key, counter, expected", KAT)
def test_threefry_known_answers(key, counter, expected):
    u = lambda v: jnp.asarray(v, jnp.uint32)  # noqa: E731
    out = threefry2x32((u(key[0]), u(key[1])), (u([counter[0]]), u([counter[1]])))
    assert [int(o[0]) for o in out] == list(expected)


def test_threefry_matches_jax_on_random_words():
    rng = np.random.default_rng(0)
    k = jnp.asarray(rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32))
    x = jnp.asarray(rng.integers(0, 2**32, (2, 1000), dtype=np.uint64).astype(np.uint32))
    ours = jax.jit(threefry2x32)((k[0], k[1]), (x[0], x[1]))
    ref = jax.extend.random.threefry_2x32(k, x.reshape(-1)).reshape(2, 1000)
    np.testing.assert_array_equal(np.stack(ours), ref)


@pytest.mark.parametrize("shape", [(7,), (3, 5, 2), (4, 3, 16, 16)])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("typed_key", [True, False])
def test_bit_identical_to_flax_dropout(shape, rate, typed_key):
    x = jax.random.normal(jax.random.key(1), shape)
    key = jax.random.key(3) if typed_key else jax.random.PRNGKey(3)
    ref = nn.Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key})
    ours = jax.jit(lambda k, x: Dropout(rate).apply({}, x, False, rngs={"dropout": k}))(key, x)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_drop_fraction_and_scaling():
    x = jnp.ones((256, 1024))
    y = dropout(jax.random.key(0), x, 0.25)
    assert abs(float(jnp.mean(y == 0)) - 0.25) < 0.005  # 262k draws: sd 0.0008
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 4 / 3], rtol=1e-6)


def test_edge_rates_deterministic_and_errors():
    x = jnp.arange(6.0)
    key = jax.random.key(0)
    assert dropout(key, x, 0.0) is x
    np.testing.assert_array_equal(dropout(key, x, 1.0), np.zeros(6))
    np.testing.assert_array_equal(Dropout(0.5).apply({}, x, True), x)
    with pytest.raises(ValueError, match="rate must be in"):
        dropout(key, x, 1.5)


def test_other_prng_falls_back_to_bernoulli():
    key = jax.random.key(0, impl="rbg")
    x = jnp.ones((64, 64))
    np.testing.assert_array_equal(
        dropout(key, x, 0.5), jnp.where(jax.random.bernoulli(key, 0.5, x.shape), 2.0, 0.0)
    )


def test_same_mask_when_batch_is_sharded_over_8_devices():
    mesh = make_data_mesh(8)
    x = jax.random.normal(jax.random.key(1), (16, 6, 10))
    key = jax.random.key(5)
    ref = dropout(key, x, 0.3)
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    out = jax.jit(lambda k, x: dropout(k, x, 0.3))(key, sharded)
    assert len(out.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))


@pytest.mark.parametrize(
    "full, block", [((4, 3, 16, 16), (4, 3, 1, 16)), ((5, 9, 8), (5, 1, 8)), ((6, 7), (2, 3))]
)
@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_full_shape_gives_the_leading_block_of_the_full_mask(full, block, impl):
    key = jax.random.key(7, impl=impl)
    x = jax.random.normal(jax.random.key(1), full)
    corner = tuple(map(slice, block))
    ref = dropout(key, x, 0.4)[corner]
    ours = jax.jit(lambda k, x: dropout(k, x, 0.4, full_shape=full))(key, x[corner])
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_full_shape_must_cover_x():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="full_shape"):
        dropout(jax.random.key(0), x, 0.5, full_shape=(2, 2))
    with pytest.raises(ValueError, match="full_shape"):
        dropout(jax.random.key(0), x, 0.5, full_shape=(2, 3, 1))
