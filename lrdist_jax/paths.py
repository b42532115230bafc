"""Parameter key paths as ``"a/b/0/c"`` strings, and labelling by ordered regex rules.

Layer-group optimisers need a label per parameter leaf. This module names every leaf by its
"/"-joined key path (integers stay digits, so ``encoder/layer/3/output/dense/kernel``) and
labels it by the first of an ordered list of ``(regex, label)`` rules that ``re.fullmatch``-es
the path, the convention of big_vision's ``lr_mults`` and of METHODS.md §1.2. The coverage
check names every path no rule matched and every rule that matched nothing, so a typo in a
rule or a renamed module fails loudly instead of silently training with the wrong rate.

Both plain dict trees (Linen ``params``) and ``flax.nnx.State`` trees work: an NNX
``Variable`` contributes its ``value`` attribute to the raw key path, and that final ``value``
step is left out of the path string, so ``nnx.state(model, nnx.Param)`` gives the same names
as the equivalent Linen tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import jax
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

__all__ = ["Rules", "label_params", "param_paths", "path_str", "tree_map_with_path_str"]

Rules = Sequence[tuple[str, Hashable]]
"""Ordered ``(regex, label)`` pairs; the first regex that fully matches a path wins."""


def _key_str(key: Any) -> str:
    if isinstance(key, DictKey):
        return str(key.key)
    if isinstance(key, SequenceKey):
        return str(key.idx)
    if isinstance(key, GetAttrKey):
        return key.name
    if isinstance(key, FlattenedIndexKey):
        return str(key.key)
    return str(key)


def _strip_variable_value(keypath: tuple) -> tuple:
    # An NNX Variable flattens to its array under GetAttrKey("value"); the variable itself is
    # the parameter, so its path ends one step earlier.
    if keypath and isinstance(keypath[-1], GetAttrKey) and keypath[-1].name == "value":
        return keypath[:-1]
    return keypath


def path_str(keypath: Iterable[Any], sep: str = "/") -> str:
    """Joins a JAX key path into a string: ``(DictKey('a'), SequenceKey(0))`` -> ``"a/0"``.

    Dict keys, sequence indices, attribute names and flattened indices are written plainly
    (integers as digits), like ``jax.tree_util.keystr(path, simple=True, separator="/")``.

    Args:
      keypath: a key path from ``jax.tree_util.tree_flatten_with_path``.
      sep: the separator.

    Returns:
      The joined path.

    Examples:
      >>> import jax
      >>> tree = {"encoder": {"layer": [{"kernel": 0.0}]}}
      >>> [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
      ['encoder/layer/0/kernel']
    """
    return sep.join(_key_str(k) for k in keypath)


def tree_map_with_path_str(f: Callable[[str, Any], Any], tree: Any) -> Any:
    """``jax.tree_util.tree_map_with_path`` with the path given as a ``"a/b/0"`` string.

    The trailing ``value`` step of ``flax.nnx`` variables is left out of the string.
    """
    return jax.tree_util.tree_map_with_path(
        lambda p, x: f(path_str(_strip_variable_value(p)), x), tree
    )


def param_paths(params: Any) -> list[str]:
    """All leaf paths of ``params`` as ``"a/b/0/c"`` strings, in flattening order."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return [path_str(_strip_variable_value(p)) for p, _ in leaves]


def label_params(
    params: Any,
    rules: Rules,
    *,
    default: Hashable | None = None,
    strict: bool = True,
) -> Any:
    """Labels every leaf of ``params`` by the first ``(regex, label)`` rule matching its path.

    Each path (see :func:`path_str`) is tested with ``re.fullmatch`` against the rules in
    order; the first match gives the label. Paths no rule matches get ``default``.

    Args:
      params: a parameter pytree (nested dicts, or an ``nnx.State``).
      rules: ordered ``(regex, label)`` pairs. Patterns must not start with ``/``.
      default: label for paths no rule matches; ``None`` makes such a path an error.
      strict: also fail when a rule matches no path (a likely typo or a stale rule).

    Returns:
      A pytree with the structure of ``params`` holding the labels.

    Raises:
      ValueError: listing every unmatched path (when ``default`` is ``None``) and, with
        ``strict``, every unused rule; or for an invalid regex.

    Examples:
      >>> params = {"body": {"kernel": 1.0, "bias": 0.0}, "head": {"kernel": 2.0}}
      >>> label_params(params, [(r"body/.*", 0), (r"head/.*", 1)])
      {'body': {'bias': 0, 'kernel': 0}, 'head': {'kernel': 1}}
    """
    compiled = []
    for i, rule in enumerate(rules):
        try:
            pattern, label = rule
        except (TypeError, ValueError):
            raise ValueError(f"rule {i} must be a (regex, label) pair, got {rule!r}") from None
        if pattern.startswith("/"):
            raise ValueError(
                f"rule {i} pattern {pattern!r} starts with '/': paths look like "
                "'encoder/layer/0/kernel', so drop the leading '/'"
            )
        try:
            compiled.append((re.compile(pattern), label))
        except re.error as e:
            raise ValueError(f"rule {i} pattern {pattern!r} is not a valid regex: {e}") from e

    used = [False] * len(compiled)
    unmatched: list[str] = []

    def assign(path: str, _leaf: Any) -> Hashable:
        for i, (regex, label) in enumerate(compiled):
            if regex.fullmatch(path):
                used[i] = True
                return label
        if default is None:
            unmatched.append(path)
        return default

    labels = tree_map_with_path_str(assign, params)

    problems = []
    if unmatched:
        problems.append(
            f"{len(unmatched)} parameter path(s) matched no rule (add a rule, a catch-all "
            "('.*', label) at the end, or pass default=):\n"
            + "\n".join(f"  {p}" for p in unmatched)
        )
    unused = [rules[i][0] for i, u in enumerate(used) if not u]
    if strict and unused:
        problems.append(
            f"{len(unused)} rule(s) matched no parameter path (fix the pattern, remove it, or "
            "pass strict=False):\n" + "\n".join(f"  {p!r}" for p in unused)
        )
    if problems:
        raise ValueError("label_params: " + "\n".join(problems))
    return labels
