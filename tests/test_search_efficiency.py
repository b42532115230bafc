"""benchmarks/search_efficiency.py: budget arithmetic and the summary against random search."""

import json
import pathlib
import sys
import types

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "benchmarks"))
from search_efficiency import (  # noqa: E402
    Tracker,
    _median_seed,
    budget_to_reach,
    final_best,
    hyperband_total,
    main,
    random_runs_from,
    summarize,
)


def test_hyperband_total_counts_both_phases():
    # Hyperband(1, 4, eta=2): brackets 4@1 -> 2@2 -> 1@4 (12), 3@2 -> 1@4 (10), 3@4 (12).
    assert hyperband_total(4, 2) == 2 * (12 + 10 + 12) == 68
    # Hyperband(1, 2, eta=2): 2@1 -> 1@2 (4), 2@2 (4).
    assert hyperband_total(2, 2) == 16


def test_budget_to_reach_and_final_best_stop_at_the_total():
    curve = [[8, None], [16, 1.2], [24, 1.3], [40, 1.4]]
    assert budget_to_reach(curve, 1.25, total=40) == 24
    assert budget_to_reach(curve, 1.4, total=40) == 40
    assert budget_to_reach(curve, 1.4, total=39) is None  # reached only after the budget
    assert budget_to_reach(curve, 1.5, total=40) is None
    assert final_best(curve, 40) == 1.4 and final_best(curve, 30) == 1.3
    assert final_best([[8, None]], 40) is None


def test_tracker_records_the_best_and_every_full_budget_result():
    objective = types.SimpleNamespace(epochs_trained=10.0)  # 10 epochs before this method
    tracker = Tracker(objective, max_budget=4)
    for spent, status, budget, reward in [
        (2, "completed", 1, 1.9),  # a lower rung: budget spent, no result
        (10, "completed", 4, 1.2),
        (12, "stopped", 4, None),
        (20, "completed", 4, 1.1),
        (28, "failed", 4, float("nan")),
    ]:
        objective.epochs_trained = 10.0 + spent
        tracker.record(status, budget, reward)
    assert tracker.curve == [[2, None], [10, 1.2], [12, 1.2], [20, 1.2], [28, 1.2]]
    assert tracker.results == [[10, 1.2], [20, 1.1]] and tracker.trials == 5


def test_the_median_seed_counts_the_seeds_that_never_reached_the_target():
    assert _median_seed([0.25, 0.5, 0.75], 3) == pytest.approx(0.5)
    assert _median_seed([0.25, 0.5, 0.75], 4) == pytest.approx(0.625)  # 0.5, 0.75 in the middle
    assert _median_seed([0.25, 0.25, 0.25, 0.33, 0.63, 0.78], 10) == pytest.approx(0.705)
    assert _median_seed([0.25], 3) is None and _median_seed([], 0) is None


def test_summarize_measures_every_method_against_random_searchs_mean():
    runs = {
        "random": [
            {"curve": [[8, 1.0], [16, 1.2]], "final_best": 1.2},
            {"curve": [[8, 1.4], [16, 1.4]], "final_best": 1.4},
        ],
        "hyperband-gp": [
            {
                "curve": [[4, None], [5, 1.3], [12, 1.5]],
                "results": [[5, 1.3], [5.25, 1.25], [12, 1.5]],
                "final_best": 1.5,
            },
            {"curve": [[4, None], [16, 1.1]], "results": [[16, 1.1]], "final_best": 1.1},
        ],
    }
    target, summary = summarize(runs, total=16)
    assert target == pytest.approx(1.3)
    gp = summary["hyperband-gp"]
    assert gp["reached_target"] == "1/2" and gp["within_a_third"] == 1
    assert gp["median_fraction_to_target"] == pytest.approx(5 / 16)
    # Over both seeds, the one that missed counting as the worst: the median is not finite.
    assert gp["fraction_of_the_median_seed"] is None
    assert gp["mean_final_best"] == pytest.approx(1.3)
    assert [r["budget_to_target"] for r in runs["hyperband-gp"]] == [5, None]
    assert summary["random"]["reached_target"] == "1/2"  # the second seed, from its start
    assert runs["random"][1]["fraction_of_budget"] == pytest.approx(0.5)
    # Results up to 16 / 3: 1.3 (a hit) and 1.25 (not); runs without "results" count none.
    assert gp["results_in_a_third"] == 2 and gp["hit_rate_in_a_third"] == pytest.approx(0.5)
    assert summary["random"]["results_in_a_third"] == 0
    assert summary["random"]["hit_rate_in_a_third"] is None
    assert summarize({"hyperband-gp": runs["hyperband-gp"]}, 16)[0] is None  # no random runs


