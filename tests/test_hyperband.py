"""Tests for lrdist_jax.search.hyperband: integer bracket math, ask/tell, the stopping rule."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrdist_jax.search.hyperband import (
    Hyperband,
    StoppingHyperband,
    StoppingRule,
    format_brackets,
    hyperband_brackets,
    max_bracket_index,
    stopping_rung_levels,
)


class CountingSampler:
    """Configs {"k": 0}, {"k": 1}, ...; remembers what it was told."""

    def __init__(self):
        self.n = 0
        self.told = []

    def ask(self):
        self.n += 1
        return {"k": self.n - 1}

    def tell(self, config, reward, budget):
        self.told.append((config["k"], reward, budget))

    def settings(self):
        return {"type": "counting"}


def reward_of(config, budget):
    """Deterministic, config-dependent reward that grows with the budget."""
    return math.sin(3.7 * config["k"] + 1.0) + 0.01 * budget


# -- bracket arithmetic ---------------------------------------------------------------------------


def test_exact_powers_get_all_brackets():
    # Floating log is one short at exact powers: this is the bug integer arithmetic avoids.
    assert int(math.log(243) / math.log(3)) == 4
    assert max_bracket_index(1, 243, 3) == 5
    assert len(hyperband_brackets(1, 243, 3)) == 6
    assert max_bracket_index(1, 1000, 10) == 3  # log10(1000) = 2.9999999999999996
    assert max_bracket_index(2, 64, 2) == 5
    assert max_bracket_index(1, 242, 3) == 4
    assert max_bracket_index(5, 5, 3) == 0


def test_brackets_match_li_et_al_table_for_r81_eta3():
    # Li et al. (2018), Table 1: R = 81, eta = 3; (n_i, r_i) per bracket s = 4..0.
    table = {
        4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        3: [(34, 3), (11, 9), (3, 27), (1, 81)],
        2: [(15, 9), (5, 27), (1, 81)],
        1: [(8, 27), (2, 81)],
        0: [(5, 81)],
    }
    brackets = hyperband_brackets(1, 81, 3)
    assert [b.index for b in brackets] == [4, 3, 2, 1, 0]
    for b in brackets:
        assert [(r.n_configs, r.budget) for r in b.rungs] == table[b.index]


@settings(max_examples=60, deadline=None)
@given(
    min_budget=st.integers(1, 30),
    ratio=st.integers(1, 400),
    extra=st.integers(0, 50),
    eta=st.integers(2, 6),
)
def test_bracket_properties(min_budget, ratio, extra, eta):
    max_budget = min_budget * ratio + extra
    s_max = max_bracket_index(min_budget, max_budget, eta)
    assert min_budget * eta**s_max <= max_budget < min_budget * eta ** (s_max + 1)
    brackets = hyperband_brackets(min_budget, max_budget, eta)
    assert [b.index for b in brackets] == list(range(s_max, -1, -1))
    for b in brackets:
        assert len(b.rungs) == b.index + 1
        budgets = [r.budget for r in b.rungs]
        counts = [r.n_configs for r in b.rungs]
        assert all(isinstance(x, int) for x in budgets + counts)
        assert all(min_budget <= x <= max_budget for x in budgets)
        assert budgets[-1] == max_budget
        assert budgets == sorted(set(budgets))  # strictly increasing
        assert counts == sorted(counts, reverse=True) and counts[-1] >= 1
        assert all(counts[i + 1] == counts[i] // eta for i in range(len(counts) - 1))
        assert counts[0] == math.ceil((s_max + 1) * eta**b.index / (b.index + 1))


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="eta"):
        max_bracket_index(1, 10, 1)
    with pytest.raises(ValueError, match="max_budget"):
        max_bracket_index(10, 5, 3)
    with pytest.raises(ValueError, match="min_budget"):
        Hyperband(0, 5)
    with pytest.raises(ValueError, match="integer"):
        Hyperband(1.5, 5)


def test_format_schedule_lists_every_bracket():
    hb = Hyperband(1, 27, eta=3)
    text = hb.format_schedule()
    assert text == hb.format_schedule()
    for b in hb.schedule():
        assert f"bracket s={b.index}" in text
    total = sum(r.n_configs for b in hb.schedule() for r in b.rungs)
    assert f"total: {total} trials" in text and hb.total_trials == total
    assert format_brackets(hb.schedule()).startswith("Hyperband schedule")


# -- synchronous ask/tell ------------------------------------------------------------------------


def _run(hb, fail=lambda trial: False):
    trials = []
    while (trial := hb.ask()) is not None:
        trials.append(trial)
        reward = math.nan if fail(trial) else reward_of(trial.config, trial.budget)
        hb.tell(trial.id, reward)
    return trials


@pytest.mark.parametrize("order", ["descending", "ascending"])
@pytest.mark.parametrize("min_budget,max_budget,eta,iterations", [(1, 9, 3, 1), (1, 16, 2, 2)])
def test_sequential_run_follows_the_schedule_and_promotes_the_top(
    min_budget, max_budget, eta, iterations, order
):
    sampler = CountingSampler()
    hb = Hyperband(
        min_budget, max_budget, eta, sampler=sampler, iterations=iterations, bracket_order=order
    )
    trials = _run(hb)
    assert hb.is_finished and hb.ask() is None
    assert [t.id for t in trials] == list(range(len(trials))) == sorted(hb.trials)
    assert len(trials) == hb.total_trials
    plan = hb.schedule() * iterations
    groups = []  # consecutive trials of one (bracket, rung)
    for t in trials:
        if groups and (groups[-1][0].bracket, groups[-1][0].rung) == (t.bracket, t.rung):
            groups[-1].append(t)
        else:
            groups.append([t])
    expected = [(b.index, i, r) for b in plan for i, r in enumerate(b.rungs)]
    assert len(groups) == len(expected)
    for g, (members, (s, i, rung)) in enumerate(zip(groups, expected, strict=True)):
        assert (members[0].bracket, members[0].rung) == (s, i)
        assert len(members) == rung.n_configs
        assert all(t.budget == rung.budget for t in members)
        if i == 0:
            assert all(t.parent is None for t in members)
        else:
            ranked = sorted(groups[g - 1], key=lambda t: (-reward_of(t.config, t.budget), t.id))
            assert [t.parent for t in members] == [t.id for t in ranked[: rung.n_configs]]
            assert [t.config for t in members] == [t.config for t in ranked[: rung.n_configs]]
    # every result was passed on to the sampler with its budget
    assert sampler.told == [
        (t.config["k"], reward_of(t.config, t.budget), t.budget) for t in trials
    ]
    best = hb.best()
    at_max = [t for t in trials if t.budget == max_budget]
    assert best.reward == max(reward_of(t.config, t.budget) for t in at_max)


def test_ascending_bracket_order_runs_the_full_budget_bracket_first():
    down = Hyperband(1, 4, 4)
    up = Hyperband(1, 4, 4, sampler=CountingSampler(), bracket_order="ascending")
    assert [b.index for b in down.schedule()] == [1, 0]
    assert up.schedule() == down.schedule()[::-1]
    assert up.total_trials == down.total_trials == 7
    assert [t.budget for t in _run(up)] == [4, 4, 1, 1, 1, 1, 4]
    assert "brackets ascending" in up.format_schedule()
    # The default stays out of the settings, so searches begun before the option still resume.
    assert "bracket_order" not in down.settings()
    assert up.settings()["bracket_order"] == "ascending"
    with pytest.raises(ValueError, match="bracket_order='sideways'"):
        Hyperband(1, 4, 4, bracket_order="sideways")


def test_failed_trials_are_never_promoted():
    hb = Hyperband(1, 9, 3, sampler=CountingSampler())
    trials = _run(hb, fail=lambda t: t.config["k"] % 3 == 0)
    failed_configs = {t.config["k"] for t in trials if t.config["k"] % 3 == 0}
    promoted = [t for t in trials if t.rung > 0]
    assert promoted and not {t.config["k"] for t in promoted} & failed_configs
    assert all(hb.results[t.id][0] == "failed" for t in trials if t.config["k"] in failed_configs)
    assert hb.is_finished


def test_a_rung_where_everything_fails_ends_the_bracket():
    hb = Hyperband(1, 9, 3, sampler=CountingSampler())
    trials = _run(hb, fail=lambda t: t.bracket == 2)
    assert [t.rung for t in trials if t.bracket == 2] == [0] * 9
    assert hb.is_finished and {t.bracket for t in trials} == {0, 1, 2}


def test_parallel_asks_wait_for_the_rung_instead_of_deadlocking():
    hb = Hyperband(1, 4, 2, sampler=CountingSampler())
    first = [hb.ask() for _ in range(4)]  # bracket s=2, rung 0 has 4 trials
    assert all(t is not None for t in first) and hb.ask() is None
    assert hb.pending == [t.id for t in first]
    for t in first[:3]:
        hb.tell(t.id, reward_of(t.config, t.budget))
    assert hb.ask() is None  # still waiting for the 4th
    hb.tell(first[3].id, reward_of(first[3].config, first[3].budget))
    nxt = hb.ask()
    assert nxt.rung == 1 and nxt.budget == 2 and nxt.parent in {t.id for t in first}


def test_tell_checks_ids():
    hb = Hyperband(1, 3, 3, sampler=CountingSampler())
    t = hb.ask()
    with pytest.raises(ValueError, match="Unknown trial id"):
        hb.tell(99, 1.0)
    hb.tell(t.id, 1.0)
    with pytest.raises(ValueError, match="already told"):
        hb.tell(t.id, 1.0)
    with pytest.raises(ValueError, match="status"):
        hb.tell(hb.ask().id, 1.0, status="done")


def test_ask_without_sampler_explains_the_fix():
    with pytest.raises(RuntimeError, match="sampler"):
        Hyperband(1, 3).ask()


# -- stopping variant ----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(max_t=st.integers(1, 300), grace=st.integers(1, 5), rf=st.integers(2, 4))
def test_stopping_rung_levels_properties(max_t, grace, rf):
    levels = stopping_rung_levels(max_t, grace, rf)
    assert all(level < max_t for level in levels)
    assert list(levels) == [grace * rf**k for k in range(len(levels))]
    assert grace * rf ** len(levels) >= max_t  # no rung level missing


def test_authors_rung_levels():
    assert stopping_rung_levels(6, 1, 2) == (1, 2, 4)  # 5 epochs, max_t = 6
    assert StoppingHyperband(5, 50).rule.rung_levels == (1, 2, 4)
    assert StoppingHyperband(3, 50).rule.rung_levels == (1, 2)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=25),
    rf=st.integers(2, 4),
)
def test_stopping_rule_matches_numpy_percentile_of_earlier_values(values, rf):
    rule = StoppingRule(max_t=2, grace_period=1, reduction_factor=rf)
    for i, v in enumerate(values):
        earlier = values[:i]
        expect_stop = bool(earlier) and v < np.percentile(earlier, (1 - 1 / rf) * 100)
        assert rule.on_report(i, 1, v) == expect_stop
    assert rule.recorded[1] == dict(enumerate(values))


def test_stopping_rule_only_acts_at_rung_levels_once_per_trial():
    rule = StoppingRule(max_t=6)
    assert not rule.on_report(0, 1, 5.0)
    assert rule.on_report(1, 1, 1.0)  # below the median of {5}
    assert not rule.on_report(1, 3, -100.0)  # 3 is not a rung level
    assert not rule.on_report(0, 1, -100.0)  # already recorded at rung 1
    assert rule.on_report(2, 2, float("nan"))  # non-finite values always stop
    assert rule.recorded[2] == {}


def test_stopping_hyperband_flow_and_sampler_updates():
    sampler = CountingSampler()
    sh = StoppingHyperband(4, 6, sampler=sampler)
    assert sh.max_t == 5 and sh.rule.rung_levels == (1, 2, 4)
    statuses = []
    while (trial := sh.ask()) is not None:
        assert trial.budget == 4 and trial.bracket == 0
        stopped = False
        for epoch in range(1, 5):
            if sh.report(trial.id, epoch, reward_of(trial.config, epoch)):
                stopped = True
                break
        if stopped:
            sh.tell(trial.id, None, "stopped")
        else:
            sh.tell(trial.id, reward_of(trial.config, 10))
        statuses.append("stopped" if stopped else "completed")
    assert sh.is_finished and len(statuses) == 6
    assert "stopped" in statuses and "completed" in statuses
    # Intermediate values are told at their rung level, final rewards at max_t; stopped trials
    # get no final tell.
    finals = [t for t in sampler.told if t[2] == 5]
    assert len(finals) == statuses.count("completed")
    assert {b for _, _, b in sampler.told} <= {1, 2, 4, 5}
    best = sh.best()
    done = [i for i, (st_, _) in sh.results.items() if st_ == "completed"]
    assert best.reward == max(reward_of(sh.trials[i].config, 10) for i in done)
    with pytest.raises(ValueError, match="not running"):
        sh.report(0, 1, 0.0)
    assert "rung levels [1, 2, 4]" in sh.format_schedule()
