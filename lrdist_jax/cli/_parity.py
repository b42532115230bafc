"""``lrdist-jax parity MODEL_DIR``: our Flax BERT against transformers' PyTorch BertModel."""

from __future__ import annotations

import json

from lrdist_jax.cli import CLIError

TOLERANCE = 1e-4


def register(sub) -> None:
    p = sub.add_parser(
        "parity",
        help="compare this library's BERT with transformers' PyTorch BertModel on a checkpoint",
        description="Loads MODEL_DIR in both frameworks, runs a fixed batch of sentence pairs "
        "with padding and token types, prints the max abs differences as JSON, and exits 1 if "
        f"any exceeds {TOLERANCE:g}.",
    )
    p.add_argument("model_dir", help="Hugging Face model folder (or 'minilm-l6')")
    p.add_argument("--tolerance", type=float, default=TOLERANCE)
    p.set_defaults(func=run)


def run(args) -> int:
    from lrdist_jax.parity import compare_with_torch

    try:
        diffs = compare_with_torch(args.model_dir)
    except (FileNotFoundError, NotADirectoryError, ValueError, OSError) as e:
        raise CLIError(f"cannot load {args.model_dir}: {e}") from e
    print(json.dumps(diffs))
    return 0 if max(diffs.values()) <= args.tolerance else 1
