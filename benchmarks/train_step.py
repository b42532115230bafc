"""Train-step speed of lrdist-jax against PyTorch + transformers on the offline MiniLM.

Both sides train ``all-MiniLM-L6-v2`` as a sequence classifier (``BertForSequenceClassification``:
pooler + linear head, 2 labels) from the same weights, batch 32, sequence length 128 (MRPC
sentence pairs padded to 128), float32, dropout on, with

* ten learning-rate groups: word embeddings | other embeddings (position, token type, LayerNorm)
  | layer 0 | ... | layer 5 | pooler | classifier head;
* AdamW (weight decay 0.01, constant rates) and global gradient-norm clipping at 1.0.

The JAX side is this library's step: :func:`lrdist_jax.train.step.make_step_fns` with
``optax.chain(optax.clip_by_global_norm(1.0), layerwise_adam(labels, lrs, weight_decay=0.01))``
and labels from :func:`lrdist_jax.paths.label_params`. The PyTorch side is
``torch.optim.AdamW`` with ten parameter groups and ``torch.nn.utils.clip_grad_norm_``.

Each side runs in its own worker process (spawned, so neither inherits the other's heap or
thread pools); the parent alternates timed rounds between them (JAX, torch, JAX, torch, ...)
after a warm-up and reports the median of each, so both see the same machine load. The warm-up
(15 steps per side) outlasts both heaps' growth (PyTorch's first seven steps; with glibc, XLA's
step buffer makes the heap grow in 1.56 GB steps up to about step 14), so the rounds measure the
steady state; the JSON lists each round's minor page faults, which show any growth step left
(hundreds of thousands of faults in a round). The same
run measures this CPU's float32 matmul peak with a large jitted matmul and the fraction of it
the JAX step reaches, in model FLOPs (per example ``6 x non-embedding parameters x tokens + 12 x
layers x T^2 x H`` for the attention products, what PyTorch computes; see
``docs/performance.md``) and in the FLOPs XLA counts in the compiled step
(``executed_gflop_per_example``: fewer, because the last layer computes only the [CLS] row).

Prints one JSON object, e.g.::

    {"jax_examples_per_s": 30.1, "torch_examples_per_s": 13.2, "ratio": 2.28, ...}

Run::

    /work/venv/bin/python benchmarks/train_step.py            # full comparison
    /work/venv/bin/python benchmarks/train_step.py --rounds 3 --steps 3 --skip-torch
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrdist_jax.data import load_glue, tokenize
from lrdist_jax.models import (
    BertClassifier,
    TaskHead,
    load_tokenizer,
    resolve_model_dir,
    torch_state_to_flax,
)
from lrdist_jax.paths import label_params
from lrdist_jax.train.step import LossConfig, TrainState, make_step_fns
from lrdist_jax.transforms import layerwise_adam

MODEL = "minilm-l6"
NUM_LABELS = 2
WEIGHT_DECAY = 0.01
CLIP_NORM = 1.0

#: The ten learning-rate groups, as (name, path regex) in group order. The same partition is
#: applied to the PyTorch parameter names (see ``_torch_group``).
GROUPS = (
    ("word_embeddings", r"bert/embeddings/word_embeddings/.*"),
    ("other_embeddings", r"bert/embeddings/.*"),
    *((f"layer_{i}", rf"bert/encoder/layer/{i}/.*") for i in range(6)),
    ("pooler", r"bert/pooler/.*"),
    ("head", r"heads/.*"),
)
#: Distinct rates per group (a layer-wise decay, smallest at the embeddings).
GROUP_LRS = tuple(2e-5 * 0.9 ** (len(GROUPS) - 1 - g) for g in range(len(GROUPS)))


def _torch_group(name: str) -> int:
    """The group index of a ``BertForSequenceClassification`` parameter name."""
    if name.startswith("bert.embeddings.word_embeddings."):
        return 0
    if name.startswith("bert.embeddings."):
        return 1
    if name.startswith("bert.encoder.layer."):
        return 2 + int(name.split(".")[3])
    if name.startswith("bert.pooler."):
        return 8
    if name.startswith("classifier."):
        return 9
    raise ValueError(f"parameter {name} is in no learning-rate group")


# ------------------------------------------------------------------------------------ data
def make_batches(n_batches: int, batch_size: int, seq_len: int) -> list[dict[str, np.ndarray]]:
    """MRPC train pairs (real lengths), padded to ``seq_len``, as numpy batches."""
    ex = load_glue("mrpc", "train").head(n_batches * batch_size)
    arrays = tokenize(load_tokenizer(MODEL), ex, max_length=seq_len)
    out = []
    for i in range(n_batches):
        rows = slice(i * batch_size, (i + 1) * batch_size)
        batch = {k: np.asarray(arrays[k][rows], np.int32) for k in arrays if k != "lengths"}
        batch["labels"] = np.asarray(ex.labels[rows], np.int32)
        batch["weights"] = np.ones(batch_size, np.float32)
        out.append(batch)
    return out


# ------------------------------------------------------------------------------------- torch
def build_torch():
    """``(model, optimizer, state_dict)`` of the PyTorch reference (train mode)."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(
        str(resolve_model_dir(MODEL)), num_labels=NUM_LABELS
    )
    model.train()
    groups = [[] for _ in GROUPS]
    for name, p in model.named_parameters():
        groups[_torch_group(name)].append(p)
    opt = torch.optim.AdamW(
        [{"params": ps, "lr": lr} for ps, lr in zip(groups, GROUP_LRS, strict=True)],
        weight_decay=WEIGHT_DECAY,
    )
    state_dict = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return model, opt, state_dict


