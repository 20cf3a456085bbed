"""Placeholder merge: ``<image>`` and region placeholder tokens take the visual embeddings.

As in LLaVA (transformers' ``modeling_llava.py``), the ``<image>`` tokens (already expanded by
the processor into one token per global feature) are replaced by the projected global
features. RegionGPT's addition: each region placeholder (``<region>``, ``<region1>``...) is
replaced by the projected feature of its region.

Placeholder identity (an addition beyond the paper, ``RGPTConfig.region_placeholder_identity``,
off by default): the region feature is *added* to the placeholder's own token embedding (times
``region_identity_scale``) instead of replacing it, so ``<region3>`` still tells the LM it is
candidate 3, which REC answers ("Region [3]") refer to. docs/ADDITIONS.md has the numbers.
"""

from __future__ import annotations

import torch

from .config import RGPTConfig
from .errors import RegionCountMismatchError


def _merge_image_tokens(
    embeds: torch.Tensor,
    input_ids: torch.Tensor,
    image_token_id: int,
    global_embeds: torch.Tensor | None,
    sample_image_index: torch.Tensor | None,
) -> torch.Tensor:
    img_mask = input_ids == image_token_id
    n_img_tokens = int(img_mask.sum())
    if not n_img_tokens:
        return embeds
    if global_embeds is None:
        raise RegionCountMismatchError(
            f"prompt has {n_img_tokens} image tokens but no image was given"
        )
    bsz = input_ids.shape[0]
    if sample_image_index is None:
        sample_image_index = (
            torch.zeros(bsz, dtype=torch.long, device=input_ids.device)
            if global_embeds.shape[0] == 1
            else torch.arange(bsz, device=input_ids.device)
        )
    rows = img_mask.any(dim=1)
    feats = global_embeds[sample_image_index.to(global_embeds.device)][
        rows.to(global_embeds.device)
    ]
    if feats.shape[0] * feats.shape[1] != n_img_tokens:
        raise RegionCountMismatchError(
            f"image tokens ({n_img_tokens}) do not match the global features "
            f"({feats.shape[0]} x {feats.shape[1]}); expand <image> with the processor"
        )
    return embeds.masked_scatter(
        img_mask.unsqueeze(-1).to(embeds.device),
        feats.reshape(-1, feats.shape[-1]).to(embeds.dtype),
    )


def merge_placeholders(
    embeds: torch.Tensor,
    input_ids: torch.Tensor,
    config: RGPTConfig,
    global_embeds: torch.Tensor | None = None,
    region_embeds: torch.Tensor | None = None,
    region_feature_index: torch.Tensor | None = None,
    sample_image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token embeddings ``embeds`` (B, L, D) of ``input_ids`` with the placeholders replaced.

    global_embeds: (N_img, T, D) projected global tokens; sample ``b`` uses image
    ``sample_image_index[b]`` (default: b, or 0 when there is a single image).
    region_embeds: (R, D); the p-th region placeholder of the batch (row-major order)
    takes ``region_embeds[region_feature_index[p]]`` (default: p).
    """
    embeds = _merge_image_tokens(
        embeds, input_ids, config.image_token_id, global_embeds, sample_image_index
    )
    region_ids = torch.as_tensor(config.region_token_ids or [], device=input_ids.device)
    reg_mask = torch.isin(input_ids, region_ids) if region_ids.numel() else None
    n_reg = int(reg_mask.sum()) if reg_mask is not None else 0
    n_feats = 0 if region_embeds is None else region_embeds.shape[0]
    if region_feature_index is None:
        if n_reg != n_feats:
            raise RegionCountMismatchError(
                f"{n_reg} region placeholder(s) in the prompt but {n_feats} region "
                "feature(s); give one mask per placeholder or a region_feature_index"
            )
        region_feature_index = torch.arange(n_feats, device=input_ids.device)
    if region_feature_index.numel() != n_reg:
        raise RegionCountMismatchError(
            f"{n_reg} region placeholder(s) in the prompt but region_feature_index has "
            f"{region_feature_index.numel()} entries"
        )
    if not n_reg:
        return embeds
    if int(region_feature_index.max()) >= n_feats or int(region_feature_index.min()) < 0:
        raise RegionCountMismatchError(
            f"region_feature_index refers to region {int(region_feature_index.max())} "
            f"but only {n_feats} region feature(s) were given"
        )
    sel = region_embeds[region_feature_index.to(region_embeds.device)].to(embeds.dtype)
    if config.region_placeholder_identity:
        identity = embeds[reg_mask.to(embeds.device)]
        sel = sel + identity * config.region_identity_scale
    return embeds.masked_scatter(reg_mask.unsqueeze(-1).to(embeds.device), sel)
