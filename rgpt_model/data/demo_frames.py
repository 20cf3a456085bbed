"""The frames of the demo bag: synthetic scenes with known referring answers, synthetic
scenes whose masks are their objects' bounding boxes (what a detector gives, no SAM), then
photographs shipped inside scikit-image with masks of their largest segments.

Deterministic (the same call gives the same arrays), so the bag can be regenerated on demand
instead of committed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rgpt_model.data.synthetic import SceneConfig, generate_scene

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


@dataclass
class DemoFrame:
    """An RGB image, its label image (0 = background) and what is known about it.

    ``kind``: ``synthetic``, ``boxes`` or ``photo``; ``source``: ``val/<index>`` or the
    photo's name;
    ``regions``: id (as text) -> name (empty for photos); ``expressions``: the synthetic
    scene's referring expressions as ``{text, target_ids, kind}`` (None for photos).
    """

    kind: str
    source: str
    image: np.ndarray
    labels: np.ndarray
    regions: dict[str, str]
    expressions: list[dict] | None = None

    def annotations(self) -> dict:
        """What the demo bag's annotations file says about the frame."""
        notes = {"kind": self.kind, "source": self.source, "width": int(self.image.shape[1]),
                 "height": int(self.image.shape[0]), "regions": self.regions}
        if self.expressions is not None:
            notes["expressions"] = self.expressions
        return notes


def synthetic_frames(count: int, height: int = 240, width: int = 320, seed: int = 0,
                     split: str = "val") -> list[DemoFrame]:
    """The first ``count`` scenes of ``split`` at the given size."""
    cfg = SceneConfig(height=height, width=width)
    frames = []
    for k in range(count):
        scene = generate_scene(seed, k, split, cfg)
        frames.append(DemoFrame(
            "synthetic", f"{split}/{k}", scene.image, scene.labels,
            {str(r.id): r.name for r in scene.regions},
            [{"text": e.text, "target_ids": e.target_ids, "kind": e.kind}
             for e in scene.expressions]))
    return frames


def box_frames(count: int, start: int, height: int = 240, width: int = 320, seed: int = 0,
                split: str = "val") -> list[DemoFrame]:
    """Scenes ``start .. start+count-1`` of ``split`` with each object's mask replaced by its
    bounding box, larger boxes painted first so a smaller one stays visible on top: the masks
    a detector's boxes give. The region names are known; no referring expressions (a box
    covers parts of its neighbours)."""
    from rgpt_model.masks import boxes_to_masks

    cfg = SceneConfig(height=height, width=width)
    frames = []
    for k in range(start, start + count):
        scene = generate_scene(seed, k, split, cfg)
        labels = np.zeros(scene.labels.shape, np.uint16)
        regions = sorted(scene.regions, key=lambda r: -r.bbox[2] * r.bbox[3])
        for region, box in zip(regions, boxes_to_masks([r.bbox for r in regions],
                                                       labels.shape), strict=True):
            labels[box] = region.id
        frames.append(DemoFrame("boxes", f"{split}/{k} boxes", scene.image, labels,
                                {str(r.id): r.name for r in scene.regions
                                 if np.any(labels == r.id)}))
    return frames


def photo_frame(name: str, max_side: int = 320, regions: int = 5) -> DemoFrame:
    """A scikit-image sample photo (downscaled) and a label image of its largest segments."""
    import skimage.data
    from skimage.segmentation import felzenszwalb

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img[:, :, :3]
    step = max(1, int(np.ceil(max(img.shape[:2]) / max_side)))
    img = np.ascontiguousarray(img[::step, ::step])
    seg = felzenszwalb(img, scale=400, sigma=0.8, min_size=200)
    ids, counts = np.unique(seg, return_counts=True)
    total = seg.size
    keep = [i for c, i in sorted(zip(counts, ids, strict=True), reverse=True)
            if 0.01 * total <= c <= 0.4 * total][:regions]
    labels = np.zeros(seg.shape, np.uint16)
    for new_id, seg_id in enumerate(keep, start=1):
        labels[seg == seg_id] = new_id
    return DemoFrame("photo", name, img, labels,
                     {str(i): "" for i in np.unique(labels) if i})


def demo_frames(scenes: int = 6, photos: int = 4, height: int = 240, width: int = 320,
                boxes: int = 0) -> list[DemoFrame]:
    """``scenes`` synthetic validation scenes, ``boxes`` more with box masks, then the first
    ``photos`` of ``PHOTOS``."""
    return (synthetic_frames(scenes, height, width)
            + box_frames(boxes, scenes, height, width)
            + [photo_frame(name) for name in PHOTOS[:photos]])