def torch_step_fn(model, opt):
    import torch

    def step(batch):
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            labels=batch["labels"],
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        opt.step()
        return out.loss.detach()

    return step


# --------------------------------------------------------------------------------------- jax
def build_jax(state_dict: dict[str, np.ndarray], config):
    """``(train_fn, state)``: this library's jitted step and its initial state."""
    model = BertClassifier(config, (TaskHead("cls", NUM_LABELS),), use_pooler=True)
    params = {
        "bert": torch_state_to_flax(state_dict),
        "heads": {
            "cls": {
                "kernel": state_dict["classifier.weight"].T.copy(),
                "bias": state_dict["classifier.bias"].copy(),
            }
        },
    }
    expected = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"]
    )
    params = jax.tree.map(lambda s, a: jnp.asarray(a, s.dtype), expected, params)
    labels = label_params(params, [(rx, g) for g, (_, rx) in enumerate(GROUPS)])
    tx = optax.chain(
        optax.clip_by_global_norm(CLIP_NORM),
        layerwise_adam(labels, GROUP_LRS, schedule="constant", weight_decay=WEIGHT_DECAY),
    )
    fns = make_step_fns(model, tx, LossConfig(dropout=True), is_regression={"cls": False})
    state = TrainState.create(params, tx.init(params))
    return fns.train, state, params


def count_flops_per_example(params, config, seq_len: int) -> float:
    """``6 x (encoder params x T + pooler/head params) + 12 x L x T^2 x H`` (forward+backward)."""
    n = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
    encoder = n(params["bert"]["encoder"])
    per_token_once = n(params["bert"].get("pooler", {})) + n(params["heads"])
    attention = 12 * config.num_hidden_layers * seq_len**2 * config.hidden_size
    return 6.0 * (encoder * seq_len + per_token_once) + attention


def _xla_flops(compiled) -> float:
    """FLOPs XLA counts in a compiled executable (its cost analysis)."""
    cost = compiled.cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def matmul_peak(size: int, reps: int) -> float:
    """Best float32 GFLOP/s of a jitted ``size^3`` matmul."""
    a = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (size, size), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best / 1e9


# ------------------------------------------------------------------------------------ workers
def _jax_worker(conn, bs: int, t: int, matmul_size: int, profile: str | None) -> None:
    """Builds this library's step, then runs ``n`` steps per request and replies the seconds."""
    from lrdist_jax.models import BertConfig

    np_batches = make_batches(4, bs, t)
    _, _, state_dict = build_torch()  # the reference's weights, incl. its seeded head
    config = BertConfig.from_json_file(resolve_model_dir(MODEL) / "config.json")
    train, state, params = build_jax(state_dict, config)
    flops = count_flops_per_example(params, config, t)
    del params, state_dict
    batches = [jax.device_put(b) for b in np_batches]
    # the FLOPs XLA counts, over the step's executables (two on the CPU: gradients, update)
    lowered = train.lower(state, batches[0], head="cls")
    executed = sum(_xla_flops(stage.compile()) for stage in lowered) / bs
    done = 0

    def run(n: int) -> float:
        nonlocal state, done
        t0 = time.perf_counter()
        metrics = None
        for _ in range(n):
            state, metrics = train(state, batches[done % 4], head="cls")
            done += 1
        jax.block_until_ready((state, metrics))
        return time.perf_counter() - t0

    conn.send({"flops": flops, "executed": executed, "peak": matmul_peak(matmul_size, 3)})
    _serve(conn, run)
    if profile:
        with jax.profiler.trace(profile):
            run(2)
    conn.send({"peak": matmul_peak(matmul_size, 3)})


