"""The HorizontalPodAutoscaler's replica arithmetic, as pure functions over explicit state, following the controller
(kubernetes pkg/controller/podautoscaler: replica_calculator.go, horizontal.go) and its documentation:

- per metric, desired = ceil(ready pods x current / target), unchanged within the tolerance (|ratio - 1| <= 0.1);
  several metrics: the largest proposal wins;
- stabilisation: the recommendation is held between the lowest proposal of the scale-up window and the highest of the
  scale-down window (both including this one);
- rate policies: per direction, each policy allows a change relative to the replica count at the start of its
  period (Pods: +-value, Percent: x(1 +- value/100), ceil up / truncated down), `selectPolicy` Max takes the policy
  that allows the largest change, Min the smallest, Disabled none;
- then minReplicas / maxReplicas.

No clocks, no I/O: the caller passes time and keeps an `HpaState`, so tests can feed the documentation's examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

TOLERANCE = 0.1


@dataclass(frozen=True)
class Policy:
    kind: Literal["Pods", "Percent"]
    value: int
    period_s: float


@dataclass(frozen=True)
class Rules:
    """One direction of `spec.behavior` (scaleUp or scaleDown)."""

    window_s: float
    policies: tuple[Policy, ...]
    select: Literal["Max", "Min", "Disabled"] = "Max"


# The HPA's defaults when `behavior` is absent (Kubernetes docs, "Default Behavior").
DEFAULT_UP = Rules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))
DEFAULT_DOWN = Rules(300, (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class Behavior:
    up: Rules = DEFAULT_UP
    down: Rules = DEFAULT_DOWN


@dataclass
class HpaState:
    """What the controller remembers between syncs: its recommendations and the scale events it made."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, replica change: + up, - down)


def metric_proposal(ready: int, current: float, target: float, tolerance: float = TOLERANCE) -> int | None:
    """One metric's desired replicas (getUsageRatioReplicaCount): None when within the tolerance (keep the count)."""
    ratio = current / target
    if ready == 0:
        return math.ceil(ratio)
    if abs(1.0 - ratio) <= tolerance:
        return None
    return math.ceil(ratio * ready)


def proposal(replicas: int, ready: int, readings: Sequence[tuple[float, float]], tolerance: float = TOLERANCE) -> int:
    """The largest proposal over several (current, target) metrics; the current count when every one is within the
    tolerance."""
    found = [metric_proposal(ready, current, target, tolerance) for current, target in readings]
    return max((p if p is not None else replicas) for p in found) if found else replicas


def stabilise(state: HpaState, now: float, replicas: int, desired: int, behavior: Behavior) -> int:
    """Hold the recommendation inside the windows (stabilizeRecommendationWithBehaviors) and remember `desired`."""
    up = down = desired
    for at, rec in state.recommendations:
        if at > now - behavior.up.window_s:
            up = min(up, rec)
        if at > now - behavior.down.window_s:
            down = max(down, rec)
    longest = max(behavior.up.window_s, behavior.down.window_s)
    state.recommendations = [(at, r) for at, r in state.recommendations if at > now - longest]
    state.recommendations.append((now, desired))
    return min(max(replicas, up), down)


def _changed(events: list[tuple[float, int]], now: float, period_s: float, sign: int) -> int:
    return sum(abs(change) for at, change in events if at > now - period_s and change * sign > 0)


def up_limit(replicas: int, events: list[tuple[float, int]], now: float, rules: Rules) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    if rules.select == "Disabled" or not rules.policies:
        return replicas
    proposals = []
    for policy in rules.policies:
        start = replicas - _changed(events, now, policy.period_s, +1) + _changed(events, now, policy.period_s, -1)
        if policy.kind == "Pods":
            proposals.append(start + policy.value)
        else:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    return max(proposals) if rules.select == "Max" else min(proposals)


def down_limit(replicas: int, events: list[tuple[float, int]], now: float, rules: Rules) -> int:
    """calculateScaleDownLimitWithBehaviors."""
    if rules.select == "Disabled" or not rules.policies:
        return replicas
    proposals = []
    for policy in rules.policies:
        start = replicas + _changed(events, now, policy.period_s, -1) - _changed(events, now, policy.period_s, +1)
        if policy.kind == "Pods":
            proposals.append(start - policy.value)
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    return min(proposals) if rules.select == "Max" else max(proposals)


def step(
    state: HpaState,
    now: float,
    replicas: int,
    desired: int,
    behavior: Behavior,
    min_replicas: int,
    max_replicas: int,
) -> int:
    """One sync: the raw proposal `desired` -> the replica count the HPA sets (and records as a scale event)."""
    wanted = stabilise(state, now, replicas, desired, behavior)
    if wanted > replicas:
        limit = max(up_limit(replicas, state.events, now, behavior.up), replicas)
        wanted = min(wanted, limit, max_replicas)
    elif wanted < replicas:
        limit = min(down_limit(replicas, state.events, now, behavior.down), replicas)
        wanted = max(wanted, limit, min_replicas)
    wanted = min(max(wanted, min_replicas), max_replicas)
    longest = max((p.period_s for p in (*behavior.up.policies, *behavior.down.policies)), default=0.0)
    state.events = [(at, c) for at, c in state.events if at > now - longest]
    if wanted != replicas:
        state.events.append((now, wanted - replicas))
    return wanted


def behavior_from_spec(spec: dict[str, object]) -> Behavior:
    """A Behavior from the chart's `behavior` mapping (autoscaling/v2 HorizontalPodAutoscalerBehavior)."""

    def rules(raw: object, default: Rules) -> Rules:
        if not isinstance(raw, dict):
            return default
        policies = (
            tuple(Policy(p["type"], int(p["value"]), float(p["periodSeconds"])) for p in raw.get("policies", []))
            or default.policies
        )
        window = float(raw.get("stabilizationWindowSeconds", default.window_s))
        return Rules(window, policies, raw.get("selectPolicy", "Max"))

    return Behavior(rules(spec.get("scaleUp"), DEFAULT_UP), rules(spec.get("scaleDown"), DEFAULT_DOWN))
