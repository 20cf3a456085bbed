"""SAM prompts to masks: boxes (e.g. from a detector) or points become region masks.

Why: a robot often has detector boxes, not instance masks. Segment Anything turns each box or
point set into a mask, and RGPT then pools features inside that mask.

- The image encoder runs once per image (PyTorch); its embedding is cached for every prompt.
- The prompt encoder + mask decoder run either in PyTorch or, the fast path, as SAM's own ONNX
  decoder (``segment_anything.utils.onnx.SamOnnxModel``) in ONNX Runtime. Both paths run the
  very same module, so they select masks the same way (SAM's ONNX rule: with one or two prompt
  tokens the best of the multimask outputs, otherwise the single-mask output).
- Boxes use the project convention (x, y, w, h) in input-image pixels; points are (x, y) with a
  label 1 = foreground, 0 = background (``RegionPrompt``, in ``region_prompts``, which also
  turns prompts into masks for the node and the CLI).

``segment_anything/__init__.py`` imports torchvision, which does not import beside this
project's pinned torch; :func:`_segment_anything` loads the package without running that file
when torchvision is missing (we use only ``modeling``, ``build_sam`` and ``utils.onnx``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

from .device import resolve_device
from .errors import ModelLoadError
from .masks import validate_image
from .onnx_encoder import select_providers
from .region_prompts import RegionPrompt

logger = logging.getLogger(__name__)

SAM_MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
# image_encoder.pos_embed width -> model type (used when model_type="auto")
_EMBED_DIM_TO_TYPE = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def _segment_anything() -> ModuleType:
    """Import ``segment_anything``, skipping its torchvision-importing ``__init__`` if needed."""
    try:
        return importlib.import_module("segment_anything")
    except ImportError as exc:
        if "torchvision" not in str(exc):
            raise ModelLoadError(
                f"segment-anything is not importable ({exc}); install 'segment-anything'"
            ) from exc
    sys.modules.pop("segment_anything", None)
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or spec.submodule_search_locations is None:
        raise ModelLoadError("segment-anything is not installed; pip install segment-anything")
    pkg = importlib.util.module_from_spec(spec)  # a package shell: __init__ is not executed
    sys.modules["segment_anything"] = pkg
    return pkg


def sam_modeling() -> ModuleType:
    """``segment_anything.modeling`` (Sam, ImageEncoderViT, PromptEncoder, MaskDecoder, ...)."""
    _segment_anything()
    return importlib.import_module("segment_anything.modeling")


def _sam_onnx_model_cls() -> type:
    _segment_anything()
    return importlib.import_module("segment_anything.utils.onnx").SamOnnxModel


@dataclass
class SamResult:
    """Masks (N, H, W) bool in prompt order, SAM's predicted IoU per mask, and the ids/labels."""

    masks: np.ndarray
    scores: np.ndarray
    ids: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


def _decoder_module(sam: torch.nn.Module) -> torch.nn.Module:
    """SAM's ``SamOnnxModel`` (prompt encoder + mask decoder + SAM's mask choice) without its
    upscaling: its crop to the image size traces into a constant, so upscaling runs after."""
    base = _sam_onnx_model_cls()

    class _LowResDecoder(base):
        def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor):
            return masks

    return _LowResDecoder(sam, return_single_mask=True).eval()


