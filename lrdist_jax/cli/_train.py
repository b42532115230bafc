"""``lrdist-jax train``: one sequential fine-tuning run (task 1, then task 2)."""

from __future__ import annotations

import argparse
import json
import pathlib

from lrdist_jax.cli import CLIError

__all__ = ["add_run_arguments", "config_from_args", "prepare_workdir", "register"]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options shared by ``train`` and ``search``."""
    from lrdist_jax.models.dropout import MASK_HASHES
    from lrdist_jax.train.config import PRESETS, SHIFTS

    p.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    p.add_argument(
        "--pair",
        required=True,
        metavar="TASK1:TASK2",
        help="task shift pair, e.g. sst2:mrpc; a single task for --shift length/cluster",
    )
    p.add_argument("--shift", choices=SHIFTS, default=None)
    p.add_argument("--workdir", required=True, help="output folder (resumed if it holds this run)")
    p.add_argument("--model", default=None, help="'tiny', 'minilm-l6', a model folder or hub id")
    p.add_argument("--epochs", type=int, default=None, help="epochs per phase")
    p.add_argument("--train-size", type=int, default=None, help="training examples per phase")
    p.add_argument("--eval-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--base-lr", type=float, default=None)
    p.add_argument("--num-slots", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--devices", type=int, default=None, help="use the first N devices")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    p.add_argument(
        "--dropout-hash",
        choices=MASK_HASHES,
        default=None,
        help="how dropout masks are drawn: lowbias32 (fast, default) or threefry (flax's masks)",
    )
    p.add_argument("--data-dir", default=None, help="folder in the classic glue_data layout")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="save a checkpoint every STEPS train steps (and at every phase end)",
    )
    g = p.add_argument_group("stability methods")
    g.add_argument(
        "--clip-component",
        type=float,
        default=None,
        metavar="C",
        help="component-wise gradient norm clipping threshold (Yang & Ma 2022)",
    )
    g.add_argument(
        "--r3f",
        type=float,
        default=None,
        metavar="LAMBDA",
        help="R3F symmetric-KL weight (Aghajanyan et al. 2021)",
    )
    g.add_argument("--r3f-eps", type=float, default=None)
    g.add_argument("--r3f-noise", choices=("uniform", "normal"), default=None)
    g.add_argument("--r4f", action="store_true", default=None, help="spectral-norm the heads")
    g.add_argument("--ewc", type=float, default=None, metavar="LAMBDA", help="EWC penalty weight")
    g.add_argument("--ewc-anchor", choices=("task1", "pretrained"), default=None)
    q = p.add_argument_group("the authors' code quirks (METHODS.md 1.11)")
    q.add_argument("--double-softmax", action="store_true", default=None)
    q.add_argument("--no-dropout", dest="dropout", action="store_false", default=None)
    q.add_argument("--no-shuffle", dest="shuffle", action="store_false", default=None)
    q.add_argument(
        "--reset-moments",
        action="store_true",
        default=None,
        help="zero the Adam moments between phases (the authors keep them)",
    )


def config_from_args(args, **extra):
    from lrdist_jax.data import get_task
    from lrdist_jax.train.config import make_config

    tasks = args.pair.split(":")
    if len(tasks) not in (1, 2) or not all(tasks):
        raise CLIError(
            f"--pair {args.pair!r}: expected TASK1:TASK2 (or one task for a length/cluster shift)."
        )
    try:
        for t in tasks:
            get_task(t)
        shift = args.shift or ("task" if len(tasks) == 2 else "length")
        return make_config(
            args.preset,
            tasks[0],
            tasks[-1],
            shift=shift,
            model=args.model,
            epochs=args.epochs,
            train_size=args.train_size,
            eval_size=args.eval_size,
            batch_size=args.batch_size,
            max_length=args.max_length,
            base_lr=args.base_lr,
            num_slots=args.num_slots,
            seed=args.seed,
            devices=args.devices,
            dtype=args.dtype,
            dropout_hash=args.dropout_hash,
            data_dir=args.data_dir,
            checkpoint_every=args.checkpoint_every,
            clip_component=args.clip_component,
            r3f_lambda=args.r3f,
            r3f_eps=args.r3f_eps,
            r3f_noise=args.r3f_noise,
            r4f=args.r4f,
            ewc_lambda=args.ewc,
            ewc_anchor=args.ewc_anchor,
            double_softmax=args.double_softmax,
            dropout=args.dropout,
            shuffle=args.shuffle,
            reset_moments=args.reset_moments,
            **extra,
        )
    except ValueError as e:
        raise CLIError(str(e)) from e


def prepare_workdir(workdir: str, record: dict, name: str = "config.json") -> pathlib.Path:
    """Creates ``workdir`` or checks that it holds this same run; never overwrites another's."""
    path = pathlib.Path(workdir)
    if path.exists() and not path.is_dir():
        raise CLIError(f"--workdir {path} is a file; give a folder.")
    cfg_file = path / name
    if cfg_file.exists():
        try:
            existing = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise CLIError(f"{cfg_file} is not valid JSON ({e}); use a new --workdir.") from e
        if existing != record:
            diff = sorted(
                k for k in set(existing) | set(record) if existing.get(k) != record.get(k)
            )
            raise CLIError(
                f"--workdir {path} holds another run (its {name} differs in {diff}); use a new "
                "--workdir, or the same options to resume it. Nothing was changed."
            )
    elif path.exists() and any(path.iterdir()):
        raise CLIError(
            f"--workdir {path} is not empty and holds no {name}; use a new or empty folder."
        )
    else:
        path.mkdir(parents=True, exist_ok=True)
        tmp = cfg_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        tmp.replace(cfg_file)
    return path


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="sequential fine-tuning (task 1, then task 2) measuring forgetting",
        description="Fine-tunes on task 1, then task 2; writes WORKDIR/metrics.jsonl as it goes "
        "and WORKDIR/results.json (acc_task1, p_s, p_o, forgetting, the configuration). A workdir "
        "holding this run's checkpoints is resumed.",
    )
    add_run_arguments(p)
    p.add_argument(
        "--distribution",
        default="flat",
        help="flat, llrd, paper-combined, paper-rounded, or a distribution JSON file",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from lrdist_jax.train import Experiment

    config = config_from_args(args, distribution=args.distribution)
    try:
        experiment = Experiment(config)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from e
    workdir = prepare_workdir(args.workdir, config.to_dict())
    results_file = workdir / "results.json"
    if results_file.exists():
        print(results_file.read_text().strip())
        return 0
    results = experiment.run(workdir=workdir)
    summary = {k: results.get(k) for k in ("acc_task1", "p_s", "p_o", "forgetting")}
    print(json.dumps(summary))
    return 0
