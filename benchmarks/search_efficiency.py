"""Search efficiency: best reward against training budget for Hyperband + GP, random, Optuna.

Every method searches the same per-slot learning-rate space on the same
:class:`~lrdist_jax.search.objective.SequentialObjective` (one :class:`Experiment`, one compiled
train step, deterministic trials) under the same total training budget ``B`` = the epochs (task 1
plus task 2, summed over trials) of ``--iterations`` iterations (default 1) of the Hyperband plan:

* ``hyperband-gp``: this library's search, :class:`SkoptSampler` (GP) inside synchronous
  :class:`Hyperband` (``lrdist-jax search --scheduler hyperband``);
* ``hyperband-gp-joint``: the same with ``SkoptSampler(fidelity="joint")``, one GP over
  configuration and budget fitted on every rung (``--gp-fidelity joint``);
* ``stopping-gp``: :class:`SkoptSampler` inside :class:`StoppingHyperband`, the authors' one-bracket
  variant (every trial gets the full budget, grace period 1 and reduction factor 2 stop the
  trials whose task-1 accuracy falls below the running cutoff; ``--scheduler stopping``), until
  ``B`` is spent;
* ``random-hyperband``: :class:`RandomSampler` inside the same Hyperband plan;
* ``random``: :class:`RandomSampler`, every trial at the full budget, until ``B`` is spent;
* ``optuna-tpe``: Optuna's ``TPESampler`` with its ``HyperbandPruner`` (same min/max budget and
  reduction factor), pruning on the same intermediate value ``acc_task1 / 2``, until ``B``.

All methods start from the flat log-midpoint configuration. The curve of a method is the best
reward (``p_s + p_o``) of a trial trained at the full budget, against the budget spent so far
(lower-budget Hyperband rungs and pruned trials cost budget but do not count as results: a
configuration is only known to be good at the budget it will be used with). The target (the
issue's): reach plain random search's final best reward - the mean over seeds - with at most a
third of its budget.

Run (the smoke objective takes minutes on 2 CPU cores)::

    python benchmarks/search_efficiency.py --objective smoke --seeds 0 1 2 --out bench_search
    python benchmarks/search_efficiency.py --objective cpu --train-size 128 --eval-size 128 \
        --max-length 64 --max-budget 2 --eta 2 --seeds 0 1 2 --out bench_search_cpu

Writes ``OUT/search_efficiency_<objective>.json`` after every method and seed (per run the
curve, and under ``results`` every full-budget reward with the budget spent when it finished),
and ``.png`` at the end. ``--random-from EARLIER.json`` takes random search's runs from an
earlier result with the same objective, space and ``--max-budget`` instead of running them
again (they are deterministic per seed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

__all__ = ["main"]

METHODS = (
    "hyperband-gp",
    "hyperband-gp-joint",
    "stopping-gp",
    "random-hyperband",
    "random",
    "optuna-tpe",
)

# Per-objective defaults; flags override them (documented in benchmarks/README_search.md).
OBJECTIVES = {
    # The tiny random BERT needs larger rates to learn anything in a few epochs.
    "smoke": dict(
        pair="sst2:mrpc",
        train_size=512,
        eval_size=256,
        max_length=64,
        low=1e-5,
        high=1e-1,
        max_budget=4,
        eta=2,
    ),
    # MiniLM; the paper's search space.
    "cpu": dict(
        pair="sst2:mrpc",
        train_size=2000,
        eval_size=None,
        max_length=128,
        low=1e-7,
        high=1e-3,
        max_budget=3,
        eta=3,
    ),
}


class Tracker:
    """Budget spent and best full-budget reward after every finished trial of one method."""

    def __init__(self, objective, max_budget: int):
        self.objective = objective
        self.max_budget = max_budget
        self.start = objective.epochs_trained
        self.best = -math.inf
        self.curve: list[list[float]] = []  # [budget spent, best full-budget reward so far]
        self.results: list[list[float]] = []  # [budget spent, reward] of each full-budget trial
        self.trials = 0

    @property
    def spent(self) -> float:
        return self.objective.epochs_trained - self.start

    def record(self, status: str, budget: int, reward: float | None) -> None:
        self.trials += 1
        if status == "completed" and budget == self.max_budget and reward is not None:
            if math.isfinite(reward):
                self.best = max(self.best, reward)
                self.results.append([round(self.spent, 6), reward])
        self.curve.append([round(self.spent, 6), self.best if math.isfinite(self.best) else None])


def apply_objective_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fills the flags left unset (``None``) with the objective's defaults from ``OBJECTIVES``."""
    for k, v in OBJECTIVES[args.objective].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    return args


