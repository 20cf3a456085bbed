"""Every way to build an RGPT model, in one module (as segment-anything's ``build_sam.py``).

:data:`MODEL_BUILDERS` maps a source kind to a function returning ``(model, processor)``:

| kind | from |
|---|---|
| ``pretrained`` | a saved RGPT directory (config.json, safetensors, tokenizer) |
| ``llava`` | a transformers ``LlavaForConditionalGeneration`` directory (LLaVA-1.5) |
| ``components`` | separate CLIP (vision or full CLIP) and causal-LM directories |
| ``scratch`` | an :class:`RGPTConfig` and a tokenizer (random weights; the trainer) |
| ``tiny`` | the tiny random test model of :mod:`rgpt_model.tiny` |

:func:`build_predictor` wraps any of them into an :class:`RGPTPredictor` on a device;
:func:`load_predictor` is the one call the node and the CLI need. Everything loads from local
directories only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from .config import RGPTConfig
from .device import resolve_device, resolve_dtype
from .errors import ModelLoadError
from .modeling import RGPTForCausalLM
from .processor import RGPTProcessor
from .tokenization import (
    DEFAULT_NUM_REGION_TOKENS,
    IMAGE_TOKEN,
    add_rgpt_tokens,
    build_word_tokenizer,
    region_token_ids,
)

logger = logging.getLogger(__name__)

Built = tuple[RGPTForCausalLM, RGPTProcessor]


def load_model(path: str | Path, dtype: torch.dtype | None = None) -> RGPTForCausalLM:
    """Load a saved RGPT directory, turning every failure into an actionable ModelLoadError.

    Directories saved before the region encoder existed load through the key mapping that
    :mod:`rgpt_model.modeling` registers.
    """
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


def build_pretrained(path: str | Path, *, dtype: torch.dtype | None = None) -> Built:
    """A saved RGPT directory: model + its processor."""
    model = load_model(path, dtype=dtype)
    return model, RGPTProcessor.from_pretrained(path, config=model.config)


def build_from_config(config: RGPTConfig, tokenizer, *, seed: int | None = None,
                      device: str | torch.device | None = None,
                      dtype: torch.dtype | None = None) -> Built:
    """A model with random weights for ``config`` and the processor of ``tokenizer``.

    ``seed`` seeds the weights without touching the global RNG (``None`` draws from it).
    ``device`` / ``dtype`` create the weights there directly, so a 7B model is never built in
    float32 on the CPU first.
    """
    def make() -> RGPTForCausalLM:
        previous = torch.get_default_dtype()
        if dtype is not None:
            torch.set_default_dtype(dtype)
        try:
            with torch.device(device or "cpu"):
                return RGPTForCausalLM(config)
        finally:
            torch.set_default_dtype(previous)

    if seed is None:
        model = make()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = make()
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model.eval(), RGPTProcessor.from_config(tokenizer, config)


def build_tiny(*, seed: int = 0, vocabulary: Sequence[str] | None = None,
               **config_overrides) -> Built:
    """The tiny random model of :mod:`rgpt_model.tiny` (word tokenizer, no download)."""
    from .tiny import TINY_NUM_REGION_TOKENS, tiny_config, tiny_texts

    tokenizer = build_word_tokenizer(
        tiny_texts(vocabulary), num_region_tokens=TINY_NUM_REGION_TOKENS
    )
    vocab = tokenizer.get_vocab()
    config = tiny_config(
        len(vocab),
        image_token_id=vocab[IMAGE_TOKEN],
        region_token_ids=region_token_ids(tokenizer),
        **config_overrides,
    )
    return build_from_config(config, tokenizer, seed=seed)


def _fit_tokenizer(model: RGPTForCausalLM, tokenizer) -> Built:
    """Point the config at the tokenizer's ``<image>``/region ids and grow the embeddings to
    the tokenizer (new rows: mean of the old ones)."""
    model.config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    model.config.region_token_ids = region_token_ids(tokenizer)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings_mean(len(tokenizer))
    return model, RGPTProcessor.from_config(tokenizer, model.config)


def _load_tokenizer(directory: str | Path, num_region_tokens: int):
    from .real_llm import LLMLocation, load_tokenizer

    tokenizer = load_tokenizer(LLMLocation(Path(directory)))
    add_rgpt_tokens(tokenizer, num_region_tokens)
    return tokenizer


def rgpt_from_llava_model(llava: nn.Module, *, use_refinement: bool = True,
                          patch_merge_factor: int = 1, **config_overrides) -> RGPTForCausalLM:
    """RGPT from an in-memory ``LlavaForConditionalGeneration``: vision tower, projector (->
    connector) and LM are copied, the refiner is fresh. ``patch_merge_factor`` defaults to 1
    because LLaVA's LM was trained on the full 576-token grid; ``vision_feature_layer``
    defaults to LLaVA's own."""
    lc = llava.config
    layer = config_overrides.pop("vision_feature_layer", lc.vision_feature_layer)
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
    model = RGPTForCausalLM(config).to(next(llava.parameters()).dtype)
    inner = llava.model
    model.vision_tower.load_state_dict(inner.vision_tower.state_dict())
    model.connector.load_state_dict(inner.multi_modal_projector.state_dict())
    model.language_model.model.load_state_dict(inner.language_model.state_dict())
    model.language_model.lm_head.load_state_dict(llava.lm_head.state_dict())
    return model


