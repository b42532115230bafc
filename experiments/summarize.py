"""Summarise sequential fine-tuning runs: per distribution, mean and std over seeds.

Usage: ``python experiments/summarize.py RUN_DIR...`` where each RUN_DIR holds a ``results.json``
written by ``lrdist-jax train``. Prints one JSON object: for each distribution the number of
runs, mean and population std (ddof 0) of acc_task1, p_s, p_o and forgetting, and, for seeds
shared with ``flat``, the mean paired difference in forgetting (distribution minus flat).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

KEYS = ("acc_task1", "p_s", "p_o", "forgetting")


def summarize(run_dirs: list[str]) -> dict:
    runs: dict[str, dict[int, dict]] = {}
    for d in run_dirs:
        path = pathlib.Path(d) / "results.json"
        if not path.exists():
            raise SystemExit(f"error: {path} does not exist (is the run finished?)")
        r = json.loads(path.read_text())
        if r.get("status") != "completed":
            continue
        cfg = r["config"]
        runs.setdefault(cfg["distribution"], {})[cfg["seed"]] = r
    out = {}
    for dist, by_seed in sorted(runs.items()):
        vals = {k: np.array([r[k] for r in by_seed.values()]) for k in KEYS}
        entry = {"runs": len(by_seed)}
        entry.update({k: {"mean": float(v.mean()), "std": float(v.std())} for k, v in vals.items()})
        flat = runs.get("flat", {})
        shared = sorted(set(by_seed) & set(flat))
        if dist != "flat" and shared:
            diff = np.array([by_seed[s]["forgetting"] - flat[s]["forgetting"] for s in shared])
            entry["forgetting_minus_flat"] = {"mean": float(diff.mean()), "seeds": len(shared)}
        out[dist] = entry
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python experiments/summarize.py RUN_DIR...")
    print(json.dumps(summarize(sys.argv[1:]), indent=2))
