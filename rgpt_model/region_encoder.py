"""RegionEncoder: the vision side of RGPT as one module (image + masks -> vision features).

Data flow for one image and R region masks::

    pixels -(CLIP, configured layer, drop CLS)-> grid (B, C, g, g)
      global: avg-pool(patch_merge_factor) -> (B, T, C)
      region: FeatureRefiner (4x) [+ PixelDetailBranch(pixels)] -> mask_pool -> (R, C)
              [+ MaskShapeEncoder(mask)] [+ MaskPositionEncoder(mask)]   (additions, see below)

Outputs are in vision space, before the shared connector, so the module exports to ONNX on its
own (:mod:`rgpt_model.onnx_export`) and pairs with ``RGPTForCausalLM.project``. The tensor path
has no data-dependent Python control flow: the number of masks is a dynamic axis.

The pixel detail branch and the mask silhouette and mask position encoders are additions beyond
the paper (off by default; docs/ADDITIONS.md says why each exists and what it measured).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionModel

from .config import RGPTConfig
from .mask_encoder import MaskShapeEncoder
from .mask_pooling import mask_pool, resize_masks
from .mask_position import MaskPositionEncoder
from .pixel_refinement import PixelDetailBranch
from .refinement import FeatureRefiner


@dataclass(frozen=True)
class RegionEncoderConfig:
    """The values of :class:`RGPTConfig` that the encoder's forward pass reads.

    Sizes of the parts (refiner width, encoder resolutions, position scale) live in the parts
    themselves and show in the module's ``repr``; with this and the weights that is everything
    an exported encoder depends on (see ``onnx_export.model_fingerprint``).
    """

    image_size: int
    patch_size: int
    vision_image_size: int
    vision_feature_layer: int
    keep_cls: bool
    patch_merge_factor: int

    @classmethod
    def from_rgpt_config(cls, config: RGPTConfig) -> RegionEncoderConfig:
        return cls(
            image_size=int(config.image_size),
            patch_size=int(config.vision_config.patch_size),
            vision_image_size=int(config.vision_config.image_size),
            vision_feature_layer=int(config.vision_feature_layer),
            # LLaVA keeps CLS only with the "full" strategy; a merged grid has no CLS slot
            keep_cls=config.vision_feature_select_strategy == "full"
            and config.patch_merge_factor == 1,
            patch_merge_factor=int(config.patch_merge_factor),
        )

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_global_tokens(self) -> int:
        side = self.grid_size // self.patch_merge_factor
        return side * side + int(self.keep_cls)


class RegionEncoder(nn.Module):
    """CLIP tower + refiner + mask pooling (+ additions): (pixels, masks) -> (global, regions)."""

    def __init__(self, config: RGPTConfig) -> None:
        super().__init__()
        self.config = RegionEncoderConfig.from_rgpt_config(config)
        self.vision_tower = CLIPVisionModel(config.vision_config)
        vdim = config.vision_config.hidden_size
        self.refiner = (
            FeatureRefiner(vdim, config.refiner_hidden_size) if config.use_refinement else None
        )
        # additions beyond the paper (off by default): what the mask outline and place say
        self.mask_encoder = (
            MaskShapeEncoder(vdim, config.mask_encoder_resolution)
            if config.use_mask_encoder else None
        )
        self.mask_position = (
            MaskPositionEncoder(vdim, config.mask_position_resolution,
                                scale=config.mask_position_scale,
                                spread=config.mask_position_spread)
            if config.use_mask_position else None
        )
        # addition: what the pixels say at the refined grid's resolution (a from-scratch tower)
        self.pixel_branch = (
            PixelDetailBranch(vdim, config.pixel_branch_width) if config.use_pixel_branch
            else None
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())

    @property
    def refined_grid_size(self) -> int:
        """Side of the grid that regions are pooled on (4x finer with refinement)."""
        return self.config.grid_size * (4 if self.refiner is not None else 1)

    def vision_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP features of the configured layer: (grid (B, C, g, g), CLS token (B, 1, C))."""
        cfg = self.config
        out = self.vision_tower(
            pixel_values.to(self.vision_tower.dtype),
            output_hidden_states=True,
            interpolate_pos_encoding=cfg.image_size != cfg.vision_image_size,
        )
        hidden = out.hidden_states[cfg.vision_feature_layer]
        feats = hidden[:, 1:]
        g = cfg.grid_size
        grid = feats.transpose(1, 2).reshape(feats.shape[0], feats.shape[2], g, g)
        return grid, hidden[:, :1]

    def global_features(self, grid: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Patch merge: average-pool the grid by ``patch_merge_factor`` -> (B, T, C)."""
        f = self.config.patch_merge_factor
        if f > 1:
            grid = F.avg_pool2d(grid, kernel_size=f, stride=f)
        seq = grid.flatten(2).transpose(1, 2)
        return torch.cat([cls, seq], dim=1) if self.config.keep_cls else seq

    def refined_map(self, grid: torch.Tensor,
                    pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """The map regions are pooled on: the refined grid (B, C, h, w), plus the pixel detail
        map with ``use_pixel_branch`` (which needs ``pixel_values``)."""
        fmap = self.refiner(grid) if self.refiner is not None else grid
        if self.pixel_branch is not None:
            if pixel_values is None:
                raise ValueError("this model refines with the image's pixels: pass pixel_values")
            fmap = fmap + self.pixel_branch(pixel_values, tuple(fmap.shape[-2:])).to(fmap.dtype)
        return fmap

    def pool_regions(
        self,
        fmap: torch.Tensor,
        masks: torch.Tensor,
        region_image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask-pool the refined map: masks (R, H, W) any size -> (R, C), plus the mask
        encoders' embeddings when they are on."""
        weights = resize_masks(masks, tuple(fmap.shape[-2:])).to(fmap.dtype)
        pooled = mask_pool(fmap, weights, region_image_index)
        if self.mask_encoder is not None:
            pooled = pooled + self.mask_encoder(masks).to(pooled.dtype)
        if self.mask_position is not None:
            pooled = pooled + self.mask_position(masks).to(pooled.dtype)
        return pooled

    def region_features(
        self,
        grid: torch.Tensor,
        masks: torch.Tensor,
        region_image_index: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Refine the grid (if enabled) and mask-pool: masks (R, H, W) any size -> (R, C)."""
        return self.pool_regions(self.refined_map(grid, pixel_values), masks, region_image_index)

    def forward(
        self,
        pixel_values: torch.Tensor,
        masks: torch.Tensor,
        region_image_index: torch.Tensor | None = None,
        return_refined_map: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """pixel_values (B, 3, S, S), masks (R, S', S') weights -> global (B, T, C), regions
        (R, C); ``region_image_index`` (R,) says which image each mask belongs to (default 0).
        ``return_refined_map`` adds the map the regions were pooled on (B, C, h, w): the
        dense training losses read it (the ONNX export never asks for it)."""
        grid, cls = self.vision_features(pixel_values)
        fmap = self.refined_map(grid, pixel_values)
        out = (self.global_features(grid, cls),
               self.pool_regions(fmap, masks, region_image_index))
        return (*out, fmap) if return_refined_map else out