def build_from_llava(llava_dir: str | Path, *, dtype: torch.dtype | None = None,
                     num_region_tokens: int = DEFAULT_NUM_REGION_TOKENS,
                     **config_overrides) -> Built:
    """A local LLaVA-1.5 directory (``LlavaForConditionalGeneration`` + its tokenizer): region
    tokens are added to the tokenizer and the embeddings, the refiner starts fresh."""
    from transformers import LlavaForConditionalGeneration

    llava_dir = Path(llava_dir)
    if not (llava_dir / "config.json").is_file():
        raise ModelLoadError(
            f"{llava_dir} is not a LLaVA checkpoint directory (no config.json); point to a "
            "local LlavaForConditionalGeneration save_pretrained() directory"
        )
    tokenizer = _load_tokenizer(llava_dir, num_region_tokens)
    try:
        llava = LlavaForConditionalGeneration.from_pretrained(llava_dir, dtype=dtype)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot load LLaVA checkpoint from {llava_dir}: {exc}") from exc
    return _fit_tokenizer(rgpt_from_llava_model(llava, **config_overrides), tokenizer)


# RGPTConfig values that shape a region encoder's weights or its reading of the tower
REGION_ENCODER_KEYS = ("image_size", "vision_feature_layer", "vision_feature_select_strategy",
                       "use_refinement", "refiner_hidden_size", "use_mask_encoder",
                       "mask_encoder_resolution", "use_mask_position", "mask_position_resolution",
                       "mask_position_scale")


def load_vision_side(source: str | Path, dtype: torch.dtype | None = None
                     ) -> tuple[nn.Module, dict, dict | None]:
    """(CLIP vision tower, its RGPTConfig settings, a whole region encoder's weights or None).

    ``source``: a CLIP directory (vision-only or full CLIP: the tower alone), or a saved RGPT
    directory: its whole region encoder (tower, refiner and any additions, with their
    settings), e.g. the demo model's, trained on the synthetic shapes.
    """
    from transformers import AutoConfig, CLIPVisionModel

    source = Path(source)
    if not (source / "config.json").is_file():
        raise ModelLoadError(f"{source} has no config.json; expected a local CLIP directory "
                             "or a saved RGPT directory")
    try:
        kind = getattr(AutoConfig.from_pretrained(source), "model_type", None)
        if kind != "rgpt":
            return CLIPVisionModel.from_pretrained(source, dtype=dtype), {}, None
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot load a CLIP vision tower from {source}: {exc}") from exc
    donor = load_model(source, dtype=dtype)
    settings = {k: getattr(donor.config, k) for k in REGION_ENCODER_KEYS}
    return donor.vision_tower, settings, donor.region_encoder.state_dict()


