"""Load profiles as one Locust LoadTestShape, chosen by CATDOG_LOADTEST_PROFILE (smoke, steady, step, spike).
CATDOG_LOADTEST_USERS scales every stage's user count (the numbers below suit one small replica);
CATDOG_LOADTEST_TIME_SCALE stretches or shrinks every stage's duration."""

from __future__ import annotations

import os

from locust import LoadTestShape

# (stage length in s, users, spawn rate per s) for a base of 8 users.
PROFILES: dict[str, list[tuple[float, int, float]]] = {
    "smoke": [(15, 2, 2)],
    "steady": [(120, 8, 4)],
    "step": [(30, 2, 2), (30, 4, 2), (30, 8, 4), (30, 16, 8), (30, 32, 16)],
    "spike": [(30, 4, 4), (20, 40, 40), (40, 4, 40)],
}


def stages(profile: str, users: int = 8, time_scale: float = 1.0) -> list[tuple[float, int, float]]:
    """Stages with cumulative end times, users scaled from the base of 8."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    out, end = [], 0.0
    for length, n, rate in PROFILES[profile]:
        end += length * time_scale
        out.append((end, max(1, round(n * users / 8)), max(1.0, rate * users / 8)))
    return out


class ProfileShape(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.stages = stages(
            os.environ.get("CATDOG_LOADTEST_PROFILE", "smoke"),
            int(os.environ.get("CATDOG_LOADTEST_USERS", "8")),
            float(os.environ.get("CATDOG_LOADTEST_TIME_SCALE", "1")),
        )

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()  # type: ignore[no-untyped-call]
        for end, users, rate in self.stages:
            if elapsed < end:
                return users, rate
        return None
