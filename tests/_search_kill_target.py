"""Helper for tests/test_search_runner.py: a small resumable search run in a subprocess.

Usage: python tests/_search_kill_target.py WORKDIR [PAUSE_AFTER]   (or ``main(argv)``)

With PAUSE_AFTER = k, the process writes WORKDIR/paused and sleeps right after the k-th record
was appended to the ledger and before the scheduler was told about it (a point "between
trials"), so the test can SIGKILL it there. Only the first run in a workdir pauses.
"""

import math
import os
import sys
import time

import skopt  # noqa: F401  (imported here so a fork server preloads it; bo imports it lazily)

from lrdist_jax.search.bo import SkoptSampler
from lrdist_jax.search.hyperband import Hyperband
from lrdist_jax.search.runner import run_search

OPTIMUM = (-5.3, -4.6)


def objective(config, budget, report, sleep=0.03):
    """Smooth in log10(lr) with budget-dependent, config-seeded noise; deterministic."""
    x = [math.log10(v) for v in config["lrs"]]
    clean = -sum((a - b) ** 2 for a, b in zip(x, OPTIMUM, strict=True))
    noise = math.sin(1e3 * sum(x) + 7.0 * budget)  # deterministic pseudo-noise in [-1, 1]
    for epoch in range(1, budget + 1):
        time.sleep(sleep)
        report(epoch, clean / 2)
    reward = clean + 0.5 * noise / budget - 1.0 / budget
    return {"status": "completed", "reward": reward, "metrics": {"clean": clean}}


def objective_fast(config, budget, report):
    """The same objective without the per-epoch sleep (for the uninterrupted reference run)."""
    return objective(config, budget, report, sleep=0.0)


def build():
    sampler = SkoptSampler(
        2, seed=3, n_initial_points=4, acq_optimizer="sampling", n_acq_points=500
    )
    scheduler = Hyperband(1, 4, eta=2)
    return sampler, scheduler


def main(argv):
    workdir = argv[1]
    pause_after = int(argv[2]) if len(argv) > 2 else None
    marker = os.path.join(workdir, "paused")

    def on_record(record):
        if pause_after is not None and record["id"] == pause_after - 1:
            if not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(str(record["id"]))
                time.sleep(120)

    sampler, scheduler = build()
    records = run_search(
        objective, sampler, scheduler, workdir=workdir, progress=False, on_record=on_record
    )
    # A finished (possibly resumed) run holds every trial exactly once, in id order.
    assert [r["id"] for r in records] == list(range(scheduler.total_trials))


if __name__ == "__main__":
    main(sys.argv)
