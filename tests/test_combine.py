"""Tests for lrdist_jax.search.combine: the authors' logs reproduce their distributions."""

import doctest
import json
from pathlib import Path

import numpy as np
import pytest

from lrdist_jax.distributions import PAPER_COMBINED
from lrdist_jax.search import combine
from lrdist_jax.search.combine import (
    TrialResult,
    combine_files,
    combine_pair,
    combine_pairs,
    rank_weights,
    read_kenneweg_log,
    read_trials,
    read_trials_jsonl,
    weighted_geometric_mean,
)

LOGS = Path(__file__).parent / "data" / "kenneweg2022_hpo_logs"  # the authors' committed logs
PAIRS = ["sst2mrpc", "mrpcsst2", "qqpmrpc", "mrpcqqp"]
# Per-pair weighted distributions of METHODS.md 1.8 (3 significant digits).
PER_PAIR = {
    "sst2mrpc": [9.01e-6, 3.94e-6, 2.46e-6, 1.23e-6, 1.54e-6, 2.20e-6, 2.79e-6, 3.53e-6, 3.87e-6,
                 2.60e-6],
    "mrpcsst2": [5.41e-6, 1.81e-6, 7.61e-7, 6.57e-6, 1.10e-5, 4.14e-6, 9.58e-6, 5.22e-6, 1.85e-5,
                 9.31e-6],
    "qqpmrpc": [4.61e-6, 1.64e-5, 1.25e-6, 2.56e-7, 9.54e-7, 7.86e-7, 8.57e-7, 2.46e-6, 1.28e-6,
                1.12e-4],
    "mrpcqqp": [5.26e-7, 3.11e-6, 3.05e-7, 6.66e-6, 4.10e-6, 2.93e-6, 5.01e-6, 4.13e-6, 1.12e-6,
                5.79e-6],
}  # fmt: skip


def test_rank_weights_follow_reward_order():
    w = rank_weights([1.2, 1.8, 1.5, 1.0])
    np.testing.assert_allclose(w, [1.8**-2, 1.0, 1.8**-1, 1.8**-3])
    norm = np.sort(rank_weights(np.arange(50.0)))[::-1] / rank_weights(np.arange(50.0)).sum()
    np.testing.assert_allclose(norm[:5], [0.444, 0.247, 0.137, 0.076, 0.042], atol=1e-3)


def test_weighted_geometric_mean_properties():
    rng = np.random.default_rng(0)
    lrs = 10 ** rng.uniform(-7, -3, size=(6, 4))
    w = rng.uniform(0.1, 1, size=6)
    got = weighted_geometric_mean(lrs, w)
    assert np.all(got >= lrs.min(0)) and np.all(got <= lrs.max(0))
    np.testing.assert_allclose(weighted_geometric_mean(lrs, 3 * w), got)  # scale invariant
    one_hot = np.eye(6)[2]
    np.testing.assert_allclose(weighted_geometric_mean(lrs, one_hot), lrs[2])
    with pytest.raises(ValueError, match="positive"):
        weighted_geometric_mean([[1e-5, -1.0]], [1.0])


def test_combine_pair_prefers_best_trial():
    good = TrialResult(0.9, 0.9, 0.9, np.array([1e-5, 1e-3]))
    bad = TrialResult(0.9, 0.5, 0.5, np.array([1e-7, 1e-5]))
    got = combine_pair([bad, good], base=1.8)
    want = np.exp((np.log(good.lrs) + np.log(bad.lrs) / 1.8) / (1 + 1 / 1.8))
    np.testing.assert_allclose(got, want)


def test_reference_logs_reproduce_per_pair_and_combined_distributions():
    per_pair = []
    for pair, expected_n in zip(PAIRS, [49, 50, 23, 37], strict=True):
        trials = read_kenneweg_log(LOGS / f"{pair}.csv")
        assert len(trials) == expected_n
        got = combine_pair(trials)
        np.testing.assert_allclose(got, PER_PAIR[pair], rtol=0.006)  # 3 significant digits
        per_pair.append(got)
    combined = combine_pairs(per_pair)
    rel = np.abs(combined / np.array(PAPER_COMBINED) - 1)
    assert rel.max() < 0.005, rel
    files, _ = combine_files([LOGS / f"{p}.csv" for p in PAIRS])
    np.testing.assert_allclose(files, combined)


def _ledger(tmp_path, records, tail=""):
    path = tmp_path / "trials.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def _rec(i, status, lrs, p_s=None, p_o=None):
    metrics = {"acc_task1": 0.9}
    if p_s is not None:
        metrics.update(p_s=p_s, p_o=p_o, reward=p_s + p_o)
    return {"id": i, "status": status, "config": {"lrs": lrs}, "metrics": metrics, "budget": 2,
            "bracket": 0}  # fmt: skip


