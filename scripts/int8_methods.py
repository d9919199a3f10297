#!/usr/bin/env python3
"""docs/models.md's INT8 method-by-method table, head-only rows: each recipe quantized once (no layer search),
judged on the 310 images as exact integer arithmetic and, for contrast, with ONNX Runtime's default kernels on
this machine (which differ from exact only where AVX2's u8 x s8 sums saturate).

    python scripts/int8_methods.py models/pretrained > artifacts/int8-methods.json

The rows with the layer search are `python -m conversion quantize` (the shipped recipe) and the same with
`--seven-bit-weights` (`Recipe(reduce_range=True)`). About 10 minutes on 2 busy cores.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from conversion import quantize as q
from conversion.card import read_card
from conversion.photos import read_manifest
from service.dataplane.card import ModelCard

RECIPES = {
    "8-bit, head only FP32": q.Recipe(reduce_range=False, bias_correction=False),
    "8-bit + bias correction": q.Recipe(reduce_range=False),
    "S8S8, head only FP32": q.Recipe(reduce_range=False, bias_correction=False, activations="s8"),
    "7-bit, head only FP32": q.Recipe(reduce_range=True, bias_correction=False),
    "7-bit + bias correction": q.Recipe(reduce_range=True),
}


def main(folder: Path) -> int:
    card = read_card(folder)
    typed = ModelCard.model_validate(card)
    photos = read_manifest()
    selection, heldout = q.split_photos(photos)
    base = q.Recipe()
    calib = q.augmented_crops(selection, typed, base.crops_per_photo, base.seed)
    sets = q.evaluation_sets(folder / typed.onnx.file, typed, photos, heldout)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared, out, cache = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "calibration.json"
        q.prepare(folder / typed.onnx.file, prepared)
        for name, recipe in RECIPES.items():
            q.quantize_with(prepared, out, calib, typed.input.name, replace(recipe, excluded=()), cache)
            exact = q.compare_sets(out, sets, typed)
            default = q.compare_sets(out, sets, typed, exact_int8=False)
            rows[name] = {
                "exact": {s.name: s.to_card() for s in exact},
                "default_kernels_here": {s.name: round(s.max_shift, 4) for s in default},
            }
            print(name, {s.name: round(s.max_shift, 4) for s in exact}, file=sys.stderr, flush=True)
    json.dump(rows, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("models/pretrained")))
