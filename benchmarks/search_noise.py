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

Run::

    python benchmarks/search_noise.py --objective cpu --train-size 128 --eval-size 256 \
        --max-length 64 --max-budget 2 --configs 8 --seeds 0 1 2 --out bench_noise

Writes ``OUT/search_noise_<objective>.json`` (a line per trial as it goes in
``OUT/search_noise_<objective>.jsonl``).
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
    apply_objective_defaults,
    objective_config,
)

__all__ = ["main", "summarize"]


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
    ranks = np.argsort(np.argsort(rewards, axis=0), axis=0).astype(float)
    pairs = [(a, b) for a in range(n_seed) for b in range(a + 1, n_seed)]
    corr = [np.corrcoef(ranks[:, a], ranks[:, b])[0, 1] for a, b in pairs] if n_cfg > 2 else []
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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default="smoke")
    p.add_argument("--configs", type=int, default=8, help="random configurations besides flat")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    for name in ("pair", "low", "high", "max_budget", "train_size", "eval_size", "max_length"):
        kind = str if name == "pair" else float if name in ("low", "high") else int
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    p.add_argument("--out", default="bench_noise")
    args = apply_objective_defaults(p.parse_args(argv))
    if len(args.seeds) < 2:
        p.error("--seeds needs at least two training seeds to measure the noise.")

    from tqdm import tqdm

    from lrdist_jax.search.bo import RandomSampler
    from lrdist_jax.search.objective import SequentialObjective
    from lrdist_jax.train import Experiment

    base = objective_config(args)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"search_noise_{args.objective}")
    experiment = Experiment(dataclasses.replace(base, seed=args.seeds[0]), progress=False)
    n_slots = experiment.num_slots
    sampler = RandomSampler(
        n_slots, 0, low=args.low, high=args.high, first_config=_first(args.low, args.high, n_slots)
    )
    configs = [sampler.ask()["lrs"] for _ in range(args.configs + 1)]
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
                    out = objective({"lrs": lrs}, args.max_budget, lambda e, v: False)
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
        "budget": args.max_budget,
        "seeds": args.seeds,
        "configs": configs,
        "rewards": rewards.tolist(),
        "seconds": round(time.perf_counter() - t0, 1),
        **summarize(finite),
    }
    tmp = stem + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, stem + ".json")
    keys = ("noise_std", "interaction_std", "signal_std", "signal_to_noise", "rank_correlation")
    keys += ("best_config_by_seed",)
    print(json.dumps({k: result[k] for k in keys}))
    return result


if __name__ == "__main__":
    main()
