"""Dropout whose mask is computed inside one fused XLA loop, from a counter-based hash.

``flax.linen.Dropout`` draws its mask with :func:`jax.random.bernoulli`. On the CPU, JAX lowers
the Threefry-2x32 hash behind it as a *rolled* five-iteration ``while`` loop (to keep compile
times short), so every dropout mask costs five passes over memory plus loop overhead: about a
tenth of a MiniLM train step at batch 32 and length 128 (``docs/performance.md``).

:func:`dropout` hashes each element's row-major index with the key in plain element-wise ``jnp``
code, which XLA fuses (index ``iota``, hash, comparison, select) into the loop that applies the
mask: no random bits are ever written to memory, and the mask of an element depends only on the
key and its position, so it is the same under any sharding. Two hashes (``mask_hash``):

* ``"lowbias32"`` (default): two rounds of Wellons' ``lowbias32`` integer mixer
  (hash-prospector; multiply-xorshift, as in MurmurHash3's finaliser) keyed by the two key
  words, ``h = mix(mix(i ^ k0) + k1)``; an element is kept when ``h >= round(rate * 2^32)``.
  About a tenth of Threefry's integer work: the MiniLM train step runs 7.6% faster on a
  2-core CPU (``docs/performance.md``, seventh round).
* ``"threefry"``: Threefry-2x32 (20 rounds) over the index, as :func:`jax.random.bits` computes
  it with ``jax_threefry_partitionable`` (the default), so the mask is ``nn.Dropout``'s bit for
  bit for the same key (tested). Keys of another PRNG implementation (``rbg``,
  ``unsafe_rbg``) fall back to :func:`jax.random.bernoulli`.

Arrays of 2^32 elements or more (the index is ``uint32``) fall back to
:func:`jax.random.bernoulli` with either hash.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from lrdist_jax.models.dropout import dropout
    >>> x = jnp.ones((2, 4))
    >>> y = dropout(jax.random.key(0), x, rate=0.5)
    >>> bool(jnp.all((y == 0) | (y == 2.0)))
    True
"""

from __future__ import annotations

import functools
import math
import operator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["MASK_HASHES", "Dropout", "dropout", "lowbias32", "threefry2x32"]

