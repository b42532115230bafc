"""Search objective noise: how much of a trial's reward is the configuration, how much the seed.

The search benchmark (``search_efficiency.py``) compares samplers by the best reward they find.
That comparison can only separate them if the reward depends on the configuration more than on
the training seed. This script trains the same configurations (the flat log-midpoint one, then
``--configs`` log-uniform random ones, the proposals of ``RandomSampler(seed=0)``, as random
search draws them) under several training seeds (data order, dropout, head initialisation) at
the full budget, and reports:

* ``noise_std``: the pooled within-configuration standard deviation of the reward across seeds;
* ``interaction_std``: what is left of it after removing each seed's mean over configurations
  (a seed that lifts every configuration alike does not change which one a search prefers;
  this part does);
* ``signal_std``: the standard deviation across configurations of the per-configuration means;
* ``signal_to_noise``: their ratio;
* ``best_config_by_seed``: for each seed, which configuration scored best (if the winner
  changes with the seed, "the best configuration" found by any search is mostly luck);
* ``rank_correlation``: the mean Spearman correlation of the configurations' rewards between
  two seeds.

``--budget B`` trains every trial for ``B`` epochs per phase instead of the full ``--max-budget``
(the experiment, its schedule and everything else unchanged), as a low Hyperband rung does;
``--compare FULL.json`` then reports ``fidelity``: how well the rewards at this budget predict
those of an earlier full-budget run of the same configurations and seeds (what Hyperband's
promotions rely on).

Run::

    python benchmarks/search_noise.py --objective cpu --train-size 128 --eval-size 256 \
        --max-length 64 --max-budget 2 --configs 8 --seeds 0 1 2 --out bench_noise

Writes ``OUT/search_noise_<objective>.json`` (``..._<objective>_b<B>.json`` at a lower budget;
a line per trial as it goes in the ``.jsonl`` beside it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_efficiency import (  # noqa: E402
    OBJECTIVES,
    _first,
    add_dropout_hash_argument,
    apply_objective_defaults,
    objective_config,
)

__all__ = ["fidelity", "main", "summarize"]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(x)).astype(float) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def summarize(rewards: np.ndarray) -> dict:
    """Noise and signal of a ``[configs, seeds]`` reward matrix (finite entries, >= 2 seeds)."""
    if rewards.ndim != 2 or rewards.shape[1] < 2:
        raise ValueError(f"need a [configs, seeds>=2] matrix, got shape {rewards.shape}.")
    means = rewards.mean(axis=1)
    noise = float(np.sqrt(rewards.var(axis=1, ddof=1).mean()))
    signal = float(means.std(ddof=1)) if len(means) > 1 else 0.0
    n_cfg, n_seed = rewards.shape
    residual = rewards - means[:, None] - rewards.mean(axis=0) + rewards.mean()
    dof = max(1, (n_cfg - 1) * (n_seed - 1))
    pairs = [(a, b) for a in range(n_seed) for b in range(a + 1, n_seed)]
    corr = [_spearman(rewards[:, a], rewards[:, b]) for a, b in pairs] if n_cfg > 2 else []
    return {
        "noise_std": noise,
        "interaction_std": float(np.sqrt((residual**2).sum() / dof)),
        "rank_correlation": float(np.mean(corr)) if corr else None,
        "signal_std": signal,
        "signal_to_noise": signal / noise if noise > 0 else float("inf"),
        "config_means": means.tolist(),
        "best_config_by_seed": rewards.argmax(axis=0).tolist(),
        "best_config_by_mean": int(means.argmax()),
    }


def fidelity(low: np.ndarray, full: np.ndarray) -> dict:
    """How well ``[configs, seeds]`` rewards at a low budget predict those at the full budget.

    Returns ``rank_correlation_by_seed`` (Spearman across configurations, per seed: what a
    Hyperband rung trained with that seed sees), ``rank_correlation_of_means``, and
    ``top_half_kept``: per seed, the fraction of the full-budget top half that the low budget's
    top half also holds (what a reduction factor of 2 promotes).
    """
    if low.shape != full.shape or low.ndim != 2 or low.shape[0] < 3:
        raise ValueError(
            f"need two [configs>=3, seeds] matrices of one shape, got {low.shape} and {full.shape}."
        )
    n_cfg, n_seed = low.shape
    k = n_cfg // 2
    kept = []
    for j in range(n_seed):
        top_low = set(np.argsort(-low[:, j], kind="stable")[:k].tolist())
        top_full = set(np.argsort(-full[:, j], kind="stable")[:k].tolist())
        kept.append(len(top_low & top_full) / k)
    return {
        "rank_correlation_by_seed": [_spearman(low[:, j], full[:, j]) for j in range(n_seed)],
        "rank_correlation_of_means": _spearman(low.mean(axis=1), full.mean(axis=1)),
        "top_half_kept": kept,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default="smoke")
    p.add_argument("--configs", type=int, default=8, help="random configurations besides flat")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    for name in ("pair", "low", "high", "max_budget", "train_size", "eval_size", "max_length"):
        kind = str if name == "pair" else float if name in ("low", "high") else int
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    p.add_argument("--budget", type=int, default=None, help="epochs per phase (default: full)")
    p.add_argument("--compare", default=None, help="a full-budget run's JSON (same configs)")
    add_dropout_hash_argument(p)
    p.add_argument("--out", default="bench_noise")
    args = apply_objective_defaults(p.parse_args(argv))
    if len(args.seeds) < 2:
        p.error("--seeds needs at least two training seeds to measure the noise.")
    budget = args.max_budget if args.budget is None else args.budget
    if not 1 <= budget <= args.max_budget:
        p.error(f"--budget must be in [1, --max-budget={args.max_budget}], got {budget}.")
    full = None
    if args.compare:
        try:
            with open(args.compare) as f:
                full = json.load(f)
            same = full["seeds"] == args.seeds and len(full["configs"]) == args.configs + 1
            full_budget = full["budget"] == args.max_budget
        except (OSError, ValueError, KeyError, TypeError) as err:
            p.error(f"--compare {args.compare}: not a search_noise result JSON ({err}).")
        if not same:
            p.error(f"--compare {args.compare} has other seeds or configurations than this run.")
        if not full_budget:
            p.error(
                f"--compare {args.compare} was trained for {full['budget']} epochs, not the full "
                f"--max-budget={args.max_budget}."
            )

    from tqdm import tqdm

    from lrdist_jax.search.bo import RandomSampler
    from lrdist_jax.search.objective import SequentialObjective
    from lrdist_jax.train import Experiment

    base = objective_config(args)
    os.makedirs(args.out, exist_ok=True)
    suffix = "" if budget == args.max_budget else f"_b{budget}"
    stem = os.path.join(args.out, f"search_noise_{args.objective}{suffix}")
    experiment = Experiment(dataclasses.replace(base, seed=args.seeds[0]), progress=False)
    n_slots = experiment.num_slots
    sampler = RandomSampler(
        n_slots, 0, low=args.low, high=args.high, first_config=_first(args.low, args.high, n_slots)
    )
    configs = [sampler.ask()["lrs"] for _ in range(args.configs + 1)]
    if full is not None and not np.allclose(full["configs"], configs):
        p.error(f"--compare {args.compare} has other configurations than this run.")
    rewards = np.full((len(configs), len(args.seeds)), np.nan)
    t0 = time.perf_counter()
    with open(stem + ".jsonl", "w") as log:
        bar = tqdm(total=rewards.size, desc="trials")
        for j, seed in enumerate(args.seeds):
            if j:  # the first seed's experiment is built above (for the slot count)
                experiment = Experiment(dataclasses.replace(base, seed=seed), progress=False)
            objective = SequentialObjective(experiment)
            for i, lrs in enumerate(configs):
                try:
                    out = objective({"lrs": lrs}, budget, lambda e, v: False)
                    rewards[i, j] = out["reward"]
                    status = out["status"]
                except FloatingPointError as err:
                    status = f"failed: {err}"
                reward = float(rewards[i, j]) if np.isfinite(rewards[i, j]) else None
                record = {"config": i, "seed": seed, "lrs": lrs, "reward": reward}
                log.write(json.dumps({**record, "status": status}) + "\n")
                log.flush()
                bar.update()
        bar.close()
    finite = rewards[np.all(np.isfinite(rewards), axis=1)]
    result = {
        "objective": args.objective,
        "config": dataclasses.asdict(base),
        "space": [args.low, args.high],
        "budget": budget,
        "max_budget": args.max_budget,
        "seeds": args.seeds,
        "configs": configs,
        "rewards": rewards.tolist(),
        "seconds": round(time.perf_counter() - t0, 1),
        **summarize(finite),
    }
    if full is not None:
        full_rewards = np.asarray(full["rewards"], float)
        ok = np.all(np.isfinite(rewards), axis=1) & np.all(np.isfinite(full_rewards), axis=1)
        # None when fewer than three configurations finished in both runs.
        result["fidelity"] = fidelity(rewards[ok], full_rewards[ok]) if ok.sum() >= 3 else None
    tmp = stem + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, stem + ".json")
    keys = ("noise_std", "interaction_std", "signal_std", "signal_to_noise", "rank_correlation")
    keys += ("best_config_by_seed", "fidelity")
    print(json.dumps({k: result[k] for k in keys if k in result}))
    return result


if __name__ == "__main__":
    main()
