"""benchmarks/search_landscape.py: what the search-efficiency target asks of a sampler."""

import json
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))
from search_efficiency import apply_objective_defaults  # noqa: E402
from search_landscape import (  # noqa: E402
    analyze,
    build_parser,
    expected_max,
    full_budget_results,
    landscape_header,
    main,
    read_jsonl,
    screened_hit_rate,
)


def test_expected_max_of_an_empirical_distribution():
    assert expected_max(np.array([0.0, 1.0]), 1) == pytest.approx(0.5)
    assert expected_max(np.array([0.0, 1.0]), 2) == pytest.approx(0.75)  # 1 unless both are 0
    assert expected_max(np.array([3.0, 1.0, 2.0]), 1) == pytest.approx(2.0)
    # Against a Monte Carlo estimate for a larger sample.
    rng = np.random.default_rng(0)
    values = rng.normal(size=50)
    mc = values[rng.integers(0, 50, size=(200000, 20))].max(axis=1).mean()
    assert expected_max(values, 20) == pytest.approx(mc, abs=5e-3)
    with pytest.raises(ValueError, match="n >= 1"):
        expected_max(values, 0)


def test_screened_hit_rate_follows_the_low_budgets_ranking():
    full = np.arange(8.0)
    # A low budget that ranks like the full one promotes the subset's best: it reaches the top
    # value 7 exactly when 7 is among the 4 drawn (probability 4/8).
    assert screened_hit_rate(full * 2, full, 4, 7.0, draws=4000) == pytest.approx(0.5, abs=0.03)
    # One that ranks backwards promotes the subset's worst, which is never 7.
    assert screened_hit_rate(-full, full, 4, 7.0, draws=500) == 0.0
    # All tied at the low budget: the promoted one is any of the 4 (a hit with probability 1/8).
    assert screened_hit_rate(np.zeros(8), full, 4, 7.0, draws=4000) == pytest.approx(
        0.125, abs=0.02
    )


def test_full_budget_results_of_the_hyperband_plan():
    # R = 4, eta = 4: bracket 1 trains 4 configurations for 1 epoch per phase (2 epochs each),
    # promotes one to 4 (8 epochs); bracket 0 trains 2 at 4. An iteration is 32 epochs.
    assert full_budget_results(4, 4, 1, "descending", 32) == [16.0, 24.0, 32.0]
    assert full_budget_results(4, 4, 5, "descending", 160 / 3) == [16.0, 24.0, 32.0, 48.0]
    assert full_budget_results(4, 4, 5, "ascending", 160 / 3) == [8.0, 16.0, 32.0, 40.0, 48.0]
    assert full_budget_results(4, 4, 1, "descending", 15) == []


def test_analyze_sets_the_targets_hit_rate_against_what_hyperband_needs():
    full = np.linspace(1.0, 2.0, 21)
    out = analyze({1: full[::-1].copy(), 4: full}, max_budget=4, eta=4, iterations=5, draws=500)
    assert out["total_budget"] == 160 and out["random_trials"] == 20
    assert out["target"] == pytest.approx(expected_max(full, 20))
    assert out["hit_rate"] == pytest.approx(np.mean(full >= out["target"]))
    assert out["random_trials_in_a_third"] == 6
    assert out["random_within_a_third"] == pytest.approx(1 - (1 - out["hit_rate"]) ** 6)
    assert out["hyperband_results_in_a_third"] == [16.0, 24.0, 32.0, 48.0]
    assert out["required_hit_rate"] == pytest.approx(1 - 0.5**0.25)
    assert out["required_over_random"] == pytest.approx((1 - 0.5**0.25) / out["hit_rate"])
    low = out["fidelity"]["1"]
    assert low["rank_correlation"] == pytest.approx(-1.0) and low["screened_hit_rate"] == 0.0
    assert out["rewards"]["4"]["quantiles"]["1.0"] == 2.0
    with pytest.raises(ValueError, match="not the full 4"):
        analyze({1: full}, max_budget=4, eta=4, iterations=1)
    with pytest.raises(ValueError, match="same"):
        analyze({1: full[:3], 4: full}, max_budget=4, eta=4, iterations=1)


def _jsonl(path, header, rewards):
    with open(path, "w") as f:
        f.write(json.dumps({"header": header}) + "\n")
        for k, (r1, r4) in enumerate(rewards):
            row = {"k": k, "lrs": [1e-3] * 4, "rewards": {"1": r1, "4": r4}, "seconds": {}}
            f.write(json.dumps(row) + "\n")


def test_cli_analyses_its_jsonl_and_refuses_bad_input(tmp_path, capsys):
    args = ["--objective", "smoke", "--out", str(tmp_path), "--iterations", "2", "--configs", "4"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--analyze-only"])
    assert e.value.code == 2 and "0 finished configurations" in capsys.readouterr().err
    path = tmp_path / "search_landscape_smoke.jsonl"
    assert not path.exists()  # an analysis-only run writes no JSONL
    with pytest.raises(SystemExit) as e:
        main([*args, "--budgets", "1", "2"])  # the smoke objective's full budget is 4
    assert e.value.code == 2 and "include it" in capsys.readouterr().err

    header = landscape_header(apply_objective_defaults(build_parser().parse_args(args)))
    # A failed (None) configuration is left out; the fifth is beyond --configs 4.
    _jsonl(path, header, [(1.0, 1.1), (1.2, 1.3), (None, 1.0), (1.1, 1.2), (2.0, 2.0)])
    out = main([*args, "--analyze-only"])
    assert out["configs"] == 3 and out["total_budget"] == 2 * 68
    assert out["rewards"]["4"]["quantiles"]["1.0"] == 1.3
    assert out["fidelity"]["1"]["rank_correlation"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "search_landscape_smoke.json").read_text())
    assert saved["target"] == out["target"] and saved["seed"] == 100

    _jsonl(path, {**header, "seed": 5}, [(1.0, 1.1), (1.2, 1.3)])
    with pytest.raises(SystemExit) as e:
        main([*args, "--analyze-only"])
    assert e.value.code == 2 and "another set-up" in capsys.readouterr().err


def test_read_jsonl_drops_a_torn_last_line_and_names_a_damaged_one(tmp_path):
    path = tmp_path / "l.jsonl"
    assert read_jsonl(str(path)) == ([], 0)
    intact = '{"header": 1}\n{"k": 0}\n'
    path.write_text(intact + '{"k": 1, "rew')  # killed while writing the third line
    assert read_jsonl(str(path)) == ([{"header": 1}, {"k": 0}], len(intact))
    path.write_text(intact + '{"k": 1}')  # killed before the newline: appending would join it
    assert read_jsonl(str(path)) == ([{"header": 1}, {"k": 0}], len(intact))
    path.write_text(intact)
    assert read_jsonl(str(path)) == ([{"header": 1}, {"k": 0}], len(intact))
    path.write_text('{"header": 1}\n{"k": 0\n{"k": 1}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_jsonl(str(path))
