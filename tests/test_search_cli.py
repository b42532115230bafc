"""The search objective on the engine and the ``lrdist-jax search`` command (smoke preset)."""

import json
import math

import numpy as np
import pytest

from lrdist_jax.cli import main as cli_main
from lrdist_jax.search.bo import RandomSampler
from lrdist_jax.search.combine import read_trials_jsonl
from lrdist_jax.search.hyperband import StoppingHyperband
from lrdist_jax.search.ledger import TrialLedger
from lrdist_jax.search.objective import SequentialObjective
from lrdist_jax.search.runner import run_search
from lrdist_jax.train import Experiment, make_config

SMALL = dict(train_size=32, eval_size=32, max_length=32, epochs=2)
ARGS = ["--preset", "smoke", "--pair", "sst2:mrpc", "--train-size", "32", "--eval-size", "32"]
ARGS += ["--max-length", "32", "--epochs", "2"]


@pytest.fixture(scope="module")
def objective():
    exp = Experiment(make_config("smoke", "sst2", "mrpc", **SMALL), progress=False)
    return SequentialObjective(exp)


class ListSampler:
    """Proposes the given configurations in order (a sampler for scripted searches)."""

    def __init__(self, lrs_list):
        self.lrs_list = [list(map(float, x)) for x in lrs_list]
        self.k = 0

    def ask(self):
        self.k += 1
        return {"lrs": self.lrs_list[self.k - 1]}

    def tell(self, config, reward, budget):
        pass

    def settings(self):
        return {"type": "list", "lrs": self.lrs_list}


def test_objective_reuses_the_compiled_step_and_is_deterministic(objective):
    exp = objective.experiment
    s = exp.num_slots
    a = {"lrs": [1e-3] * s}
    first = objective(a, 2, lambda e, v: False)
    compiled = exp.steps.train.cache_size()
    assert compiled >= 1
    b = {"lrs": np.geomspace(1e-5, 1e-2, s).tolist()}
    reports = []
    stopped = objective(b, 3, lambda e, v: reports.append((e, v)) or e == 2)
    one_epoch = objective(b, 1, lambda e, v: pytest.fail("no report after the last epoch"))
    again = objective(a, 2, lambda e, v: False)
    assert exp.steps.train.cache_size() == compiled  # new lrs, budgets and stops: no recompile

    assert first["status"] == "completed" and again == first  # same config -> same result
    m = first["metrics"]
    assert first["reward"] == pytest.approx(m["p_s"] + m["p_o"])
    assert m["forgetting"] == pytest.approx(m["acc_task1"] - m["p_o"])
    assert m["epochs_trained"] == pytest.approx(4.0)  # 2 epochs of each phase
    assert stopped["status"] == "stopped" and [e for e, _ in reports] == [1, 2]
    assert stopped["metrics"]["acc_task1"] == pytest.approx(2 * reports[-1][1])
    assert stopped["metrics"]["epochs_trained"] == pytest.approx(2.0)  # task 1 only
    assert one_epoch["status"] == "completed" and one_epoch["metrics"]["epochs_trained"] == 2.0
    assert objective.epochs_trained >= 4 + 2 + 2 + 4


def test_objective_rejects_a_wrong_number_of_rates(objective):
    with pytest.raises(ValueError, match="positive finite learning rates"):
        objective({"lrs": [1e-5]}, 1, lambda e, v: False)


def test_diverging_trial_is_recorded_as_failed_and_the_search_goes_on(objective, tmp_path):
    s = objective.num_slots
    sampler = ListSampler([[1e30] * s, [1e-3] * s, [1e-4] * s])  # 1e30 overflows LayerNorm
    records = run_search(
        objective, sampler, StoppingHyperband(2, 3), workdir=tmp_path, progress=False
    )
    assert [r["status"] for r in records] == ["failed", "completed", "completed"]
    assert records[0]["reason"].startswith("FloatingPointError") and records[0]["reward"] is None
    assert all(math.isfinite(r["reward"]) for r in records[1:])
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["id"] == max(records[1:], key=lambda r: r["reward"])["id"]
    # The objective's ledgers feed `combine`: a second search with other rates.
    other = tmp_path / "other"
    run_search(
        objective,
        RandomSampler(s, seed=1, low=1e-5, high=1e-2, first_config=None),
        StoppingHyperband(2, 2),
        workdir=other,
        progress=False,
    )
    assert len(read_trials_jsonl(other / "trials.jsonl")) >= 1


@pytest.fixture
def shared_experiment(objective, monkeypatch):
    """Makes the CLI reuse the module's compiled Experiment when it asks for the same config."""
    import lrdist_jax.train

    built = []

    def experiment(config, *, progress=True):
        built.append(config)
        if config == objective.experiment.config:
            return objective.experiment
        return Experiment(config, progress=progress)

    monkeypatch.setattr(lrdist_jax.train, "Experiment", experiment)
    return built


