"""The ``lrdist-jax`` command line.

Every module ``lrdist_jax/cli/_<name>.py`` defines one subcommand through
``register(subparsers)``, which adds its parser and sets ``func(args) -> int`` as default.
Errors a user can fix raise :class:`CLIError`: the message goes to stderr and the exit code is 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

__all__ = ["CLIError", "build_parser", "main"]


class CLIError(Exception):
    """A problem with the user's input: printed as ``error: <message>``, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrdist-jax",
        description="Layer-group learning-rate distributions for fine-tuning Transformers in JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") and not info.name.startswith("__"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def _enable_compilation_cache() -> None:
    """Persists compiled XLA programs across runs (``LRDIST_JAX_CACHE_DIR``; ``0`` disables).

    A search or a repeated run then skips most compilation; the default folder is
    ``~/.cache/lrdist_jax/xla``.
    """
    import os

    import jax

    path = os.environ.get("LRDIST_JAX_CACHE_DIR", os.path.expanduser("~/.cache/lrdist_jax/xla"))
    if path in ("", "0") or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code (0 ok, 1 check failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    _enable_compilation_cache()
    from lrdist_jax.sharding import initialize_distributed

    initialize_distributed()  # a no-op unless launched on several hosts
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
