"""The paper's automatic region-caption pipeline: global caption, then close-up region captions.

Stage 1 asks a captioner for a caption of the whole image. Stage 2 crops each region (its box
plus some context), and asks the captioner about the close-up "in the context of" the global
caption (optionally naming the annotated class). The result is written in the JSONL
region-instruction format (task ``caption_detail``) so it can be trained on directly.

Backends: ``rgpt`` (our :class:`~rgpt_model.predictor.RGPTPredictor`; the crop's mask is the
region) or ``llava`` (a local transformers ``LlavaForConditionalGeneration`` directory with its
processor). Resumable: records already in the output file are skipped.

Usage::

    python -m rgpt_model.data.region_captions --jsonl data/synthetic/test.jsonl \\
        --out captions.jsonl --backend rgpt --model rgpt_model/demo_model
    python -m rgpt_model.data.region_captions --images imgs/ --labels labels/ \\
        --out captions.jsonl --backend llava --model /models/llava-1.5-7b-hf
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from rgpt_model import prompts

logger = logging.getLogger(__name__)

GLOBAL_PROMPT = "Describe the image briefly."
CONTEXT_PROMPT = ("In the context of the entire image, {caption}, describe the close-up region "
                  "in detail.")
CONTEXT_PROMPT_CLASS = ("In the context of the entire image, {caption}, describe the close-up "
                        "region of the {name} in detail.")


def region_prompt(global_caption: str, class_name: str | None = None) -> str:
    """Stage-2 prompt of the paper (with the class-name variant when ``class_name`` is given)."""
    cap = global_caption.strip().rstrip(".")
    if class_name:
        return CONTEXT_PROMPT_CLASS.format(caption=cap, name=class_name)
    return CONTEXT_PROMPT.format(caption=cap)


def crop_box(mask: np.ndarray, context: float = 0.2, min_size: int = 16) -> tuple[int, int, int,
                                                                                  int]:
    """(x0, y0, x1, y1) of the region's box grown by ``context`` on each side (clipped)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty mask")
    h, w = mask.shape
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    bw, bh = x1 - x0, y1 - y0
    mx = max(int(round(bw * context)), (min_size - bw + 1) // 2, 0)
    my = max(int(round(bh * context)), (min_size - bh + 1) // 2, 0)
    return (int(max(x0 - mx, 0)), int(max(y0 - my, 0)), int(min(x1 + mx, w)),
            int(min(y1 + my, h)))


# ------------------------------------------------------------------------------- backends
class Captioner:
    """A VLM that answers a prompt about an image (optionally with a region mask)."""

    def caption(self, image: np.ndarray, prompt: str, mask: np.ndarray | None = None) -> str:
        raise NotImplementedError


class RGPTCaptioner(Captioner):
    """Our own model; the region (if any) is given as ``<region1>`` with its mask."""

    def __init__(self, model: str | Path | None = None, device: str = "cpu",
                 max_new_tokens: int = 48) -> None:
        from rgpt_model.build import load_predictor

        self.predictor = load_predictor(model, device=device, dtype="float32")
        self.max_new_tokens = max_new_tokens

    def caption(self, image: np.ndarray, prompt: str, mask: np.ndarray | None = None) -> str:
        if mask is None:
            masks = np.zeros((0,) + image.shape[:2], bool)
            return self.predictor.ask(image, masks, prompt, max_new_tokens=self.max_new_tokens)
        return self.predictor.ask(image, mask[None], f"{prompt} {prompts._region(1)}",
                                  max_new_tokens=self.max_new_tokens)


class LlavaCaptioner(Captioner):
    """A local transformers LLaVA directory (``LlavaForConditionalGeneration`` + processor)."""

    def __init__(self, model: str | Path, device: str = "cpu", max_new_tokens: int = 64) -> None:
        import torch
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        self.torch = torch
        self.processor = AutoProcessor.from_pretrained(model)
        self.model = LlavaForConditionalGeneration.from_pretrained(model).to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens

    def caption(self, image: np.ndarray, prompt: str, mask: np.ndarray | None = None) -> str:
        text = f"USER: <image>\n{prompt} ASSISTANT:"
        inputs = self.processor(images=Image.fromarray(image), text=text, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with self.torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                      do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.tokenizer.decode(new, skip_special_tokens=True).strip()


def make_captioner(backend: str, model: str | Path | None, device: str = "cpu",
                   max_new_tokens: int = 48) -> Captioner:
    """``rgpt`` (model dir or None = default model) or ``llava`` (model dir required)."""
    if backend == "rgpt":
        return RGPTCaptioner(model, device, max_new_tokens)
    if backend == "llava":
        if model is None:
            raise ValueError("the llava backend needs --model pointing to a local LLaVA dir")
        return LlavaCaptioner(model, device, max_new_tokens)
    raise ValueError(f"unknown backend {backend!r}; use rgpt or llava")


# --------------------------------------------------------------------------------- inputs
@dataclass
class ImageItem:
    """One image with its label image (pixel = id) and optional class names per id."""

    key: str
    image_path: Path
    label_path: Path
    class_names: dict[int, str]


def items_from_dirs(images: Path, labels: Path, class_names: Path | None = None
                    ) -> Iterator[ImageItem]:
    """Images ``images/<stem>.*`` with label PNGs ``labels/<stem>.png``.

    ``class_names``: optional JSON ``{"<stem>": {"<id>": "name"}}``.
    """
    names = json.loads(class_names.read_text()) if class_names else {}
    for img in sorted(p for p in images.iterdir() if p.suffix.lower() in
                      (".png", ".jpg", ".jpeg", ".bmp")):
        lab = labels / f"{img.stem}.png"
        if not lab.is_file():
            logger.warning("no label image %s for %s; skipped", lab, img)
            continue
        cn = {int(k): v for k, v in names.get(img.stem, {}).items()}
        yield ImageItem(img.stem, img, lab, cn)


def items_from_jsonl(path: Path) -> Iterator[ImageItem]:
    """Unique (image, label_png) pairs of a JSONL file; class names from classify records."""
    from rgpt_model.data.jsonl_format import read_jsonl, resolve_path

    seen: dict[str, ImageItem] = {}
    for rec in read_jsonl(path):
        if rec["masks"]["type"] != "label_png":
            continue
        key = Path(rec["image"]).with_suffix("").as_posix().replace("/", "_")
        item = seen.get(key)
        if item is None:
            item = ImageItem(key, resolve_path(rec["image"], path.parent),
                             resolve_path(rec["masks"]["path"], path.parent), {})
            seen[key] = item
        if rec["task"] == "classify" and len(rec["region_ids"]) == 1:
            item.class_names[rec["region_ids"][0]] = rec["conversations"][1]["value"]
    yield from seen.values()


# ------------------------------------------------------------------------------- pipeline
def caption_image(captioner: Captioner, image: np.ndarray, labels: np.ndarray,
                  class_names: dict[int, str] | None = None, use_class_names: bool = True,
                  context: float = 0.2, skip_ids: set[int] | None = None
                  ) -> tuple[str, list[dict]]:
    """Global caption and one entry per region id: {id, caption, box, prompt, class_name}."""
    global_caption = captioner.caption(image, GLOBAL_PROMPT)
    out = []
    for rid in (int(i) for i in np.unique(labels) if i != 0):
        if skip_ids and rid in skip_ids:
            continue
        mask = labels == rid
        x0, y0, x1, y1 = crop_box(mask, context)
        crop, crop_mask = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        name = (class_names or {}).get(rid) if use_class_names else None
        prompt = region_prompt(global_caption, name)
        out.append({"id": rid, "caption": captioner.caption(np.ascontiguousarray(crop), prompt,
                                                            crop_mask),
                    "box": [x0, y0, x1 - x0, y1 - y0], "prompt": prompt, "class_name": name})
    return global_caption, out


def _done_ids(out_path: Path) -> set[str]:
    done: set[str] = set()
    if out_path.is_file():
        with out_path.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        done.add(json.loads(line)["id"])
                    except (json.JSONDecodeError, KeyError):
                        logger.warning("unreadable line in %s skipped", out_path)
    return done


def run_pipeline(items: Sequence[ImageItem] | Iterator[ImageItem], captioner: Captioner,
                 out_path: str | Path, use_class_names: bool = True, context: float = 0.2,
                 progress: bool = True) -> dict:
    """Caption every region of every item into ``out_path`` (appending; done ids skipped)."""
    from rgpt_model.data.jsonl_format import make_record, read_label_png

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = _done_ids(out_path)
    items = list(items)
    written = skipped = 0
    with out_path.open("a", encoding="utf-8") as f:
        for item in tqdm(items, desc="region captions", disable=not progress, unit="image"):
            labels = read_label_png(item.label_path)
            ids = [int(i) for i in np.unique(labels) if i != 0]
            rec_ids = {rid: f"{item.key}-cap-{rid}" for rid in ids}
            todo = {rid for rid in ids if rec_ids[rid] not in done}
            skipped += len(ids) - len(todo)
            if not todo:
                continue
            with Image.open(item.image_path) as im:
                image = np.array(im.convert("RGB"))
            global_caption, regions = caption_image(
                captioner, image, labels, item.class_names, use_class_names, context,
                skip_ids=set(ids) - todo)
            for r in regions:
                rec = make_record(
                    rec_ids[r["id"]], str(item.image_path.resolve()),
                    {"type": "label_png", "path": str(item.label_path.resolve())}, [r["id"]],
                    "caption_detail", prompts.detailed_caption_prompt(1), r["caption"],
                    {"global_caption": global_caption, "crop_box": r["box"],
                     "class_name": r["class_name"], "source": "region_captions",
                     "prompt": r["prompt"]})
                f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
                f.flush()
                written += 1
    logger.info("region captions: %d written, %d already done", written, skipped)
    return {"written": written, "skipped": skipped, "images": len(items), "out": str(out_path)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rgpt_model.data.region_captions",
        description="Two-stage region-caption generation (global caption, then close-up crops "
                    "captioned in its context) into the JSONL region-instruction format.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--jsonl", type=Path, help="take images and label PNGs from a JSONL file")
    src.add_argument("--images", type=Path, help="folder of images (with --labels)")
    p.add_argument("--labels", type=Path, help="folder of label PNGs named like the images")
    p.add_argument("--class-names", type=Path,
                   help='JSON {"<image stem>": {"<id>": "class name"}} (with --images)')
    p.add_argument("--out", type=Path, required=True, help="output JSONL (appended, resumable)")
    p.add_argument("--backend", choices=("rgpt", "llava"), default="rgpt", help="captioner")
    p.add_argument("--model", type=Path, default=None,
                   help="model directory (rgpt: default = built-in demo model; llava: required)")
    p.add_argument("--no-class-names", action="store_true",
                   help="do not put the annotated class name into the region prompt")
    p.add_argument("--context", type=float, default=0.2,
                   help="crop margin around the region box, as a fraction of the box size")
    p.add_argument("--max-new-tokens", type=int, default=48, help="caption length limit")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.images is not None:
        if args.labels is None:
            raise SystemExit("--images needs --labels")
        items = list(items_from_dirs(args.images, args.labels, args.class_names))
    else:
        items = list(items_from_jsonl(args.jsonl))
    if args.limit is not None:
        items = items[: args.limit]
    captioner = make_captioner(args.backend, args.model, args.device, args.max_new_tokens)
    summary = run_pipeline(items, captioner, args.out, not args.no_class_names, args.context,
                           not args.no_progress)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
