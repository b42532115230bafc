"""The sequential fine-tuning engine and the train CLI on the smoke preset."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lrdist_jax.cli import main as cli_main
from lrdist_jax.train import Experiment, make_config

SMALL = dict(train_size=64, eval_size=48, epochs=2, max_length=32, checkpoint_every=3)
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
    assert r["evals"]["task2/task2"].keys() >= {"accuracy", "f1"}  # MRPC also reports F1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["p_o"] == r["p_o"] and saved["config"]["task1"] == "rte"
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if "loss" in x]
    assert steps == sorted(steps) and len(steps) >= 2
    assert all(np.isfinite(x["loss"]) for x in lines if "loss" in x)


def test_runs_differing_in_lrs_reuse_the_compiled_step(experiment):
    experiment.run(lrs=np.full(experiment.num_slots, 1e-3))
    compiled = experiment.steps.train._cache_size()
    first = jax.device_get(experiment.last_state.params)
    experiment.run(lrs=np.geomspace(1e-5, 1e-3, experiment.num_slots))
    assert experiment.steps.train._cache_size() == compiled
    second = jax.device_get(experiment.last_state.params)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), first, second))
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


def _train_cmd(workdir, *extra):
    return [
        sys.executable, "-m", "lrdist_jax", "train", "--preset", "smoke", "--pair", "rte:mrpc",
        "--workdir", str(workdir), *SMALL_ARGS, *extra,
    ]  # fmt: skip


def test_resume_after_sigkill_gives_the_same_final_metrics(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "", "TQDM_DISABLE": "1"}
    ref_dir, crash_dir = tmp_path / "ref", tmp_path / "crash"
    subprocess.run(_train_cmd(ref_dir), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        _train_cmd(crash_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpts = crash_dir / "checkpoints"
    deadline = time.time() + 300
    # Kill once a checkpoint of the second phase exists (phase 1 has 2 epochs x 4 batches).
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpts.glob("*") if p.name.isdigit()] if ckpts.exists() else []
        if any(s > 9 for s in steps):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crash_dir / "results.json").exists()
    subprocess.run(_train_cmd(crash_dir), check=True, env=env, capture_output=True)
    ref = json.loads((ref_dir / "results.json").read_text())
    got = json.loads((crash_dir / "results.json").read_text())
    for key in ("acc_task1", "p_s", "p_o", "forgetting", "evals"):
        assert got[key] == ref[key], key
    steps = [json.loads(x)["step"] for x in (crash_dir / "metrics.jsonl").read_text().splitlines()]
    ref_steps = [
        json.loads(x)["step"] for x in (ref_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == ref_steps  # lines after the restored checkpoint are not duplicated


def test_cli_train_writes_results_and_refuses_another_runs_workdir(tmp_path, capsys):
    wd = tmp_path / "run"
    assert cli_main(["train", "--preset", "smoke", "--pair", "rte:mrpc", "--workdir", str(wd),
                     *SMALL_ARGS]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {"acc_task1", "p_s", "p_o", "forgetting"}
    before = {p: p.read_bytes() for p in wd.rglob("*.json*")}
    code = cli_main(["train", "--preset", "smoke", "--pair", "rte:mrpc", "--workdir", str(wd),
                     *SMALL_ARGS, "--seed", "7"])  # fmt: skip
    assert code == 2
    assert "holds another run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in wd.rglob("*.json*")} == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pair", "sst2:nope"], "unknown"),
        (["--pair", "sst2:mrpc", "--distribution", "{missing}"], "missing.json"),
        (["--pair", "sst2:mrpc", "--distribution", "{bad}"], "bad.json"),
        (["--pair", "sst2:mrpc", "--batch-size", "0"], "batch_size"),
    ],
)
def test_cli_train_bad_input_exits_2(tmp_path, capsys, args, message):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "lrdist-jax/distribution", "version": 1, "lrs": [-1]}')
    args = [a.format(missing=tmp_path / "missing.json", bad=bad) for a in args]
    wd = tmp_path / "wd"
    assert cli_main(["train", "--preset", "smoke", "--workdir", str(wd), *args]) == 2
    assert message in capsys.readouterr().err.lower()
    assert not wd.exists()


def test_stability_methods_switch_on_in_training(tmp_path):
    cfg = make_config(
        "smoke", "rte", "mrpc", clip_component=0.05, r3f_lambda=1.0, r4f=True, ewc_lambda=10.0,
        **SMALL,
    )  # fmt: skip
    exp = Experiment(cfg, progress=False)
    r = exp.run(workdir=tmp_path)
    assert np.isfinite([r["acc_task1"], r["p_s"], r["p_o"]]).all()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "loss" in x]
    assert all("kl" in x for x in train_lines)  # R3F term is logged
    assert any(x.get("ewc", 0) > 0 for x in train_lines if x["phase"] == "task2")
    state = exp.last_state
    fisher = jax.tree.leaves(state.ewc.fisher["bert"])
    assert sum(float(np.abs(f).sum()) for f in fisher) > 0
    u = np.asarray(state.spectral["heads"]["task1"]["u"])
    assert np.isclose(np.linalg.norm(u), 1.0, atol=1e-4)


@pytest.mark.parametrize("shift", ["length", "cluster"])
def test_single_task_shifts(shift):
    cfg = make_config("smoke", "sst2", shift=shift, **{**SMALL, "batch_size": 8})
    exp = Experiment(cfg, progress=False)
    p1, p2 = exp.phases
    assert len(p1.train) + len(p2.train) == 64
    if shift == "length":
        assert p1.train.arrays["lengths"].max() <= p2.train.arrays["lengths"].min()
    r = exp.run()
    assert 0 <= r["p_o"] <= 1 and 0 <= r["p_s"] <= 1


def test_eight_devices_match_one_device():
    results, params = {}, {}
    for devices in (1, 8):
        cfg = make_config("smoke", "rte", "mrpc", devices=devices, **SMALL)
        exp = Experiment(cfg, progress=False)
        assert exp.num_devices == devices
        results[devices] = exp.run()
        params[devices] = jax.device_get(exp.last_state.params)
    for key in ("acc_task1", "p_s", "p_o"):
        assert results[1][key] == pytest.approx(results[8][key], abs=1 / 48 + 1e-9)
    for a, b in zip(jax.tree.leaves(params[1]), jax.tree.leaves(params[8]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


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


def test_bfloat16_compute_and_authors_quirks_run():
    cfg = make_config(
        "smoke", "rte", "mrpc", dtype="bfloat16", double_softmax=True, dropout=False,
        shuffle=False, **SMALL,
    )  # fmt: skip
    exp = Experiment(cfg, progress=False)
    r = exp.run()
    assert np.isfinite([r["acc_task1"], r["p_s"], r["p_o"]]).all()
    leaves = jax.tree.leaves(exp.last_state.params)
    assert all(x.dtype == np.float32 for x in leaves)  # parameters stay float32
