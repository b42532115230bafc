"""``lrdist-jax search``: Hyperband + Gaussian-process search of a learning-rate distribution."""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys

from lrdist_jax.cli import CLIError
from lrdist_jax.cli._train import add_run_arguments, config_from_args

__all__ = ["register", "run"]

_FLAT = 1e-5  # AutoGluon's default configuration for Real(1e-7, 1e-3, log=True): the log-midpoint


def register(sub) -> None:
    from lrdist_jax.search.hyperband import BRACKET_ORDERS

    p = sub.add_parser(
        "search",
        help="search a per-layer learning-rate distribution (Hyperband + GP, METHODS.md 1.6)",
        description="Searches one learning rate per layer-group slot, each log-uniform in "
        "[--low, --high], to maximise p_s + p_o of the task-1 -> task-2 protocol. Every trial "
        "reuses one compiled train step. Writes WORKDIR/search.json (settings), "
        "WORKDIR/trials.jsonl (one line per finished trial) and WORKDIR/best.json; prints the "
        "schedule, then a one-line JSON summary of the best trial. The same command resumes an "
        "interrupted search. `lrdist-jax combine W1/trials.jsonl W2/trials.jsonl ...` turns "
        "searches of several pairs into one distribution.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(p)
    s = p.add_argument_group("search")
    s.add_argument(
        "--trials",
        type=int,
        default=50,
        help="stopping: number of trials (the authors used 50); hyperband: run as many full "
        "iterations of the bracket plan as needed to reach at least this many trials",
    )
    s.add_argument(
        "--search-seed",
        type=int,
        default=None,
        help="seed of the sampler (default: --seed, or 0); the authors used 999",
    )
    s.add_argument(
        "--scheduler",
        choices=("stopping", "hyperband"),
        default="stopping",
        help="stopping: the authors' one-bracket early-stopping Hyperband (every trial gets "
        "--max-budget epochs and is stopped at rungs on acc_task1/2); hyperband: synchronous "
        "Hyperband brackets (Li et al. 2018)",
    )
    s.add_argument(
        "--min-budget", type=int, default=1, help="hyperband: smallest budget (epochs per phase)"
    )
    s.add_argument(
        "--max-budget",
        type=int,
        default=None,
        help="largest budget in epochs per phase (default: --epochs, else the preset's)",
    )
    s.add_argument(
        "--eta",
        type=int,
        default=None,
        help="reduction factor (default 2 for stopping, the authors' value; 3 for hyperband)",
    )
    s.add_argument(
        "--bracket-order",
        choices=BRACKET_ORDERS,
        default="descending",
        help="hyperband: descending runs the most-screened bracket first (Li et al.); ascending "
        "runs the full-budget bracket first, so the GP sees full-budget results sooner",
    )
    s.add_argument(
        "--gp-fidelity",
        choices=("largest", "joint"),
        default="largest",
        help="largest: fit the GP on the largest budget with enough results (BOHB); joint: one "
        "GP over configuration and budget, fitted on every budget (closer to AutoGluon's "
        "searcher, which the authors used)",
    )
    s.add_argument("--low", type=float, default=1e-7, help="smallest learning rate of a slot")
    s.add_argument("--high", type=float, default=1e-3, help="largest learning rate of a slot")
    s.add_argument(
        "--metric",
        choices=("reward", "p_s", "p_o", "acc_task1", "retention"),
        default="reward",
        help="what to maximise; reward = p_s + p_o (the paper)",
    )
    p.set_defaults(func=run)


def _check_args(args) -> None:
    if args.trials < 1:
        raise CLIError(f"--trials must be >= 1, got {args.trials}.")
    if not (math.isfinite(args.low) and math.isfinite(args.high) and 0 < args.low < args.high):
        raise CLIError(f"need 0 < --low < --high, got --low {args.low:g} --high {args.high:g}.")
    if args.max_budget is not None and args.epochs is not None and args.max_budget != args.epochs:
        raise CLIError(
            f"--epochs {args.epochs} and --max-budget {args.max_budget} disagree; give one "
            "(both are the largest number of epochs per phase)."
        )
    for name in ("min_budget", "max_budget"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    if args.eta is not None and args.eta < 2:
        raise CLIError(f"--eta must be >= 2, got {args.eta}.")


def _first_config(low: float, high: float, num_slots: int):
    mid = 10 ** ((math.log10(low) + math.log10(high)) / 2)
    return "flat" if math.isclose(mid, _FLAT, rel_tol=1e-9) else [mid] * num_slots


def _build_scheduler(args, max_budget: int):
    from lrdist_jax.search.hyperband import Hyperband, StoppingHyperband

    try:
        if args.scheduler == "stopping":
            eta = 2 if args.eta is None else args.eta
            return StoppingHyperband(max_budget, args.trials, reduction_factor=eta)
        eta = 3 if args.eta is None else args.eta
        per_iteration = Hyperband(args.min_budget, max_budget, eta).total_trials
        iterations = -(-args.trials // per_iteration)
        return Hyperband(
            args.min_budget,
            max_budget,
            eta,
            iterations=iterations,
            bracket_order=args.bracket_order,
        )
    except ValueError as e:
        raise CLIError(f"bad search budget: {e}") from e


def _check_workdir(workdir: pathlib.Path, user: dict) -> None:
    """Refuses a file, a non-empty folder that is no search, or a search of another run."""
    if workdir.exists() and not workdir.is_dir():
        raise CLIError(f"--workdir {workdir} is a file; give a folder.")
    settings = workdir / "search.json"
    if not settings.exists():
        if workdir.exists() and any(workdir.iterdir()):
            raise CLIError(
                f"--workdir {workdir} is not empty and holds no search.json; use a new or empty "
                "folder. Nothing was changed."
            )
        return
    try:
        stored = json.loads(settings.read_text())
    except json.JSONDecodeError as e:
        raise CLIError(f"{settings} is not valid JSON ({e}); use a new --workdir.") from e
    old = (stored or {}).get("user") or {}
    if old != json.loads(json.dumps(user)):
        diff = sorted(k for k in set(old) | set(user) if old.get(k) != user.get(k))
        run_old, run_new = old.get("run") or {}, user.get("run") or {}
        diff += sorted(
            f"run.{k}" for k in set(run_old) | set(run_new) if run_old.get(k) != run_new.get(k)
        )
        raise CLIError(
            f"--workdir {workdir} holds another search (it differs in {sorted(set(diff))}); use "
            "a new --workdir, or the same options to resume it. Nothing was changed."
        )


def _summary(records: list[dict], best: dict | None, workdir: pathlib.Path) -> dict:
    counts = {s: sum(r["status"] == s for r in records) for s in ("completed", "stopped", "failed")}
    out = {"trials": len(records), **counts, "workdir": str(workdir)}
    if best is None:
        return {"best": None, **out}
    metrics = best.get("metrics") or {}
    return {
        "best": best["id"],
        "reward": best["reward"],
        **{k: metrics.get(k) for k in ("acc_task1", "p_s", "p_o", "forgetting")},
        "budget": best["budget"],
        "lrs": best["config"]["lrs"],
        **out,
    }


def run(args) -> int:
    from lrdist_jax.search.bo import SkoptSampler
    from lrdist_jax.search.ledger import TrialLedger
    from lrdist_jax.search.objective import SequentialObjective
    from lrdist_jax.search.runner import run_search
    from lrdist_jax.train import Experiment

    _check_args(args)
    if args.max_budget is not None:  # the config's epochs are the largest budget
        args = argparse.Namespace(**{**vars(args), "epochs": args.max_budget})
    config = config_from_args(args)
    workdir = pathlib.Path(args.workdir)
    search_seed = args.search_seed if args.search_seed is not None else (args.seed or 0)
    user = {"command": "search", "run": config.to_dict(), "metric": args.metric}
    _check_workdir(workdir, user)
    scheduler = _build_scheduler(args, config.epochs)
    try:
        experiment = Experiment(config, progress=False)
        sampler = SkoptSampler(
            experiment.num_slots,
            low=args.low,
            high=args.high,
            seed=search_seed,
            first_config=_first_config(args.low, args.high, experiment.num_slots),
            fidelity=args.gp_fidelity,
        )
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from e
    objective = SequentialObjective(experiment, metric=args.metric)
    done = len(TrialLedger(workdir / "trials.jsonl").load())
    if done:
        print(f"resuming {workdir}: {done} finished trials on record", file=sys.stderr)
    try:
        records = run_search(objective, sampler, scheduler, workdir=workdir, settings=user)
    except ValueError as e:
        raise CLIError(str(e)) from e
    best = json.loads((workdir / "best.json").read_text())
    print(json.dumps(_summary(records, best, workdir)), flush=True)
    if best is None:
        print(
            f"error: no trial completed (see the 'reason' of each record in "
            f"{os.path.join(workdir, 'trials.jsonl')}); try a narrower --low/--high range.",
            file=sys.stderr,
        )
        return 1
    return 0
