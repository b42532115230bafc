"""The sequential fine-tuning engine on the smoke preset."""

import json

import jax
import numpy as np
import pytest

from lrdist_jax.train import Experiment, make_config

SMALL = dict(train_size=64, eval_size=48, epochs=2, max_length=32, checkpoint_every=3, devices=1)
SMALL_ARGS = ["--train-size", "64", "--eval-size", "48", "--epochs", "2", "--max-length", "32"]


@pytest.fixture(scope="module")
def experiment():
    return Experiment(make_config("smoke", "rte", "mrpc", **SMALL), progress=False)


def test_run_reports_protocol_metrics(experiment, tmp_path):
    r = experiment.run(workdir=tmp_path)
    for key in ("acc_task1", "p_s", "p_o"):
        assert 0.0 <= r[key] <= 1.0
    assert r["forgetting"] == pytest.approx(r["acc_task1"] - r["p_o"])
    assert r["reward"] == pytest.approx(r["p_s"] + r["p_o"])
    dev1 = experiment.phases[1].evals["task1"][1].labels
    assert r["majority"]["task1"] == pytest.approx(np.bincount(dev1).max() / len(dev1))
    assert r["evals"]["task2/task2"].keys() >= {"accuracy", "f1"}  # MRPC also reports F1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["p_o"] == r["p_o"] and saved["config"]["task1"] == "rte"
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if "loss" in x]
    assert steps == sorted(steps) and len(steps) >= 2
    assert all(np.isfinite(x["loss"]) for x in lines if "loss" in x)


def test_runs_differing_in_lrs_reuse_the_compiled_step(experiment):
    experiment.run(lrs=np.full(experiment.num_slots, 1e-3))
    compiled = experiment.steps.train.cache_size()
    first = jax.device_get(experiment.last_state.params)
    experiment.run(lrs=np.geomspace(1e-5, 1e-3, experiment.num_slots))
    assert experiment.steps.train.cache_size() == compiled
    second = jax.device_get(experiment.last_state.params)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), first, second))
    assert max(diffs) > 0


def test_dropout_hash_reaches_the_model(experiment):
    """``dropout_hash`` picks the masks of the compiled step: same run otherwise, other params."""
    assert experiment.bert_config.dropout_hash == "lowbias32"
    other = Experiment(
        make_config("smoke", "rte", "mrpc", **SMALL, dropout_hash="threefry"), progress=False
    )
    assert other.bert_config.dropout_hash == "threefry"
    a, b = experiment.run(), other.run()
    assert a["config"]["dropout_hash"] == "lowbias32" and b["config"]["dropout_hash"] == "threefry"
    pa, pb = (jax.device_get(e.last_state.params) for e in (experiment, other))
    diffs = jax.tree.leaves(jax.tree.map(lambda x, y: np.abs(x - y).max(), pa, pb))
    assert max(diffs) > 0


def test_inactive_head_is_frozen_while_training_task2(experiment):
    p1 = experiment.phases[0]
    phase1_steps = (len(p1.train) // experiment.config.batch_size) * experiment.config.epochs
    snapshots = {}

    def on_step(step, state):
        if step in (phase1_steps, phase1_steps + 2):  # step 1 of a phase has lr factor 0
            snapshots[step] = jax.device_get(state.params["heads"])

    experiment.run(on_step=on_step)
    final = jax.device_get(experiment.last_state.params["heads"])
    end1, first2 = snapshots[phase1_steps], snapshots[phase1_steps + 2]
    np.testing.assert_array_equal(final["task1"]["kernel"], end1["task1"]["kernel"])
    assert np.abs(first2["task2"]["kernel"] - end1["task2"]["kernel"]).max() > 0


def test_intermediate_report_can_stop_a_run(experiment):
    seen = []

    def report(epoch, value):
        seen.append((epoch, value))
        return True

    r = experiment.run(epochs=2, report=report)
    assert r["status"] == "stopped"
    assert seen and seen[0][0] == 1 and 0.0 <= seen[0][1] <= 0.5
    assert "p_o" not in r


def test_full_preset_uses_the_papers_settings():
    cfg = make_config("full", "sst2", "mrpc")
    assert (cfg.model, cfg.batch_size, cfg.epochs, cfg.max_length) == (
        "bert-base-uncased",
        4,
        5,
        256,
    )
    assert cfg.num_slots == 10 and cfg.base_lr == 2e-5 and cfg.train_size is None
    assert make_config("full", "mrpc", "sst2").batch_size == 8
    assert make_config("full", "qqp", "mrpc").epochs == 3


class _Crash(Exception):
    pass


def test_crash_mid_phase_then_resume_rewrites_metrics_exactly(experiment, tmp_path):
    ref = experiment.run(workdir=tmp_path / "ref")

    def crash(step, state):
        if step == 16:  # last step: its metrics line is written after the checkpoint at 15
            raise _Crash

    with pytest.raises(_Crash):
        experiment.run(workdir=tmp_path / "run", on_step=crash)
    crashed = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(crashed[-1])["step"] == 16  # a line the checkpoint does not cover
    assert not (tmp_path / "run" / "results.json").exists()
    got = experiment.run(workdir=tmp_path / "run")
    assert got["evals"] == ref["evals"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert lines == (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()


def test_kill_between_final_evaluation_and_its_checkpoint(tmp_path, monkeypatch):
    # A checkpoint at the phase's last step (16), then the evaluation line, then a crash while
    # the phase-end checkpoint is written: the resumed run must not write that line twice.
    from lrdist_jax.checkpoint import CheckpointManager

    exp = Experiment(make_config("smoke", "rte", "mrpc", **{**SMALL, "checkpoint_every": 8}),
                     progress=False)  # fmt: skip
    ref = exp.run(workdir=tmp_path / "ref")
    save = CheckpointManager.save

    def crashing_save(self, step, state, meta):
        if meta["phase"] == 2:
            raise _Crash
        save(self, step, state, meta)

    monkeypatch.setattr(CheckpointManager, "save", crashing_save)
    with pytest.raises(_Crash):
        exp.run(workdir=tmp_path / "run")
    monkeypatch.setattr(CheckpointManager, "save", save)
    got = exp.run(workdir=tmp_path / "run")
    assert got["evals"] == ref["evals"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert lines == (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()
