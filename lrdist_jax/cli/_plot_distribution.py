"""``lrdist-jax plot-distribution FILE --out PNG``: per-slot learning rates on a log axis."""

from __future__ import annotations

from pathlib import Path

from lrdist_jax.cli import CLIError


def register(sub) -> None:
    p = sub.add_parser(
        "plot-distribution",
        help="plot a learning-rate distribution file (needs the 'plots' extra)",
        description="Draws the per-slot learning rates of a distribution file on a log axis, "
        "each slot labelled with the encoder layers it covers.",
    )
    p.add_argument("file", metavar="FILE", help="distribution file (lrdist-jax/distribution)")
    p.add_argument("--out", required=True, metavar="PNG", help="image to write")
    p.add_argument(
        "--num-layers",
        type=int,
        help="show the distribution mapped onto a model with this many encoder layers "
        "(same number of slots, at most N + 2); default: the file's own layer count",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from lrdist_jax.distributions import load_distribution, map_distribution
    from lrdist_jax.plotting import plot_distribution

    try:
        dist = load_distribution(args.file)
    except (OSError, ValueError) as e:
        raise CLIError(f"cannot read distribution: {e}") from e
    lrs, num_layers, slots = dist.lrs, dist.num_layers, list(dist.slots)
    source = dist.source if len(dist.source) <= 60 else dist.source[:57] + "..."
    title = Path(args.file).name + (f" ({source})" if source else "")
    if args.num_layers is not None and args.num_layers != dist.num_layers:
        if args.num_layers < 1:
            raise CLIError(f"--num-layers must be >= 1, got {args.num_layers}")
        n = min(lrs.size, args.num_layers + 2)
        lrs = map_distribution(
            lrs, num_layers=dist.num_layers, num_slots_target=n, num_layers_target=args.num_layers
        )
        num_layers, slots = args.num_layers, None
        title += f", mapped to {num_layers} layers"
    try:
        path = plot_distribution(lrs, args.out, num_layers=num_layers, slots=slots, title=title)
    except ImportError as e:
        raise CLIError(str(e)) from e
    except OSError as e:
        raise CLIError(f"cannot write {args.out}: {e}") from e
    print(path)
    return 0
