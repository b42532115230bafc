"""`lrdist-jax train`: results, resume after SIGKILL, refusing bad input and foreign workdirs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lrdist_jax.cli import main as cli_main

SMALL_ARGS = ["--train-size", "64", "--eval-size", "48", "--epochs", "2", "--max-length", "32",
              "--devices", "1"]  # fmt: skip


def _train_cmd(workdir, *extra):
    return [
        sys.executable, "-m", "lrdist_jax", "train", "--preset", "smoke", "--pair", "rte:mrpc",
        "--workdir", str(workdir), *SMALL_ARGS, *extra,
    ]  # fmt: skip


def test_resume_after_sigkill_gives_the_same_final_metrics(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "", "TQDM_DISABLE": "1"}
    ref_dir, crash_dir = tmp_path / "ref", tmp_path / "crash"
    subprocess.run(_train_cmd(ref_dir), check=True, env=env, capture_output=True)
    # A checkpoint after every step: the kill lands mid-phase, between two saves.
    crash_cmd = _train_cmd(crash_dir, "--checkpoint-every", "1")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(crash_cmd, env=env, **quiet)
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
    subprocess.run(crash_cmd, check=True, env=env, capture_output=True)
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
    assert json.loads((wd / "results.json").read_text())["config"]["dropout_hash"] == "lowbias32"
    before = {p: p.read_bytes() for p in wd.rglob("*.json*")}
    for other in (["--seed", "7"], ["--dropout-hash", "threefry"]):
        code = cli_main(["train", "--preset", "smoke", "--pair", "rte:mrpc", "--workdir",
                         str(wd), *SMALL_ARGS, *other])  # fmt: skip
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
