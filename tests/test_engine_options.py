"""Engine options: stability methods, single-task shifts, devices, bfloat16, the authors' quirks."""

import json

import jax
import numpy as np
import pytest

from lrdist_jax.train import Experiment, make_config

SMALL = dict(train_size=64, eval_size=48, epochs=2, max_length=32, checkpoint_every=3, devices=1)
SMALL_ARGS = ["--train-size", "64", "--eval-size", "48", "--epochs", "2", "--max-length", "32"]


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
        cfg = make_config("smoke", "rte", "mrpc", **{**SMALL, "devices": devices})
        exp = Experiment(cfg, progress=False)
        assert exp.num_devices == devices
        results[devices] = exp.run()
        params[devices] = jax.device_get(exp.last_state.params)
    for key in ("acc_task1", "p_s", "p_o"):
        assert results[1][key] == pytest.approx(results[8][key], abs=1 / 48 + 1e-9)
    for a, b in zip(jax.tree.leaves(params[1]), jax.tree.leaves(params[8]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)


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
