"""Tests for lrdist_jax.search.runner: end to end, failures, settings checks and kill/resume."""

import json
import math
import os
import random
import signal
import time

import pytest

from lrdist_jax.search.bo import RandomSampler, SkoptSampler
from lrdist_jax.search.hyperband import Hyperband, StoppingHyperband
from lrdist_jax.search.ledger import TrialLedger
from lrdist_jax.search.runner import run_search

OPT = (-5.3, -4.6)


def clean_value(lrs):
    return -sum((math.log10(v) - o) ** 2 for v, o in zip(lrs, OPT, strict=True))


def synthetic(config, budget, report):
    """Smooth function of log-lrs; larger budgets give higher, less noisy rewards."""
    clean = clean_value(config["lrs"])
    for epoch in range(1, budget + 1):
        if report(epoch, clean / 2 - 1.0 / epoch):
            return {"status": "stopped", "metrics": {"epochs": epoch}}
    noise = math.sin(1e3 * sum(math.log10(v) for v in config["lrs"]) + budget)
    return {
        "status": "completed",
        "reward": clean - 1.0 / budget + 0.3 * noise / budget,
        "metrics": {"clean": clean, "nan_metric": float("nan")},
    }


def _key(records):
    return [
        (r["id"], json.dumps(r["config"]), r["budget"], r["status"], r["reward"]) for r in records
    ]


def test_end_to_end_hyperband_improves_on_first_config(tmp_path, capsys):
    sampler = SkoptSampler(
        2, seed=0, n_initial_points=4, acq_optimizer="sampling", n_acq_points=500
    )
    scheduler = Hyperband(1, 9, eta=3)
    records = run_search(synthetic, sampler, scheduler, workdir=tmp_path, progress=True)
    out = capsys.readouterr().out
    assert "bracket s=2" in out and "total: 22 trials" in out  # the schedule is printed first

    assert [r["id"] for r in records] == list(range(len(records)))
    assert len(records) == scheduler.total_trials == 22
    assert records[0]["config"] == {"lrs": [1e-5, 1e-5]}
    on_disk = TrialLedger(tmp_path / "trials.jsonl").load()
    assert _key(on_disk) == _key(records)
    assert on_disk[0]["metrics"]["nan_metric"] is None  # strict JSON

    best = json.loads((tmp_path / "best.json").read_text())
    top = max(r["budget"] for r in records)
    expected = max((r for r in records if r["budget"] == top), key=lambda r: r["reward"])
    assert best["id"] == expected["id"] and best["reward"] == expected["reward"]
    first_at_max = synthetic({"lrs": [1e-5, 1e-5]}, 9, lambda e, v: False)["reward"]
    assert best["reward"] > first_at_max
    assert clean_value(best["config"]["lrs"]) > clean_value([1e-5, 1e-5])
    assert json.loads((tmp_path / "search.json").read_text())["sampler"]["seed"] == 0


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    def fragile(config, budget, report):
        lr0, lr1 = config["lrs"]
        if lr0 > 1e-4:
            raise FloatingPointError("loss is nan")
        if lr1 > 1e-4:
            return {"status": "completed", "reward": float("nan"), "metrics": {}}
        return synthetic(config, budget, report)

    sampler = RandomSampler(2, seed=1)
    scheduler = Hyperband(1, 9, eta=3)
    records = run_search(fragile, sampler, scheduler, workdir=tmp_path, progress=False)
    failed = [r for r in records if r["status"] == "failed"]
    assert failed, "the random configurations should include diverging ones"
    for r in failed:
        lr0, lr1 = r["config"]["lrs"]
        assert r["reward"] is None
        if lr0 > 1e-4:
            assert r["reason"] == "FloatingPointError: loss is nan"
        else:
            assert lr1 > 1e-4 and r["reason"] == "non-finite reward nan"
    failed_configs = {json.dumps(r["config"]) for r in failed}
    promoted = [r for r in records if r["rung"] > 0]
    assert not failed_configs & {json.dumps(r["config"]) for r in promoted}
    assert scheduler.is_finished
    assert all(r["status"] == "completed" for r in records if r not in failed)


def test_other_exceptions_propagate(tmp_path):
    def buggy(config, budget, report):
        raise KeyError("bug in the objective")

    with pytest.raises(KeyError):
        run_search(buggy, RandomSampler(2), Hyperband(1, 3), workdir=tmp_path, progress=False)
    assert TrialLedger(tmp_path / "trials.jsonl").load() == []


def test_stopping_mode_stops_through_report(tmp_path):
    sampler = RandomSampler(2, seed=4)
    scheduler = StoppingHyperband(4, 10)
    records = run_search(synthetic, sampler, scheduler, workdir=tmp_path, progress=False)
    assert len(records) == 10 and all(r["budget"] == 4 for r in records)
    stopped = [r for r in records if r["status"] == "stopped"]
    assert stopped and any(r["status"] == "completed" for r in records)
    for r in stopped:
        epoch, value = r["reports"][-1]
        assert epoch in (1, 2, 4) and r["reward"] == value
        assert len(r["reports"]) == r["metrics"]["epochs"]
    best = json.loads((tmp_path / "best.json").read_text())
    done = [r for r in records if r["status"] == "completed"]
    assert best["reward"] == max(r["reward"] for r in done)


