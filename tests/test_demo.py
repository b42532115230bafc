"""`lrdist-jax demo` end to end on a tiny model (the README's main job runs the same code)."""

import json

from lrdist_jax.cli import main as cli_main


def test_demo_prints_the_table_and_resumes(tmp_path, capsys):
    args = ["demo", "--workdir", str(tmp_path), "--model", "tiny", "--train-size", "64",
            "--epochs", "1", "--max-length", "32", "--pair", "rte:mrpc"]  # fmt: skip
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "flat" in out and "paper-combined" in out and "majority-class accuracy" in out
    flat = json.loads((tmp_path / "flat" / "results.json").read_text())
    combined = json.loads((tmp_path / "paper-combined" / "results.json").read_text())
    assert flat["lrs"] != combined["lrs"]
    row = next(line for line in out.splitlines() if line.startswith("flat"))
    assert [float(x) for x in row.split()[1:]] == [
        round(flat[k], 4) for k in ("acc_task1", "p_s", "p_o", "forgetting")
    ]
    # A second call finds the results and prints the same table without training.
    assert cli_main(args) == 0
    assert (tmp_path / "table.txt").read_text().strip() in capsys.readouterr().out
