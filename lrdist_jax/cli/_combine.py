"""``lrdist-jax combine FILE...``: rank-weighted geometric mean of searched distributions."""

from __future__ import annotations

import json

from lrdist_jax.cli import CLIError


def register(sub) -> None:
    p = sub.add_parser(
        "combine",
        help="combine per-pair search results into one learning-rate distribution",
        description="Reads one trial file per task pair, ranks each pair's completed trials by "
        "p_s + p_o, takes the weighted geometric mean of their rates (weights base^-rank), "
        "then the plain geometric mean across pairs (METHODS.md 1.8). Prints "
        '{"lrs": [...], "per_pair": [[...], ...]} as JSON.',
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="one trial file per task pair")
    p.add_argument(
        "--format",
        choices=("auto", "kenneweg2022", "jsonl"),
        default="auto",
        help="kenneweg2022: the authors' log_file.csv; jsonl: this project's search ledger; "
        "auto: decide by content (default)",
    )
    p.add_argument("--base", type=float, default=1.8, help="rank weight base (default 1.8)")
    p.add_argument("--out", help="also write the result as a distribution file (JSON)")
    p.add_argument(
        "--num-layers",
        type=int,
        default=12,
        help="encoder layers of the searched model, recorded in --out (default 12)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from lrdist_jax.distributions import save_distribution
    from lrdist_jax.search.combine import combine_files

    if not args.base > 1.0:
        raise CLIError(f"--base must be > 1, got {args.base}")
    try:
        combined, per_pair = combine_files(args.files, fmt=args.format, base=args.base)
    except (OSError, ValueError) as e:
        raise CLIError(f"cannot combine: {e}") from e
    if args.out:
        source = f"lrdist-jax combine --base {args.base} " + " ".join(args.files)
        try:
            save_distribution(args.out, combined, num_layers=args.num_layers, source=source)
        except (OSError, ValueError) as e:
            raise CLIError(f"cannot write {args.out}: {e}") from e
    print(json.dumps({"lrs": combined.tolist(), "per_pair": [v.tolist() for v in per_pair]}))
    return 0
