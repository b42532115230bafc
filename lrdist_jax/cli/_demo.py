"""``lrdist-jax demo``: the README's main job.

Sequential fine-tuning of the offline MiniLM on two real GLUE tasks, once with the flat
distribution and once with the paper's combined distribution (one compiled step for both), then a
table of acc_task1, p_s, p_o and forgetting.
"""

from __future__ import annotations

import json
import pathlib

from lrdist_jax.cli import CLIError
from lrdist_jax.cli._train import prepare_workdir

DISTRIBUTIONS = ("flat", "paper-combined")


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="flat vs the paper's combined distribution on two GLUE tasks (offline MiniLM)",
        description="Runs the task-shift protocol twice (flat, paper-combined) on the offline "
        "MiniLM with real GLUE data and prints acc_task1, p_s, p_o and forgetting. One seed: an "
        "illustration, not a statistically meaningful comparison.",
    )
    p.add_argument("--pair", default="mrpc:sst2", metavar="TASK1:TASK2")
    p.add_argument("--workdir", default="runs/demo")
    p.add_argument("--train-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--base-lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="minilm-l6")
    p.set_defaults(func=run)


def _table(rows: dict[str, dict]) -> str:
    cols = ("acc_task1", "p_s", "p_o", "forgetting")
    lines = [f"{'distribution':<16}" + "".join(f"{c:>12}" for c in cols)]
    for name, r in rows.items():
        lines.append(f"{name:<16}" + "".join(f"{r[c]:>12.4f}" for c in cols))
    return "\n".join(lines)


def run(args) -> int:
    from lrdist_jax.train import Experiment, make_config

    tasks = args.pair.split(":")
    if len(tasks) != 2:
        raise CLIError(f"--pair {args.pair!r}: expected TASK1:TASK2, e.g. mrpc:sst2.")
    try:
        config = make_config(
            "cpu",
            tasks[0],
            tasks[1],
            model=args.model,
            train_size=args.train_size,
            epochs=args.epochs,
            max_length=args.max_length,
            base_lr=args.base_lr,
            seed=args.seed,
        )
        experiment = Experiment(config)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from e
    root = prepare_workdir(args.workdir, {"demo": config.to_dict()}, name="demo.json")
    rows = {}
    for name in DISTRIBUTIONS:
        workdir = root / name
        results_file = workdir / "results.json"
        if results_file.exists():
            rows[name] = json.loads(results_file.read_text())
            continue
        print(f"== {tasks[0]} -> {tasks[1]} with the {name} distribution", flush=True)
        lrs = _resolve(experiment, name)
        rows[name] = experiment.run(lrs=lrs, workdir=workdir)
    table = _table(rows)
    (pathlib.Path(root) / "table.txt").write_text(table + "\n")
    print(
        f"\n{tasks[0]} -> {tasks[1]}, offline MiniLM, {args.train_size} training examples per "
        f"task, {args.epochs} epochs per phase, seed {args.seed}:\n"
    )
    print(table)
    majority = next(iter(rows.values())).get("majority", {})
    if majority:
        print(
            f"\nmajority-class accuracy: task1 {majority['task1']:.4f}, "
            f"task2 {majority['task2']:.4f} (a value at this level means the task was not learned)"
        )
    print(f"forgetting = acc_task1 - p_o (accuracy); results in {root}/*/results.json")
    return 0


def _resolve(experiment, name):
    from lrdist_jax.distributions import resolve_distribution
    from lrdist_jax.train.sequential import PAPER_FLAT_LR

    cfg = experiment.config
    return resolve_distribution(
        name,
        num_slots=experiment.num_slots,
        num_layers=experiment.num_layers,
        base_lr=cfg.base_lr,
        scale=cfg.base_lr / PAPER_FLAT_LR,
    )
