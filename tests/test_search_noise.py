"""benchmarks/search_noise.py's summary of a [configs, seeds] reward matrix."""

import json
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))
from search_noise import fidelity, main, summarize  # noqa: E402


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


def test_fidelity_of_a_low_budget():
    full = np.array([[1.0, 1.1], [2.0, 2.2], [3.0, 3.3], [4.0, 4.4]])
    same_order = fidelity(full * 0.5 + 0.1, full)  # any increasing map keeps every promotion
    assert same_order["rank_correlation_by_seed"] == pytest.approx([1.0, 1.0])
    assert same_order["rank_correlation_of_means"] == pytest.approx(1.0)
    assert same_order["top_half_kept"] == [1.0, 1.0]
    reversed_ = fidelity(-full, full)  # a rung that promotes exactly the wrong half
    assert reversed_["rank_correlation_by_seed"] == pytest.approx([-1.0, -1.0])
    assert reversed_["top_half_kept"] == [0.0, 0.0]
    # Seed 1's low rung swaps the middle two configurations: one of its top two is wrong.
    low = full.copy()
    low[[1, 2], 1] = low[[2, 1], 1]
    mixed = fidelity(low, full)
    assert mixed["rank_correlation_by_seed"] == pytest.approx([1.0, 0.8])  # 1 - 6*2/(4*15)
    assert mixed["top_half_kept"] == [1.0, 0.5]
    with pytest.raises(ValueError, match="one shape"):
        fidelity(full[:3], full)


def test_cli_rejects_a_bad_budget_or_comparison(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["--max-budget", "2", "--budget", "3", "--out", str(tmp_path)])
    assert err.value.code == 2
    assert "--budget must be in [1, --max-budget=2]" in capsys.readouterr().err
    other = tmp_path / "full.json"
    other.write_text(json.dumps({"seeds": [5, 6], "configs": [[1e-5]] * 9, "budget": 2}))
    with pytest.raises(SystemExit) as err:
        main(["--seeds", "0", "1", "--compare", str(other), "--out", str(tmp_path)])
    assert err.value.code == 2 and "other seeds or configurations" in capsys.readouterr().err
    other.write_text(json.dumps({"seeds": [0, 1], "configs": [[1e-5]] * 9, "budget": 1}))
    with pytest.raises(SystemExit) as err:
        main(["--seeds", "0", "1", "--max-budget", "2", "--compare", str(other)])
    assert err.value.code == 2 and "not the full --max-budget=2" in capsys.readouterr().err
    for text in ("{not json", "[]"):
        other.write_text(text)
        with pytest.raises(SystemExit) as err:
            main(["--compare", str(other), "--out", str(tmp_path)])
        assert err.value.code == 2 and "not a search_noise result" in capsys.readouterr().err
    assert not list(tmp_path.glob("search_noise_*"))  # nothing written