def _torch_worker(conn, bs: int, t: int) -> None:
    """Builds the PyTorch reference step, then serves timing requests like ``_jax_worker``."""
    import torch

    model, opt, _ = build_torch()
    step = torch_step_fn(model, opt)
    batches = [
        {k: torch.from_numpy(v).long() for k, v in b.items() if k != "weights"}
        for b in make_batches(4, bs, t)
    ]
    done = 0

    def run(n: int) -> float:
        nonlocal done
        t0 = time.perf_counter()
        for _ in range(n):
            step(batches[done % 4])
            done += 1
        return time.perf_counter() - t0

    conn.send({"threads": torch.get_num_threads(), "version": torch.__version__.split("+")[0]})
    _serve(conn, run)


def _serve(conn, run) -> None:
    """Answers ``n`` with ``(run(n), minor page faults during it)`` until ``None`` arrives."""
    while (n := conn.recv()) is not None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        seconds = run(n)
        conn.send((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))


def _start(target, *args):
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    return proc, parent, parent.recv()


# -------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per side (alternating)")
    ap.add_argument("--steps", type=int, default=4, help="train steps per round")
    ap.add_argument(
        "--warmup",
        type=int,
        default=15,
        help="untimed steps per side first; 15 gets both heaps past their growth steps "
        "(docs/performance.md, sixth and seventh rounds)",
    )
    ap.add_argument("--matmul-size", type=int, default=4096)
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--profile", default=None, help="write a jax.profiler trace to this folder")
    args = ap.parse_args(argv)
    bs, t = args.batch_size, args.seq_len

    # One worker process per side: each keeps its own heap and thread pools, so neither side's
    # allocations or idle-spinning threads land in the other's timed rounds. The parent only
    # alternates the requests (JAX, torch, JAX, ...), so both see the same machine load.
    sides = {"jax": _start(_jax_worker, bs, t, args.matmul_size, args.profile)}
    if not args.skip_torch:
        sides["torch"] = _start(_torch_worker, bs, t)
    rates = {name: [] for name in sides}
    faults = {name: [] for name in sides}
    for _, conn, _ in sides.values():
        conn.send(args.warmup)
        conn.recv()
    for _ in range(args.rounds):
        for name, (_, conn, _) in sides.items():
            conn.send(args.steps)
            seconds, round_faults = conn.recv()
            rates[name].append(args.steps * bs / seconds)
            faults[name].append(round_faults)
    for _, conn, _ in sides.values():
        conn.send(None)
    jax_info = sides["jax"][2]
    peak = max(jax_info["peak"], sides["jax"][1].recv()["peak"])
    for proc, _, _ in sides.values():
        proc.join()

    flops = jax_info["flops"]
    jax_eps = statistics.median(rates["jax"])
    torch_eps = statistics.median(rates["torch"]) if "torch" in rates else None
    torch_info = sides["torch"][2] if "torch" in sides else {}
    result = {
        "jax_examples_per_s": round(jax_eps, 2),
        "torch_examples_per_s": round(torch_eps, 2) if torch_eps else None,
        "ratio": round(jax_eps / torch_eps, 3) if torch_eps else None,
        "matmul_peak_gflops": round(peak, 1),
        "jax_step_gflops": round(jax_eps * flops / 1e9, 1),
        "fraction_of_peak": round(jax_eps * flops / 1e9 / peak, 3),
        "gflop_per_example": round(flops / 1e9, 3),
        "executed_gflop_per_example": round(jax_info["executed"] / 1e9, 3),
        "executed_fraction_of_peak": round(jax_eps * jax_info["executed"] / 1e9 / peak, 3),
        "jax_rounds": [round(r, 2) for r in rates["jax"]],
        "torch_rounds": [round(r, 2) for r in rates.get("torch", [])],
        "jax_round_page_faults": faults["jax"],
        "torch_round_page_faults": faults.get("torch", []),
        "batch_size": bs,
        "seq_len": t,
        "dtype": "float32",
        "lr_groups": [name for name, _ in GROUPS],
        "optimizer": "AdamW(wd=0.01) per group + global-norm clip 1.0",
        "threads": {"torch": torch_info.get("threads"), "cpu_count": os.cpu_count()},
        "versions": {"jax": jax.__version__, "torch": torch_info.get("version")},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
