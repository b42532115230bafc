"""Searching learning-rate distributions: Hyperband around scikit-optimize's Gaussian process,
a crash-safe trial ledger, and the rank-weighted geometric-mean combination (METHODS.md 1.6-1.8).

scikit-optimize is imported only when a Gaussian-process proposal is first needed.
"""

from lrdist_jax.search.bo import RandomSampler, SkoptSampler
from lrdist_jax.search.combine import (
    DEFAULT_BASE,
    combine_files,
    combine_pair,
    combine_pairs,
    rank_weights,
    read_kenneweg_log,
    read_trials,
    read_trials_jsonl,
    weighted_geometric_mean,
)
from lrdist_jax.search.hyperband import (
    Bracket,
    Hyperband,
    Rung,
    StoppingHyperband,
    StoppingRule,
    Trial,
    TrialResult,
    format_brackets,
    hyperband_brackets,
    max_bracket_index,
    stopping_rung_levels,
)
from lrdist_jax.search.ledger import TrialLedger
from lrdist_jax.search.objective import METRICS, SequentialObjective
from lrdist_jax.search.runner import Objective, run_search, search_settings

__all__ = [
    "DEFAULT_BASE",
    "METRICS",
    "Bracket",
    "Hyperband",
    "Objective",
    "RandomSampler",
    "Rung",
    "SequentialObjective",
    "SkoptSampler",
    "StoppingHyperband",
    "StoppingRule",
    "Trial",
    "TrialLedger",
    "TrialResult",
    "combine_files",
    "combine_pair",
    "combine_pairs",
    "format_brackets",
    "hyperband_brackets",
    "max_bracket_index",
    "rank_weights",
    "read_kenneweg_log",
    "read_trials",
    "read_trials_jsonl",
    "run_search",
    "search_settings",
    "stopping_rung_levels",
    "weighted_geometric_mean",
]
