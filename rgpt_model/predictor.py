"""RGPTPredictor: the inference API used by the ROS node and the CLI.

segment-anything's ``set_image`` / ``predict`` pattern: :meth:`RGPTPredictor.encode` runs the
vision side once for a frame (one vision pass, one refinement, all masks pooled together) and
returns an :class:`~rgpt_model.encoded_frame.EncodedFrame`; the tasks take that frame::

    frame = predictor.encode(image, masks)
    predictor.describe(frame)
    predictor.refer(frame, "the red mug")
    predictor.ask(frame, "what is <region1> made of?")

Several frames (one per camera) go through ``encode_many`` (one vision batch) and
``describe_many`` (one decoding batch over all their regions; optionally reusing the answers of
regions that have not changed, :mod:`rgpt_model.answer_reuse`); see :mod:`rgpt_model.multi_frame`.

For one-off calls each task also takes the image and its masks in place of the frame
(``describe(image, masks)``, ``refer(image, masks, expression)``, ``ask(image, masks,
question)``): it encodes them and runs the frame path. Every task batches all regions of the
frame into one greedy decoding call (:mod:`rgpt_model.decoding`), polls ``should_stop``
between decoding steps (True raises QueryCancelledError) and refuses over-long queries before
any work (``max_query_chars``, ``max_query_tokens``, ``max_new_tokens_limit``).

Scores: ``label_score`` = (mean probability of the generated answer tokens) x (vocabulary match
score, 1.0 for an exact match, string similarity otherwise). REC ``scores`` = mean token
probability of the answer that selected the region.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from . import prompts
from .decoding import DECODERS
from .encoded_frame import EncodedFrame
from .errors import InvalidQueryError
from .multi_frame import DESCRIBE_TASKS, describe_many, describe_options, encode_many
from .processor import RGPTProcessor
from .query_limits import QueryLimits
from .results import ReferResult, RegionDescription
from .tokenization import find_region_placeholders, region_token

logger = logging.getLogger(__name__)

__all__ = ["DESCRIBE_TASKS", "EncodedFrame", "RGPTPredictor", "ReferResult", "RegionDescription"]

ShouldStop = Callable[[], bool] | None


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
        max_query_chars: int = 1000,
        max_query_tokens: int = 256,
        max_new_tokens_limit: int = 512,
    ):
        """``model`` already on ``device``. ``backend``: region encoder, "torch" or "onnx" (ONNX
        Runtime, see onnx_encoder; ``onnx_path``/``providers`` pick the file and execution
        providers). ``decoding``: a name in :data:`rgpt_model.decoding.DECODERS` (all give the
        same greedy tokens). The ``max_*`` bounds refuse queries that would keep the model busy
        for minutes; they live in ``self.limits`` (:mod:`rgpt_model.query_limits`), where a
        caller may change them at run time."""
        self.model = model.eval()
        self.processor = processor
        self.device = torch.device(device)
        if backend not in ("torch", "onnx"):
            raise InvalidQueryError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if decoding not in DECODERS:
            raise InvalidQueryError(f"decoding must be one of {sorted(DECODERS)}, got {decoding!r}")
        self.backend, self.decoding = backend, decoding
        self.limits = QueryLimits(int(max_query_chars), int(max_query_tokens),
                                  int(max_new_tokens_limit))
        self._offloaded = False
        self._onnx_factory = None
        self.region_encoder = model.region_encoder
        if backend == "onnx":
            from .onnx_encoder import OnnxRegionEncoder

            def make_onnx():
                return OnnxRegionEncoder.for_model(model, onnx_path, providers, self.device)

            self._onnx_factory = make_onnx
            self.region_encoder = make_onnx()

    # ------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = "float32", **options) -> RGPTPredictor:
        """Load a saved RGPT directory (``options``: the keywords of ``__init__``)."""
        from .build import build_predictor

        return build_predictor("pretrained", path, device=device, dtype=dtype, options=options)

    @classmethod
    def from_llava(cls, llava_dir: str | Path, device: str | torch.device = "cpu",
                   dtype: str | torch.dtype | None = "float32", **model_kwargs) -> RGPTPredictor:
        """A local LLaVA-1.5 directory (see :func:`rgpt_model.build.build_from_llava`)."""
        from .build import build_predictor

        return build_predictor("llava", llava_dir, device=device, dtype=dtype, **model_kwargs)

    @classmethod
    def from_components(cls, clip_dir: str | Path, llm_dir: str | Path,
                        device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = "float32",
                        **config_kwargs) -> RGPTPredictor:
        """Start from separate local CLIP and causal-LM directories (see
        :func:`rgpt_model.build.build_from_components`)."""
        from .build import build_predictor

        return build_predictor("components", clip_dir, llm_dir, device=device, dtype=dtype,
                               **config_kwargs)

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

    # ------------------------------------------------------------------ device placement
    @property
    def is_offloaded(self) -> bool:
        return self._offloaded

    def offload(self) -> None:
        """Move the model to the CPU and free the CUDA cache (a node that is deactivated gives
        the GPU back). Idempotent; a no-op on a CPU predictor. Frames encoded before keep their
        tensors where they are: drop them too."""
        if self.device.type == "cpu" or self._offloaded:
            return
        self.model.to("cpu")
        if self._onnx_factory is not None and getattr(self.region_encoder, "_on_gpu", False):
            self.region_encoder = None  # its session holds GPU memory; rebuilt by restore()
        self._offloaded = True
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        logger.info("model offloaded from %s to the CPU", self.device)

    def restore(self) -> None:
        """Move the model back onto its device after :meth:`offload`. Idempotent."""
        if not self._offloaded:
            return
        self.model.to(self.device)
        if self.region_encoder is None:
            self.region_encoder = self._onnx_factory()
        self._offloaded = False
        logger.info("model restored to %s", self.device)

    # -------------------------------------------------------------------------- encoding
    def encode(self, image, masks, region_ids: Sequence[int] | None = None) -> EncodedFrame:
        """Validate inputs and run the vision side once for the frame.

        ``image``: HxWx3 uint8 RGB (or PIL). ``masks``: a label image HxW (0 = background) or
        a boolean stack NxHxW (ids 1..N); ``region_ids`` selects and orders the ids.
        """
        return encode_many(self, [(image, masks, region_ids)])[0]

    encode_many = encode_many  # (items): [(image, masks, region_ids), ...] -> frames

    def _frame(self, source, masks, region_ids: Sequence[int] | None) -> EncodedFrame:
        """The frame a task runs on: ``source`` itself, or ``source`` (an image) encoded."""
        if isinstance(source, EncodedFrame):
            if masks is not None:
                raise TypeError("an EncodedFrame already holds its masks; pass them to encode()")
            return source if region_ids is None else source.select(region_ids)
        if masks is None:
            raise TypeError("the masks are missing: pass (image, masks, ...) or a frame from "
                            "encode(image, masks)")
        return self.encode(source, masks, region_ids)

    @staticmethod
    def _masks_and_text(source, args: tuple, task: str, name: str) -> tuple:
        """(masks or None, text) from the positional arguments after ``source``."""
        if isinstance(source, EncodedFrame):
            if len(args) == 1:
                return None, args[0]
            usage = f"{task}(frame, {name})"
        else:
            if len(args) == 2:
                return args[0], args[1]
            usage = f"{task}(image, masks, {name})"
        raise TypeError(f"use {usage}; got {len(args) + 1} positional arguments")

    # ------------------------------------------------------------------------- decoding
    def generate_from_embeds(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
        should_stop: ShouldStop = None, row_groups: Sequence[int] | None = None,
    ) -> tuple[list[list[int]], list[float]]:
        """Greedy decoding of all rows with the decoder named by ``self.decoding``;
        ``row_groups``: the frame of each row when rows come from several frames."""
        tok = self.processor.tokenizer
        return DECODERS[self.decoding](
            self.model, inputs_embeds, attention_mask, max_new_tokens, tok.eos_token_id,
            tok.pad_token_id, should_stop=should_stop, row_groups=row_groups,
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
        should_stop: ShouldStop = None,
    ) -> list[tuple[str, float]]:
        """Generate one answer per (question, region list), all rows in one batch."""
        self.restore()
        texts = [prompts.generation_prompt(q) for q in questions]
        embeds, attention_mask, _ = self.embed_prompts(frame, texts, region_lists,
                                                       require_all_regions)
        tokens, probs = self.generate_from_embeds(embeds, attention_mask, max_new_tokens,
                                                  should_stop)
        return [
            (prompts.clean_answer(self.processor.decode(t)), p)
            for t, p in zip(tokens, probs, strict=True)
        ]

    # ------------------------------------------------------------------------------ tasks
    def describe(
        self,
        source,
        masks=None,
        *,
        region_ids: Sequence[int] | None = None,
        tasks: Sequence[str] = ("classify", "caption"),
        vocabulary: Sequence[str] | None = None,
        max_new_tokens: int = 32,
        should_stop: ShouldStop = None,
    ) -> list[RegionDescription]:
        """Label and/or caption every region of ``source`` (an EncodedFrame, or an image with
        its ``masks``); tasks: classify, caption, detailed_caption. Labels come from
        ``vocabulary``; by default the model's own ``label_vocabulary``, else COCO-80. Every
        task x region is one row of one decoding batch (one shared system + image prefix)."""
        describe_options(self, tasks, vocabulary, max_new_tokens)  # refuse before encoding
        frame = self._frame(source, masks, region_ids)
        return self.describe_many([frame], tasks=tasks, vocabulary=vocabulary,
                                  max_new_tokens=max_new_tokens, should_stop=should_stop)[0]

    # several frames (e.g. one per camera): one vision batch, one decoding batch, reuse
    describe_many = describe_many  # (frames, *, tasks, vocabulary, ..., named, reuse)

    def refer(
        self,
        source,
        *args,
        region_ids: Sequence[int] | None = None,
        max_new_tokens: int = 16,
        should_stop: ShouldStop = None,
    ) -> ReferResult:
        """Which region(s) fit a referring expression: ``refer(frame, expression)`` or
        ``refer(image, masks, expression)``.

        Candidates are asked in chunks of ``config.max_regions_per_prompt`` (all chunks in one
        batch); the regions chosen in a round compete again until one prompt holds them all,
        so any number of candidates works. ``raw_answer`` is the final prompt's answer.
        """
        masks, expression = self._masks_and_text(source, args, "refer", "expression")
        self.limits.check_text(expression, "expression", self.processor.tokenizer)
        max_new_tokens = self.limits.check_max_new_tokens(max_new_tokens)
        frame = self._frame(source, masks, region_ids)
        if not frame.region_ids:
            return ReferResult([], [], prompts.NO_MATCH_ANSWER)
        k = max(1, min(int(self.config.max_regions_per_prompt), self.processor.num_region_tokens))
        cands = list(range(len(frame.region_ids)))
        while True:
            chunks = [cands[i : i + k] for i in range(0, len(cands), k)]
            qs = [prompts.rec_prompt(expression, len(c)) for c in chunks]
            answers = self._run(frame, qs, chunks, max_new_tokens, should_stop=should_stop)
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
        source,
        *args,
        region_ids: Sequence[int] | None = None,
        max_new_tokens: int = 64,
        should_stop: ShouldStop = None,
    ) -> str:
        """Free question about the image and its regions: ``ask(frame, question)`` or
        ``ask(image, masks, question)``. ``<region1>``... in the text refer to the regions in
        order; without placeholders all regions are listed first. Regions the question does
        not mention are allowed here."""
        masks, question = self._masks_and_text(source, args, "ask", "question")
        self.limits.check_text(question, "question", self.processor.tokenizer)
        max_new_tokens = self.limits.check_max_new_tokens(max_new_tokens)
        frame = self._frame(source, masks, region_ids)
        n = len(frame.region_ids)
        if n and not find_region_placeholders(question):
            listed = ", ".join(region_token(i) for i in range(1, n + 1))
            question = f"The image contains the regions {listed}. {question.strip()}"
        answers = self._run(frame, [question], [list(range(n))], max_new_tokens, False,
                            should_stop)
        return answers[0][0]