def build_from_components(clip_dir: str | Path, llm: str | Path, *,
                          dtype: torch.dtype | None = None,
                          num_region_tokens: int = DEFAULT_NUM_REGION_TOKENS,
                          **config_overrides) -> Built:
    """A local CLIP or RGPT vision side (see :func:`load_vision_side`) and a causal LM, the
    tokenizer from the LM's; the connector (and, from a CLIP directory, the refiner) start
    fresh: stage-1 training trains them.

    ``llm``: a transformers directory, a ``.gguf`` file or ``pkg:<module>/<file>`` (a GGUF
    inside an installed package, e.g. :data:`rgpt_model.real_llm.SMOLLM2`); see
    :mod:`rgpt_model.real_llm`.
    """
    from .real_llm import load_causal_lm, load_tokenizer, resolve_llm

    location = resolve_llm(llm)
    tokenizer = load_tokenizer(location)
    add_rgpt_tokens(tokenizer, num_region_tokens)
    vision, settings, region_encoder = load_vision_side(clip_dir, dtype=dtype)
    lm = load_causal_lm(location, dtype=dtype)
    config = RGPTConfig(vision_config=vision.config.to_dict(), text_config=lm.config.to_dict(),
                        **{**settings, **config_overrides})
    model = RGPTForCausalLM(config).to(next(lm.parameters()).dtype)
    try:
        if region_encoder is None:
            model.vision_tower.load_state_dict(vision.state_dict())
        else:
            model.region_encoder.load_state_dict(region_encoder)
    except RuntimeError as exc:
        raise ModelLoadError(f"the region encoder of {clip_dir} does not fit the settings "
                             f"{config_overrides}: {exc}") from exc
    model.language_model.load_state_dict(lm.state_dict())
    return _fit_tokenizer(model, tokenizer)


MODEL_BUILDERS: dict[str, Callable[..., Built]] = {
    "pretrained": build_pretrained,
    "llava": build_from_llava,
    "components": build_from_components,
    "scratch": build_from_config,
    "tiny": build_tiny,
}


def build_predictor(kind: str, *sources, device: str | torch.device = "cpu",
                    dtype: str | torch.dtype | None = "float32", options: dict | None = None,
                    **build_kwargs):
    """``MODEL_BUILDERS[kind](*sources, dtype=..., **build_kwargs)`` as an RGPTPredictor on
    ``device`` (resolved by :func:`rgpt_model.device.resolve_device`); ``options`` go to
    :class:`RGPTPredictor` (backend, onnx_path, providers, decoding, query bounds)."""
    from .predictor import RGPTPredictor

    if kind not in MODEL_BUILDERS:
        raise ModelLoadError(f"unknown model source {kind!r}; use one of {sorted(MODEL_BUILDERS)}")
    torch_dtype = resolve_dtype(dtype)
    target = resolve_device(device)
    if kind in ("pretrained", "llava", "components"):  # load straight into the dtype
        build_kwargs["dtype"] = torch_dtype
    model, processor = MODEL_BUILDERS[kind](*sources, **build_kwargs)
    try:
        model.to(device=target, dtype=torch_dtype)
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(f"cannot move the model to device {device!r}: {exc}") from exc
    return RGPTPredictor(model, processor, target, **(options or {}))


def load_predictor(
    model_path: str | Path | None = None,
    *,
    device: str = "auto",
    dtype="float32",
    backend: str = "torch",
    onnx_path=None,
):
    """The predictor of a saved RGPT directory; empty/None = the built-in demo model
    (:func:`rgpt_model.demo.default_model_path`, which warns when it falls back to the tiny
    random model). ``device``: auto, cpu, cuda or cuda:N."""
    if model_path is None or not str(model_path).strip():
        from .demo import default_model_path

        path = default_model_path()
    else:
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise ModelLoadError(
                f"model_path {str(model_path)!r} is not a directory; set model_path to a saved "
                "RGPT model directory, or leave it empty for the built-in demo model"
            )
    return build_predictor("pretrained", path, device=device, dtype=dtype,
                           options={"backend": backend, "onnx_path": onnx_path})