MASK_HASHES = ("lowbias32", "threefry")

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(v: jax.Array, r: int) -> jax.Array:
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(
    key: tuple[jax.Array, jax.Array], x: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 block cipher (20 rounds), unrolled into element-wise ops.

    Same function as JAX's ``threefry2x32_p`` (Salmon et al., "Parallel random numbers: as easy
    as 1, 2, 3", SC 2011), written so that XLA fuses it into its consumer.

    Args:
      key: two ``uint32`` scalars.
      x: two ``uint32`` arrays of the same shape (the counter words).

    Returns:
      Two ``uint32`` arrays of that shape.
    """
    k0, k1 = key
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x[0] + ks[0], x[1] + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def lowbias32(x: jax.Array) -> jax.Array:
    """Wellons' ``lowbias32`` mixer, a bijection of ``uint32`` (element-wise).

    ``x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16``
    (C. Wellons, "Prospecting for hash functions", 2018, github.com/skeeto/hash-prospector).
    """
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def _flat_index(shape: tuple[int, ...], full_shape: tuple[int, ...]) -> jax.Array:
    """``uint32`` row-major index, within an array of ``full_shape``, of each element of its
    leading block of ``shape`` (an iota XLA can fuse)."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for dim in reversed(range(len(shape))):
        index = index + lax.broadcasted_iota(jnp.uint32, shape, dim) * np.uint32(stride)
        stride *= full_shape[dim]
    return index


def _threefry_key_words(rng: jax.Array) -> tuple[jax.Array, jax.Array] | None:
    """The two ``uint32`` key words of a Threefry key, or ``None`` for another PRNG."""
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        if jax.random.key_impl(rng) != "threefry2x32":
            return None
        rng = jax.random.key_data(rng)
    elif rng.shape != (2,) or jax.config.jax_default_prng_impl != "threefry2x32":
        return None
    return rng[0], rng[1]


def _folded_key_words(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two ``uint32`` words from a key of any PRNG implementation (typed or raw): the XOR of
    its even-numbered and of its odd-numbered words (Threefry keys have two, ``rbg`` four)."""
    words = jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng
    words = jnp.asarray(words, jnp.uint32).reshape(-1)
    if words.shape[0] < 2 or words.shape[0] % 2:
        raise ValueError(f"dropout needs a PRNG key, got an array of shape {rng.shape}.")
    folded = functools.reduce(operator.xor, list(words.reshape(-1, 2)))
    return folded[0], folded[1]


def _keep_mask(
    rng: jax.Array, rate: float, shape: tuple[int, ...], full_shape: tuple[int, ...], mask_hash
) -> jax.Array:
    """``bool[shape]``: the keep decisions of the leading ``shape`` block of a ``full_shape``
    mask."""
    keep_prob = 1.0 - rate
    corner = tuple(map(slice, shape))
    if math.prod(full_shape) >= 2**32 or not shape:
        return jax.random.bernoulli(rng, keep_prob, full_shape)[corner]
    counter = _flat_index(shape, full_shape)
    if mask_hash == "lowbias32":
        k0, k1 = _folded_key_words(rng)
        bits = lowbias32(lowbias32(counter ^ k0) + k1)
        return bits >= np.uint32(min(max(round(rate * 2**32), 1), 2**32 - 1))
    words = _threefry_key_words(rng)
    if words is None:
        return jax.random.bernoulli(rng, keep_prob, full_shape)[corner]
    b0, b1 = threefry2x32(words, (jnp.zeros(shape, jnp.uint32), counter))
    # jax.random.uniform's float construction: 23 random mantissa bits in [1, 2), minus 1.
    mantissa = ((b0 ^ b1) >> np.uint32(9)) | np.uint32(0x3F800000)
    uniform = lax.bitcast_convert_type(mantissa, jnp.float32) - np.float32(1.0)
    return jnp.maximum(uniform, np.float32(0.0)) < np.float32(keep_prob)


def dropout(
    rng: jax.Array,
    x: jax.Array,
    rate: float,
    *,
    full_shape: tuple[int, ...] | None = None,
    mask_hash: str = "lowbias32",
) -> jax.Array:
    """Inverted dropout: zero each element with probability ``rate``, scale the rest by
    ``1 / (1 - rate)``.

    Args:
      rng: a PRNG key (typed or raw ``uint32`` words).
      x: any floating array ``[...]``.
      rate: the drop probability, in ``[0, 1]``.
      full_shape: when ``x`` is only the leading block ``a[:n0, :n1, ...]`` of a larger array
        ``a`` of this shape (same rank, ``x.shape <= full_shape`` per axis), the mask is that
        block of ``a``'s mask: the result equals ``dropout(rng, a, rate)[:n0, :n1, ...]``
        without computing the rest. The BERT's last layer uses it for its [CLS] row.
      mask_hash: ``"lowbias32"`` (fast) or ``"threefry"`` (bit-identical to
        ``flax.linen.Dropout(rate)(x, deterministic=False, rng=rng)``); see the module notes.

    Returns:
      An array like ``x``.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"dropout rate must be in [0, 1], got {rate}.")
    if mask_hash not in MASK_HASHES:
        raise ValueError(f"mask_hash={mask_hash!r}; choose one of {MASK_HASHES}.")
    full_shape = x.shape if full_shape is None else tuple(full_shape)
    if len(full_shape) != x.ndim or any(n > f for n, f in zip(x.shape, full_shape, strict=True)):
        raise ValueError(
            f"full_shape {full_shape} must have x's rank and be at least x's shape {x.shape} "
            "on every axis."
        )
    if rate == 0.0:
        return x
    if rate == 1.0:
        return jnp.zeros_like(x)
    keep = _keep_mask(rng, rate, x.shape, full_shape, mask_hash)
    return lax.select(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x))


class Dropout(nn.Module):
    """Drop-in replacement for ``flax.linen.Dropout`` (no ``broadcast_dims``) using
    :func:`dropout`.

    Attributes:
      rate: the drop probability.
      rng_collection: the RNG stream to draw from (default ``"dropout"``).
      mask_hash: ``"lowbias32"`` (fast, default) or ``"threefry"`` (``nn.Dropout``'s masks).
    """

    rate: float
    rng_collection: str = "dropout"
    mask_hash: str = "lowbias32"

    @nn.compact
    def __call__(
        self, inputs: jax.Array, deterministic: bool, full_shape: tuple[int, ...] | None = None
    ) -> jax.Array:
        """``inputs`` unchanged when ``deterministic``, else :func:`dropout` of them (with the
        mask of the leading block of a ``full_shape`` array, if given)."""
        if deterministic or self.rate == 0.0:
            return inputs
        rng = self.make_rng(self.rng_collection)
        return dropout(rng, inputs, self.rate, full_shape=full_shape, mask_hash=self.mask_hash)
