"""benchmarks/search_noise.py's summary of a [configs, seeds] reward matrix."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))
from search_noise import summarize  # noqa: E402


def test_pure_signal_and_pure_noise():
    signal = summarize(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    assert signal["noise_std"] == 0.0 and signal["signal_std"] == pytest.approx(1.0)
    assert signal["signal_to_noise"] == float("inf")
    assert signal["best_config_by_seed"] == [2, 2] and signal["best_config_by_mean"] == 2
    noise = summarize(np.array([[1.0, 3.0], [3.0, 1.0]]))
    assert noise["noise_std"] == pytest.approx(np.sqrt(2.0))  # var([1, 3], ddof=1) = 2
    assert noise["signal_std"] == 0.0 and noise["signal_to_noise"] == 0.0
    assert noise["best_config_by_seed"] == [1, 0]  # the winner changes with the seed


def test_pooled_noise_and_validation():
    rewards = np.array([[0.0, 2.0, 4.0], [1.0, 1.0, 1.0]])  # variances 4 and 0
    out = summarize(rewards)
    assert out["noise_std"] == pytest.approx(np.sqrt(2.0))
    assert out["config_means"] == [2.0, 1.0]
    # A seed that lifts every configuration alike is noise but no interaction.
    shifted = summarize(np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 1.0]]))
    assert shifted["noise_std"] == pytest.approx(np.sqrt(0.5))
    assert shifted["interaction_std"] == pytest.approx(0.0, abs=1e-12)
    assert shifted["rank_correlation"] == pytest.approx(1.0)
    swapped = summarize(np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]))
    assert swapped["rank_correlation"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="seeds>=2"):
        summarize(np.ones((3, 1)))
