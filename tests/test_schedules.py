"""Tests for lrdist_jax.schedules: known values of the phase schedules (METHODS.md 1.3)."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrdist_jax import schedules
from lrdist_jax.schedules import phase_lengths, schedule_factor


def _authors_factor(t, T, W):
    # The authors' CosineWarmupScheduler.get_lr_factor, transcribed.
    f = 0.5 * (1 + np.cos(np.pi * t / T))
    if t <= W:
        f *= t * 1.0 / W
    return f


def test_phase_lengths():
    assert phase_lengths(3668, 5, 4) == (4585, 459)  # MRPC train, 5 epochs, batch 4
    assert phase_lengths(500, 3, 4) == (375, 38)
    assert phase_lengths(40, 1, 4) == (10, 1)
    with pytest.raises(ValueError, match="batch_size"):
        phase_lengths(10, 1, 0)


def test_cosine_warmup_matches_authors_formula():
    T, W = 50, 5
    got = jax.vmap(lambda t: schedule_factor("cosine_warmup", t, T, W))(jnp.arange(T + 1))
    want = np.array([_authors_factor(t, T, W) for t in range(T + 1)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-7)
    assert float(got[0]) == 0.0 and abs(float(got[T])) < 1e-7
    assert float(got[W]) == pytest.approx(0.5 * (1 + math.cos(math.pi * W / T)), rel=1e-6)


def test_cosine_without_warmup_and_clipping_past_the_end():
    assert float(schedule_factor("cosine_warmup", 0, 10, 0)) == 1.0
    assert float(schedule_factor("cosine_warmup", 5, 10, 0)) == pytest.approx(0.5)
    assert float(schedule_factor("cosine_warmup", 15, 10, 0)) == pytest.approx(0.0, abs=1e-7)


def test_linear_and_constant():
    assert float(schedule_factor("linear", 0, 10, 0)) == 1.0
    assert float(schedule_factor("linear", 4, 10, 0)) == pytest.approx(0.6)
    assert float(schedule_factor("linear", 12, 10, 0)) == 0.0
    # warmup then decay from W to T
    assert float(schedule_factor("linear", 1, 10, 2)) == pytest.approx(0.5)
    assert float(schedule_factor("linear", 2, 10, 2)) == pytest.approx(1.0)
    assert float(schedule_factor("linear", 6, 10, 2)) == pytest.approx(0.5)
    assert float(schedule_factor("constant", 123, 10, 2)) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_factor("cosine", 0, 10, 0)


def test_lengths_are_data_not_constants():
    traces = []

    @jax.jit
    def f(t, T, W):
        traces.append(1)
        return schedule_factor("cosine_warmup", t, T, W)

    a = f(jnp.int32(3), jnp.int32(10), jnp.int32(2))
    b = f(jnp.int32(3), jnp.int32(20), jnp.int32(4))
    assert len(traces) == 1
    assert float(a) != float(b)


def test_doctests():
    assert doctest.testmod(schedules).failed == 0
