"""Data-parallel throughput on 1, 2, 4 and 8 simulated CPU devices (the smoke model, tiny BERT).

Usage::

    python benchmarks/device_scaling.py [--batch 32] [--seq-len 64] [--reps 7] [--steps 5]

Times a jitted data-parallel train step (tiny :class:`~lrdist_jax.models.BertClassifier`, dropout
on, cross-entropy, Adam) whose batch is split over a mesh of N devices and whose parameters are
replicated (:mod:`lrdist_jax.sharding`). On one CPU the simulated devices share the same cores, so
this measures the overhead of sharding, not a speed-up: examples per second on 8 devices should
stay within 20% of 1 device (``ratio_8_vs_1 >= 0.8``).

The device counts are measured in interleaved rounds (1, 2, 4, 8, 1, 2, ...) after all steps are
compiled and warmed up, so a change in machine load affects every count alike; each figure is the
median over rounds. Prints one JSON object; exits 1 if the ratio is below ``--min-ratio``.
"""

from __future__ import annotations

import os
import re

# Simulated devices must be configured before JAX is imported.
_flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=8".strip()

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from lrdist_jax.models import BertClassifier, BertConfig, TaskHead  # noqa: E402
from lrdist_jax.sharding import (  # noqa: E402
    data_sharding,
    make_data_mesh,
    replicate,
    replicated_sharding,
    shard_batch,
)

__all__ = ["main", "measure"]

DEVICE_COUNTS = (1, 2, 4, 8)


def _batch(batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq_len), np.int32)
    lengths = rng.integers(seq_len // 4, seq_len + 1, size=batch)
    mask[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
    return {
        "input_ids": rng.integers(1, 30522, size=(batch, seq_len), dtype=np.int32) * mask,
        "attention_mask": mask,
        "token_type_ids": np.zeros((batch, seq_len), np.int32),
        "labels": rng.integers(0, 2, size=batch, dtype=np.int32),
    }


def _setup(num_devices: int, model, params, tx, host_batch):
    """Compiles and warms up one data-parallel step; returns a closure running ``k`` steps."""
    mesh = make_data_mesh(num_devices)
    repl, data = replicated_sharding(mesh), data_sharding(mesh)

    def loss_fn(p, b, rng):
        logits = model.apply(
            {"params": p},
            b["input_ids"],
            b["attention_mask"],
            b["token_type_ids"],
            head="task1",
            deterministic=False,
            rngs={"dropout": rng},
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, b["labels"]).mean()

    def step(p, opt_state, b, rng):
        loss, grads = jax.value_and_grad(loss_fn)(p, b, rng)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    step = jax.jit(
        step,
        in_shardings=(repl, repl, data, repl),
        out_shardings=(repl,) * 3,
        donate_argnums=(0, 1),
    )
    state = list(replicate((params, tx.init(params)), mesh))
    batch = shard_batch(host_batch, mesh)
    key = replicate(jax.random.key(0), mesh)

    def run(k: int) -> float:
        start = time.perf_counter()
        loss = None
        for _ in range(k):
            state[0], state[1], loss = step(state[0], state[1], batch, key)
        jax.block_until_ready((state, loss))
        return time.perf_counter() - start

    run(2)  # compile and warm up
    return run


def measure(
    batch: int = 32,
    seq_len: int = 64,
    reps: int = 7,
    steps: int = 5,
    device_counts: tuple[int, ...] = DEVICE_COUNTS,
) -> dict:
    """Examples per second of the data-parallel step for each device count.

    Returns:
      ``{"examples_per_second": {"1": ..., ...}, "ratio_8_vs_1": ..., ...}`` (the ratio of the
      largest to the smallest device count).
    """
    if jax.device_count() < max(device_counts):
        raise RuntimeError(
            f"{jax.device_count()} devices visible, {max(device_counts)} needed: JAX was imported "
            "before this script set XLA_FLAGS."
        )
    config = BertConfig.tiny()
    model = BertClassifier(config, (TaskHead("task1", 2),))
    host_batch = _batch(batch, seq_len)
    params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(host_batch["input_ids"][:1]))
    params = jax.device_get(params["params"])  # host copy: each mesh gets its own buffers
    tx = optax.adam(1e-4)
    runners = {n: _setup(n, model, params, tx, host_batch) for n in device_counts}
    seconds = {n: [] for n in device_counts}
    for _ in range(reps):
        for n, run in runners.items():
            seconds[n].append(run(steps))
    eps = {n: batch * steps / statistics.median(t) for n, t in seconds.items()}
    lo, hi = min(device_counts), max(device_counts)
    return {
        "model": "tiny BERT (BertConfig.tiny(), smoke preset)",
        "batch": batch,
        "seq_len": seq_len,
        "steps_per_rep": steps,
        "reps": reps,
        "platform": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "examples_per_second": {str(n): round(v, 1) for n, v in eps.items()},
        f"ratio_{hi}_vs_{lo}": round(eps[hi] / eps[lo], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="global batch size (default 32)")
    parser.add_argument("--seq-len", type=int, default=64, help="sequence length (default 64)")
    parser.add_argument("--reps", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--steps", type=int, default=5, help="train steps per round (default 5)")
    parser.add_argument(
        "--min-ratio", type=float, default=0.8, help="fail below this 8-vs-1 ratio (default 0.8)"
    )
    args = parser.parse_args(argv)
    result = measure(args.batch, args.seq_len, args.reps, args.steps)
    ratio = result["ratio_8_vs_1"]
    result["min_ratio"] = args.min_ratio
    result["ok"] = ratio >= args.min_ratio
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
