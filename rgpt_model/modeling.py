"""RGPTForCausalLM: LLaVA-1.5 made region-aware (RegionGPT, CVPR 2024).

The model is three parts: the :class:`~rgpt_model.region_encoder.RegionEncoder` (CLIP tower,
refinement, mask pooling: image + masks -> vision features), the shared connector
(:meth:`RGPTForCausalLM.project`: vision features -> LLM embeddings) and the causal LM.
``<image>`` tokens (already expanded by the processor to T copies) take the global embeddings,
each region placeholder token takes the embedding of its region
(:mod:`rgpt_model.placeholder_merge`). With ``patch_merge_factor=1`` and no region tokens this
is exactly LLaVA-1.5's forward pass. Construction from LLaVA / CLIP + LLM directories lives in
:mod:`rgpt_model.build`.

Checkpoints saved before the region encoder existed (keys ``vision_tower.*``, ``refiner.*``,
``mask_encoder.*``, ``mask_position.*`` and the issue-20 branch's ``pixel_branch.*`` at the
top level, e.g. the demo model until issue 18) load through transformers' checkpoint conversion
mapping registered below; saves use the current layout (``region_encoder.*``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_outputs import CausalLMOutputWithPast

from .config import RGPTConfig
from .connector import RGPTConnector
from .placeholder_merge import merge_placeholders
from .region_encoder import RegionEncoder

logger = logging.getLogger(__name__)

# top-level parts of the layout before issue 18 that now live in the region encoder
# (pixel_branch: the issue-20 branch's checkpoints, written in that layout)
LEGACY_REGION_ENCODER_PARTS = ("vision_tower", "refiner", "mask_encoder", "mask_position",
                               "pixel_branch")


def current_key(key: str) -> str:
    """A weight name in the current layout: ``vision_tower.x`` of the layout before the region
    encoder -> ``region_encoder.vision_tower.x`` (the conversion mapping below, for the state
    dicts that do not pass through ``from_pretrained``: training checkpoints, warm starts)."""
    return f"region_encoder.{key}" if key.split(".")[0] in LEGACY_REGION_ENCODER_PARTS else key


class RGPTForCausalLM(PreTrainedModel):
    """Region encoder + shared connector + causal LM."""

    config_class = RGPTConfig
    base_model_prefix = "rgpt"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["CLIPEncoderLayer", "LlamaDecoderLayer"]

    def __init__(self, config: RGPTConfig) -> None:
        super().__init__(config)
        self.region_encoder = RegionEncoder(config)
        self.connector = RGPTConnector(
            config.vision_config.hidden_size,
            config.text_config.hidden_size,
            config.projector_hidden_act,
            config.multimodal_projector_bias,
        )
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()
        if config.freeze_vision_tower:
            self.region_encoder.vision_tower.requires_grad_(False)

    def _init_weights(self, module: nn.Module) -> None:
        """Transformers' init, except layers marked ``_zero_init`` (the mask encoders' output
        layers) stay at zero, also when ``from_pretrained`` initialises missing weights."""
        if getattr(module, "_zero_init", False):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            return
        super()._init_weights(module)

    def save_pretrained(self, save_directory: str | Path, *args, **kwargs) -> None:
        """transformers' save, in the current key layout: by default it would write the layout
        the checkpoint conversion mapping converts *from* (the pre-issue-18 one)."""
        kwargs.setdefault("save_original_format", False)
        super().save_pretrained(save_directory, *args, **kwargs)

    # --------------------------------------------------- parts (as transformers' Llava does)
    @property
    def vision_tower(self) -> nn.Module:
        return self.region_encoder.vision_tower

    @property
    def refiner(self) -> nn.Module | None:
        return self.region_encoder.refiner

    @property
    def mask_encoder(self) -> nn.Module | None:
        return self.region_encoder.mask_encoder

    @property
    def mask_position(self) -> nn.Module | None:
        return self.region_encoder.mask_position

    @property
    def pixel_branch(self) -> nn.Module | None:
        return self.region_encoder.pixel_branch

    # ------------------------------------------------------------------ embeddings plumbing
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def resize_token_embeddings_mean(self, new_size: int) -> None:
        """Grow input/output embeddings to ``new_size``; new rows = mean of the old rows."""
        old = self.get_input_embeddings().weight.shape[0]
        if new_size <= old:
            return
        self.language_model.resize_token_embeddings(new_size, mean_resizing=False)
        with torch.no_grad():
            new = self.get_input_embeddings().weight
            new[old:] = new[:old].mean(0)
            out = self.get_output_embeddings()
            if out is not None and out.weight.shape[0] == new_size:
                out.weight[old:] = out.weight[:old].mean(0)
        self.config.text_config.vocab_size = new_size

    # ----------------------------------------------------------------------- vision -> LM
    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The shared connector: vision features (..., C) -> LLM embeddings (..., D)."""
        return self.connector(features.to(self.connector.linear_1.weight.dtype))

    def merge_embeddings(
        self,
        input_ids: torch.Tensor,
        global_embeds: torch.Tensor | None = None,
        region_embeds: torch.Tensor | None = None,
        region_feature_index: torch.Tensor | None = None,
        sample_image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings of ``input_ids`` with ``<image>`` and region placeholders replaced
        by projected features (see :func:`rgpt_model.placeholder_merge.merge_placeholders`)."""
        return merge_placeholders(
            self.get_input_embeddings()(input_ids),
            input_ids,
            self.config,
            global_embeds,
            region_embeds,
            region_feature_index,
            sample_image_index,
        )

    def prepare_inputs_embeds(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        region_image_index: torch.Tensor | None = None,
        region_feature_index: torch.Tensor | None = None,
        sample_image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode image + masks and merge them into the token embeddings."""
        global_embeds = region_embeds = None
        if pixel_values is not None:
            if masks is None:
                masks = pixel_values.new_zeros((0,) + tuple(pixel_values.shape[-2:]))
            g, r = self.region_encoder(pixel_values, masks, region_image_index)
            global_embeds = self.project(g)
            region_embeds = self.project(r) if r.shape[0] else None
        return self.merge_embeddings(
            input_ids, global_embeds, region_embeds, region_feature_index, sample_image_index
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        region_image_index: torch.Tensor | None = None,
        region_feature_index: torch.Tensor | None = None,
        sample_image_index: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Teacher-forced forward pass (training, scoring). ``labels`` use -100 to ignore."""
        if inputs_embeds is None:
            inputs_embeds = self.prepare_inputs_embeds(
                input_ids,
                pixel_values,
                masks,
                region_image_index,
                region_feature_index,
                sample_image_index,
            )
        return self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **kwargs
        )


register_checkpoint_conversion_mapping(
    RGPTForCausalLM.__name__,
    [
        WeightRenaming(source_patterns=rf"^{part}\.", target_patterns=f"region_encoder.{part}.")
        for part in LEGACY_REGION_ENCODER_PARTS
    ],
    overwrite=True,  # the module may be imported again (reload in tests)
)
