"""`python -m conversion` / `catdog convert`: export, train, evaluate, quantize, build-reference.

Each subcommand prints a JSON summary on stdout; progress goes to stderr through logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conversion.photos import DEFAULT_PHOTOS

Handler = Callable[[argparse.Namespace], dict[str, Any]]


def _labels(text: str) -> tuple[str, ...]:
    return tuple(label.strip() for label in text.split(",") if label.strip())


def _cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    from conversion.checkpoints import load_checkpoint
    from conversion.convert import ConversionSpec, convert
    from conversion.photos import read_manifest

    loaded = load_checkpoint(args.checkpoint, arch=args.arch, labels=args.labels, image_size=args.image_size)
    decision: str | dict[str, Any] | None = None
    if args.min_mass is not None:
        decision = {"fallback_label": "other", "min_mass": args.min_mass}
    elif args.auto_decision:
        decision = "auto"
    spec = ConversionSpec(
        name=args.name or args.out.name,
        version=args.version,
        labels=loaded.labels,
        image_size=loaded.image_size,
        decision=decision,
        opset=args.opset,
        tolerance=args.tolerance,
        extra={"training": loaded.training} if loaded.training else None,
    )
    return convert(loaded.module, loaded.arch, spec, args.out, read_manifest(args.photos))


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from conversion.train import TrainConfig, train

    config = TrainConfig(
        data=args.data,
        out=args.out,
        arch=args.arch,
        labels=args.labels,
        teacher=args.teacher,
        image_size=args.image_size,
        train_size=args.train_size,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
    )
    checkpoint = train(config)
    return {"checkpoint": str(args.out), **{k: v for k, v in checkpoint.items() if k != "state_dict"}}


def _cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from conversion.card import read_card
    from conversion.evaluate import evaluate
    from conversion.photos import load_labelled

    card = read_card(args.model_dir)
    result = evaluate(args.model_dir / card["onnx"]["file"], card, load_labelled(args.photos))
    return result.to_card(str(args.photos))


def _cmd_quantize(args: argparse.Namespace) -> dict[str, Any]:
    from conversion.photos import read_manifest
    from conversion.quantize import Recipe, quantize_folder

    recipe = Recipe(reduce_range=args.seven_bit_weights)
    return quantize_folder(
        args.model_dir,
        read_manifest(args.photos),
        measure_speed=args.speed,
        alternatives=args.alternatives,
        recipe=recipe,
    )


def _cmd_compare_heads(args: argparse.Namespace) -> dict[str, Any]:
    from conversion.compare import compare_backbone
    from conversion.photos import read_manifest

    photos = read_manifest(args.photos)
    results = {f"lite{v}": compare_backbone(v, photos) for v in args.variants}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _cmd_build_reference(args: argparse.Namespace) -> dict[str, Any]:
    from conversion.photos import read_manifest
    from conversion.reference import build_pretrained, build_scratch

    photos = read_manifest(args.photos)
    built: dict[str, Any] = {}
    if args.only in (None, "pretrained"):
        built["pretrained"] = build_pretrained(args.models_dir, photos, args.work_dir)
    if args.only in (None, "scratch"):
        built["scratch"] = build_scratch(
            args.models_dir, args.photos, photos, args.work_dir, args.steps, args.reuse_checkpoint
        )
    return {name: {k: card[k] for k in ("onnx", "parity", "accuracy")} for name, card in built.items()}


def _cmd_int8_heldout(args: argparse.Namespace) -> dict[str, Any]:
    from conversion.photos import read_manifest
    from conversion.reference import write_int8_heldout

    section = write_int8_heldout(args.model_dir, read_manifest(args.photos))
    return {k: v for k, v in section.items() if k != "photos"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m conversion", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    photos_help = "labelled photos (a folder with MANIFEST.csv); default: the bundled data/images"

    p = sub.add_parser("export", help="checkpoint -> model.onnx + model.json, with a parity check")
    p.add_argument("--arch", help="registered architecture (default: from the checkpoint, else tf_efficientnetv2_b2)")
    p.add_argument("--checkpoint", type=Path, help="state_dict or checkpoint (.pt/.pth); none: packaged weights")
    p.add_argument("--labels", type=_labels, help="comma-separated, in output order (default cat,dog)")
    p.add_argument("--image-size", type=int, help="square input size (default: checkpoint, else architecture)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write, e.g. models/mine")
    p.add_argument("--name", help="model name (default: the folder name)")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--min-mass", type=float, help="decision rule: answer 'other' below this cat+dog mass")
    p.add_argument("--auto-decision", action="store_true", help="choose --min-mass from the photos")
    p.add_argument("--opset", type=int, default=18, choices=(17, 18))
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |PyTorch - ONNX Runtime| allowed")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help=photos_help)
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("train", help="train from random initialisation on labelled images")
    p.add_argument("--data", type=Path, required=True, help="class sub-folders (PetImages/Cat, ...) or MANIFEST.csv")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    p.add_argument("--arch", default="tf_efficientnetv2_b2")
    p.add_argument("--labels", type=_labels, help="classes to train, in output order (default: folder names)")
    p.add_argument("--teacher", type=Path, help="distil from this model folder, e.g. models/pretrained")
    p.add_argument("--image-size", type=int, default=160, help="input size the exported model will use")
    p.add_argument("--train-size", type=int, default=128, help="size of the random training crops")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (fixed: results depend on it)")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="accuracy of a model folder on labelled photos, as the service answers")
    p.add_argument("model_dir", type=Path)
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help=photos_help + " or class sub-folders")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser("quantize", help="MODEL_DIR/model.int8.onnx, judged by its answers; the card says if it ships")
    p.add_argument("model_dir", type=Path)
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help=photos_help)
    p.add_argument("--speed", action="store_true", help="measure FP32 vs INT8 ms/image into the card")
    p.add_argument("--alternatives", action="store_true", help="also measure the variants not chosen (slow)")
    p.add_argument(
        "--seven-bit-weights",
        action="store_true",
        help="7-bit weights: the same answers on AVX2-only CPUs too, but a larger error; default 8-bit (native on "
        "VNNI CPUs, exact sums emulated elsewhere)",
    )
    p.set_defaults(handler=_cmd_quantize)

    p = sub.add_parser(
        "int8-heldout", help="pretrained's INT8 file judged by leave-one-out, into the card's variants.int8.heldout"
    )
    p.add_argument("model_dir", type=Path, nargs="?", default=Path("models/pretrained"))
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help=photos_help)
    p.set_defaults(handler=_cmd_int8_heldout)

    p = sub.add_parser("compare-heads", help="heads x EfficientNet-Lite backbones, leave-one-out on the photos")
    p.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2], choices=(0, 1, 2))
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help=photos_help)
    p.set_defaults(handler=_cmd_compare_heads)

    p = sub.add_parser("build-reference", help="rebuild models/pretrained and models/scratch")
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--work-dir", type=Path, default=Path("artifacts/reference"), help="checkpoints, INT8 trial")
    p.add_argument("--only", choices=("pretrained", "scratch"))
    p.add_argument("--steps", type=int, default=300, help="training steps for scratch")
    p.add_argument("--reuse-checkpoint", action="store_true", help="convert WORK_DIR/scratch.pt, do not retrain")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help=photos_help)
    p.set_defaults(handler=_cmd_build_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the process exit status (1 on a failed parity check or bad input)."""
    from conversion.parity import ParityError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        result = args.handler(args)
    except (ParityError, ValueError, FileNotFoundError) as exc:
        logging.getLogger("conversion").error("%s", exc)
        return 1
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    return 0
