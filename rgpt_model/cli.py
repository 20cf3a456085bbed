"""``rgpt`` command: region descriptions / referring expressions on an image file, JSON out.

Examples::

    rgpt describe photo.jpg --masks labels.png
    rgpt describe photo.jpg --boxes "10,20,50,40;100,30,60,60" --tasks classify
    rgpt refer photo.jpg --masks labels.png --expression "the mug left of the laptop"
    rgpt ask photo.jpg --masks labels.png --question "What is <region1> used for?"
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .device import DEVICE_HELP
from .errors import InvalidImageError, InvalidMaskError, InvalidQueryError, RGPTError
from .masks import MaskStack

logger = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path, help="image file (any format PIL reads; converted to RGB)")
    p.add_argument(
        "--masks",
        type=Path,
        default=None,
        help="label-mask PNG at the image's size: pixel value = instance id, 0 = background "
        "(8 or 16 bit). Default: none (then --boxes is required)",
    )
    p.add_argument(
        "--boxes",
        default=None,
        help="extra rectangular regions 'x,y,w,h;x,y,w,h' in pixels; they get ids after the "
        "largest mask id (or 1.. without --masks). Default: none",
    )
    p.add_argument(
        "--sam",
        type=Path,
        default=None,
        help="local SAM checkpoint (sam_vit_b/l/h .pth): --boxes and --points become SAM masks "
        "instead of rectangles. Default: none",
    )
    p.add_argument(
        "--sam-type",
        default="auto",
        choices=["auto", "vit_b", "vit_l", "vit_h"],
        help="SAM model type. Default: auto (read off the checkpoint)",
    )
    p.add_argument(
        "--points",
        default=None,
        help="point prompts (needs --sam): 'x,y[,label];x,y|x,y' ('|' separates regions, "
        "label 1 = foreground, 0 = background). Default: none",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx"],
        help="region encoder: torch or onnx (ONNX Runtime). Default: torch",
    )
    p.add_argument(
        "--region-ids",
        default=None,
        help="comma-separated region ids to use, in this order. Default: all ids",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model directory (save_pretrained layout). Default: the built-in demo model "
        "(a tiny random model, with a warning, if no demo model is installed)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help=f"torch device: {DEVICE_HELP} (auto = cuda when available). Default: auto",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="weights dtype. Default: float32",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log INFO messages to stderr. Default: off (warnings only)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="rgpt",
        description="RegionGPT region understanding on an image: JSON to stdout. Exit code 2 "
        "on bad input (message on stderr).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "describe",
        help="label and/or caption every region",
    )
    _common(d)
    d.add_argument(
        "--tasks",
        default="classify,caption",
        help="comma-separated: classify, caption, detailed_caption. Default: %(default)s",
    )
    d.add_argument(
        "--vocabulary",
        type=Path,
        default=None,
        help="text file with one class name per line. Default: the model's own label "
        "vocabulary (COCO-80 names for a model trained without one)",
    )
    d.add_argument(
        "--max-new-tokens",
        type=int,
        default=32,
        help="generation length limit. Default: %(default)s",
    )
    r = sub.add_parser(
        "refer",
        help="which region(s) match a referring expression",
    )
    _common(r)
    r.add_argument(
        "--expression", required=True, help="referring expression (required, no default)"
    )
    r.add_argument(
        "--max-new-tokens",
        type=int,
        default=16,
        help="generation length limit. Default: %(default)s",
    )
    a = sub.add_parser(
        "ask",
        help="free question about the regions (<region1>.. refer to them)",
    )
    _common(a)
    a.add_argument("--question", required=True, help="question text (required, no default)")
    a.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help="generation length limit. Default: %(default)s",
    )
    return parser


def load_inputs(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | MaskStack]:
    """Read the image and its regions: the --masks label image, plus --boxes/--points prompts.

    Prompt regions get ids after the largest mask id and keep all their pixels where they
    overlap a mask or each other (a MaskStack, not a label image, carries them).
    """
    from PIL import Image, UnidentifiedImageError

    from .masks import parse_boxes
    from .region_prompts import parse_points, prompts_from_cli, prompts_to_masks

    try:
        with Image.open(args.image) as im:
            image = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise InvalidImageError(f"cannot read image {args.image}: {exc}") from exc
    label = _read_label_image(args.masks) if args.masks is not None else None
    points = getattr(args, "points", None)
    sam_path = getattr(args, "sam", None)
    if points and sam_path is None:
        raise InvalidQueryError("--points needs --sam CHECKPOINT (SAM turns points into masks)")
    if not args.boxes and not points:
        if label is None:
            raise InvalidMaskError("give --masks LABEL.png and/or --boxes 'x,y,w,h;...'")
        return image, label
    base = MaskStack.from_label_image(label) if label is not None \
        else MaskStack.empty(image.shape[:2])
    prompts = prompts_from_cli(parse_boxes(args.boxes) if args.boxes else [],
                               parse_points(points) if points else [],
                               first_id=max(base.ids, default=0) + 1)
    sam = None
    if sam_path is not None:
        from .sam import SamPrompter

        sam = SamPrompter.from_checkpoint(sam_path, args.sam_type, device=args.device)
    made = prompts_to_masks(image, prompts, sam)
    if made.empty_ids:
        logger.warning("prompts %s gave no mask pixels; skipped", made.empty_ids)
    return image, base.concat(made.stack)


def _read_label_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            label = np.asarray(im)
    except (OSError, UnidentifiedImageError) as exc:
        raise InvalidMaskError(f"cannot read mask file {path}: {exc}") from exc
    if label.ndim != 2:
        raise InvalidMaskError(
            f"{path} must be a single-channel label image (mode L or I;16), got shape "
            f"{label.shape}"
        )
    return label.astype(np.int32)


def _region_ids(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise InvalidQueryError(f"--region-ids must be comma-separated integers: {text!r}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rgpt`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        from .build import load_predictor

        image, label = load_inputs(args)
        ids = _region_ids(args.region_ids)
        predictor = load_predictor(
            args.model, device=args.device, dtype=args.dtype, backend=args.backend
        )
        if args.command == "describe":
            vocab = None
            if args.vocabulary is not None:
                try:
                    lines = args.vocabulary.read_text().splitlines()
                except OSError as exc:
                    raise InvalidQueryError(
                        f"cannot read vocabulary {args.vocabulary}: {exc}"
                    ) from exc
                vocab = [v.strip() for v in lines if v.strip()]
            out = predictor.describe(
                image,
                label,
                region_ids=ids,
                tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
                vocabulary=vocab,
                max_new_tokens=args.max_new_tokens,
            )
            result = {"regions": [d.to_dict() for d in out]}
        elif args.command == "refer":
            res = predictor.refer(
                image, label, args.expression, region_ids=ids, max_new_tokens=args.max_new_tokens
            )
            result = res.to_dict()
        else:
            answer = predictor.ask(
                image, label, args.question, region_ids=ids, max_new_tokens=args.max_new_tokens
            )
            result = {"answer": answer}
    except RGPTError as exc:
        print(f"rgpt: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
