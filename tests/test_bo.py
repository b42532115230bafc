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


def _tell_points(sampler, points, f, budget):
    for lrs in points:
        sampler.ask()  # keep the proposal count consistent
        sampler.tell({"lrs": lrs}, f(lrs), budget)


def _grid(n, seed):
    rng = np.random.default_rng(seed)
    return [list(10.0 ** rng.uniform(-7, -3, 2)) for _ in range(n)]


def test_joint_gp_learns_the_landscape_from_low_budgets():
    # Twelve one-epoch results locate the peak (1e-4 in both slots); the two results at budget
    # 4 are far from it. The joint GP proposes near the peak for budget 4; the default fits
    # only the two budget-4 points.
    def f(b):
        return lambda lrs: quadratic(lrs, -4.0) + 0.5 * b

    proposals = {}
    for fidelity in ("largest", "joint"):
        s = SkoptSampler(2, seed=0, first_config=None, min_points=2, fidelity=fidelity, **FAST)
        _tell_points(s, _grid(12, 0), f(1), 1)
        _tell_points(s, [[1e-7, 1e-7], [1e-7, 3e-7]], f(4), 4)
        proposals[fidelity] = np.log10(s.ask()["lrs"])
        assert s.model_budgets[-1] == 4
    assert np.all(np.abs(proposals["joint"] + 4.0) < 0.5), proposals
    assert np.max(np.abs(proposals["largest"] + 4.0)) > 0.5, proposals


def test_joint_gp_proposes_for_the_model_budget():
    # The peak moves with the budget: 1e-6 after one epoch, 1e-4 after four. With enough
    # results at both levels the proposal is for budget 4 (the largest level with min_points).
    def f(b):
        return lambda lrs: quadratic(lrs, -6.0 if b == 1 else -4.0)

    s = SkoptSampler(2, seed=0, first_config=None, min_points=3, fidelity="joint", **FAST)
    _tell_points(s, _grid(10, 1), f(1), 1)
    _tell_points(s, _grid(10, 2), f(4), 4)
    lrs = np.log10(s.ask()["lrs"])
    assert s.model_budgets[-1] == 4
    assert np.all(np.abs(lrs + 4.0) < 0.5), lrs


def test_joint_gp_is_deterministic_and_tells_failures_as_the_worst(monkeypatch):
    from skopt.learning import GaussianProcessRegressor

    seen = []
    original = GaussianProcessRegressor.fit

    def spy(self, x, y):
        seen.append((np.array(x), np.array(y)))
        return original(self, x, y)

    monkeypatch.setattr(GaussianProcessRegressor, "fit", spy)

    def run():
        s = SkoptSampler(2, seed=3, n_initial_points=1, min_points=2, fidelity="joint", **FAST)
        for reward, budget in [(0.5, 1), (float("nan"), 1), (-2.0, 1), (1.5, 2), (0.0, 2)]:
            s.tell(s.ask(), reward, budget)
        return s.ask()["lrs"]

    assert run() == run()
    x, y = seen[-1]
    # rows per level in order told: budget 1 (the NaN as that level's worst, -2.0), then 2
    assert list(y) == [-0.5, 2.0, 2.0, -1.5, -0.0]
    assert list(x[:, -1]) == [0.0, 0.0, 0.0, 1.0, 1.0]  # log budget scaled to [0, 1]
    assert np.all((x[:, :2] >= 0) & (x[:, :2] <= 1))


def test_fidelity_setting_and_validation():
    assert "fidelity" not in SkoptSampler(2).settings()  # older searches still resume
    assert SkoptSampler(2, fidelity="joint").settings()["fidelity"] == "joint"
    with pytest.raises(ValueError, match="fidelity must be one of"):
        SkoptSampler(2, fidelity="all")