LEGACY_CONFIG = {"train_size": 128, "pair": ["sst2", "mrpc"]}  # before dropout_hash existed
KEYS = {
    "config": {**LEGACY_CONFIG, "dropout_hash": "lowbias32"},
    "space": {"low": 1e-7},
    "max_budget": 4,
}


def _reference(tmp_path, **change):
    doc = {
        "config": KEYS["config"],
        "space": KEYS["space"],
        "hyperband": {"max_budget": 4},
        "total_budget": 136,
        "runs": {
            "random": [
                {"seed": 0, "curve": [[8, 1.1], [16, 1.3], [24, 1.3], [32, 1.35]]},
                {"seed": 1, "curve": [[8, 1.2], [16, 1.2], [24, 1.4], [32, 1.4]]},
            ]
        },
    }
    doc.update(change)
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_random_runs_from_an_earlier_result_are_cut_at_this_budget(tmp_path):
    runs = random_runs_from(_reference(tmp_path), KEYS, [1, 0], total=24)
    assert [r["seed"] for r in runs] == [1, 0]
    assert runs[0]["curve"] == [[8, 1.2], [16, 1.2], [24, 1.4]] and runs[0]["final_best"] == 1.4
    assert runs[1]["final_best"] == 1.3 and runs[1]["trials"] == 3 and runs[1]["spent"] == 24


@pytest.mark.parametrize(
    ("change", "keys", "seeds", "total", "message"),
    [
        ({"space": {"low": 1e-6}}, KEYS, [0], 24, "another space"),
        ({}, {**KEYS, "max_budget": 2}, [0], 24, "another max_budget"),
        ({"total_budget": 16}, KEYS, [0], 24, "spent 16 epochs"),
        ({}, KEYS, [0, 5], 24, r"seeds \[5\]"),
        ({"runs": {}}, KEYS, [0], 24, "not a readable result"),
        ({"config": LEGACY_CONFIG}, KEYS, [0], 24, "another config"),
    ],
)
def test_random_runs_from_refuses_another_setup(tmp_path, change, keys, seeds, total, message):
    with pytest.raises(ValueError, match=message):
        random_runs_from(_reference(tmp_path, **change), keys, seeds, total)


def test_cli_random_from_errors_exit_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    common = ["--objective", "smoke", "--out", str(out), "--methods", "hyperband-gp"]
    with pytest.raises(SystemExit) as e:
        main([*common, "random", "--random-from", _reference(tmp_path)])
    assert e.value.code == 2 and "drop 'random'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*common, "--random-from", str(tmp_path / "missing.json")])
    assert e.value.code == 2 and "not a readable result" in capsys.readouterr().err
    assert not out.exists()


def test_random_runs_from_reads_a_result_older_than_dropout_hash_as_threefry(tmp_path):
    threefry = {**KEYS, "config": {**LEGACY_CONFIG, "dropout_hash": "threefry"}}
    runs = random_runs_from(_reference(tmp_path, config=LEGACY_CONFIG), threefry, [0], total=24)
    assert runs[0]["final_best"] == 1.3
