"""The decoder warm-up runs the whole client path once per format it warms (a first WebP decode costs several times a
later one: loadtest/autoscale/cold_start.py measures the first answer against warm ones)."""

from __future__ import annotations

from service.dataplane.card import InputSpec, Preprocessing
from service.dataplane.imaging import WARM_UP_FORMATS, ImageLimits, warm_up_decoders


def test_warms_the_formats_clients_send_most() -> None:
    assert {"JPEG", "PNG", "WEBP"} <= set(WARM_UP_FORMATS)


def test_runs_the_client_path_for_each_card_shape() -> None:
    limits = ImageLimits(max_bytes=10 * 1024 * 1024, max_pixels=40_000_000)
    for spec, size in [
        (Preprocessing(resize_short_side=256, crop="center"), InputSpec(height=224, width=224)),
        (Preprocessing(resize_short_side=64, crop="none"), InputSpec(height=64, width=48)),
    ]:
        warm_up_decoders(spec, size, limits)
