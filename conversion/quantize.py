"""INT8 variant of any model folder, judged by its answers: `python -m conversion quantize models/<name>`.

Method (ONNX Runtime's own tooling, plus the correction made for depthwise-separable networks):

1. `quant_pre_process` (shape inference, graph optimisation: folds the exporter's Pad nodes into the Convs);
2. `quantize_static`, QDQ format, per-channel weights, UINT8 activations, calibrated on augmented crops of the
   *selection* half of the photos in a fixed order (seeded), so the same inputs give the same bytes. Weights are
   full 8-bit: VNNI CPUs (AVX-512 VNNI, AVX-VNNI, AMX) compute their sums exactly, while the u8 x s8 kernels of
   AVX2-only CPUs saturate 16-bit sums and answer differently (`Recipe.exact_on_every_cpu`), so the service
   runs such a file natively only on VNNI CPUs and emulates exact sums elsewhere (service/dataplane/cpu.py).
   7-bit weights (`reduce_range`, `--seven-bit-weights`) cannot saturate, at a larger error (docs/models.md);
3. bias correction (conversion/bias_correction.py, Nagel et al. 2019): each Conv's INT32 bias is moved by the
   mean output shift its rounded weights cause, measured on calibration images;
4. the head (everything from the last global pooling on) stays FP32: it is tiny, and a softmax over 1000 classes
   turns small logit errors into large probability errors;
5. per-layer sensitivity (`onnxruntime.quantization.qdq_loss_debug`): FP32 vs INT8 activations layer by layer;
   the layers where the signal-to-quantization-noise ratio drops most are tried in FP32 one at a time, each kept
   only if it lowers the worst shift on the selection photos (files and JPEG re-encodings), until those are
   within 80 % of the budget or MAX_EXCLUDED layers were tried;
6. the verdict, on photos calibration never saw (the held-out half) and on re-encodings of every photo as JPEG at
   several sizes, through the service's own decoding and decision rule and exact integer arithmetic
   (conversion/onnxrun.py): no changed answer, max |dp| <= 0.03 and median |dp| <= 0.01 on every set. Only then
   does the card make INT8 its default; the card records whether every CPU computes the file alike, and the
   service decides per CPU whether to emulate exact sums.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_signal_to_quantization_noice_ratio,
    create_activation_matching,
    modify_model_output_intermediate_tensors,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from conversion.bias_correction import correct_biases
from conversion.card import read_card, sha256_file, write_card
from conversion.onnxrun import run_onnx, session
from conversion.photos import LabelledImage
from service.dataplane.card import ModelCard
from service.dataplane.imaging import ImageLimits, load_tensor, preprocess, to_rgb
from service.dataplane.postprocess import decide

log = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
MAX_SHIFT = 0.03
"""Budget: no probability of any photo moves more than this (0.03 of mass cannot carry a photo across the
threshold unless it already sits within 0.03 of it)."""
MEDIAN_SHIFT = 0.01
"""Budget: the typical photo's largest probability shift."""
REENCODE_SIZES = (224, 480, 1024)
"""Long side of the JPEG re-encodings: a thumbnail, a phone preview, a downscaled photo."""
JPEG_QUALITY = 85
LIMITS = ImageLimits(max_bytes=256 * 1024 * 1024, max_pixels=200_000_000)
MAX_EXCLUDED = 8
SELECTION_MARGIN = 0.8
"""The layer search must meet this fraction of the budget on the selection photos, so that photos it never saw
(the held-out half, the re-encodings) have room to be a little worse and still pass."""
"""Most layers kept FP32 by the sensitivity search: more would spend the speed INT8 is for."""

