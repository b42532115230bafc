"""Data-parallel throughput on 1, 2, 4 and 8 simulated CPU devices (the smoke model, tiny BERT).

Usage::

    python benchmarks/device_scaling.py [--batch 128] [--seq-len 64] [--reps 7] [--steps 5]

Times the engine's jitted train step (:func:`lrdist_jax.train.step.make_step_fns` on the tiny
:class:`~lrdist_jax.models.BertClassifier` of the smoke preset, dropout on, cross-entropy,
:func:`~lrdist_jax.transforms.layerwise_adam` over four slots) with the state replicated and the
batch split over a mesh of N devices (:mod:`lrdist_jax.sharding`), exactly as ``lrdist-jax train
--devices N`` runs it. On one CPU the simulated devices share the same two cores, so this
measures the overhead of sharding, not a speed-up: examples per second on 8 devices should stay
within 20% of 1 device (``ratio_8_vs_1 >= 0.8``).

The default global batch, 128, gives each of 8 devices 16 examples, the presets' batch size. With
a global batch of 32 (4 examples per device) the work per device is so small that costs every
device pays once per step dominate on a shared CPU: the dense gradient of the 30522 x 32 word
embedding, its all-reduce, and AdamW over all ~1 M replicated parameters, run 8 times on the same
2 cores (see ``benchmarks/README.md`` for both figures).

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

from lrdist_jax.models import BertClassifier, BertConfig, TaskHead  # noqa: E402
from lrdist_jax.sharding import (  # noqa: E402
    make_data_mesh,
    replicate,
    replicated_sharding,
    shard_batch,
)
from lrdist_jax.slots import bert_lr_slots  # noqa: E402
from lrdist_jax.train.step import LossConfig, TrainState, make_step_fns  # noqa: E402
from lrdist_jax.transforms import layerwise_adam  # noqa: E402

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
        "weights": np.ones(batch, np.float32),
    }


def _setup(num_devices: int, model, params, tx, host_batch):
    """Compiles and warms up the engine's step on ``num_devices``; returns a closure running ``k``
    steps."""
    mesh = make_data_mesh(num_devices)
    fns = make_step_fns(
        model,
        tx,
        LossConfig(dropout=True),
        is_regression={"task1": False},
        state_sharding=replicated_sharding(mesh),
    )
    state = [replicate(TrainState.create(params, tx.init(params)), mesh)]
    batch = shard_batch(host_batch, mesh)

    def run(k: int) -> float:
        start = time.perf_counter()
        metrics = None
        for _ in range(k):
            state[0], metrics = fns.train(state[0], batch, head="task1")
        jax.block_until_ready((state, metrics))
        return time.perf_counter() - start

    run(2)  # compile and warm up
    return run


def measure(
    batch: int = 128,
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
    tx = layerwise_adam(bert_lr_slots(4, config.num_hidden_layers), [1e-4] * 4, schedule="constant")
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
    parser.add_argument(
        "--batch", type=int, default=128, help="global batch size (default 128: 16 per device on 8)"
    )
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