def add_dropout_hash_argument(p: argparse.ArgumentParser) -> None:
    """``--dropout-hash``: the objective's dropout masks (``RunConfig.dropout_hash``)."""
    from lrdist_jax.models.dropout import MASK_HASHES

    p.add_argument(
        "--dropout-hash",
        choices=MASK_HASHES,
        default="lowbias32",
        help="dropout masks; the results up to 2026-11-22's session 6 were measured with threefry",
    )


def objective_config(args: argparse.Namespace):
    """The ``ExperimentConfig`` of the objective the flags describe (full budget as epochs)."""
    from lrdist_jax.train import make_config

    task1, task2 = args.pair.split(":")
    return make_config(
        args.objective,
        task1,
        task2,
        train_size=args.train_size,
        eval_size=args.eval_size,
        max_length=args.max_length,
        epochs=args.max_budget,
        dropout_hash=args.dropout_hash,
    )


def _first(low: float, high: float, n: int) -> list[float]:
    return [10 ** ((math.log10(low) + math.log10(high)) / 2)] * n


def run_hyperband(objective, sampler, args, tracker) -> None:
    from lrdist_jax.search.hyperband import Hyperband
    from lrdist_jax.search.runner import run_search

    scheduler = Hyperband(
        1, args.max_budget, args.eta, iterations=args.iterations, bracket_order=args.bracket_order
    )
    with tempfile.TemporaryDirectory() as workdir:
        run_search(
            objective,
            sampler,
            scheduler,
            workdir=workdir,
            progress=False,
            on_record=lambda r: tracker.record(r["status"], r["budget"], r["reward"]),
        )


def run_stopping(objective, sampler, args, tracker, total: float) -> None:
    """Stopping Hyperband trials (full budget unless stopped at a rung) until ``total`` is spent."""
    from lrdist_jax.search.hyperband import StoppingHyperband

    scheduler = StoppingHyperband(args.max_budget, num_trials=10**6, sampler=sampler)
    while tracker.spent + 2 * args.max_budget <= total + 1e-9:
        trial = scheduler.ask()
        report = lambda epoch, value, i=trial.id: scheduler.report(i, epoch, value)  # noqa: E731
        try:
            out = objective(trial.config, trial.budget, report)
        except FloatingPointError:
            scheduler.tell(trial.id, None, "failed")
            tracker.record("failed", args.max_budget, None)
            continue
        reward = out.get("reward") if out["status"] == "completed" else None
        scheduler.tell(trial.id, reward, out["status"])
        tracker.record(out["status"], args.max_budget, out.get("reward"))


def run_random(objective, sampler, args, tracker, total: float) -> None:
    while tracker.spent + 2 * args.max_budget <= total + 1e-9:
        config = sampler.ask()
        try:
            out = objective(config, args.max_budget, lambda e, v: False)
        except FloatingPointError:
            tracker.record("failed", args.max_budget, None)
            continue
        tracker.record(out["status"], args.max_budget, out.get("reward"))


