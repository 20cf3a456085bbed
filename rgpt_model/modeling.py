"""RGPTForCausalLM: LLaVA-1.5 made region-aware (RegionGPT, CVPR 2024).

Data flow for one image and R region masks::

    pixels -(CLIP, layer -2, drop CLS)-> grid (B, C, g, g)
      global: avg-pool(patch_merge_factor) -> (B, T, C) --+
      region: FeatureRefiner (4x) -> mask_pool -> (R, C) --+-> shared connector -> LLM embeddings

``<image>`` tokens (already expanded by the processor to T copies) take the global embeddings,
each region placeholder token takes the embedding of its region (``region_feature_index``).
With ``patch_merge_factor=1`` and no region tokens this is exactly LLaVA-1.5's forward pass.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, CLIPVisionModel, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .config import RGPTConfig
from .connector import RGPTConnector
from .errors import ModelLoadError, RegionCountMismatchError
from .mask_encoder import MaskShapeEncoder
from .mask_pooling import mask_pool, resize_masks
from .mask_position import MaskPositionEncoder
from .refinement import FeatureRefiner

logger = logging.getLogger(__name__)


class RGPTForCausalLM(PreTrainedModel):
    """Vision tower + refiner + mask pooling + patch merge + shared connector + causal LM."""

    config_class = RGPTConfig
    base_model_prefix = "rgpt"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["CLIPEncoderLayer", "LlamaDecoderLayer"]

    def __init__(self, config: RGPTConfig) -> None:
        super().__init__(config)
        self.vision_tower = CLIPVisionModel(config.vision_config)
        vdim = config.vision_config.hidden_size
        self.refiner = (
            FeatureRefiner(vdim, config.refiner_hidden_size) if config.use_refinement else None
        )
        self.mask_encoder = (
            MaskShapeEncoder(vdim, config.mask_encoder_resolution)
            if config.use_mask_encoder else None
        )
        self.connector = RGPTConnector(
            vdim,
            config.text_config.hidden_size,
            config.projector_hidden_act,
            config.multimodal_projector_bias,
        )
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        # created last, so switching it on leaves every other module's seeded init unchanged
        self.mask_position = (
            MaskPositionEncoder(vdim, config.mask_position_resolution,
                                scale=config.mask_position_scale)
            if config.use_mask_position else None
        )
        self.post_init()
        if config.freeze_vision_tower:
            self.vision_tower.requires_grad_(False)

    def _init_weights(self, module: nn.Module) -> None:
        """Transformers' init, except layers marked ``_zero_init`` (the mask encoders' output
        layers) stay at zero, also when ``from_pretrained`` initialises missing weights."""
        if getattr(module, "_zero_init", False):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            return
        super()._init_weights(module)

    # ------------------------------------------------------------------ embeddings plumbing
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    # ---------------------------------------------------------------------- vision encoding
    def vision_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP features of the configured layer: (grid (B, C, g, g), CLS token (B, 1, C))."""
        interp = self.config.image_size != self.config.vision_config.image_size
        out = self.vision_tower(
            pixel_values.to(self.vision_tower.dtype),
            output_hidden_states=True,
            interpolate_pos_encoding=interp,
        )
        hidden = out.hidden_states[self.config.vision_feature_layer]
        feats = hidden[:, 1:]
        g = self.config.grid_size
        grid = feats.transpose(1, 2).reshape(feats.shape[0], feats.shape[2], g, g)
        return grid, hidden[:, :1]

    def global_features(self, grid: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        """Patch merge: average-pool the grid by ``patch_merge_factor`` -> (B, T, C)."""
        f = self.config.patch_merge_factor
        if f > 1:
            grid = F.avg_pool2d(grid, kernel_size=f, stride=f)
        seq = grid.flatten(2).transpose(1, 2)
        if cls is not None:
            seq = torch.cat([cls, seq], dim=1)
        return seq

    def region_features(
        self,
        grid: torch.Tensor,
        masks: torch.Tensor,
        region_image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Refine the grid (if enabled) and mask-pool: masks (R, H, W) any size -> (R, C).

        With ``use_mask_encoder`` the mask's silhouette embedding is added to the pooled feature,
        with ``use_mask_position`` its position embedding.
        """
        fmap = self.refiner(grid) if self.refiner is not None else grid
        weights = resize_masks(masks, tuple(fmap.shape[-2:])).to(fmap.dtype)
        pooled = mask_pool(fmap, weights, region_image_index)
        if self.mask_encoder is not None:
            pooled = pooled + self.mask_encoder(masks).to(pooled.dtype)
        if self.mask_position is not None:
            pooled = pooled + self.mask_position(masks).to(pooled.dtype)
        return pooled

    def encode_regions(
        self,
        pixel_values: torch.Tensor,
        masks: torch.Tensor,
        region_image_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vision side in one pass: (global_feats (B, T, C), region_feats (R, C)).

        Features are in vision space (before the connector), so an exported encoder can be
        paired with :meth:`project`. No data-dependent Python control flow on the tensor path.
        """
        grid, cls = self.vision_features(pixel_values)
        full = self.config.vision_feature_select_strategy == "full"
        cls = cls if full and self.config.patch_merge_factor == 1 else None  # merged: no CLS
        return self.global_features(grid, cls), self.region_features(
            grid, masks, region_image_index
        )

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The shared connector: vision features (..., C) -> LLM embeddings (..., D)."""
        return self.connector(features.to(self.connector.linear_1.weight.dtype))

    # ------------------------------------------------------------------------ merge tokens
    def merge_embeddings(
        self,
        input_ids: torch.Tensor,
        global_embeds: torch.Tensor | None = None,
        region_embeds: torch.Tensor | None = None,
        region_feature_index: torch.Tensor | None = None,
        sample_image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with ``<image>`` and region placeholders replaced (with
        ``region_placeholder_identity``, the region feature is added to the placeholder's own
        embedding (times ``region_identity_scale``) instead, so ``<region3>`` still tells the LM
        it is candidate 3).

        global_embeds: (N_img, T, D) projected global tokens; sample ``b`` uses image
        ``sample_image_index[b]`` (default: b, or 0 when there is a single image).
        region_embeds: (R, D); the p-th region placeholder of the batch (row-major order)
        takes ``region_embeds[region_feature_index[p]]`` (default: p).
        """
        embeds = self.get_input_embeddings()(input_ids)
        cfg = self.config
        img_mask = input_ids == cfg.image_token_id
        n_img_tokens = int(img_mask.sum())
        if n_img_tokens:
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
            embeds = embeds.masked_scatter(
                img_mask.unsqueeze(-1).to(embeds.device),
                feats.reshape(-1, feats.shape[-1]).to(embeds.dtype),
            )
        region_ids = torch.as_tensor(cfg.region_token_ids or [], device=input_ids.device)
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
        if n_reg:
            if int(region_feature_index.max()) >= n_feats or int(region_feature_index.min()) < 0:
                raise RegionCountMismatchError(
                    f"region_feature_index refers to region {int(region_feature_index.max())} "
                    f"but only {n_feats} region feature(s) were given"
                )
            sel = region_embeds[region_feature_index.to(region_embeds.device)].to(embeds.dtype)
            if cfg.region_placeholder_identity:
                # keep what the placeholder token says ("I am <region3>"): REC answers by number
                identity = embeds[reg_mask.to(embeds.device)]
                sel = sel + identity * cfg.region_identity_scale
            embeds = embeds.masked_scatter(reg_mask.unsqueeze(-1).to(embeds.device), sel)
        return embeds

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
            g, r = self.encode_regions(pixel_values, masks, region_image_index)
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

    # ------------------------------------------------------------------------- construction
    @classmethod
    def from_llava(
        cls,
        llava_dir: str | Path,
        *,
        use_refinement: bool = True,
        patch_merge_factor: int = 1,
        dtype: torch.dtype | None = None,
        num_added_tokens: int = 0,
        **config_overrides,
    ) -> RGPTForCausalLM:
        """Build from a local ``LlavaForConditionalGeneration`` checkpoint directory.

        Vision tower, projector (-> connector) and language model are copied; the refiner is
        fresh. ``patch_merge_factor`` defaults to 1 here because LLaVA's LM was trained on the
        full 576-token grid. Resizes the LM embeddings by ``num_added_tokens`` (new rows: mean
        of the existing ones).
        """
        from transformers import LlavaForConditionalGeneration

        llava_dir = Path(llava_dir)
        if not (llava_dir / "config.json").is_file():
            raise ModelLoadError(
                f"{llava_dir} is not a LLaVA checkpoint directory (no config.json); point to a "
                "local LlavaForConditionalGeneration save_pretrained() directory"
            )
        try:
            llava = LlavaForConditionalGeneration.from_pretrained(llava_dir, dtype=dtype)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot load LLaVA checkpoint from {llava_dir}: {exc}") from exc
        return cls.from_llava_model(
            llava,
            use_refinement=use_refinement,
            patch_merge_factor=patch_merge_factor,
            num_added_tokens=num_added_tokens,
            **config_overrides,
        )

    @classmethod
    def from_llava_model(
        cls,
        llava: nn.Module,
        *,
        use_refinement: bool = True,
        patch_merge_factor: int = 1,
        num_added_tokens: int = 0,
        **config_overrides,
    ) -> RGPTForCausalLM:
        """Build from an in-memory ``LlavaForConditionalGeneration`` (see :meth:`from_llava`)."""
        lc = llava.config
        layer = lc.vision_feature_layer
        if not isinstance(layer, int):
            raise ModelLoadError(f"multi-layer vision features ({layer}) are not supported")
        config = RGPTConfig(
            vision_config=lc.vision_config.to_dict(),
            text_config=lc.text_config.to_dict(),
            vision_feature_layer=layer,
            vision_feature_select_strategy=lc.vision_feature_select_strategy,
            use_refinement=use_refinement,
            patch_merge_factor=patch_merge_factor,
            projector_hidden_act=lc.projector_hidden_act,
            multimodal_projector_bias=lc.multimodal_projector_bias,
            image_token_id=lc.image_token_id,
            **config_overrides,
        )
        dtype = next(llava.parameters()).dtype
        model = cls(config).to(dtype)
        inner = llava.model
        model.vision_tower.load_state_dict(inner.vision_tower.state_dict())
        model.connector.load_state_dict(inner.multi_modal_projector.state_dict())
        model.language_model.model.load_state_dict(inner.language_model.state_dict())
        model.language_model.lm_head.load_state_dict(llava.lm_head.state_dict())
        if num_added_tokens:
            model.resize_token_embeddings_mean(
                model.get_input_embeddings().weight.shape[0] + num_added_tokens
            )
        return model

    @classmethod
    def from_components(
        cls,
        clip_dir: str | Path,
        llm_dir: str | Path,
        *,
        dtype: torch.dtype | None = None,
        num_added_tokens: int = 0,
        **config_kwargs,
    ) -> RGPTForCausalLM:
        """Build from separate local CLIP (vision or full CLIP) and causal-LM directories.

        Connector and refiner start fresh (stage-1 training trains them).
        """
        from transformers import AutoConfig, CLIPVisionConfig

        for d in (clip_dir, llm_dir):
            if not (Path(d) / "config.json").is_file():
                raise ModelLoadError(f"{d} has no config.json; expected a local model directory")
        try:
            vcfg = CLIPVisionConfig.from_pretrained(clip_dir)
            tcfg = AutoConfig.from_pretrained(llm_dir)
            vision = CLIPVisionModel.from_pretrained(clip_dir, dtype=dtype)
            lm = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=dtype)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot load CLIP/LLM from {clip_dir}, {llm_dir}: {exc}") from exc
        config = RGPTConfig(
            vision_config=vcfg.to_dict(), text_config=tcfg.to_dict(), **config_kwargs
        )
        model = cls(config).to(next(lm.parameters()).dtype)
        model.vision_tower.load_state_dict(vision.state_dict())
        model.language_model.load_state_dict(lm.state_dict())
        if num_added_tokens:
            model.resize_token_embeddings_mean(
                model.get_input_embeddings().weight.shape[0] + num_added_tokens
            )
        return model

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


def load_model(path: str | Path, dtype: torch.dtype | None = None) -> RGPTForCausalLM:
    """Load a saved RGPT directory, turning every failure into an actionable ModelLoadError."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(
            f"model directory {path} does not exist; build one with "
            "rgpt_model.tiny.make_tiny_model or pass the directory of a saved RGPT model"
        )
    if not path.is_dir():
        raise ModelLoadError(f"{path} is not a directory; pass the model directory")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelLoadError(f"{path} has no config.json: not a saved RGPT model directory")
    try:
        config = RGPTConfig.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{cfg_file} is corrupt or not an RGPT config: {exc}") from exc
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelLoadError(f"{path} has no weights (*.safetensors); the save is incomplete")
    try:
        model = RGPTForCausalLM.from_pretrained(path, config=config, dtype=dtype)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot load the weights in {path}: {exc}") from exc
    return model.eval()
