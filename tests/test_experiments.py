"""experiments/summarize.py on hand-made results files; the shell scripts' usage errors."""

import importlib.util
import json
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def _load_summarize():
    spec = importlib.util.spec_from_file_location("summarize", ROOT / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.summarize


def _write(tmp_path, dist, seed, forgetting):
    d = tmp_path / dist / f"seed{seed}"
    d.mkdir(parents=True)
    r = {"status": "completed", "acc_task1": 0.8, "p_s": 0.7, "p_o": 0.8 - forgetting,
         "forgetting": forgetting, "config": {"distribution": dist, "seed": seed}}  # fmt: skip
    (d / "results.json").write_text(json.dumps(r))
    return str(d)


def test_summary_means_stds_and_paired_difference(tmp_path):
    dirs = [
        _write(tmp_path, "flat", 0, 0.04),
        _write(tmp_path, "flat", 1, 0.02),
        _write(tmp_path, "paper-combined", 0, 0.01),
        _write(tmp_path, "paper-combined", 1, 0.03),
    ]
    out = _load_summarize()(dirs)
    assert out["flat"]["runs"] == 2
    assert out["flat"]["forgetting"]["mean"] == pytest.approx(0.03)
    assert out["flat"]["forgetting"]["std"] == pytest.approx(0.01)  # ddof 0
    paired = out["paper-combined"]["forgetting_minus_flat"]
    assert paired["seeds"] == 2 and paired["mean"] == pytest.approx(-0.01)


@pytest.mark.parametrize("script", ["compare_distributions.sh", "search_and_combine.sh"])
def test_scripts_print_usage_without_arguments(script):
    proc = subprocess.run(["bash", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr
