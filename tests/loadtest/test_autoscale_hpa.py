"""The HPA replay's arithmetic against the examples in Kubernetes' own documentation ("Horizontal Pod Autoscaling":
algorithm details, scaling policies, stabilisation window, default behavior; the HPA walkthrough)."""

from __future__ import annotations

import itertools

import yaml

from loadtest.autoscale.hpa import (
    DEFAULT_DOWN,
    DEFAULT_UP,
    Behavior,
    HpaState,
    Policy,
    Rules,
    behavior_from_spec,
    metric_proposal,
    proposal,
    step,
)
from tests.support.server import REPO_ROOT


def test_ratio_doubles_halves_and_tolerates() -> None:
    """200m against a 100m target doubles, 50m halves, and a ratio within 0.1 of 1 changes nothing."""
    assert metric_proposal(ready=3, current=0.200, target=0.100) == 6
    assert metric_proposal(ready=4, current=0.050, target=0.100) == 2
    assert metric_proposal(ready=4, current=0.109, target=0.100) is None
    assert metric_proposal(ready=4, current=0.091, target=0.100) is None
    assert metric_proposal(ready=4, current=0.111, target=0.100) == 5  # ceil(4.44)


def test_walkthrough_cpu_305_percent_of_a_50_percent_target_gives_7() -> None:
    """The HPA walkthrough: one php-apache pod at 305 % CPU against 50 % -> 7 replicas."""
    assert metric_proposal(ready=1, current=305, target=50) == 7


def test_several_metrics_take_the_largest_proposal() -> None:
    assert proposal(4, 4, [(0.5, 1.0), (3.0, 1.0)]) == 12
    assert proposal(4, 4, [(1.05, 1.0), (0.5, 1.0)]) == 4  # the first is within tolerance: it keeps 4
    assert proposal(4, 4, []) == 4


def test_scale_down_policies_example() -> None:
    """Pods 4 / 60 s and Percent 10 / 60 s, selectPolicy Max, from 80 towards 10: 8 go first, then 8 again (10 % of 72
    rounded to a whole pod), and once below 40 the Pods policy allows more: 4 at a time."""
    behavior = Behavior(up=DEFAULT_UP, down=Rules(0, (Policy("Pods", 4, 60), Policy("Percent", 10, 60)), "Max"))
    state, replicas, seen = HpaState(), 80, [80]
    for minute in range(1, 20):
        replicas = step(state, minute * 60.0, replicas, 10, behavior, 1, 100)
        seen.append(replicas)
    assert seen[:3] == [80, 72, 64]
    below = [b - a for a, b in itertools.pairwise(seen) if a <= 40 and b > 10]
    assert below and all(change == -4 for change in below), seen
    assert seen[-1] == 10


def test_a_period_counts_the_changes_already_made_in_it() -> None:
    """Two syncs inside one 60 s period share that period's allowance."""
    behavior = Behavior(up=DEFAULT_UP, down=Rules(0, (Policy("Pods", 4, 60),)))
    state = HpaState()
    assert step(state, 0.0, 20, 1, behavior, 1, 100) == 16
    assert step(state, 15.0, 16, 1, behavior, 1, 100) == 16  # 4 already removed in this period
    assert step(state, 61.0, 16, 1, behavior, 1, 100) == 12


def test_scale_up_percent_900_example() -> None:
    """Percent 900 per 60 s: 1 -> 10 -> 100 pods, one period each."""
    behavior = Behavior(up=Rules(0, (Policy("Percent", 900, 60),)), down=DEFAULT_DOWN)
    state = HpaState()
    assert step(state, 0.0, 1, 1000, behavior, 1, 1000) == 10
    assert step(state, 30.0, 10, 1000, behavior, 1, 1000) == 10
    assert step(state, 61.0, 10, 1000, behavior, 1, 1000) == 100


def test_default_scale_up_is_100_percent_or_4_pods_per_15_s() -> None:
    state = HpaState()
    assert step(state, 0.0, 1, 100, Behavior(), 1, 100) == 5
    assert step(state, 15.0, 5, 100, Behavior(), 1, 100) == 10
    assert step(state, 30.0, 10, 100, Behavior(), 1, 100) == 20


def test_stabilisation_window_keeps_the_highest_recent_recommendation() -> None:
    """scaleDown window 300 s (the default): a lower proposal is used only once every higher one is older."""
    state, replicas = HpaState(), 10
    replicas = step(state, 0.0, replicas, 10, Behavior(), 1, 100)
    for t in range(15, 300, 15):
        replicas = step(state, float(t), replicas, 3, Behavior(), 1, 100)
        assert replicas == 10, t
    assert step(state, 301.0, replicas, 3, Behavior(), 1, 100) == 3


def test_disabled_select_policy_never_scales_that_way() -> None:
    behavior = Behavior(up=DEFAULT_UP, down=Rules(0, (Policy("Percent", 100, 15),), "Disabled"))
    assert step(HpaState(), 0.0, 6, 1, behavior, 1, 10) == 6


def test_min_and_max_bound_the_result() -> None:
    assert step(HpaState(), 0.0, 3, 50, Behavior(), 2, 5) == 5
    assert step(HpaState(), 400.0, 3, 0, Behavior(down=Rules(0, DEFAULT_DOWN.policies)), 2, 5) == 2


def test_the_chart_behavior_is_what_the_replay_uses() -> None:
    values = yaml.safe_load((REPO_ROOT / "deploy/helm/catdog/values.yaml").read_text())
    behavior = behavior_from_spec(values["autoscaling"]["keda"]["behavior"])
    assert behavior.up.window_s == 0
    assert Policy("Percent", 100, 15) in behavior.up.policies
    chart_down = values["autoscaling"]["keda"]["behavior"]["scaleDown"]
    assert behavior.down.window_s == chart_down["stabilizationWindowSeconds"]
