"""RGPTProcessor: image + mask preprocessing and prompt tokenization with placeholders.

Images follow LLaVA-1.5: pad to a square with the mean colour (centred), resize to
``image_size`` (bicubic), CLIP mean/std normalisation. Masks go through the same geometry
(pad with 0, resize bilinear with the area fallback of :mod:`rgpt_model.mask_pooling`), so a
mask stays aligned with its pixels. Prompts: ``<image>`` becomes ``num_global_tokens`` image
tokens; each region placeholder is mapped to a row of the mask tensor.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import InvalidMaskError, ModelLoadError, RegionCountMismatchError
from .mask_pooling import resize_masks
from .masks import validate_image
from .tokenization import IMAGE_TOKEN, find_region_placeholders, region_token

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROCESSOR_CONFIG = "rgpt_processor_config.json"


@dataclass(frozen=True)
class SquareTransform:
    """Geometry applied to an HxW image: pad to ``side`` (offsets top/left), resize to size."""

    height: int
    width: int
    side: int
    top: int
    left: int
    size: int


class RGPTProcessor:
    """Turns (image, masks, prompts) into model inputs. Holds the tokenizer."""

    def __init__(
        self,
        tokenizer,
        *,
        image_size: int = 336,
        num_global_tokens: int = 144,
        image_token_id: int | None = None,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        pad_to_square: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.unk_token or self.tokenizer.eos_token
        self.image_size = int(image_size)
        self.num_global_tokens = int(num_global_tokens)
        vocab = tokenizer.get_vocab()
        if image_token_id is None:
            if IMAGE_TOKEN not in vocab:
                raise ModelLoadError(f"tokenizer has no {IMAGE_TOKEN} token; add it first")
            image_token_id = vocab[IMAGE_TOKEN]
        self.image_token_id = int(image_token_id)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.pad_to_square = bool(pad_to_square)
        self._region_ids = {}
        if "<region>" in vocab:
            self._region_ids[None] = vocab["<region>"]
        n = 1
        while region_token(n) in vocab:
            self._region_ids[n] = vocab[region_token(n)]
            n += 1
        self.num_region_tokens = n - 1

    # ----------------------------------------------------------------------- persistence
    @classmethod
    def from_config(cls, tokenizer, config) -> RGPTProcessor:
        """Processor matching an :class:`RGPTConfig`."""
        return cls(
            tokenizer,
            image_size=config.image_size,
            num_global_tokens=config.num_global_tokens,
            image_token_id=config.image_token_id,
        )

    def save_pretrained(self, path: str | Path) -> None:
        """Write the tokenizer files and ``rgpt_processor_config.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        cfg = {
            "image_size": self.image_size,
            "num_global_tokens": self.num_global_tokens,
            "image_token_id": self.image_token_id,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "pad_to_square": self.pad_to_square,
        }
        (path / PROCESSOR_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, config=None) -> RGPTProcessor:
        """Load tokenizer + processor settings (settings fall back to ``config``)."""
        from transformers import AutoTokenizer

        path = Path(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(
                f"cannot load the tokenizer from {path}: {exc}; the model directory needs the "
                "tokenizer files written by RGPTPredictor.save_pretrained / RGPTProcessor"
            ) from exc
        kwargs = {}
        cfg_file = path / PROCESSOR_CONFIG
        if cfg_file.is_file():
            try:
                kwargs = json.loads(cfg_file.read_text())
            except json.JSONDecodeError as exc:
                raise ModelLoadError(f"{cfg_file} is not valid JSON: {exc}") from exc
        elif config is not None:
            kwargs = {
                "image_size": config.image_size,
                "num_global_tokens": config.num_global_tokens,
                "image_token_id": config.image_token_id,
            }
        return cls(tokenizer, **kwargs)

    # ---------------------------------------------------------------------------- images
    def transform_for(self, height: int, width: int) -> SquareTransform:
        """The pad-to-square + resize geometry for an image of this size."""
        if self.pad_to_square:
            side = max(height, width)
            return SquareTransform(
                height, width, side, (side - height) // 2, (side - width) // 2, self.image_size
            )
        return SquareTransform(height, width, max(height, width), 0, 0, self.image_size)

    def preprocess_image(self, image) -> tuple[torch.Tensor, SquareTransform]:
        """(1, 3, S, S) float32 normalised pixels and the geometry used."""
        arr = validate_image(image)
        h, w = arr.shape[:2]
        tf = self.transform_for(h, w)
        if self.pad_to_square and h != w:
            fill = tuple(int(round(m * 255)) for m in self.image_mean)
            canvas = np.empty((tf.side, tf.side, 3), dtype=np.uint8)
            canvas[:] = fill
            canvas[tf.top : tf.top + h, tf.left : tf.left + w] = arr
            arr = canvas
        pil = Image.fromarray(arr)
        if pil.size != (self.image_size, self.image_size):
            pil = pil.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        x = np.asarray(pil, dtype=np.float32) / 255.0
        x = (x - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None], tf

    def preprocess_masks(self, masks: np.ndarray, tf: SquareTransform) -> torch.Tensor:
        """(R, H, W) boolean masks -> (R, S, S) float weights in the model's image frame."""
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[1:] != (tf.height, tf.width):
            raise InvalidMaskError(
                f"masks must be (R, {tf.height}, {tf.width}) for this image, got {masks.shape}"
            )
        t = torch.from_numpy(masks.astype(np.float32, copy=False))
        if self.pad_to_square and tf.height != tf.width:
            padded = t.new_zeros((t.shape[0], tf.side, tf.side))
            padded[:, tf.top : tf.top + tf.height, tf.left : tf.left + tf.width] = t
            t = padded
        if t.shape[0] == 0:
            return t.new_zeros((0, self.image_size, self.image_size))
        return resize_masks(t, self.image_size)

    # ---------------------------------------------------------------------------- prompts
    def tokenize(
        self,
        prompts: str | Sequence[str],
        region_lists: Sequence[Sequence[int]] | None = None,
        num_regions: int | None = None,
        *,
        require_all_regions: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Token ids (left padded), attention mask and ``region_feature_index``.

        ``region_lists[b]`` lists the mask rows sample ``b`` may refer to (default: all
        ``num_regions``). The k-th ``<region>`` of a sample is ``region_lists[b][k]``;
        ``<regionN>`` is ``region_lists[b][N-1]``. Every placeholder must resolve and (with
        ``require_all_regions``) every listed region must be referred to, else
        RegionCountMismatchError.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if region_lists is None:
            n = num_regions or 0
            region_lists = [list(range(n)) for _ in prompts]
        if len(region_lists) != len(prompts):
            raise RegionCountMismatchError(
                f"{len(prompts)} prompt(s) but {len(region_lists)} region list(s)"
            )
        rows, feat_index = [], []
        for b, (text, regions) in enumerate(zip(prompts, region_lists, strict=True)):
            places = find_region_placeholders(text)
            too_big = [n for n in places if n is not None and n > self.num_region_tokens]
            if too_big:
                raise RegionCountMismatchError(
                    f"prompt {b} uses <region{max(too_big)}> but the tokenizer only has "
                    f"<region1>..<region{self.num_region_tokens}>; use fewer regions per prompt"
                )
            mapped, k = [], 0
            for n in places:
                local = k if n is None else n - 1
                k += n is None
                if local >= len(regions):
                    raise RegionCountMismatchError(
                        f"prompt {b} refers to region {local + 1} ({region_token(n)}) but only "
                        f"{len(regions)} mask(s) were given for it"
                    )
                mapped.append(int(regions[local]))
            unused = sorted(set(int(r) for r in regions) - set(mapped))
            if unused and require_all_regions:
                raise RegionCountMismatchError(
                    f"prompt {b} has {len(places)} region placeholder(s) but {len(regions)} "
                    f"mask(s); mask(s) at position(s) {unused} are not referred to. Add "
                    "<region>/<regionN> placeholders or pass only the masks the prompt uses"
                )
            ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
            n_found = sum(1 for i in ids if i in self._region_id_set)
            if n_found != len(places):
                raise RegionCountMismatchError(
                    f"prompt {b}: tokenizer produced {n_found} region tokens for "
                    f"{len(places)} placeholders (is the tokenizer missing region tokens?)"
                )
            expanded: list[int] = []
            for i in ids:
                if i == self.image_token_id:
                    expanded.extend([self.image_token_id] * self.num_global_tokens)
                else:
                    expanded.append(i)
            rows.append(expanded)
            feat_index.extend(mapped)
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for b, r in enumerate(rows):
            input_ids[b, length - len(r) :] = torch.tensor(r, dtype=torch.long)
            attention[b, length - len(r) :] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "region_feature_index": torch.tensor(feat_index, dtype=torch.long),
        }

    @property
    def _region_id_set(self) -> set[int]:
        return set(self._region_ids.values())

    def __call__(
        self,
        text: str | Sequence[str],
        image=None,
        masks: np.ndarray | None = None,
        region_lists: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Full preprocessing for one image: tokens + pixel_values + masks (R, S, S)."""
        out: dict[str, torch.Tensor] = {}
        n = 0
        if image is not None:
            pixel_values, tf = self.preprocess_image(image)
            out["pixel_values"] = pixel_values
            if masks is not None:
                out["masks"] = self.preprocess_masks(masks, tf)
                n = out["masks"].shape[0]
        elif masks is not None:
            raise InvalidMaskError("masks were given without an image")
        out.update(self.tokenize(text, region_lists, n))
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Token ids -> text without special tokens."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