def export_sam_decoder(sam: torch.nn.Module, path: str | Path, opset: int = 17) -> Path:
    """Export SAM's prompt encoder + mask decoder (``SamOnnxModel``) with dynamic batch/points."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_model = _decoder_module(sam)
    pe = sam.prompt_encoder
    embed_dim = pe.embed_dim
    h, w = pe.image_embedding_size
    dummy = {
        "image_embeddings": torch.randn(1, embed_dim, h, w),
        "point_coords": torch.randint(0, 64, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.zeros(1, 1, 4 * h, 4 * w),
        "has_mask_input": torch.tensor([0.0]),
        "orig_im_size": torch.tensor([64.0, 64.0]),
    }
    torch.onnx.export(
        onnx_model,
        tuple(dummy.values()),
        str(path),
        input_names=list(dummy),
        output_names=["low_res_masks", "iou_predictions", "unused_low_res_masks"],
        dynamic_axes={
            "point_coords": {0: "num_prompts", 1: "num_points"},
            "point_labels": {0: "num_prompts", 1: "num_points"},
        },
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )
    logger.info("exported SAM decoder to %s", path)
    return path


def build_sam(
    model_type: str, state_dict: dict[str, torch.Tensor] | None = None
) -> torch.nn.Module:
    """Build a SAM of ``model_type`` (vit_b / vit_l / vit_h), optionally loading weights."""
    if model_type not in SAM_MODEL_TYPES:
        raise ModelLoadError(f"unknown SAM model type {model_type!r}; use one of {SAM_MODEL_TYPES}")
    _segment_anything()
    registry = importlib.import_module("segment_anything.build_sam").sam_model_registry
    sam = registry[model_type](checkpoint=None)
    if state_dict is not None:
        try:
            sam.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"SAM checkpoint does not match model type {model_type!r}: {exc}"
            ) from exc
    return sam.eval()


class SamPrompter:
    """Boxes / points -> boolean masks with Segment Anything (ONNX decoder fast path)."""

    def __init__(
        self,
        sam: torch.nn.Module,
        *,
        device: str = "cpu",
        use_onnx: bool = True,
        decoder_onnx_path: str | Path | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.sam = sam.to(self.device).eval()
        self.img_size = int(sam.image_encoder.img_size)
        self._decoder_torch = _decoder_module(sam)
        self._session = None
        if use_onnx:
            self._session = self._make_session(decoder_onnx_path, providers)
        self._cached_key: tuple[int, tuple[int, ...]] | None = None
        self._embedding: torch.Tensor | None = None

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        model_type: str = "auto",
        **kwargs: Any,
    ) -> SamPrompter:
        """Load SAM from a local ``sam_vit_*.pth`` file; ``model_type="auto"`` reads it off."""
        ckpt = Path(checkpoint).expanduser()
        if not ckpt.is_file():
            raise ModelLoadError(
                f"SAM checkpoint {str(ckpt)!r} not found; download sam_vit_b/l/h from the "
                "segment-anything release page onto this machine and pass its path "
                "(nothing is downloaded at run time)"
            )
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling error means a bad file
            raise ModelLoadError(f"cannot read SAM checkpoint {str(ckpt)!r}: {exc}") from exc
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        if not isinstance(state, dict) or "image_encoder.pos_embed" not in state:
            raise ModelLoadError(f"{str(ckpt)!r} is not a SAM state dict (no image_encoder)")
        if model_type == "auto":
            dim = int(state["image_encoder.pos_embed"].shape[-1])
            if dim not in _EMBED_DIM_TO_TYPE:
                raise ModelLoadError(f"cannot infer SAM type from embed dim {dim}; pass model_type")
            model_type = _EMBED_DIM_TO_TYPE[dim]
        return cls(build_sam(model_type, state), **kwargs)

    def _make_session(self, path: str | Path | None, providers: Sequence[str] | None):
        import onnxruntime as ort

        if path is None or not Path(path).is_file():
            if path is None:
                path = Path(tempfile.mkdtemp(prefix="rgpt_sam_")) / "sam_decoder.onnx"
            export_sam_decoder(self.sam.cpu(), path)
            self.sam.to(self.device)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=select_providers(providers))
        logger.info("SAM ONNX decoder %s on %s", path, sess.get_providers())
        return sess

    @property
    def backend(self) -> str:
        return "onnx" if self._session is not None else "torch"

    def offload(self) -> None:
        """Move SAM off the GPU (a deactivated node keeps it without holding GPU memory)."""
        if self.device.type == "cuda":
            self.sam.to("cpu")
            self._cached_key, self._embedding = None, None
            torch.cuda.empty_cache()

    def restore(self) -> None:
        """Move SAM back to its device after :meth:`offload`."""
        self.sam.to(self.device)

    # -- image ---------------------------------------------------------------------------
    def _resized_shape(self, h: int, w: int) -> tuple[int, int]:
        scale = self.img_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    @torch.no_grad()
    def set_image(self, image: np.ndarray | Image.Image) -> torch.Tensor:
        """Run SAM's image encoder once; later prompts on the same image reuse it."""
        arr = validate_image(image)
        key = (hash(arr.tobytes()), arr.shape)
        if self._cached_key == key and self._embedding is not None:
            return self._embedding
        nh, nw = self._resized_shape(*arr.shape[:2])
        resized = np.asarray(Image.fromarray(arr).resize((nw, nh), Image.BILINEAR))
        x = torch.tensor(resized, device=self.device).permute(2, 0, 1)[None].float()
        x = self.sam.preprocess(x)  # normalise + pad to img_size
        self._embedding = self.sam.image_encoder(x)
        self._cached_key = key
        return self._embedding

    # -- prompts -------------------------------------------------------------------------
    def _encode_prompt(self, p: RegionPrompt, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """SAM decoder input (coords in the resized frame, labels) for one prompt."""
        coords: list[tuple[float, float]] = [tuple(map(float, xy)) for xy in p.points]
        labels: list[float] = [float(v) for v in p.point_labels]
        if p.box is not None:
            x, y, bw, bh = (float(v) for v in p.box)
            coords += [(x, y), (x + bw, y + bh)]
            labels += [2.0, 3.0]
        else:  # SAM pads point-only prompts with a "not a point"
            coords.append((0.0, 0.0))
            labels.append(-1.0)
        c = np.asarray(coords, dtype=np.float32)
        nh, nw = self._resized_shape(h, w)
        c[:, 0] *= nw / w
        c[:, 1] *= nh / h
        pad = np.asarray(labels) == -1
        c[pad] = 0.0
        return c, np.asarray(labels, dtype=np.float32)

    @torch.no_grad()
    def _decode(
        self, emb: torch.Tensor, coords: np.ndarray, labels: np.ndarray, h: int, w: int
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Mask logits (N, H, W) at image size and SAM's IoU scores (N,) for one prompt group."""
        size = np.array([h, w], dtype=np.float32)
        mask_in = np.zeros((1, 1, 4 * emb.shape[-2], 4 * emb.shape[-1]), dtype=np.float32)
        has_mask = np.zeros(1, dtype=np.float32)
        if self._session is not None:
            feed = {
                "image_embeddings": emb.float().cpu().numpy(),
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": mask_in,
                "has_mask_input": has_mask,
            }
            names = {i.name for i in self._session.get_inputs()}
            low, scores, _ = self._session.run(None, {k: v for k, v in feed.items() if k in names})
            low_t = torch.from_numpy(low).to(self.device)
        else:
            dev = emb.device
            low_t, scores_t, _ = self._decoder_torch(
                emb,
                torch.from_numpy(coords).to(dev),
                torch.from_numpy(labels).to(dev),
                torch.from_numpy(mask_in).to(dev),
                torch.from_numpy(has_mask).to(dev),
                torch.from_numpy(size).to(dev),
            )
            scores = scores_t.float().cpu().numpy()
        masks = self.sam.postprocess_masks(low_t.float(), self._resized_shape(h, w), (h, w))
        return masks[:, 0].cpu(), scores[:, 0]

    def predict(
        self,
        image: np.ndarray | Image.Image,
        prompts: Sequence[RegionPrompt],
        *,
        return_logits: bool = False,
    ) -> SamResult:
        """Masks for every prompt, one decoder call per group of same-shaped prompts."""
        arr = validate_image(image)
        h, w = arr.shape[:2]
        if not prompts:
            return SamResult(np.zeros((0, h, w), bool), np.zeros(0, np.float32))
        for p in prompts:
            p.validate()
        emb = self.set_image(arr)
        encoded = [self._encode_prompt(p, h, w) for p in prompts]
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, (c, lab) in enumerate(encoded):
            groups.setdefault((len(c), bool((lab == 2).any())), []).append(i)
        out = np.zeros((len(prompts), h, w), dtype=np.float32)
        scores = np.zeros(len(prompts), dtype=np.float32)
        for idx in groups.values():
            coords = np.stack([encoded[i][0] for i in idx])
            labels = np.stack([encoded[i][1] for i in idx])
            m, s = self._decode(emb, coords, labels, h, w)
            out[idx] = m.numpy()
            scores[idx] = s
        masks = out if return_logits else out > float(self.sam.mask_threshold)
        return SamResult(masks, scores, [p.id for p in prompts], [p.label for p in prompts])

    def masks_from_boxes(
        self, image: np.ndarray | Image.Image, boxes: Sequence[Sequence[float]]
    ) -> np.ndarray:
        """(N, H, W) bool masks for (x, y, w, h) boxes."""
        prompts = [RegionPrompt(id=i + 1, box=tuple(b)) for i, b in enumerate(boxes)]
        return self.predict(image, prompts).masks

    def masks_from_points(
        self,
        image: np.ndarray | Image.Image,
        points: Sequence[Sequence[tuple[float, float]]],
        labels: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """(N, H, W) bool masks, one per point set (labels default to all foreground)."""
        labels = labels or [[1] * len(p) for p in points]
        prompts = [
            RegionPrompt(id=i + 1, points=list(p), point_labels=list(lab))
            for i, (p, lab) in enumerate(zip(points, labels, strict=True))
        ]
        return self.predict(image, prompts).masks