def run_optuna(objective, seed: int, args, tracker, total: float) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n = objective.num_slots
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=args.max_budget, reduction_factor=args.eta
        ),
    )
    study.enqueue_trial({f"lr{i}": v for i, v in enumerate(_first(args.low, args.high, n))})

    def fn(trial):
        lrs = [trial.suggest_float(f"lr{i}", args.low, args.high, log=True) for i in range(n)]

        def report(epoch, value):
            trial.report(value, epoch)
            return trial.should_prune()

        try:
            out = objective({"lrs": lrs}, args.max_budget, report)
        except FloatingPointError:
            tracker.record("failed", args.max_budget, None)
            return float("nan")
        tracker.record(out["status"], args.max_budget, out.get("reward"))
        if out["status"] == "stopped":
            raise optuna.TrialPruned()
        return out["reward"]

    def stop(study, trial):
        # Like the other methods: no trial starts that could not finish within the budget.
        if tracker.spent + 2 * args.max_budget > total + 1e-9:
            study.stop()

    study.optimize(fn, callbacks=[stop], catch=())


def hyperband_total(max_budget: int, eta: int) -> int:
    """Epochs (both phases) of one Hyperband iteration when nothing fails."""
    from lrdist_jax.search.hyperband import hyperband_brackets

    return 2 * sum(
        r.n_configs * r.budget for b in hyperband_brackets(1, max_budget, eta) for r in b.rungs
    )


def budget_to_reach(curve: list[list[float]], target: float, total: float) -> float | None:
    """The budget spent when the best reward first reached ``target`` (within ``total``)."""
    for spent, best in curve:
        if spent > total + 1e-9:
            break
        if best is not None and best >= target - 1e-12:
            return spent
    return None


def final_best(curve: list[list[float]], total: float) -> float | None:
    best = None
    for spent, value in curve:
        if spent <= total + 1e-9 and value is not None:
            best = value
    return best


