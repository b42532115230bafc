"""Search landscape: what the search-efficiency target asks of a sampler on one objective.

``search_efficiency.py`` runs whole searches, a few seeds each, and the issue's target (reach
random search's final best with at most a third of its budget) is decided by which of their few
full-budget results land high. This script measures the landscape those searches sample
instead: ``--configs`` log-uniform random configurations (``RandomSampler(seed,
first_config=None)``, what random search draws), each trained at every budget of ``--budgets``
(epochs per phase, as a Hyperband rung trains them), and reports:

* ``rewards``: mean, standard deviation and quantiles of ``p_s + p_o`` per budget;
* ``fidelity``: per lower budget, the Spearman correlation of its rewards with the full
  budget's across configurations, and ``screened_hit_rate``: how often the configuration a
  rung of ``eta`` random configurations promotes (the best at the lower budget) reaches the
  target at the full budget;
* ``target``: random search's expected final best under the total budget ``B`` of
  ``--iterations`` Hyperband iterations (the expected maximum of ``B / (2 R)`` draws from the
  sampled rewards), and ``hit_rate``: the fraction of random configurations at or above it;
* ``random_within_a_third``: the chance that random search reaches the target with its
  full-budget trials in the first third of ``B``;
* ``hyperband_results_in_a_third``: how many full-budget results the Hyperband plan (bracket
  order ``--bracket-order``) has finished within the first third, and ``required_hit_rate``:
  the hit rate each of those ``k`` results needs for the median seed to reach the target within
  a third, ``1 - 0.5 ** (1 / k)`` (independent results), set against random's.

Run::

    python benchmarks/search_landscape.py --objective cpu --train-size 128 --eval-size 256 \\
        --max-length 64 --max-budget 4 --eta 4 --iterations 5 --budgets 1 4 --configs 120 \\
        --out bench_landscape

Writes a line per configuration to ``OUT/search_landscape_<objective>.jsonl`` as it goes (a run
started again with the same flags continues after the configurations already there) and the
analysis to ``OUT/search_landscape_<objective>.json``. ``--analyze-only`` skips training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_efficiency import (  # noqa: E402
    OBJECTIVES,
    add_dropout_hash_argument,
    apply_objective_defaults,
    hyperband_total,
    objective_config,
)
from search_noise import _spearman  # noqa: E402

__all__ = [
    "analyze",
    "build_parser",
    "expected_max",
    "full_budget_results",
    "landscape_header",
    "main",
    "read_jsonl",
    "screened_hit_rate",
]


def expected_max(values: np.ndarray, n: int) -> float:
    """Expected maximum of ``n`` independent draws from the empirical distribution of ``values``.

    With the values sorted, ``v_(i)`` is the maximum with probability ``(i/N)^n - ((i-1)/N)^n``.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size == 0 or n < 1:
        raise ValueError(f"need at least one value and n >= 1, got {v.size} values and n={n}.")
    cdf = np.arange(1, v.size + 1) / v.size
    return float(np.sum(v * (cdf**n - (cdf - 1 / v.size) ** n)))


def screened_hit_rate(
    low: np.ndarray, full: np.ndarray, n_screen: int, target: float, *, draws: int, seed: int = 0
) -> float:
    """Probability that the best of ``n_screen`` random configurations at the low budget
    reaches ``target`` at the full budget (what a Hyperband rung with ``eta = n_screen``
    promotes), estimated from ``draws`` random subsets; ties at the low budget split evenly."""
    rng = np.random.default_rng(seed)
    hits = 0.0
    for _ in range(draws):
        idx = rng.choice(low.size, size=n_screen, replace=False)
        promoted = idx[low[idx] == low[idx].max()]
        hits += float(np.mean(full[promoted] >= target))
    return hits / draws


