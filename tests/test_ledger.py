"""Tests for lrdist_jax.search.ledger.TrialLedger."""

import json

import numpy as np
import pytest

from lrdist_jax.search.ledger import TrialLedger, to_strict_json


def record(i, **extra):
    rec = {
        "id": i,
        "config": {"lrs": [1e-5 * (i + 1), 3e-6]},
        "budget": 3,
        "bracket": 1,
        "rung": 0,
        "status": "completed",
        "reward": 1.5 + i,
        "metrics": {"p_s": 0.9, "p_o": 0.6},
        "reason": None,
    }
    rec.update(extra)
    return rec


def _strict_loads(line):
    def bad(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(line, parse_constant=bad)


def test_round_trip_one_line_per_record(tmp_path):
    path = tmp_path / "sub" / "trials.jsonl"
    ledger = TrialLedger(path)
    assert ledger.load() == [] and len(ledger) == 0
    recs = [
        record(0),
        record(1, status="stopped", reward=0.4),
        record(2, status="failed", reward=None, reason="FloatingPointError"),
    ]
    for r in recs:
        ledger.append(r)
    assert ledger.load() == recs
    raw = path.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 3
    assert [_strict_loads(line) for line in raw.decode().splitlines()] == recs
    assert TrialLedger(path).load() == recs  # a new instance reads the same


def test_non_finite_and_numpy_values_become_strict_json(tmp_path):
    ledger = TrialLedger(tmp_path / "t.jsonl")
    ledger.append(
        record(
            0,
            metrics={
                "loss": float("nan"),
                "acc": np.float32(0.5),
                "hist": np.arange(3),
                "inf": float("-inf"),
            },
        )
    )
    (line,) = (tmp_path / "t.jsonl").read_text().splitlines()
    got = _strict_loads(line)["metrics"]
    assert got == {"loss": None, "acc": 0.5, "hist": [0, 1, 2], "inf": None}
    assert to_strict_json((1, 2.0, {"a": float("inf")})) == [1, 2.0, {"a": None}]
    with pytest.raises(TypeError, match="Cannot store a object"):
        to_strict_json(object())


def test_truncated_last_line_is_ignored_then_removed_on_next_append(tmp_path):
    path = tmp_path / "trials.jsonl"
    ledger = TrialLedger(path)
    ledger.append(record(0))
    ledger.append(record(1))
    full = path.read_bytes()
    partial = (json.dumps(record(2)) + "\n").encode()[:37]  # a write cut short by SIGKILL
    path.write_bytes(full + partial)
    with pytest.warns(RuntimeWarning, match="truncated last line"):
        assert ledger.load() == [record(0), record(1)]
    # Also a complete JSON object without its newline counts as an interrupted write.
    path.write_bytes(full + json.dumps(record(2)).encode())
    with pytest.warns(RuntimeWarning, match="truncated"):
        assert len(ledger.load()) == 2
    ledger.append(record(2))
    assert (
        path.read_bytes() == full + (json.dumps(record(2), separators=(",", ":")) + "\n").encode()
    )
    assert ledger.load() == [record(0), record(1), record(2)]


def test_damaged_middle_line_is_an_error(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text(json.dumps(record(0)) + "\n{garbage\n" + json.dumps(record(2)) + "\n")
    with pytest.raises(ValueError, match="line 2: not a JSON record"):
        TrialLedger(path).load()


def test_append_validates_records(tmp_path):
    ledger = TrialLedger(tmp_path / "t.jsonl")
    with pytest.raises(ValueError, match="lacks required keys \\['budget'\\]"):
        ledger.append({k: v for k, v in record(0).items() if k != "budget"})
    with pytest.raises(ValueError, match="status must be one of"):
        ledger.append(record(0, status="running"))
    assert ledger.load() == []


def test_only_process_zero_writes(tmp_path, monkeypatch):
    import jax

    from lrdist_jax.search.ledger import TrialLedger

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    ledger = TrialLedger(tmp_path / "trials.jsonl")
    ledger.append({"id": 0, "config": {"lrs": [1e-5]}, "budget": 1, "status": "completed",
                   "reward": 1.0})  # fmt: skip
    assert not (tmp_path / "trials.jsonl").exists()
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    ledger.append({"id": 0, "config": {"lrs": [1e-5]}, "budget": 1, "status": "completed",
                   "reward": 1.0})  # fmt: skip
    assert len(TrialLedger(tmp_path / "trials.jsonl").load()) == 1
