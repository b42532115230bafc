"""Tests for lrdist_jax.search.bo: SkoptSampler and RandomSampler."""

import math

import numpy as np
import pytest
import skopt

from lrdist_jax.search.bo import RandomSampler, SkoptSampler

FAST = {"acq_optimizer": "sampling", "n_acq_points": 500}


def quadratic(lrs, centre=-5.0):
    """Peak at lr = 10**centre in every slot."""
    return -sum((math.log10(v) - centre) ** 2 for v in lrs)


def _drive(sampler, n, f=quadratic, budget=1):
    out = []
    for _ in range(n):
        config = sampler.ask()
        reward = f(config["lrs"])
        sampler.tell(config, reward, budget)
        out.append((config["lrs"], reward))
    return out


def test_first_proposal_is_the_flat_distribution_then_random_in_bounds():
    for sampler in (SkoptSampler(4, seed=0), RandomSampler(4, seed=0)):
        assert sampler.ask() == {"lrs": [1e-5] * 4}
        for _ in range(6):
            lrs = sampler.ask()["lrs"]
            assert len(lrs) == 4 and all(1e-7 <= v <= 1e-3 for v in lrs)
    s = RandomSampler(3, seed=0, first_config=None)
    assert s.ask()["lrs"] != [1e-5] * 3
    assert SkoptSampler(2, first_config=[2e-5, 3e-6]).ask() == {"lrs": [2e-5, 3e-6]}


def test_random_proposals_are_log_uniform():
    s = RandomSampler(1, seed=3, first_config=None)
    logs = np.array([math.log10(s.ask()["lrs"][0]) for _ in range(2000)])
    assert logs.min() >= -7 and logs.max() <= -3
    # each decade of the 4 holds about a quarter of the mass
    counts = np.histogram(logs, bins=4, range=(-7, -3))[0]
    assert np.all(np.abs(counts / 2000 - 0.25) < 0.04)


def test_deterministic_for_a_seed_and_history_and_seed_dependent():
    a = _drive(SkoptSampler(2, seed=7, n_initial_points=3, **FAST), 7)
    b = _drive(SkoptSampler(2, seed=7, n_initial_points=3, **FAST), 7)
    c = _drive(SkoptSampler(2, seed=8, n_initial_points=3, **FAST), 7)
    assert a == b
    assert [x for x, _ in a[1:]] != [x for x, _ in c[1:]]


def test_gp_phase_starts_after_min_points_and_uses_the_largest_eligible_budget():
    s = SkoptSampler(2, seed=0, n_initial_points=2, min_points=3, **FAST)
    assert s.min_points == 3 and SkoptSampler(10).min_points == 7
    _drive(s, 3, budget=1)
    assert s.model_budgets == [None, None]  # proposals 1, 2: random (proposal 0 = flat)
    assert s.model_budget() == 1
    _drive(s, 2, budget=3)  # 2 points at budget 3: not enough yet
    assert s.model_budget() == 1
    s.tell({"lrs": [1e-6, 1e-6]}, float("nan"), 3)  # failures do not count as evidence
    assert s.model_budget() == 1
    s.tell({"lrs": [2e-6, 1e-6]}, -1.0, 3)
    assert s.model_budget() == 3
    s.ask()
    assert s.model_budgets[-1] == 3


def test_gp_maximises_the_reward():
    # One slot, a peak at 1e-5; skopt minimises, so a sign error would send it to the worst edge.
    s = SkoptSampler(1, seed=0, first_config=None, n_initial_points=5, min_points=5, **FAST)
    for lr in [1e-7, 1e-6, 1e-4, 3e-4, 1e-3]:
        s.ask()  # keep the proposal count consistent
        s.tell({"lrs": [lr]}, quadratic([lr]), 1)
    proposal = s.ask()["lrs"][0]
    assert s.model_budgets[-1] == 1
    assert abs(math.log10(proposal) + 5.0) < 1.0


def test_gp_search_beats_its_random_start_on_a_smooth_function():
    s = SkoptSampler(3, seed=1, n_initial_points=6, **FAST)
    history = _drive(s, 16, f=lambda lrs: quadratic(lrs, -5.5))
    random_part = max(r for _, r in history[1:6])
    gp_part = max(r for _, r in history[6:])
    assert gp_part > random_part


def test_failed_trials_are_told_as_the_worst_value(monkeypatch):
    seen = {}
    original = skopt.Optimizer.tell

    def spy(self, x, y, fit=True):
        seen["y"] = list(y)
        return original(self, x, y, fit)

    monkeypatch.setattr(skopt.Optimizer, "tell", spy)
    s = SkoptSampler(2, seed=0, n_initial_points=1, min_points=3, **FAST)
    rewards = [0.5, float("nan"), -2.0, 1.5]
    for r in rewards:
        s.tell(s.ask(), r, 1)
    lrs = s.ask()["lrs"]
    assert all(1e-7 <= v <= 1e-3 for v in lrs)
    assert seen["y"] == [-0.5, 2.0, 2.0, -1.5]  # negated; the NaN became the worst (-2.0)


def test_repeated_proposals_are_jittered_deterministically():
    class Stuck(RandomSampler):
        def _propose(self, index):
            return [1e-5, 1e-3]  # always the same point (like skopt re-proposing)

    def run():
        s = Stuck(2, seed=0, first_config=None)
        return [s.ask()["lrs"] for _ in range(8)]

    a, b = run(), run()
    assert a == b
    logs = np.log10(np.array(a))
    assert len({tuple(x) for x in a}) == 8
    assert np.all(np.abs(logs - np.array([-5.0, -3.0])) < 0.5)  # small moves
    assert np.all(np.array(a) <= 1e-3) and np.all(np.array(a) >= 1e-7)


def test_settings_and_validation():
    s = SkoptSampler(3, seed=4, low=1e-6, high=1e-2)
    cfg = s.settings()
    assert cfg["type"] == "skopt" and cfg["seed"] == 4 and cfg["first_config"] == [1e-5] * 3
    assert cfg["min_points"] == 3 and cfg["n_initial_points"] == 3
    assert RandomSampler(3, seed=4).settings()["type"] == "random"
    with pytest.raises(ValueError, match="expected 3"):
        s.tell({"lrs": [1e-5, 1e-5]}, 1.0, 1)
    with pytest.raises(ValueError, match="outside"):
        s.tell({"lrs": [1e-5, 1e-5, 1.0]}, 1.0, 1)
    with pytest.raises(ValueError, match="low < high"):
        SkoptSampler(2, low=1e-3, high=1e-7)
    with pytest.raises(ValueError, match="first_config"):
        SkoptSampler(2, first_config=[1e-5])