def full_budget_results(
    max_budget: int, eta: int, iterations: int, order: str, until: float
) -> list[float]:
    """Budget spent (epochs, both phases) when each full-budget result of the Hyperband plan
    (``min_budget`` 1) finishes, up to ``until``; rungs run in order, trial after trial."""
    from lrdist_jax.search.hyperband import hyperband_brackets

    brackets = hyperband_brackets(1, max_budget, eta)
    if order == "ascending":
        brackets = brackets[::-1]
    spent, out = 0.0, []
    for _ in range(iterations):
        for bracket in brackets:
            for rung in bracket.rungs:
                for _ in range(rung.n_configs):
                    spent += 2 * rung.budget
                    if spent > until + 1e-9:
                        return out
                    if rung.budget == max_budget:
                        out.append(spent)
    return out


def analyze(
    rewards: dict[int, np.ndarray],
    *,
    max_budget: int,
    eta: int,
    iterations: int,
    bracket_order: str = "descending",
    draws: int = 20000,
) -> dict:
    """The landscape summary of ``rewards`` (budget -> ``[configs]``, the same configurations
    at every budget, finite; must hold ``max_budget``). See the module docstring."""
    if max_budget not in rewards:
        raise ValueError(f"rewards hold budgets {sorted(rewards)}, not the full {max_budget}.")
    full = rewards[max_budget]
    if full.size < 2 or any(r.shape != full.shape for r in rewards.values()):
        raise ValueError("need the same >= 2 configurations at every budget.")
    total = iterations * hyperband_total(max_budget, eta)
    n_random = int(total // (2 * max_budget))
    target = expected_max(full, n_random)
    hit_rate = float(np.mean(full >= target))
    in_third = int((total / 3) // (2 * max_budget))
    results = full_budget_results(max_budget, eta, iterations, bracket_order, total / 3)
    k = len(results)
    required = 1.0 - 0.5 ** (1.0 / k) if k else None
    quantiles = (0.5, 0.75, 0.9, 0.95, 1.0)
    return {
        "configs": int(full.size),
        "total_budget": total,
        "rewards": {
            str(b): {
                "mean": float(r.mean()),
                "std": float(r.std(ddof=1)),
                "quantiles": {str(q): float(np.quantile(r, q)) for q in quantiles},
            }
            for b, r in sorted(rewards.items())
        },
        "fidelity": {
            str(b): {
                "rank_correlation": _spearman(r, full),
                "screened_hit_rate": screened_hit_rate(r, full, eta, target, draws=draws),
            }
            for b, r in sorted(rewards.items())
            if b != max_budget
        },
        "random_trials": n_random,
        "target": target,
        "hit_rate": hit_rate,
        "random_trials_in_a_third": in_third,
        "random_within_a_third": 1.0 - (1.0 - hit_rate) ** in_third,
        "hyperband_results_in_a_third": results,
        "required_hit_rate": required,
        "required_over_random": required / hit_rate if required and hit_rate else None,
    }


def read_jsonl(path: str) -> tuple[list[dict], int]:
    """The records of a landscape JSONL and the length in bytes of its intact part.

    A last line without its newline (the run was killed while writing it) is dropped, and the
    caller truncates the file to the intact part before appending; a damaged complete line is
    an error (``ValueError`` naming the line).
    """
    if not os.path.exists(path):
        return [], 0
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    records, intact = [], 0
    for i, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            break
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise ValueError(f"{path}: line {i} is not JSON; remove it.") from None
        intact += len(line)
    return records, intact


def build_parser() -> argparse.ArgumentParser:
    """The command line (objective flags as in ``search_efficiency.py``)."""
    from lrdist_jax.search.hyperband import BRACKET_ORDERS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default="smoke")
    p.add_argument("--configs", type=int, default=40, help="random configurations to train")
    p.add_argument("--seed", type=int, default=100, help="RandomSampler seed of the configurations")
    p.add_argument("--budgets", type=int, nargs="+", default=None, help="default: 1 and the full")
    for name in ("pair", "low", "high", "max_budget", "eta", "train_size", "eval_size"):
        kind = str if name == "pair" else float if name in ("low", "high") else int
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--iterations", type=int, default=1, help="B = this many Hyperband iterations")
    p.add_argument("--bracket-order", choices=BRACKET_ORDERS, default="descending")
    p.add_argument("--analyze-only", action="store_true", help="analyse the JSONL, train nothing")
    add_dropout_hash_argument(p)
    p.add_argument("--out", default="bench_landscape")
    return p


def landscape_header(args: argparse.Namespace) -> dict:
    """The first JSONL line's set-up: a run continues only a file with the same one."""
    config = objective_config(args)
    return {"config": config.to_dict(), "space": [args.low, args.high], "seed": args.seed}


def main(argv: list[str] | None = None) -> dict:
    p = build_parser()
    args = apply_objective_defaults(p.parse_args(argv))
    budgets = sorted(set(args.budgets or [1, args.max_budget]))
    if budgets[-1] != args.max_budget or budgets[0] < 1:
        p.error(f"--budgets must lie in [1, --max-budget={args.max_budget}] and include it.")
    if args.configs < 2:
        p.error("--configs must be at least 2.")
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"search_landscape_{args.objective}")
    header = landscape_header(args)
    try:
        records, intact = read_jsonl(stem + ".jsonl")
    except ValueError as e:
        p.error(str(e))
    if records and records[0].get("header") != header:
        p.error(f"{stem}.jsonl holds another set-up; pass another --out or remove it.")
    done = {r["k"] for r in records[1:]}
    todo = [k for k in range(args.configs) if k not in done]
    if todo and not args.analyze_only:
        from tqdm import tqdm

        from lrdist_jax.search.bo import RandomSampler
        from lrdist_jax.search.objective import SequentialObjective
        from lrdist_jax.train import Experiment

        objective = SequentialObjective(Experiment(objective_config(args), progress=False))
        sampler = RandomSampler(
            objective.num_slots, args.seed, low=args.low, high=args.high, first_config=None
        )
        lrs = [sampler.ask()["lrs"] for _ in range(args.configs)]
        with open(stem + ".jsonl", "a") as log:
            log.truncate(intact)  # drops a last line cut short by a killed run
            if not records:
                log.write(json.dumps({"header": header}) + "\n")
            for k in tqdm(todo, desc="configurations"):
                record = {"k": k, "lrs": lrs[k], "rewards": {}, "seconds": {}}
                for b in budgets:
                    t = time.perf_counter()
                    try:
                        out = objective({"lrs": lrs[k]}, b, lambda e, v: False)
                        reward = out["reward"]
                    except FloatingPointError:
                        reward = None
                    record["rewards"][str(b)] = reward
                    record["seconds"][str(b)] = round(time.perf_counter() - t, 2)
                log.write(json.dumps(record) + "\n")
                log.flush()
        records, _ = read_jsonl(stem + ".jsonl")
    rows = [r for r in records[1:] if r["k"] < args.configs]
    rows = [r for r in rows if all(r["rewards"].get(str(b)) is not None for b in budgets)]
    if len(rows) < 2:
        p.error(f"{stem}.jsonl holds {len(rows)} finished configurations; need at least 2.")
    rewards = {b: np.array([r["rewards"][str(b)] for r in rows]) for b in budgets}
    result = {
        "objective": args.objective,
        **header,
        "hyperband": {"max_budget": args.max_budget, "eta": args.eta, "order": args.bracket_order},
        "iterations": args.iterations,
        **analyze(
            rewards,
            max_budget=args.max_budget,
            eta=args.eta,
            iterations=args.iterations,
            bracket_order=args.bracket_order,
        ),
    }
    with open(stem + ".json.tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(stem + ".json.tmp", stem + ".json")
    print(json.dumps({k: v for k, v in result.items() if k not in ("config", "rewards")}, indent=1))
    return result


if __name__ == "__main__":
    main()