def random_runs_from(path: str, result_keys: dict, seeds: list[int], total: float) -> list[dict]:
    """Random search's runs of an earlier result, for ``--random-from``.

    Random search is deterministic for a seed (proposal ``k`` depends on ``(seed, k)`` only and
    every trial is deterministic), so an earlier run with the same objective, space and maximum
    budget, cut at this run's budget ``total``, is what this run would compute. ``result_keys``
    holds the fields that must match (``config``, ``space``, ``max_budget``).

    Raises:
      ValueError: naming the mismatch, if the file is unreadable or from another set-up.
    """
    try:
        with open(path) as f:
            ref = json.load(f)
        ref_keys = {
            # Results from before RunConfig.dropout_hash existed drew Threefry masks.
            "config": {"dropout_hash": "threefry", **ref["config"]},
            "space": ref["space"],
            "max_budget": ref["hyperband"]["max_budget"],
        }
        ref_runs = {r["seed"]: r for r in ref["runs"]["random"]}
        ref_total = float(ref["total_budget"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"--random-from {path}: not a readable result with random runs ({e})"
        ) from e
    for key, value in result_keys.items():
        if json.loads(json.dumps(value)) != ref_keys[key]:
            raise ValueError(f"--random-from {path} was run with another {key}; rerun random.")
    if ref_total < total:
        raise ValueError(
            f"--random-from {path} spent {ref_total:g} epochs, this run needs {total}."
        )
    missing = [s for s in seeds if s not in ref_runs]
    if missing:
        raise ValueError(f"--random-from {path} has no random run for seeds {missing}.")
    out = []
    for seed in seeds:
        curve = [point for point in ref_runs[seed]["curve"] if point[0] <= total + 1e-9]
        out.append(
            {
                "seed": seed,
                "curve": curve,
                "trials": len(curve),
                "spent": curve[-1][0] if curve else 0.0,
                "final_best": final_best(curve, total),
                "seconds": None,
                "from": path,
            }
        )
    return out


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = dict(zip(METHODS, ("C0", "C5", "C4", "C1", "C2", "C3"), strict=True))
    for method, runs in result["runs"].items():
        for k, run in enumerate(runs):
            pts = [(s, b) for s, b in run["curve"] if b is not None and s <= result["total_budget"]]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            xs = (*xs, result["total_budget"])
            ys = (*ys, ys[-1])
            ax.step(
                xs,
                ys,
                where="post",
                color=colors[method],
                alpha=0.8,
                label=method if k == 0 else None,
            )
    ax.axhline(result["target"], color="k", ls="--", lw=1, label="random: mean final best")
    ax.axvline(result["total_budget"] / 3, color="gray", ls=":", lw=1, label="1/3 of the budget")
    ax.set_xlabel("training budget spent (epochs, task 1 + task 2, summed over trials)")
    ax.set_ylabel("best full-budget reward p_s + p_o")
    ax.set_title(f"search efficiency: {result['objective']} objective ({result['pair']})")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _median_seed(reached: list[float], seeds: int) -> float | None:
    """The median over ``seeds`` of the budget fractions, seeds missing from ``reached`` (which
    never reached the target) counting as infinite; ``None`` if the median is infinite."""
    if not seeds:
        return None
    median = float(np.median([*reached, *[math.inf] * (seeds - len(reached))]))
    return median if math.isfinite(median) else None


def summarize(runs: dict[str, list[dict]], total: float) -> tuple[float | None, dict]:
    """``(target, summary)``: random search's mean final best, and per method how often and
    with what fraction of the budget each seed reached it (adds both to every run record)."""
    finals = [r["final_best"] for r in runs.get("random", []) if r["final_best"] is not None]
    target = float(np.mean(finals)) if finals else None
    summary = {}
    for method, rs in runs.items():
        for r in rs:
            r["budget_to_target"] = (
                None if target is None else budget_to_reach(r["curve"], target, total)
            )
            r["fraction_of_budget"] = (
                None if r["budget_to_target"] is None else r["budget_to_target"] / total
            )
        reached = [r["fraction_of_budget"] for r in rs if r["fraction_of_budget"] is not None]
        early = [v for r in rs for s, v in r.get("results", ()) if s <= total / 3 + 1e-9]
        summary[method] = {
            "mean_final_best": float(
                np.mean([r["final_best"] for r in rs if r["final_best"] is not None] or [np.nan])
            ),
            "reached_target": f"{len(reached)}/{len(rs)}",
            "median_fraction_to_target": float(np.median(reached)) if reached else None,
            # Over every seed, a seed that never reached the target counting as the worst: the
            # issue's target asks this to be at most 1/3 (None while half the seeds miss it).
            "fraction_of_the_median_seed": _median_seed(reached, len(rs)),
            "within_a_third": sum(f <= 1 / 3 for f in reached),
            # Of the full-budget results in the first third (runs that record them), the
            # fraction at or above the target: what search_landscape.py's required_hit_rate
            # is set against.
            "results_in_a_third": len(early),
            "hit_rate_in_a_third": (
                sum(v >= target - 1e-12 for v in early) / len(early)
                if early and target is not None
                else None
            ),
        }
    return target, summary


def main(argv=None) -> int:
    from lrdist_jax.search.hyperband import BRACKET_ORDERS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default="smoke")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    for name in (
        "pair",
        "low",
        "high",
        "max_budget",
        "eta",
        "train_size",
        "eval_size",
        "max_length",
    ):
        kind = str if name == "pair" else float if name in ("low", "high") else int
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    p.add_argument(
        "--iterations",
        type=int,
        default=1,
        help="Hyperband iterations; the budget B of every method is this many iterations' epochs",
    )
    p.add_argument(
        "--bracket-order",
        choices=BRACKET_ORDERS,
        default="descending",
        help="Hyperband's bracket order: s_max first (the paper's) or s = 0 first",
    )
    p.add_argument(
        "--min-points",
        type=int,
        default=None,
        help="SkoptSampler min_points (observations at one budget before the GP is fitted); "
        "default: the sampler's num_slots // 2 + 2",
    )
    p.add_argument(
        "--random-from",
        default=None,
        metavar="JSON",
        help="take random search's runs from this earlier result (same objective, space and "
        "--max-budget; curves cut at this run's budget) instead of running them again",
    )
    add_dropout_hash_argument(p)
    p.add_argument("--out", default="bench_search")
    args = apply_objective_defaults(p.parse_args(argv))
    if args.random_from and "random" in args.methods:
        p.error("--random-from replaces the random method; drop 'random' from --methods.")

    from lrdist_jax.search.bo import RandomSampler, SkoptSampler
    from lrdist_jax.search.objective import SequentialObjective
    from lrdist_jax.train import Experiment

    config = objective_config(args)
    total = args.iterations * hyperband_total(args.max_budget, args.eta)
    reference = None
    if args.random_from:
        keys = {
            "config": config.to_dict(),
            "space": {"low": args.low, "high": args.high},
            "max_budget": args.max_budget,
        }
        try:
            reference = random_runs_from(args.random_from, keys, args.seeds, total)
        except ValueError as e:
            p.error(str(e))
    t0 = time.perf_counter()
    experiment = Experiment(config, progress=False)
    objective = SequentialObjective(experiment)
    n = objective.num_slots
    objective({"lrs": _first(args.low, args.high, n)}, 1, lambda e, v: False)  # compile
    print(f"built and compiled in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    kw = dict(low=args.low, high=args.high, first_config=_first(args.low, args.high, n))
    gp_kw = dict(kw, min_points=args.min_points)
    runs: dict[str, list[dict]] = {m: [] for m in args.methods}
    if reference is not None:
        runs["random"] = reference
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"search_efficiency_{args.objective}")

    def write_results():
        """Writes the JSON so far (atomically); called after every method and seed."""
        target, summary = summarize(runs, total)
        result = {
            "objective": args.objective,
            "pair": args.pair,
            "config": config.to_dict(),
            "num_slots": n,
            "space": {"low": args.low, "high": args.high},
            "hyperband": {
                "min_budget": 1,
                "max_budget": args.max_budget,
                "eta": args.eta,
                "iterations": args.iterations,
                "bracket_order": args.bracket_order,
            },
            "total_budget": total,
            "target": target,
            "summary": summary,
            "runs": runs,
            "command": " ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])]),
        }
        with open(stem + ".json.tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(stem + ".json.tmp", stem + ".json")
        return target, summary, result

    for seed in args.seeds:
        for method in args.methods:
            t = time.perf_counter()
            tracker = Tracker(objective, args.max_budget)
            if method == "hyperband-gp":
                run_hyperband(objective, SkoptSampler(n, seed=seed, **gp_kw), args, tracker)
            elif method == "hyperband-gp-joint":
                sampler = SkoptSampler(n, seed=seed, fidelity="joint", **gp_kw)
                run_hyperband(objective, sampler, args, tracker)
            elif method == "stopping-gp":
                run_stopping(objective, SkoptSampler(n, seed=seed, **gp_kw), args, tracker, total)
            elif method == "random-hyperband":
                run_hyperband(objective, RandomSampler(n, seed, **kw), args, tracker)
            elif method == "random":
                run_random(objective, RandomSampler(n, seed, **kw), args, tracker, total)
            else:
                run_optuna(objective, seed, args, tracker, total)
            runs[method].append(
                {
                    "seed": seed,
                    "curve": tracker.curve,
                    "results": tracker.results,
                    "trials": tracker.trials,
                    "spent": round(tracker.spent, 6),
                    "final_best": final_best(tracker.curve, total),
                    "seconds": round(time.perf_counter() - t, 1),
                }
            )
            print(
                f"{method:17s} seed {seed}: best {runs[method][-1]['final_best']} after "
                f"{tracker.trials} trials, {tracker.spent:.0f}/{total} epochs, "
                f"{runs[method][-1]['seconds']} s",
                file=sys.stderr,
                flush=True,
            )
            target, summary, result = write_results()
    if target is not None:
        plot(result, stem + ".png")
    print(json.dumps({"target": target, "total_budget": total, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