@pytest.mark.parametrize("mode", ["hyperband", "stopping"])
def test_resume_after_interruption_gives_the_same_trials(tmp_path, mode):
    def build():
        sampler = SkoptSampler(
            2, seed=5, n_initial_points=3, acq_optimizer="sampling", n_acq_points=300
        )
        sched = Hyperband(1, 4, eta=2) if mode == "hyperband" else StoppingHyperband(4, 8)
        return sampler, sched

    reference = run_search(synthetic, *build(), workdir=tmp_path / "ref", progress=False)

    class Crash(BaseException):
        pass

    calls = {"n": 0}

    def crashing(limit):
        def objective(config, budget, report):
            calls["n"] += 1
            if calls["n"] > limit:
                raise Crash()
            return synthetic(config, budget, report)

        return objective

    work = tmp_path / "resumed"
    for limit in (3, 2, 2):  # crash inside the 4th, 3rd, 3rd new trial of each restart
        calls["n"] = 0
        with pytest.raises(Crash):
            run_search(crashing(limit), *build(), workdir=work, progress=False)
    final = run_search(synthetic, *build(), workdir=work, progress=False)
    assert _key(final) == _key(reference)
    assert _key(TrialLedger(work / "trials.jsonl").load()) == _key(reference)


def test_refuses_a_workdir_with_different_settings(tmp_path):
    run_search(
        synthetic,
        RandomSampler(2, seed=0),
        Hyperband(1, 3),
        workdir=tmp_path,
        progress=False,
        settings={"pair": "sst2->mrpc"},
    )
    with pytest.raises(ValueError, match=r"different settings.*sampler\.seed: 0 .*vs 1"):
        run_search(
            synthetic,
            RandomSampler(2, seed=1),
            Hyperband(1, 3),
            workdir=tmp_path,
            progress=False,
            settings={"pair": "sst2->mrpc"},
        )
    with pytest.raises(ValueError, match=r"user\.pair"):
        run_search(
            synthetic,
            RandomSampler(2, seed=0),
            Hyperband(1, 3),
            workdir=tmp_path,
            progress=False,
            settings={"pair": "mrpc->sst2"},
        )
    # Same settings: the finished search is replayed, nothing is re-run.
    again = run_search(
        lambda *a: pytest.fail("must not run"),
        RandomSampler(2, seed=0),
        Hyperband(1, 3),
        workdir=tmp_path,
        progress=False,
        settings={"pair": "sst2->mrpc"},
    )
    assert len(again) == Hyperband(1, 3).total_trials


def test_refuses_a_ledger_from_a_different_search(tmp_path):
    run_search(
        synthetic, RandomSampler(2, seed=0), Hyperband(1, 3), workdir=tmp_path, progress=False
    )
    path = tmp_path / "trials.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["config"]["lrs"][0] *= 1.5
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="holds a different search: trial record 1"):
        run_search(
            synthetic, RandomSampler(2, seed=0), Hyperband(1, 3), workdir=tmp_path, progress=False
        )
    os.remove(tmp_path / "search.json")
    with pytest.raises(ValueError, match="search.json does not"):
        run_search(
            synthetic, RandomSampler(2, seed=0), Hyperband(1, 3), workdir=tmp_path, progress=False
        )


def _wait_lines(path, k, proc, timeout=60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if k == 0:
            return True
        if not proc.is_alive():
            return False
        if os.path.exists(path):
            with open(path, "rb") as f:
                if f.read().count(b"\n") >= k:
                    return True
        time.sleep(0.002)
    raise TimeoutError(f"ledger did not reach {k} lines")


def test_sigkill_at_random_moments_then_resume_matches_uninterrupted_run(tmp_path):
    """SIGKILL a search process at several moments, restart it each time; compare the result.

    The search runs in child processes started by a fork server that imported the modules once
    (a fresh interpreter per restart would spend seconds on imports). Kills: right after start,
    a random few ms after the ledger reached k lines (mostly inside a trial or a GP fit), and
    once between trials (record written, scheduler not yet told).
    """
    import multiprocessing

    import _search_kill_target as helper

    sampler, scheduler = helper.build()
    reference = run_search(
        helper.objective_fast, sampler, scheduler, workdir=tmp_path / "ref", progress=False
    )

    ctx = multiprocessing.get_context("forkserver")
    # Modules importable without tests/ on sys.path (Python 3.11's fork server ignores sys.path).
    ctx.set_forkserver_preload(
        ["lrdist_jax.search.runner", "lrdist_jax.search.bo", "skopt", "pytest", "tqdm.auto"]
    )
    work = tmp_path / "killed"
    work.mkdir()
    ledger_path = work / "trials.jsonl"
    rng = random.Random(0)
    kills = 0
    for k in (0, 2, 5, 8, 10):
        proc = ctx.Process(target=helper.main, args=(["helper", str(work)],))
        proc.start()
        if _wait_lines(ledger_path, k, proc):
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.join()
    proc = ctx.Process(target=helper.main, args=(["helper", str(work), "13"],))
    proc.start()
    t0 = time.monotonic()
    while not (work / "paused").exists() and proc.is_alive():
        assert time.monotonic() - t0 < 60
        time.sleep(0.002)
    assert proc.is_alive(), "the run should pause between trials 12 and 13"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    assert len(TrialLedger(ledger_path).load()) == 13
    assert kills >= 4

    proc = ctx.Process(target=helper.main, args=(["helper", str(work)],))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0

    final = TrialLedger(ledger_path).load()
    ids = [r["id"] for r in final]
    assert len(ids) == len(set(ids)) == len(reference) == scheduler.total_trials
    assert _key(final) == _key(reference)
    assert (
        json.loads((work / "best.json").read_text())["id"]
        == json.loads((tmp_path / "ref" / "best.json").read_text())["id"]
    )
