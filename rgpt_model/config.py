"""RGPT configuration: a LLaVA-1.5 style config plus the region-specific knobs.

Defaults follow the paper (CLIP ViT-L/14-336, second-to-last layer, Vicuna-7B v1.5, 4x feature
refinement); tests build tiny configs from the same class.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

CLIP_L_336 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 336,
    "projection_dim": 768,
}
# Vicuna-7B v1.5 is a Llama-2-7B architecture: transformers' LlamaConfig defaults.
VICUNA_7B_V15 = {"max_position_embeddings": 4096, "vocab_size": 32000}


@strict(accept_kwargs=True)
class RGPTConfig(PretrainedConfig):
    """Configuration of :class:`rgpt_model.modeling.RGPTForCausalLM`.

    The paper's method, beyond LLaVA's fields: ``image_size`` (input resolution; position
    embeddings are interpolated when it differs from the CLIP config), ``use_refinement`` and
    ``refiner_hidden_size`` (the 4x transposed-conv refiner; ``None`` = vision hidden size),
    ``patch_merge_factor`` (average-pool factor on the global patch grid, 1 = LLaVA's 576
    tokens), ``region_token_ids`` (token ids of ``<region>``, ``<region1>``...).
    Practical settings: ``freeze_vision_tower``, ``max_regions_per_prompt`` (REC candidates
    per prompt before chunking) and ``label_vocabulary`` (the class names the model was
    trained to answer with; ``None`` = COCO-80), which the predictor uses when a caller gives
    no vocabulary.

    Additions beyond the paper, each off by default (off = the paper's behaviour); why each
    exists and what it measured: docs/ADDITIONS.md.

    - ``use_mask_encoder`` / ``mask_encoder_resolution``: a silhouette embedding of each mask
      added to its pooled feature, because mask pooling keeps what the features say but not
      the outline (:mod:`rgpt_model.mask_encoder`).
    - ``use_mask_position`` / ``mask_position_resolution`` / ``mask_position_scale``: an
      embedding of where the mask lies, times a gain, because pooled features say little about
      position (:mod:`rgpt_model.mask_position`); ``mask_position_spread`` false gives it the
      centre only, because the spread's aspect hints at the class from the outline alone.
    - ``use_pixel_branch`` / ``pixel_branch_width``: a small conv net's map of the image added
      to the refined grid before pooling, because a vision tower trained from scratch gives
      cells that name colour but not shape (:mod:`rgpt_model.pixel_refinement`).
    - ``region_placeholder_identity`` / ``region_identity_scale``: the region feature is added
      to its ``<regionK>`` embedding (times the scale) instead of replacing it, so the LM still
      sees the candidate number REC answers refer to (:mod:`rgpt_model.placeholder_merge`).
    """

    model_type = "rgpt"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="clip_vision_model", init_kwargs=CLIP_L_336
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="llama", init_kwargs=VICUNA_7B_V15
        ),
    }

    vision_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "default"
    image_size: int | None = None
    use_refinement: bool = True
    refiner_hidden_size: int | None = None
    patch_merge_factor: int = 2
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    image_token_id: int = 32000
    region_token_ids: list[int] | None = None
    freeze_vision_tower: bool = True
    max_regions_per_prompt: int = 8
    label_vocabulary: list[str] | None = None
    # ---- additions beyond the paper (off by default; docs/ADDITIONS.md) ----
    # mask silhouette encoder: pooling drops the outline a mask draws
    use_mask_encoder: bool = False
    mask_encoder_resolution: int = 128
    # mask position encoder: pooled features barely say where a region lies
    use_mask_position: bool = False
    mask_position_resolution: int = 64
    mask_position_scale: float = 1.0
    mask_position_spread: bool = True  # false: centre only (the spread hints at the class)
    # pixel detail branch: a from-scratch ViT's cells name colour, not shape
    use_pixel_branch: bool = False
    pixel_branch_width: int = 64
    # placeholder identity: <regionK> keeps its number, which REC answers name
    region_placeholder_identity: bool = False
    region_identity_scale: float = 1.0
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.image_size is None:
            self.image_size = int(self.vision_config.image_size)
        if self.region_token_ids is None:
            self.region_token_ids = []
        if self.vision_feature_select_strategy not in ("default", "full"):
            raise ValueError(
                "vision_feature_select_strategy must be 'default' (drop CLS) or 'full', got "
                f"{self.vision_feature_select_strategy!r}"
            )
        if self.image_size % self.vision_config.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of the patch size "
                f"{self.vision_config.patch_size}"
            )
        if self.patch_merge_factor < 1 or self.grid_size % self.patch_merge_factor:
            raise ValueError(
                f"patch_merge_factor {self.patch_merge_factor} must be >= 1 and divide the patch "
                f"grid size {self.grid_size}"
            )

    @property
    def grid_size(self) -> int:
        """Side of the ViT patch grid (24 for 336 px / patch 14)."""
        return self.image_size // self.vision_config.patch_size

    @property
    def refined_grid_size(self) -> int:
        """Side of the grid that regions are pooled on (4x finer with refinement)."""
        return self.grid_size * (4 if self.use_refinement else 1)

    @property
    def num_global_tokens(self) -> int:
        """How many tokens one ``<image>`` expands into."""
        side = self.grid_size // self.patch_merge_factor
        tokens = side * side
        if self.vision_feature_select_strategy == "full" and self.patch_merge_factor == 1:
            tokens += 1
        return tokens


try:  # registering makes AutoConfig.from_pretrained work on RGPT directories
    AutoConfig.register("rgpt", RGPTConfig)
except ValueError:  # already registered (module reloaded)
    pass