Calibration = Literal["minmax", "percentile", "entropy"]
_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
_TYPES = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the INT8 bytes (with the FP32 file and the photos): written to the card."""

    calibration: Calibration = "minmax"
    percentile: float = 99.999
    activations: Literal["u8", "s8"] = "u8"
    weights: Literal["u8", "s8"] = "s8"
    per_channel: bool = True
    reduce_range: bool = False
    """7-bit weights: exact on every x86 CPU (`exact_on_every_cpu`) but coarser; 8-bit is exact only with VNNI
    (or AVX2 with `session.x64quantprecision=1`, about FP32's speed there)."""
    quant_format: Literal["qdq", "qoperator"] = "qdq"
    crops_per_photo: int = 8
    seed: int = 0
    excluded: tuple[str, ...] = ()
    bias_correction: bool = True
    """Nagel et al.'s bias correction after rounding (conversion/bias_correction.py)."""

    @property
    def exact_on_every_cpu(self) -> bool:
        """7-bit weights (`reduce_range`) cannot saturate the 16-bit sums of the AVX2 u8 x s8 kernels, so every x86
        CPU computes the exact integer result; with full 8-bit weights only VNNI CPUs (or AVX2 with
        `session.x64quantprecision=1`) do, and plain AVX2 answers differently (docs/models.md)."""
        return self.reduce_range

    def to_card(self) -> dict[str, Any]:
        return {**asdict(self), "excluded": list(self.excluded)}


@dataclass(frozen=True)
class SetComparison:
    """FP32 vs INT8 on one set of images: answer changes under the card's rule and probability shifts."""

    name: str
    images: int
    max_shift: float
    median_shift: float
    changed: list[str]
    worst: str

    @property
    def within_budget(self) -> bool:
        return not self.changed and self.max_shift <= MAX_SHIFT and self.median_shift <= MEDIAN_SHIFT

    def to_card(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "max_abs_diff": round(self.max_shift, 4),
            "median_abs_diff": round(self.median_shift, 4),
            "labels_changed": self.changed,
            "worst": self.worst,
            "within_budget": self.within_budget,
        }


@dataclass(frozen=True)
class EvalSet:
    """Named, preprocessed images (as the service would see them) with their FP32 answers precomputed."""

    name: str
    files: list[str]
    batch: np.ndarray
    fp32: np.ndarray = field(repr=False)


@dataclass
class QuantizationReport:
    recipe: Recipe
    fp32_bytes: int
    int8_bytes: int
    sets: list[SetComparison]
    sensitivity: list[dict[str, Any]]
    selection: list[dict[str, Any]]
    alternatives: dict[str, dict[str, Any]] = field(default_factory=dict)
    bias_corrections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def within_budget(self) -> bool:
        """Exact integer arithmetic (VNNI CPUs; AVX2 with `session.x64quantprecision=1`) meets the budget."""
        return all(s.within_budget for s in self.sets)

    @property
    def acceptable(self) -> bool:
        """Fit to be the default: within the budget as exact integer arithmetic. Where a CPU's fast kernels would
        not compute it exactly (`exact_on_every_cpu` false, an AVX2-only CPU), the service emulates exact sums
        (service/dataplane/card.py), so the card's figures hold on every CPU."""
        return self.within_budget


# --- images -------------------------------------------------------------------------------------------------


def split_photos(photos: Sequence[LabelledImage]) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(selection, held-out): per label in file-name order, every second photo is held out, so each class
    with two or more photos is on both sides. Calibration and layer selection see only the selection half."""
    selection: list[LabelledImage] = []
    heldout: list[LabelledImage] = []
    for label in sorted({p.label for p in photos}):
        members = sorted((p for p in photos if p.label == label), key=lambda p: p.path.name)
        for i, photo in enumerate(members):
            (heldout if i % 2 else selection).append(photo)
    return selection, heldout


def augmented_crops(photos: Sequence[LabelledImage], card: ModelCard, per_photo: int, seed: int) -> np.ndarray:
    """Each photo as served plus `per_photo` random resized crops (25-100 % of the area, aspect 3/4-4/3),
    half mirrored, brightness and contrast jittered by up to 20 %: varied activations for calibration.
    Seeded per photo, in file-name order: the same batch on every run."""
    tensors = []
    for index, photo in enumerate(sorted(photos, key=lambda p: p.path.name)):
        rng = np.random.default_rng([seed, index])
        image = _open_rgb(photo.path)
        tensors.append(preprocess(image, card.preprocessing, card.input))
        for _ in range(per_photo):
            tensors.append(preprocess(_random_crop(image, rng), card.preprocessing, card.input))
    return np.stack(tensors)


def _open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as opened:
        opened.load()
        return to_rgb(opened).copy()


def _random_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    area = width * height * rng.uniform(0.25, 1.0)
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    w = min(width, max(8, round((area * aspect) ** 0.5)))
    h = min(height, max(8, round((area / aspect) ** 0.5)))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    crop = image.crop((left, top, left + w, top + h))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(crop, dtype=np.float32)
    contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    mean = pixels.mean()
    pixels = np.clip((pixels - mean) * contrast + mean * brightness, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def reencode(path: Path, long_side: int) -> bytes:
    """The photo resized (Lanczos) to `long_side` and saved as a JPEG, as a phone or a web page would send it."""
    image = _open_rgb(path)
    scale = long_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    buffer = io.BytesIO()
    image.resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def served_tensors(blobs: Sequence[bytes], card: ModelCard) -> np.ndarray:
    """Encoded images -> model inputs through the service's own decoder (draft mode included)."""
    return np.stack([load_tensor(blob, card.preprocessing, card.input, LIMITS)[0] for blob in blobs])


def evaluation_sets(
    fp32_path: Path, card: ModelCard, photos: Sequence[LabelledImage], heldout: Sequence[LabelledImage]
) -> list[EvalSet]:
    """held-out photos as files; every photo as its file; every photo re-encoded as JPEG at REENCODE_SIZES."""
    sets: list[tuple[str, list[str], list[bytes]]] = [
        ("held-out", [p.path.name for p in heldout], [p.path.read_bytes() for p in heldout]),
        ("bundled", [p.path.name for p in photos], [p.path.read_bytes() for p in photos]),
    ]
    for size in REENCODE_SIZES:
        sets.append((f"jpeg-{size}", [p.path.name for p in photos], [reencode(p.path, size) for p in photos]))
    fp32 = session(fp32_path)
    out = []
    for name, files, blobs in sets:
        if not blobs:
            continue
        batch = served_tensors(blobs, card)
        out.append(EvalSet(name, files, batch, _probabilities(run_onnx(fp32, batch), card)))
    return out


# --- comparing ------------------------------------------------------------------------------------------------


def _probabilities(out: np.ndarray, card: ModelCard) -> np.ndarray:
    if card.output.kind == "logits":
        exp = np.exp(out - out.max(1, keepdims=True))
        return exp / exp.sum(1, keepdims=True)  # type: ignore[no-any-return]
    return out


def compare(name: str, files: Sequence[str], fp32: np.ndarray, int8: np.ndarray, card: ModelCard) -> SetComparison:
    """Per image, the largest |p_int8 - p_fp32| over the labels; answers by the service's decision rule."""
    shifts = np.abs(int8 - fp32).max(axis=1)

    def label(row: np.ndarray) -> str:
        return decide(row, card.labels, is_logits=False, decision=card.decision).label

    changed = [f for f, a, b in zip(files, fp32, int8, strict=True) if label(a) != label(b)]
    worst = int(np.argmax(shifts))
    return SetComparison(
        name=name,
        images=len(files),
        max_shift=float(shifts.max()),
        median_shift=float(np.median(shifts)),
        changed=changed,
        worst=files[worst],
    )


def compare_sets(
    int8_path: Path, sets: Sequence[EvalSet], card: ModelCard, *, exact_int8: bool = True
) -> list[SetComparison]:
    """`exact_int8=False`: as this machine's default kernels compute (on AVX2, saturating for 8-bit weights)."""
    int8 = session(int8_path, exact_int8=exact_int8)
    return [compare(s.name, s.files, s.fp32, _probabilities(run_onnx(int8, s.batch), card), card) for s in sets]


# --- quantizing -----------------------------------------------------------------------------------------------


class _BatchReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds a fixed batch to the calibrator one image at a time, in order."""

    def __init__(self, input_name: str, batch: np.ndarray) -> None:
        self._input_name = input_name
        self._batch = batch
        self._next, self._end = 0, len(batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        self._next += 1
        return {self._input_name: self._batch[self._next - 1 : self._next]}

    def __len__(self) -> int:
        return len(self._batch)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Used by `CalibStridedMinMax`: the histogram calibrators otherwise hold every activation of every
        image in memory (16 GB for Lite0 on 216 crops)."""
        self._next, self._end = start_index, min(end_index, len(self._batch))


def _stride(n: int, most: int = 8) -> int:
    """The largest divisor of `n` up to `most`: ONNX Runtime requires the strides to tile the data exactly."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def prepare(fp32_path: Path, out_path: Path) -> None:
    """ONNX Runtime's recommended pre-processing: symbolic shape inference and graph optimisation."""
    quant_pre_process(str(fp32_path), str(out_path))


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """The classification head: every node from the last global pooling to the outputs (if there is none,
    from the last Gemm/MatMul). Kept FP32."""
    nodes = list(model.graph.node)
    pools = [i for i, n in enumerate(nodes) if n.op_type in ("GlobalAveragePool", "GlobalMaxPool")]
    gemms = [i for i, n in enumerate(nodes) if n.op_type in ("Gemm", "MatMul")]
    start = pools[-1] if pools else (gemms[-1] if gemms else len(nodes))
    return [n.name for n in nodes[start:]]


BIAS_CORRECTION_STRIDE = 3
"""Every third calibration image measures the mean inputs for bias correction (96 of 288 for `pretrained`)."""


def quantize_with(
    prepared: Path, out_path: Path, batch: np.ndarray, input_name: str, recipe: Recipe, cache: Path | None = None
) -> list[dict[str, Any]]:
    """One `quantize_static` run of `recipe` (head and `recipe.excluded` kept FP32), then its bias correction;
    returns the corrections per layer (empty without). `cache`: ONNX Runtime's calibration cache, reused while
    only the excluded layers or the weights' rounding change (the activation ranges do not depend on them)."""
    model = onnx.load(str(prepared))
    extra: dict[str, Any] = {"CalibStridedMinMax": _stride(len(batch))}
    if recipe.calibration == "percentile":
        extra["CalibPercentile"] = recipe.percentile
    with _quiet_root_logger():  # the quantizer logs every rescaled bias on the root logger
        quantize_static(
            str(prepared),
            str(out_path),
            _BatchReader(input_name, batch),
            quant_format=QuantFormat.QDQ if recipe.quant_format == "qdq" else QuantFormat.QOperator,
            activation_type=_TYPES[recipe.activations],
            weight_type=_TYPES[recipe.weights],
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            calibrate_method=_METHODS[recipe.calibration],
            nodes_to_exclude=[*head_nodes(model), *recipe.excluded],
            extra_options=extra,
            calibration_cache_path=str(cache) if cache else None,
        )
    if not recipe.bias_correction:
        return []
    return correct_biases(prepared, out_path, batch[::BIAS_CORRECTION_STRIDE])


def quantize_dynamic_variant(prepared: Path, out_path: Path) -> None:
    """Dynamic quantization (weights INT8, activations quantized at run time): the no-calibration baseline."""
    model = onnx.load(str(prepared))
    with _quiet_root_logger():
        quantize_dynamic(str(prepared), str(out_path), weight_type=QuantType.QUInt8, nodes_to_exclude=head_nodes(model))


def sensitivity(prepared: Path, int8_path: Path, batch: np.ndarray, input_name: str) -> list[dict[str, Any]]:
    """Per quantized layer, FP32 vs INT8 activations (`qdq_loss_debug`): `sqnr_db`, the signal-to-noise ratio of
    the layer's INT8 output against the FP32 model's, and `drop_db`, how much SQNR the layer loses relative to its
    worst quantized input. A Clip/Relu fused into the Conv before it counts as one layer with it (`nodes`).
    Sorted with the largest drop first: the layers whose own quantization hurts most."""
    model = onnx.load(str(prepared))
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        fp32_aug, int8_aug = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        modify_model_output_intermediate_tensors(str(prepared), str(fp32_aug))
        modify_model_output_intermediate_tensors(str(int8_path), str(int8_aug))
        fp32_acts = collect_activations(str(fp32_aug), _BatchReader(input_name, batch))
        int8_acts = collect_activations(str(int8_aug), _BatchReader(input_name, batch))
    matching = create_activation_matching(int8_acts, fp32_acts)
    sqnr = {
        name: compute_signal_to_quantization_noice_ratio(m["float"], m["post_qdq"])
        for name, m in matching.items()
        if "float" in m
    }
    producer = {o: n for n in model.graph.node for o in n.output}

    def upstream(tensor: str, nodes: list[str]) -> float:
        """SQNR of the nearest quantized tensor(s) at or above `tensor`; collects the unquantized nodes passed."""
        if tensor in sqnr:
            return float(sqnr[tensor])
        node = producer.get(tensor)
        if node is None:
            return 60.0  # a graph input or an initializer: exact as far as this ranking is concerned
        nodes.append(node.name)
        found = [upstream(i, nodes) for i in node.input if i]
        return min(found) if found else 60.0

    rows = []
    for node in model.graph.node:
        if not node.output or node.output[0] not in sqnr or node.op_type not in _COMPUTE_OPS:
            continue  # shape arithmetic (Unsqueeze of sizes, ...) has no quantization noise worth ranking
        fused: list[str] = []
        before = min((upstream(i, fused) for i in node.input if i), default=60.0)
        layer = [n for n in fused if producer_op(model, n) in ("Conv", "Gemm", "MatMul")] or [node.name]
        rows.append(
            {
                "layer": layer[0],
                "nodes": sorted({node.name, *fused} if len(fused) <= 2 else {node.name, *layer}),
                "sqnr_db": round(sqnr[node.output[0]], 2),
                "drop_db": round(before - sqnr[node.output[0]], 2),
            }
        )
    return sorted(rows, key=lambda r: -r["drop_db"])


_COMPUTE_OPS = frozenset(
    {"Conv", "Gemm", "MatMul", "Add", "Mul", "Clip", "Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Concat"}
    | {"AveragePool", "MaxPool", "GlobalAveragePool", "Resize", "Softmax"}
)


def producer_op(model: onnx.ModelProto, name: str) -> str:
    return next((n.op_type for n in model.graph.node if n.name == name), "")


def quantize(
    fp32_path: Path,
    out_path: Path,
    card: Mapping[str, Any],
    photos: Sequence[LabelledImage],
    recipe: Recipe | None = None,
    *,
    search: bool = True,
    alternatives: bool = False,
) -> QuantizationReport:
    """Write the INT8 model to `out_path` and judge it against `fp32_path` (docstring of the module).

    `search`: the greedy layer search of step 4 (off: `recipe.excluded` as given). `alternatives`: also
    measure dynamic quantization and the other calibration methods (slow; for the docs, never shipped here)."""
    typed = ModelCard.model_validate(card)
    recipe = recipe or Recipe()
    selection, heldout = split_photos(photos)
    calib = augmented_crops(selection, typed, recipe.crops_per_photo, recipe.seed)
    selection_sets = evaluation_sets(fp32_path, typed, selection, [])  # files and re-encodings
    sets = evaluation_sets(fp32_path, typed, photos, heldout)
    input_name = typed.input.name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        prepare(fp32_path, prepared)
        trial, cache = Path(tmp) / "trial.onnx", Path(tmp) / "calibration.json"
        quantize_with(prepared, trial, calib, input_name, recipe, cache)
        ranked = sensitivity(prepared, trial, calib[:: max(1, len(calib) // 48)], input_name)
        steps: list[dict[str, Any]] = []
        chosen = recipe
        best = _worst(compare_sets(trial, selection_sets, typed))
        steps.append({"tried": None, "kept": True, **best})
        log.info("selection photos, head only FP32: %s", best)
        # Greedy, guided by the ranking: try each of the most sensitive layers in FP32 on top of those kept so
        # far, and keep it only if the worst shift on the selection photos falls. (Keeping a layer FP32 can also
        # make things worse: its neighbours' quantization changes with it.)
        for row in ranked[:MAX_EXCLUDED] if search else []:
            if _within_worst(best, SELECTION_MARGIN):
                break
            candidate = replace(chosen, excluded=tuple(sorted({*chosen.excluded, *row["nodes"]})))
            quantize_with(prepared, trial, calib, input_name, candidate, cache)
            result = _worst(compare_sets(trial, selection_sets, typed))
            kept = (result["labels_changed"], result["max_abs_diff"]) < (best["labels_changed"], best["max_abs_diff"])
            steps.append({"tried": row["layer"], "kept": kept, **result})
            log.info("selection photos, + %s FP32: %s (%s)", row["layer"], result, "kept" if kept else "dropped")
            if kept:
                chosen, best = candidate, result
        corrections = quantize_with(prepared, out_path, calib, input_name, chosen, cache)
        alt = _alternatives(prepared, Path(tmp), calib, input_name, chosen, sets, typed) if alternatives else {}
    return QuantizationReport(
        recipe=chosen,
        fp32_bytes=fp32_path.stat().st_size,
        int8_bytes=out_path.stat().st_size,
        sets=compare_sets(out_path, sets, typed),
        sensitivity=ranked[:MAX_EXCLUDED],
        selection=steps,
        alternatives=alt,
        bias_corrections=sorted(corrections, key=lambda r: -r["max_correction"])[:MAX_EXCLUDED],
    )


def _within_worst(worst: dict[str, Any], fraction: float) -> bool:
    return bool(
        worst["labels_changed"] == 0
        and worst["max_abs_diff"] <= fraction * MAX_SHIFT
        and worst["median_abs_diff"] <= fraction * MEDIAN_SHIFT
    )


def _alternatives(
    prepared: Path,
    tmp: Path,
    calib: np.ndarray,
    input_name: str,
    chosen: Recipe,
    sets: Sequence[EvalSet],
    card: ModelCard,
) -> dict[str, dict[str, Any]]:
    """The worst set's figures for each variant that was not chosen: what the choice is measured against."""
    variants: dict[str, Recipe | None] = {
        "dynamic (no calibration)": None,
        "static, no layer kept FP32 but the head": replace(chosen, excluded=()),
        "static, percentile 99.999": replace(chosen, calibration="percentile"),
        "static, entropy": replace(chosen, calibration="entropy"),
        "static, S8S8": replace(chosen, activations="s8"),
        "static, 8-bit weights" if chosen.reduce_range else "static, 7-bit weights": replace(
            chosen, reduce_range=not chosen.reduce_range
        ),
        "static, no bias correction": replace(chosen, bias_correction=False),
    }
    out = {}
    path = tmp / "alternative.onnx"
    for name, variant in variants.items():
        if variant == chosen:
            continue
        if variant is None:
            quantize_dynamic_variant(prepared, path)
        else:
            quantize_with(prepared, path, calib, input_name, variant)
        results = compare_sets(path, sets, card)
        out[name] = _worst(results)
        log.info("alternative %s: %s", name, out[name])
    return out


def _worst(results: Sequence[SetComparison]) -> dict[str, Any]:
    return {
        "max_abs_diff": round(max(r.max_shift for r in results), 4),
        "median_abs_diff": round(max(r.median_shift for r in results), 4),
        "labels_changed": sum(len(r.changed) for r in results),
        "within_budget": all(r.within_budget for r in results),
    }


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# --- speed and the card ---------------------------------------------------------------------------------------


def speed(fp32_path: Path, int8_path: Path, one: np.ndarray, rounds: int = 7, runs: int = 10) -> dict[str, Any]:
    """Batch-1 latency on one intra-op thread, FP32 and INT8 interleaved round by round so that load on a shared
    machine hits both alike; the median round counts."""
    sessions = {k: session(p, threads=1, exact_int8=False) for k, p in (("fp32", fp32_path), ("int8", int8_path))}
    names = {k: s.get_inputs()[0].name for k, s in sessions.items()}
    for key, sess in sessions.items():
        for _ in range(3):
            sess.run(None, {names[key]: one})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for key, sess in sessions.items():
            start = time.perf_counter()
            for _ in range(runs):
                sess.run(None, {names[key]: one})
            times[key].append((time.perf_counter() - start) / runs)
    ms = {k: float(np.median(v) * 1000) for k, v in times.items()}
    return {
        "fp32_ms": round(ms["fp32"], 2),
        "int8_ms": round(ms["int8"], 2),
        "speedup": round(ms["fp32"] / ms["int8"], 2),
        "how": "batch 1, 1 intra-op thread, ONNX Runtime's default kernels (as served), FP32 and INT8 interleaved, "
        "median of rounds; machine-dependent",
    }


def variant_entry(folder: Path, report: QuantizationReport) -> dict[str, Any]:
    """The card's `variants.int8` section (additive: cards without it stay valid and serve FP32)."""
    path = folder / INT8_FILE
    return {
        "file": INT8_FILE,
        "precision": "int8",
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "method": {
            "tool": "onnxruntime.quantization quant_pre_process + quantize_static",
            "recipe": report.recipe.to_card(),
            "head": "FP32 (every node from the last global pooling on)",
            "bias_correction": "Nagel et al. 2019: each Conv's INT32 bias minus (W_int8 - W) conv E[x], E[x] the "
            "FP32 model's mean input map on every third calibration image"
            if report.recipe.bias_correction
            else None,
            "calibration_data": "each selection photo as served + augmented crops (seeded)",
        },
        "budget": {"max_abs_diff": MAX_SHIFT, "median_abs_diff": MEDIAN_SHIFT, "labels_changed": 0},
        "answers_vs_fp32": {s.name: s.to_card() for s in report.sets},
        "within_budget": report.within_budget,
        "exact_on_every_cpu": report.recipe.exact_on_every_cpu,
        "arithmetic": "figures are exact integer arithmetic (AVX-512 VNNI / AVX-VNNI, or AVX2 with ONNX Runtime's "
        "session.x64quantprecision=1); "
        + (
            "7-bit weights: AVX2's fast u8 x s8 kernels cannot saturate, so every x86 CPU computes the same"
            if report.recipe.exact_on_every_cpu
            else "8-bit weights: native INT8 on VNNI CPUs; AVX2's fast u8 x s8 kernels saturate 16-bit sums and "
            "answer differently, so there the service runs the file with exact sums emulated "
            "(session.x64quantprecision=1): the same answers on every CPU"
        ),
        "sensitivity": {
            "how": "qdq_loss_debug on calibration images: SQNR of each layer's INT8 output vs FP32 (sqnr_db) "
            "and the SQNR it loses vs its worst input (drop_db); largest drops first",
            "layers": report.sensitivity,
            "selection_steps": report.selection,
        },
        **({"bias_corrections": report.bias_corrections} if report.bias_corrections else {}),
        **({"alternatives": report.alternatives} if report.alternatives else {}),
    }


def update_card(folder: Path, report: QuantizationReport, measured: dict[str, Any] | None) -> dict[str, Any]:
    """Add `variants.int8` and `default_precision` to the folder's card; drop the old `quantization` trial.

    Speed is machine-dependent, so it is written only when measured (`--speed`) and otherwise carried over
    while the INT8 file is byte-identical: rebuilding gives the same card. So is the INT8 file's own `heldout`
    section (conversion/quantized_heldout.py), which only a byte-identical file keeps."""
    card = read_card(folder)
    entry = variant_entry(folder, report)
    previous = card.get("variants", {}).get("int8", {})
    same_file = previous.get("sha256") == entry["sha256"]
    if measured is not None:
        entry["speed"] = measured
    elif same_file and "speed" in previous:
        entry["speed"] = previous["speed"]
    if same_file and "heldout" in previous:
        entry["heldout"] = previous["heldout"]
    card.pop("quantization", None)
    card["variants"] = {**card.get("variants", {}), "int8": entry}
    card["default_precision"] = "int8" if report.acceptable else "fp32"
    write_card(folder, card)
    return card


def quantize_folder(
    folder: Path,
    photos: Sequence[LabelledImage],
    *,
    measure_speed: bool = False,
    alternatives: bool = False,
    recipe: Recipe | None = None,
) -> dict[str, Any]:
    """`python -m conversion quantize`: writes `folder/model.int8.onnx`, updates the card, returns a summary."""
    card = read_card(folder)
    fp32_path = folder / card["onnx"]["file"]
    staged = folder / (INT8_FILE + ".tmp")
    try:
        report = quantize(fp32_path, staged, card, photos, recipe, alternatives=alternatives)
        shutil.move(staged, folder / INT8_FILE)
    finally:
        staged.unlink(missing_ok=True)
    measured = None
    if measure_speed:
        one = served_tensors([photos[0].path.read_bytes()], ModelCard.model_validate(card))
        measured = speed(fp32_path, folder / INT8_FILE, one)
    updated = update_card(folder, report, measured)
    summary = {**updated["variants"]["int8"], "default_precision": updated["default_precision"]}
    log.info("INT8 for %s: %s", folder.name, json.dumps({s.name: s.to_card() for s in report.sets}))
    return summary
