"""Which regions of a frame the model spends time on: size floor and a count bound.

Model time grows with every region (one decoded answer each), so an entry point that serves a
stream (the ROS node) bounds it: regions under ``min_area`` pixels are skipped and at most
``max_regions`` of the largest are kept. Explicitly requested ids get the same bound, refused
rather than silently cut, so the caller learns why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .errors import InvalidQueryError
from .masks import MaskStack, mask_area, mask_bbox, to_mask_stack
from .results import RegionDescription


def region_areas(masks: np.ndarray | MaskStack) -> dict[int, int]:
    """id -> pixel count of every region (> 0 ids of a label image, or a stack's masks)."""
    if isinstance(masks, MaskStack):
        return dict(zip(masks.ids, masks.areas(), strict=True))
    ids, counts = np.unique(np.asarray(masks), return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts, strict=True) if i > 0}


def select_regions(
    masks: np.ndarray | MaskStack, *, min_area: int = 1, max_regions: int | None = None
) -> list[int]:
    """Ids with at least ``min_area`` pixels; the ``max_regions`` largest of them, in id order.

    Among regions of equal area the larger id is kept (a stable, documented tie rule).
    """
    keep = [(area, rid) for rid, area in region_areas(masks).items() if area >= int(min_area)]
    if max_regions is not None and len(keep) > int(max_regions):
        keep = sorted(keep, reverse=True)[: int(max_regions)]
    return sorted(rid for _, rid in keep)


def check_region_count(region_ids: Sequence[int], max_regions: int) -> None:
    """Refuse an explicit id list longer than ``max_regions`` (InvalidQueryError says why)."""
    if len(region_ids) > int(max_regions):
        raise InvalidQueryError(
            f"{len(region_ids)} region ids requested, more than max_regions={int(max_regions)}; "
            "ask about fewer regions at a time (or raise max_regions)"
        )


def outline_regions(masks, region_ids: Sequence[int],
                    known_labels: Mapping[int, str] | None = None) -> list[RegionDescription]:
    """RegionDescriptions with id, box and area only (no model run); known labels applied."""
    if not region_ids:
        return []
    stack, ids = to_mask_stack(masks, None, region_ids)
    known = known_labels or {}
    return [RegionDescription(region_id=rid, label=known.get(rid, ""),
                              label_score=1.0 if rid in known else 0.0, caption="",
                              bbox=mask_bbox(m), area=mask_area(m))
            for rid, m in zip(ids, stack, strict=True)]


def describe_regions(predictor, frame, *, tasks: Sequence[str],
                     known_labels: Mapping[int, str] | None = None,
                     vocabulary: Sequence[str] | None = None, max_new_tokens: int = 32,
                     should_stop: Callable[[], bool] | None = None) -> list[RegionDescription]:
    """``predictor.describe`` for every region of an encoded ``frame``, except that a region
    whose class is already known (a segmenter's label map, a detector's prompt label) keeps
    that name with score 1.0 and is not classified (its caption still runs when asked). All
    regions in one decoding batch (``predictor.describe_many``); results in frame order.
    """
    return predictor.describe_many([frame], tasks=tasks, vocabulary=vocabulary,
                                   max_new_tokens=max_new_tokens, should_stop=should_stop,
                                   named=[known_labels])[0]