def test_jsonl_ledger_reader_keeps_completed_trials(tmp_path):
    a, b, c = ([1e-5] * 10, [1e-6] * 5 + [1e-4] * 5, [3e-6] * 10)
    recs = [
        _rec(0, "completed", a, 0.8, 0.7),
        _rec(1, "stopped", [1e-3] * 10),
        _rec(2, "completed", b, 0.9, 0.9),
        _rec(3, "failed", [1e-3] * 10),
        _rec(4, "completed", [1e-3] * 10),  # no p_s / p_o
        _rec(5, "completed", c, 0.6, 0.9),
    ]
    path = _ledger(tmp_path, recs, tail='{"id": 6, "sta')  # truncated last line after a crash
    with pytest.warns(UserWarning, match="truncated"):
        trials = read_trials(path)
    assert [t.p_s for t in trials] == [0.8, 0.9, 0.6]
    # The same trials written in the authors' log format combine to the same distribution.
    log = tmp_path / "log_file.csv"
    log.write_text(",".join(str(v) for t in trials for v in [0.9, t.p_s, t.p_o, *t.lrs]))
    from_log = combine_pair(read_trials(log))
    np.testing.assert_allclose(combine_pair(trials), from_log)
    w = np.array([1.8**-1, 1.0, 1.8**-2])  # rewards 1.5, 1.8, 1.5 (ties keep a valid order)
    assert set(np.round(rank_weights([1.5, 1.8, 1.5]), 12)) == set(np.round(w, 12))


@pytest.mark.parametrize(
    "content, problem",
    [
        ("", "empty"),
        ("0.9,0.8,0.7,1e-5", "multiple of 13"),
        ("0.9,0.8,abc" + ",1e-5" * 10, "not a number"),
        ("0.9,0.8,0.7" + ",1e-5" * 9 + ",-1", "positive"),
    ],
)
def test_bad_kenneweg_logs(tmp_path, content, problem):
    path = tmp_path / "log_file.csv"
    path.write_text(content)
    with pytest.raises(ValueError) as e:
        read_trials(path, "kenneweg2022")
    assert str(path) in str(e.value) and problem in str(e.value)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("\n", "empty"),
        ('{"id": 0, "status": "completed"\n{"id": 1}\n', "malformed"),
        (json.dumps(_rec(0, "stopped", [1e-5])) + "\n", "no completed trial"),
        (json.dumps({"id": 0, "status": "completed", "metrics": {"p_s": 1, "p_o": 1}}) + "\n",
         "config.lrs"),
    ],
)  # fmt: skip
def test_bad_ledgers(tmp_path, content, problem):
    path = tmp_path / "trials.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError) as e:
        read_trials_jsonl(path)
    assert str(path) in str(e.value) and problem in str(e.value)


def test_doctests():
    assert doctest.testmod(combine).failed == 0


def test_cli_combine_prints_json_and_writes_distribution(tmp_path, capsys):
    from lrdist_jax.cli import main
    from lrdist_jax.distributions import load_distribution

    out = tmp_path / "combined.json"
    files = [str(LOGS / f"{p}.csv") for p in PAIRS]
    assert main(["combine", "--format", "kenneweg2022", "--out", str(out), *files]) == 0
    printed = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(printed["lrs"], PAPER_COMBINED, rtol=0.005)
    dist = load_distribution(out)
    np.testing.assert_allclose(dist.lrs, printed["lrs"], rtol=1e-6)
    assert dist.num_layers == 12 and dist.slots[2] == "layer 2"
    # A larger base puts more weight on the best trial: the result changes.
    assert main(["combine", "--base", "5", *files]) == 0
    assert json.loads(capsys.readouterr().out)["lrs"] != printed["lrs"]


def test_cli_combine_jsonl_and_bad_input(tmp_path, capsys):
    from lrdist_jax.cli import main

    path = _ledger(tmp_path, [_rec(0, "completed", [1e-5] * 8, 0.8, 0.7),
                              _rec(1, "completed", [1e-6] * 8, 0.9, 0.9)])  # fmt: skip
    assert main(["combine", "--num-layers", "6", "--out", str(tmp_path / "d.json"), str(path)]) == 0
    lrs = json.loads(capsys.readouterr().out)["lrs"]
    assert len(lrs) == 8 and 1e-6 < lrs[0] < 1e-5
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["combine", str(empty)]) == 2
    assert str(empty) in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 0\n{"id": 1}\n')
    assert main(["combine", "--format", "jsonl", str(broken)]) == 2
    assert "malformed" in capsys.readouterr().err
    assert main(["combine", str(tmp_path / "missing.csv")]) == 2
