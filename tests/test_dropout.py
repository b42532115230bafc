"""The fused dropout: Threefry known answers and bit-identity with flax's Dropout, the lowbias32
hash against a numpy reference and its masks' statistics, blocks, sharding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from lrdist_jax.models import BertConfig
from lrdist_jax.models.dropout import MASK_HASHES, Dropout, dropout, lowbias32, threefry2x32
from lrdist_jax.sharding import make_data_mesh
from lrdist_jax.train import make_config

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
    layer = Dropout(rate, mask_hash="threefry")
    ours = jax.jit(lambda k, x: layer.apply({}, x, False, rngs={"dropout": k}))(key, x)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def _lowbias32_numpy(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return (x ^ (x >> 16)).astype(np.uint32)


def test_lowbias32_matches_numpy_reference_and_is_a_bijection():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(np.asarray(jax.jit(lowbias32)(x)), _lowbias32_numpy(x))
    assert int(lowbias32(jnp.uint32(0))) == 0  # xorshift-multiply fixes zero
    first = np.asarray(lowbias32(jnp.arange(2**20, dtype=jnp.uint32)))
    assert len(np.unique(first)) == 2**20


def test_lowbias32_mask_is_the_documented_hash():
    """keep = mix(mix(index ^ k0) + k1) >= round(rate * 2^32), with the key's two words."""
    key = jax.random.key(11)
    k0, k1 = (int(w) for w in jax.random.key_data(key))
    x = jnp.ones((3, 5, 7))
    index = np.arange(x.size, dtype=np.uint64)
    inner = (_lowbias32_numpy((index ^ k0).astype(np.uint32)).astype(np.uint64) + k1) & 0xFFFFFFFF
    keep = _lowbias32_numpy(inner.astype(np.uint32)) >= round(0.3 * 2**32)
    ours = np.asarray(dropout(key, x, 0.3)).reshape(-1)
    np.testing.assert_array_equal(ours != 0, keep)


@pytest.mark.parametrize("mask_hash", MASK_HASHES)
@pytest.mark.parametrize("rate", [0.1, 0.25, 0.9])
def test_drop_fraction_and_scaling(mask_hash, rate):
    x = jnp.ones((256, 1024))
    y = dropout(jax.random.key(0), x, rate, mask_hash=mask_hash)
    sd = (rate * (1 - rate) / x.size) ** 0.5  # 262k draws
    assert abs(float(jnp.mean(y == 0)) - rate) < 5 * sd
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / (1 - rate)], rtol=1e-6)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.reshape(-1).astype(float), b.reshape(-1).astype(float))[0, 1])


@pytest.mark.parametrize("mask_hash", MASK_HASHES)
def test_masks_are_uncorrelated_across_positions_and_keys(mask_hash):
    """Neighbouring elements (along every axis), split keys, and raw keys one bit apart give
    masks whose correlation is within 5 standard errors of zero."""
    shape = (32, 12, 64, 64)  # an attention-probability tensor: 1.6 M elements
    drop = lambda k: np.asarray(dropout(k, jnp.ones(shape), 0.5, mask_hash=mask_hash)) > 0  # noqa: E731
    keep = drop(jax.random.key(3))
    bound = 5 / np.sqrt(keep.size / 2)
    for axis in range(len(shape)):
        lead = tuple(slice(0, -1) if a == axis else slice(None) for a in range(len(shape)))
        lag = tuple(slice(1, None) if a == axis else slice(None) for a in range(len(shape)))
        assert abs(_correlation(keep[lead], keep[lag])) < bound, axis
    k1, k2 = jax.random.split(jax.random.key(3))
    assert abs(_correlation(drop(k1), drop(k2))) < bound
    raw = [jnp.asarray(w, jnp.uint32) for w in ([0, 0], [0, 1], [1, 0])]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert abs(_correlation(drop(raw[a]), drop(raw[b]))) < bound, (a, b)


def test_unknown_mask_hash_is_refused_everywhere():
    with pytest.raises(ValueError, match="mask_hash='philox'"):
        dropout(jax.random.key(0), jnp.ones(3), 0.5, mask_hash="philox")
    with pytest.raises(ValueError, match="dropout_hash='philox'"):
        BertConfig.tiny(dropout_hash="philox")
    with pytest.raises(ValueError, match="dropout_hash='philox'"):
        make_config("smoke", "rte", "mrpc", dropout_hash="philox")


def test_edge_rates_deterministic_and_errors():
    x = jnp.arange(6.0)
    key = jax.random.key(0)
    assert dropout(key, x, 0.0) is x
    np.testing.assert_array_equal(dropout(key, x, 1.0), np.zeros(6))
    np.testing.assert_array_equal(Dropout(0.5).apply({}, x, True), x)
    with pytest.raises(ValueError, match="rate must be in"):
        dropout(key, x, 1.5)


def test_threefry_falls_back_to_bernoulli_for_other_prngs():
    key = jax.random.key(0, impl="rbg")
    x = jnp.ones((64, 64))
    np.testing.assert_array_equal(
        dropout(key, x, 0.5, mask_hash="threefry"),
        jnp.where(jax.random.bernoulli(key, 0.5, x.shape), 2.0, 0.0),
    )


def test_lowbias32_hashes_every_word_of_an_rbg_key():
    """rbg keys have four words; the mask depends on all of them (XOR-folded to two)."""
    data = np.arange(1, 5, dtype=np.uint32)
    x = jnp.ones((128, 128))
    ref = dropout(jax.random.wrap_key_data(data, impl="rbg"), x, 0.5)
    assert abs(float(jnp.mean(ref == 0)) - 0.5) < 0.02
    for i in range(4):
        flipped = data.copy()
        flipped[i] ^= 1
        other = dropout(jax.random.wrap_key_data(flipped, impl="rbg"), x, 0.5)
        assert float(jnp.mean(other != ref)) > 0.4, i


@pytest.mark.parametrize("mask_hash", MASK_HASHES)
def test_same_mask_when_batch_is_sharded_over_8_devices(mask_hash):
    mesh = make_data_mesh(8)
    x = jax.random.normal(jax.random.key(1), (16, 6, 10))
    key = jax.random.key(5)
    ref = dropout(key, x, 0.3, mask_hash=mask_hash)
    sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    out = jax.jit(lambda k, x: dropout(k, x, 0.3, mask_hash=mask_hash))(key, sharded)
    assert len(out.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))


@pytest.mark.parametrize(
    "full, block", [((4, 3, 16, 16), (4, 3, 1, 16)), ((5, 9, 8), (5, 1, 8)), ((6, 7), (2, 3))]
)
@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
@pytest.mark.parametrize("mask_hash", MASK_HASHES)
def test_full_shape_gives_the_leading_block_of_the_full_mask(full, block, impl, mask_hash):
    key = jax.random.key(7, impl=impl)
    x = jax.random.normal(jax.random.key(1), full)
    corner = tuple(map(slice, block))
    ref = dropout(key, x, 0.4, mask_hash=mask_hash)[corner]
    ours = jax.jit(lambda k, x: dropout(k, x, 0.4, full_shape=full, mask_hash=mask_hash))(
        key, x[corner]
    )
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_full_shape_must_cover_x():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="full_shape"):
        dropout(jax.random.key(0), x, 0.5, full_shape=(2, 2))
    with pytest.raises(ValueError, match="full_shape"):
        dropout(jax.random.key(0), x, 0.5, full_shape=(2, 3, 1))
