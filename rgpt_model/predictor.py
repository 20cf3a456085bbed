"""RGPTPredictor: the inference API used by the ROS node and the CLI.

One frame is encoded once (one vision pass, one refinement, all masks pooled together); every
task then batches all regions of the frame into one greedy ``generate`` call (left padding).
Generation lives in :meth:`RGPTPredictor.generate_from_embeds` (module function
:func:`greedy_generate`) so a faster shared-prefix KV-cache implementation can replace it.

Scores: ``label_score`` = (mean probability of the generated answer tokens) x (vocabulary match
score, 1.0 for an exact match, string similarity otherwise). REC ``scores`` = mean token
probability of the answer that selected the region.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import prompts
from .errors import InvalidQueryError, ModelLoadError
from .masks import mask_area, mask_bbox, to_mask_stack, validate_image
from .processor import RGPTProcessor
from .tokenization import find_region_placeholders, region_token

logger = logging.getLogger(__name__)

DESCRIBE_TASKS = ("classify", "caption", "detailed_caption")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'float32' / 'fp16' / 'bf16' / torch.dtype -> torch.dtype (None = float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of float32, float16, bfloat16")
    return _DTYPES[key]


@dataclass
class RegionDescription:
    """Per-region output of :meth:`RGPTPredictor.describe`. bbox is (x, y, w, h) in pixels."""

    region_id: int
    label: str
    label_score: float
    caption: str
    bbox: tuple[int, int, int, int]
    area: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReferResult:
    """Output of :meth:`RGPTPredictor.refer`; empty ``matched_ids`` = no region fits."""

    matched_ids: list[int]
    scores: list[float]
    raw_answer: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EncodedFrame:
    """A frame after the vision side: projected global tokens and region embeddings."""

    global_embeds: torch.Tensor  # (1, T, D)
    region_embeds: torch.Tensor | None  # (R, D)
    region_ids: list[int]
    masks: np.ndarray  # (R, H, W) bool, original resolution


@torch.no_grad()
def greedy_generate(
    model,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int | None,
) -> tuple[list[list[int]], list[float]]:
    """Greedy decoding from merged embeddings: (new token ids per row, mean token prob per row).

    Token ids stop before EOS; the mean probability includes the EOS step when it was emitted.
    """
    from transformers import GenerationConfig

    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    out = model.language_model.generate(
        inputs_embeds=inputs_embeds, attention_mask=attention_mask, generation_config=gen_cfg
    )
    seqs = out.sequences
    if seqs.shape[1] > len(out.logits):  # some versions prepend the (empty) prompt ids
        seqs = seqs[:, -len(out.logits) :]
    probs = torch.stack([lg.float().softmax(-1) for lg in out.logits], dim=1)  # (B, L, V)
    tok_p = probs.gather(-1, seqs[:, : probs.shape[1], None]).squeeze(-1)
    tokens, means = [], []
    for b in range(seqs.shape[0]):
        row = seqs[b].tolist()
        end = row.index(eos_token_id) + 1 if eos_token_id in row else len(row)
        p = tok_p[b, :end]
        means.append(float(p.mean()) if p.numel() else 0.0)
        tokens.append([t for t in row[:end] if t != eos_token_id])
    return tokens, means


class RGPTPredictor:
    """Region-level inference: describe (label/caption), refer (REC), ask (free question)."""

    def __init__(
        self,
        model,
        processor: RGPTProcessor,
        device: str | torch.device = "cpu",
        *,
        backend: str = "torch",
        onnx_path: str | Path | None = None,
        providers: str | Sequence[str] | None = "auto",
        decoding: str = "shared_prefix",
    ):
        """``backend``: region encoder, "torch" or "onnx" (ONNX Runtime, see onnx_encoder;
        ``onnx_path``/``providers`` pick the file and execution providers). ``decoding``:
        "shared_prefix" (prefix KV cache once, regions decoded as one batch) or "batched"
        (left-padded transformers generate); both give the same greedy tokens."""
        self.model = model.eval()
        self.processor = processor
        self.device = torch.device(device)
        if backend not in ("torch", "onnx"):
            raise InvalidQueryError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if decoding not in ("shared_prefix", "batched"):
            raise InvalidQueryError(
                f"decoding must be 'shared_prefix' or 'batched', got {decoding!r}"
            )
        self.backend, self.decoding = backend, decoding
        self.region_encoder = model.encode_regions
        if backend == "onnx":
            from .onnx_encoder import OnnxRegionEncoder

            self.region_encoder = OnnxRegionEncoder.for_model(
                model, onnx_path, providers, self.device
            )

    # ------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = "float32",
        **options,
    ) -> RGPTPredictor:
        """Load model + processor from a directory written by :meth:`save_pretrained`
        (``options``: backend, onnx_path, providers, decoding; see ``__init__``)."""
        from .modeling import load_model

        torch_dtype = resolve_dtype(dtype)
        model = load_model(path, dtype=torch_dtype)
        processor = RGPTProcessor.from_pretrained(path, config=model.config)
        try:
            model.to(torch.device(device))
        except (RuntimeError, AssertionError) as exc:
            raise ModelLoadError(f"cannot move the model to device {device!r}: {exc}") from exc
        return cls(model, processor, device, **options)

    @classmethod
    def from_llava(
        cls,
        llava_dir: str | Path,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = "float32",
        **model_kwargs,
    ) -> RGPTPredictor:
        """Start from a local LLaVA-1.5 checkpoint (transformers ``LlavaForConditionalGeneration``
        directory with its tokenizer): region tokens are added, the refiner starts fresh."""
        return cls._assemble(llava_dir, device, dtype, "llava", model_kwargs)

    @classmethod
    def from_components(
        cls,
        clip_dir: str | Path,
        llm_dir: str | Path,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = "float32",
        **config_kwargs,
    ) -> RGPTPredictor:
        """Start from separate local CLIP and causal-LM directories (tokenizer from the LLM);
        connector and refiner start fresh."""
        return cls._assemble((clip_dir, llm_dir), device, dtype, "components", config_kwargs)

    @classmethod
    def _assemble(cls, src, device, dtype, kind: str, kwargs: dict) -> RGPTPredictor:
        from transformers import AutoTokenizer

        from .modeling import RGPTForCausalLM
        from .tokenization import IMAGE_TOKEN, add_rgpt_tokens, region_token_ids

        tok_dir = Path(src if kind == "llava" else src[1])
        try:
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot load a tokenizer from {tok_dir}: {exc}") from exc
        added = add_rgpt_tokens(tokenizer)
        torch_dtype = resolve_dtype(dtype)
        if kind == "llava":
            model = RGPTForCausalLM.from_llava(src, dtype=torch_dtype, **kwargs)
        else:
            model = RGPTForCausalLM.from_components(src[0], src[1], dtype=torch_dtype, **kwargs)
            model.config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings_mean(len(tokenizer))
        elif added:
            logger.info("tokenizer tokens added within the existing embedding rows")
        model.config.region_token_ids = region_token_ids(tokenizer)
        processor = RGPTProcessor.from_config(tokenizer, model.config)
        return cls(model.to(torch.device(device)), processor, device)

    def save_pretrained(self, path: str | Path) -> None:
        """Write config JSON, safetensors weights and tokenizer/processor files."""
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)

    @property
    def config(self):
        return self.model.config

    @property
    def default_vocabulary(self) -> tuple[str, ...]:
        """Labels used when a caller gives none: the model's trained label set, else COCO-80."""
        return tuple(self.config.label_vocabulary or prompts.COCO80)

    # -------------------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode(self, image, masks, region_ids: Sequence[int] | None = None) -> EncodedFrame:
        """Validate inputs and run the vision side once for the frame."""
        img = validate_image(image)
        stack, ids = to_mask_stack(masks, img.shape[:2], region_ids)
        pixel_values, tf = self.processor.preprocess_image(img)
        mask_t = self.processor.preprocess_masks(stack, tf)
        pixel_values = pixel_values.to(self.device)
        mask_t = mask_t.to(self.device)
        g, r = self.region_encoder(pixel_values, mask_t)
        region_embeds = self.model.project(r) if r.shape[0] else None
        return EncodedFrame(self.model.project(g), region_embeds, ids, stack)

    def generate_from_embeds(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int
    ) -> tuple[list[list[int]], list[float]]:
        """Greedy decoding of all rows (``self.decoding`` picks shared-prefix or batched)."""
        tok = self.processor.tokenizer
        if self.decoding == "shared_prefix":
            from .shared_prefix import shared_prefix_generate as generate
        else:
            generate = greedy_generate
        return generate(
            self.model,
            inputs_embeds,
            attention_mask,
            max_new_tokens,
            tok.eos_token_id,
            tok.pad_token_id,
        )

    def embed_prompts(
        self,
        frame: EncodedFrame,
        texts: Sequence[str],
        region_lists: Sequence[Sequence[int]],
        require_all_regions: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs_embeds, attention_mask, input_ids) of full prompt texts over an encoded
        frame; row i refers to the frame's regions ``region_lists[i]``."""
        enc = self.processor.tokenize(texts, region_lists, require_all_regions=require_all_regions)
        ids = enc["input_ids"].to(self.device)
        embeds = self.model.merge_embeddings(
            ids,
            frame.global_embeds,
            frame.region_embeds,
            enc["region_feature_index"].to(self.device),
        )
        return embeds, enc["attention_mask"].to(self.device), ids

    @torch.no_grad()
    def _run(
        self,
        frame: EncodedFrame,
        questions: Sequence[str],
        region_lists: Sequence[Sequence[int]],
        max_new_tokens: int,
        require_all_regions: bool = True,
    ) -> list[tuple[str, float]]:
        """Generate one answer per (question, region list), all rows in one batch."""
        if max_new_tokens < 1:
            raise InvalidQueryError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        texts = [prompts.generation_prompt(q) for q in questions]
        embeds, attention_mask, _ = self.embed_prompts(frame, texts, region_lists,
                                                       require_all_regions)
        tokens, probs = self.generate_from_embeds(embeds, attention_mask, max_new_tokens)
        return [
            (prompts.clean_answer(self.processor.decode(t)), p)
            for t, p in zip(tokens, probs, strict=True)
        ]

    # ------------------------------------------------------------------------------ tasks
    def describe(
        self,
        image,
        masks,
        *,
        region_ids: Sequence[int] | None = None,
        tasks: Sequence[str] = ("classify", "caption"),
        vocabulary: Sequence[str] | None = None,
        max_new_tokens: int = 32,
    ) -> list[RegionDescription]:
        """Label and/or caption every selected region (tasks: classify, caption,
        detailed_caption). Labels come from ``vocabulary``; by default the model's own
        ``label_vocabulary`` (what it was trained to answer with), else COCO-80."""
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        bad = [t for t in tasks if t not in DESCRIBE_TASKS]
        if bad or not tasks:
            raise InvalidQueryError(f"unknown task(s) {bad or tasks}; choose from {DESCRIBE_TASKS}")
        if vocabulary is not None and len(vocabulary) == 0:
            raise InvalidQueryError(
                "vocabulary is empty; pass None for the model's default labels or some labels"
            )
        vocab = tuple(vocabulary) if vocabulary is not None else self.default_vocabulary
        frame = self.encode(image, masks, region_ids)
        n = len(frame.region_ids)
        if n == 0:
            return []
        singles = [[i] for i in range(n)]
        labels, scores = [""] * n, [0.0] * n
        captions = [""] * n
        # every task x region in one decoding batch: one shared system + image prefix
        makers = {
            "classify": lambda: prompts.classification_prompt(1, vocab),
            "caption": lambda: prompts.brief_caption_prompt(1),
            "detailed_caption": lambda: prompts.detailed_caption_prompt(1),
        }
        order = [t for t in DESCRIBE_TASKS if t in tasks]
        questions = [makers[t]() for t in order for _ in range(n)]
        answers = self._run(frame, questions, singles * len(order), max_new_tokens)
        for k, task in enumerate(order):
            for i, (text, p) in enumerate(answers[k * n : (k + 1) * n]):
                if task == "classify":
                    match = prompts.parse_classification_answer(text, vocab)
                    labels[i], scores[i] = match.label, float(match.score * p)
                else:
                    captions[i] = text if not captions[i] else f"{captions[i]} {text}"
        return [
            RegionDescription(
                region_id=rid,
                label=labels[i],
                label_score=scores[i],
                caption=captions[i],
                bbox=mask_bbox(frame.masks[i]),
                area=mask_area(frame.masks[i]),
            )
            for i, rid in enumerate(frame.region_ids)
        ]

    def refer(
        self,
        image,
        masks,
        expression: str,
        *,
        region_ids: Sequence[int] | None = None,
        max_new_tokens: int = 16,
    ) -> ReferResult:
        """Which region(s) fit a referring expression.

        Candidates are asked in chunks of ``config.max_regions_per_prompt`` (all chunks in one
        batch); the regions chosen in a round compete again until one prompt holds them all,
        so any number of candidates works. ``raw_answer`` is the final prompt's answer.
        """
        if not isinstance(expression, str) or not expression.strip():
            raise InvalidQueryError("expression is empty; pass the phrase to look for")
        frame = self.encode(image, masks, region_ids)
        if not frame.region_ids:
            return ReferResult([], [], prompts.NO_MATCH_ANSWER)
        k = max(1, min(int(self.config.max_regions_per_prompt), self.processor.num_region_tokens))
        cands = list(range(len(frame.region_ids)))
        while True:
            chunks = [cands[i : i + k] for i in range(0, len(cands), k)]
            qs = [prompts.rec_prompt(expression, len(c)) for c in chunks]
            answers = self._run(frame, qs, chunks, max_new_tokens)
            winners, score = [], {}
            for chunk, (text, p) in zip(chunks, answers, strict=True):
                for num in prompts.parse_rec_answer(text, len(chunk)):
                    winners.append(chunk[num - 1])
                    score[chunk[num - 1]] = p
            if len(chunks) == 1 or not winners or len(winners) >= len(cands):
                raw = answers[0][0] if len(chunks) == 1 else " | ".join(a for a, _ in answers)
                break
            cands = winners
        return ReferResult(
            matched_ids=[frame.region_ids[i] for i in winners],
            scores=[float(score[i]) for i in winners],
            raw_answer=raw,
        )

    def ask(
        self,
        image,
        masks,
        question: str,
        *,
        region_ids: Sequence[int] | None = None,
        max_new_tokens: int = 64,
    ) -> str:
        """Free question about the image and its regions (``<region1>``... in the text refer to
        the selected regions in order; without placeholders all regions are listed first).
        Regions the question does not mention are allowed here."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidQueryError("question is empty")
        frame = self.encode(image, masks, region_ids)
        n = len(frame.region_ids)
        if n and not find_region_placeholders(question):
            listed = ", ".join(region_token(i) for i in range(1, n + 1))
            question = f"The image contains the regions {listed}. {question.strip()}"
        return self._run(frame, [question], [list(range(n))], max_new_tokens, False)[0][0]
