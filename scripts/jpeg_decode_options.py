#!/usr/bin/env python3
"""docs/benchmarks.md's check of libjpeg-turbo's fast decode options against the answer budget: the service's
JPEG decode (`imaging._decode_jpeg`, unchanged) with simplejpeg's `fastdct` / `fastupsample` (what Pillow's
`draft` turns on) and another `JPEG_OVERSAMPLING`, through each shipped model's FP32 file, against the reference
preprocessing, on re-encodings of six photos at 0.3, 2, 9 and 24 MP plus the bundled JPEGs (loadtest/answers.py).

    python scripts/jpeg_decode_options.py today fastdct fastupsample both oversampling4 oversampling4-fastupsample

One line per option set and model: the largest and median probability shift, the images over the budget and
the images whose label changed. Slow (minutes): each set runs every image through both models twice.
"""

from __future__ import annotations

import functools
import sys

import simplejpeg

from loadtest import answers
from service.dataplane import imaging

DECODE_JPEG = simplejpeg.decode_jpeg
PHOTOS = ("cat-cat.webp", "dog-dog.webp", "other-alpaca.webp", "other-cow.webp", "other-owl.webp", "other-heron.webp")
OPTIONS: dict[str, tuple[dict[str, bool], float]] = {
    "today": ({}, imaging.JPEG_OVERSAMPLING),
    "fastdct": ({"fastdct": True}, imaging.JPEG_OVERSAMPLING),
    "fastupsample": ({"fastupsample": True}, imaging.JPEG_OVERSAMPLING),
    "both": ({"fastdct": True, "fastupsample": True}, imaging.JPEG_OVERSAMPLING),
    "oversampling4": ({}, 4.0),
    "oversampling4-fastupsample": ({"fastupsample": True}, 4.0),
}


def main(names: list[str]) -> int:
    images = answers.reencoded(PHOTOS, formats=["jpg"])
    images.update({k: v for k, v in answers.bundled_photos().items() if k.endswith(".jpg")})
    for name in names or list(OPTIONS):
        flags, oversampling = OPTIONS[name]
        # The service's own decode path, with simplejpeg's fast options added to every call it makes.
        simplejpeg.decode_jpeg = functools.partial(DECODE_JPEG, **flags)
        imaging.JPEG_OVERSAMPLING = oversampling
        for folder in answers.model_dirs():
            report = answers.compare(folder, images)
            print(
                f"{name} {folder.name}: max {report.max_dp:.4f}, median {report.median_dp:.6f}, "
                f"over {report.over_budget}, labels changed {report.label_changes}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
