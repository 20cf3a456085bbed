"""EncodedFrame: one camera frame after the region encoder and the connector.

segment-anything's ``set_image`` / ``predict`` pattern: ``RGPTPredictor.encode`` runs the vision
side once, and every task (describe, refer, ask) on the frame reuses the result. It also keeps
the pooled vision-space region features, so regions can be compared across frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from .errors import UnknownRegionError


@dataclass(frozen=True, eq=False)  # tensors do not compare as one truth value
class EncodedFrame:
    """Projected global tokens and, per region (in ``region_ids`` order), its projected
    embedding, pooled vision feature and boolean mask at frame resolution."""

    global_embeds: torch.Tensor  # (1, T, D) projected global tokens
    region_embeds: torch.Tensor  # (R, D) projected region tokens
    region_features: torch.Tensor  # (R, C) mask-pooled vision features, before the connector
    region_ids: list[int]
    masks: np.ndarray  # (R, H, W) bool, frame resolution
    frame_size: tuple[int, int]  # (H, W)

    def __len__(self) -> int:
        return len(self.region_ids)

    def select(self, region_ids: Sequence[int]) -> EncodedFrame:
        """The same frame restricted to ``region_ids``, in that order (no re-encoding)."""
        ids = [int(i) for i in region_ids]
        where = {rid: k for k, rid in enumerate(self.region_ids)}
        missing = [i for i in ids if i not in where]
        if missing:
            raise UnknownRegionError(
                f"region id(s) {missing} are not in this encoded frame (it has {self.region_ids}); "
                "encode the frame with those regions"
            )
        rows = [where[i] for i in ids]
        index = torch.as_tensor(rows, dtype=torch.long, device=self.region_embeds.device)
        return replace(
            self,
            region_embeds=self.region_embeds[index],
            region_features=self.region_features[index.to(self.region_features.device)],
            region_ids=ids,
            masks=self.masks[rows],
        )