def test_cli_search_end_to_end_resume_and_combine(tmp_path, capsys, shared_experiment):
    w1 = tmp_path / "w1"
    cmd = ARGS + ["--workdir", str(w1), "--trials", "3", "--seed", "0", "--high", "1e-2"]
    assert cli_main(["search", *cmd]) == 0
    assert shared_experiment == [make_config("smoke", "sst2", "mrpc", **SMALL, seed=0)]
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("Stopping Hyperband: 3 trials x max_budget 2")
    summary = json.loads(out[-1])
    records = TrialLedger(w1 / "trials.jsonl").load()
    assert len(records) == 3 == summary["trials"]
    assert summary["completed"] + summary["stopped"] + summary["failed"] == 3
    best = json.loads((w1 / "best.json").read_text())
    completed = [r for r in records if r["status"] == "completed"]
    assert best["reward"] == max(r["reward"] for r in completed) == summary["reward"]
    assert summary["lrs"] == best["config"]["lrs"] and len(summary["lrs"]) == 4  # tiny: 4 slots
    first = records[0]["config"]["lrs"]  # log-midpoint of [1e-7, 1e-2]
    assert first == pytest.approx([10**-4.5] * 4)
    for r in records:
        assert all(1e-7 <= v <= 1e-2 for v in r["config"]["lrs"])
    settings = json.loads((w1 / "search.json").read_text())
    assert settings["user"]["run"]["task1"] == "sst2" and settings["sampler"]["seed"] == 0

    # The same command resumes the finished search without running a trial.
    ledger_bytes = (w1 / "trials.jsonl").read_bytes()
    assert cli_main(["search", *cmd]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == summary
    assert (w1 / "trials.jsonl").read_bytes() == ledger_bytes

    # Another search's settings are refused and nothing is changed.
    changes = (["--trials", "4"], ["--pair", "rte:mrpc"], ["--search-seed", "5"])
    for change in (*changes, ["--gp-fidelity", "joint"]):
        assert cli_main(["search", *cmd, *change]) == 2
        assert "holds" in capsys.readouterr().err
    assert (w1 / "trials.jsonl").read_bytes() == ledger_bytes

    # combine reads the search ledgers: here the CLI's and a copy holding its best trial twice.
    w2 = tmp_path / "w2.jsonl"
    best_line = next(
        line for line in ledger_bytes.decode().splitlines() if json.loads(line)["id"] == best["id"]
    )
    w2.write_text(best_line + "\n" + best_line + "\n")
    assert cli_main(["combine", str(w1 / "trials.jsonl"), str(w2)]) == 0
    combined = json.loads(capsys.readouterr().out)
    pair1 = np.asarray(combined["per_pair"][0])
    np.testing.assert_allclose(combined["per_pair"][1], best["config"]["lrs"], rtol=1e-12)
    np.testing.assert_allclose(
        combined["lrs"], np.sqrt(pair1 * np.asarray(best["config"]["lrs"])), rtol=1e-9
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trials", "0"], "--trials"),
        (["--low", "1e-3", "--high", "1e-4"], "--low"),
        (["--max-budget", "3"], "disagree"),
        (["--scheduler", "hyperband", "--min-budget", "5"], "budget"),
        (["--pair", "nope:mrpc"], "nope"),
    ],
)
def test_cli_search_bad_input_exits_2(tmp_path, capsys, extra, message):
    args = ["search", *ARGS, "--workdir", str(tmp_path / "w"), "--trials", "2", *extra]
    assert cli_main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_cli_search_refuses_a_foreign_workdir(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    assert cli_main(["search", *ARGS, "--workdir", str(tmp_path), "--trials", "2"]) == 2
    assert "holds no search.json" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_cli_search_hyperband_runs_the_bracket_plan(tmp_path, capsys, shared_experiment):
    w = tmp_path / "hb"
    extra = ["--scheduler", "hyperband", "--max-budget", "2", "--eta", "2", "--trials", "1"]
    extra += ["--gp-fidelity", "joint"]
    assert cli_main(["search", *ARGS, "--workdir", str(w), "--high", "1e-2", *extra]) == 0
    out = capsys.readouterr().out
    assert "bracket s=1" in out and "total: 5 trials" in out
    records = TrialLedger(w / "trials.jsonl").load()
    # Hyperband(1, 2, eta=2): bracket 1 runs 2 configs at 1 epoch and the better at 2; bracket 0
    # runs 2 new configs at 2 epochs.
    assert [(r["bracket"], r["budget"]) for r in records] == [
        (1, 1),
        (1, 1),
        (1, 2),
        (0, 2),
        (0, 2),
    ]
    first_rung = [r for r in records[:2] if r["status"] == "completed"]
    promoted = max(first_rung, key=lambda r: (r["reward"], -r["id"]))
    assert records[2]["parent"] == promoted["id"]
    assert records[2]["config"] == promoted["config"]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["budget"] == 2 and summary["trials"] == 5
    assert json.loads((w / "search.json").read_text())["sampler"]["fidelity"] == "joint"


def test_cli_search_hyperband_ascending_runs_the_full_budget_bracket_first(
    tmp_path, capsys, shared_experiment
):
    w = tmp_path / "hb"
    extra = ["--scheduler", "hyperband", "--max-budget", "2", "--eta", "2", "--trials", "1"]
    extra += ["--bracket-order", "ascending"]
    assert cli_main(["search", *ARGS, "--workdir", str(w), "--high", "1e-2", *extra]) == 0
    assert "brackets ascending" in capsys.readouterr().out
    records = TrialLedger(w / "trials.jsonl").load()
    assert [(r["bracket"], r["budget"]) for r in records] == [
        (0, 2),
        (0, 2),
        (1, 1),
        (1, 1),
        (1, 2),
    ]
    assert json.loads((w / "search.json").read_text())["scheduler"]["bracket_order"] == "ascending"
    # The same workdir with the default order is another search.
    rest = [a for a in extra if a not in ("--bracket-order", "ascending")]
    assert cli_main(["search", *ARGS, "--workdir", str(w), "--high", "1e-2", *rest]) == 2
    assert "holds" in capsys.readouterr().err
