"""Which pipeline the Classifier runs (CATDOG_PIPELINE): the direct one only without batching, and by default
only where a single CPU is usable."""

from __future__ import annotations

import pytest

from service.dataplane import inference
from service.dataplane.inference import Classifier
from service.observability import ServiceMetrics
from service.settings import Settings


@pytest.mark.parametrize(
    ("pipeline", "batch_max_size", "cpus", "direct"),
    [
        ("auto", 1, 1, True),
        ("auto", 1, 2, False),  # two cores: the decode pool overlaps one request's decode with another's inference
        ("auto", 8, 1, False),  # batching: images meet in the batch queue
        ("direct", 1, 4, True),
        ("direct", 8, 1, False),  # direct jobs run one image at a time: split, whatever was asked
        ("split", 1, 1, False),
    ],
)
def test_pipeline_choice(
    monkeypatch: pytest.MonkeyPatch, pipeline: str, batch_max_size: int, cpus: int, direct: bool
) -> None:
    monkeypatch.setattr(inference, "usable_cpus", lambda: cpus)
    settings = Settings(pipeline=pipeline, batch_max_size=batch_max_size)  # type: ignore[arg-type]
    classifier = Classifier.from_settings(settings, ServiceMetrics())
    try:
        assert classifier.direct is direct
    finally:
        classifier.close()
