#!/usr/bin/env python
"""GPU benchmark of multi-region inference at full size (random weights, no downloads).

Why: the real question is how many region captions per second one GPU gives, and how close the
decode step is to the memory-bandwidth limit (a 7B bf16 step reads ~13.5 GB of weights).

Model: CLIP ViT-L/14-336 + Vicuna-7B shapes (RGPTConfig defaults: 144 global tokens after the
2x patch merge, 4x refinement), random bf16 weights built directly on the GPU. For R regions
(default 1, 8, 16) it measures:

- ``encode_ms``: vision tower + refinement + mask pooling + connector for the frame
- ``prefix_prefill_ms``: KV cache of the shared image + system-prompt prefix (batch 1)
- ``suffix_prefill_ms``: the R region suffixes as one batch on top of the repeated cache
- ``decode_step_ms``: one greedy step for all R rows
- ``shared_prefix_frame_s`` and ``captions_per_s``: a whole frame (encode + shared-prefix
  decoding of ``--new-tokens`` tokens per region)
- ``batched_generate_frame_s``: encode once + one left-padded transformers ``generate``
- ``naive_frame_s``: per region, encode + transformers ``generate`` on its full prompt alone
- ``bandwidth_limit_step_ms``: LLM weight bytes / memory bandwidth (nominal for the card, and
  the copy bandwidth measured here)

Writes JSON (``--json``, default benchmark_gpu.json). ``--tiny`` runs a tiny config on the
CPU in seconds (used by the tests). Every generation runs without EOS so each region decodes
exactly ``--new-tokens`` tokens. Target: under 8 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from benchmark_regions import build_random_rgpt, make_scene  # noqa: E402

from rgpt_model import prompts  # noqa: E402
from rgpt_model.config import CLIP_L_336  # noqa: E402
from rgpt_model.decoding import (  # noqa: E402
    common_prefix_length,
    shared_prefix_generate,
    split_prompt_rows,
)
from rgpt_model.tiny import TINY_TEXT, TINY_VISION  # noqa: E402

logger = logging.getLogger("benchmark_gpu")

# nominal HBM bandwidth, bytes/s (by substring of torch.cuda.get_device_name)
NOMINAL_BANDWIDTH = [
    ("H200", 4.8e12),
    ("H100 NVL", 3.9e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("A100-SXM4-80GB", 2.039e12),
    ("A100", 1.555e12),
    ("L40S", 0.864e12),
]

VICUNA_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> tuple[float, object]:
    """Median seconds of ``fn()`` (synchronised) and its last result."""
    out = None
    for _ in range(warmup):
        out = fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def measured_copy_bandwidth(device: torch.device, n_bytes: int) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write counted)."""
    src = torch.empty(n_bytes // 2, dtype=torch.float16, device=device)
    dst = torch.empty_like(src)
    t, _ = timed(lambda: dst.copy_(src), device, repeats=5, warmup=2)
    return 2 * n_bytes / t


def nominal_bandwidth(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or "cpu", None
    name = torch.cuda.get_device_name(device)
    for key, bw in NOMINAL_BANDWIDTH:
        if key in name:
            return name, bw
    return name, None


class Frame:
    """Inputs for one frame with R regions: pixels, masks, merged prompt embeddings."""

    def __init__(self, model, processor, n_regions: int, device: torch.device):
        img, lab = make_scene(n_regions, 336, 448)
        masks = [lab == i for i in range(1, n_regions + 1)]
        import numpy as np

        pix, tf = processor.preprocess_image(img)
        self.pixels = pix.to(device, model.dtype)
        self.masks = processor.preprocess_masks(np.stack(masks), tf).to(device)
        text = prompts.generation_prompt(prompts.brief_caption_prompt(1))
        enc = processor.tokenize([text] * n_regions, [[i] for i in range(n_regions)])
        self.input_ids = enc["input_ids"].to(device)
        self.attention_mask = enc["attention_mask"].to(device)
        self.region_index = enc["region_feature_index"].to(device)
        self.model = model

    @torch.no_grad()
    def encode(self):
        m = self.model
        g, r = m.region_encoder(self.pixels, self.masks)
        return m.project(g), m.project(r)

    @torch.no_grad()
    def embeds(self, encoded=None):
        g, r = encoded if encoded is not None else self.encode()
        return self.model.merge_embeddings(self.input_ids, g, r, self.region_index)


@torch.no_grad()
def hf_generate(model, embeds, attention_mask, new_tokens: int):
    from transformers import GenerationConfig

    cfg = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=None,
        pad_token_id=0,
    )
    return model.language_model.generate(
        inputs_embeds=embeds, attention_mask=attention_mask, generation_config=cfg
    )


@torch.no_grad()
def measure_r(model, processor, n_regions: int, args, device) -> dict:
    from transformers import DynamicCache

    fr = Frame(model, processor, n_regions, device)
    lm = model.language_model
    rep = args.repeats
    res: dict = {"regions": n_regions}

    t, enc = timed(fr.encode, device, rep)
    res["encode_ms"] = t * 1e3
    embeds = fr.embeds(enc)
    rows = split_prompt_rows(embeds, fr.attention_mask)
    p = min(common_prefix_length(rows), min(r.shape[0] for r in rows) - 1)
    res["prompt_tokens"] = int(rows[0].shape[0])
    res["prefix_tokens"] = p
    res["suffix_tokens"] = int(rows[0].shape[0] - p)

    def prefill_prefix():
        cache = DynamicCache(config=lm.config)
        lm(
            inputs_embeds=rows[0][:p][None],
            position_ids=torch.arange(p, device=device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return cache

    t, _ = timed(prefill_prefix, device, rep)
    res["prefix_prefill_ms"] = t * 1e3

    suffix = torch.stack([r[p:] for r in rows])  # same task: equal suffix lengths
    s = suffix.shape[1]

    def prefill_suffix():
        cache = prefill_prefix()
        cache.batch_repeat_interleave(n_regions)
        out = lm(
            inputs_embeds=suffix,
            position_ids=torch.arange(p, p + s, device=device)[None].expand(n_regions, -1),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return cache, out.logits[:, -1].argmax(-1)

    t_both, (cache, nxt) = timed(prefill_suffix, device, rep)
    res["suffix_prefill_ms"] = max(0.0, t_both * 1e3 - res["prefix_prefill_ms"])

    embed = lm.get_input_embeddings()
    steps = args.new_tokens
    pos = torch.full((n_regions, 1), p + s, device=device, dtype=torch.long)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        out = lm(
            inputs_embeds=embed(nxt[:, None]),
            position_ids=pos + i,
            past_key_values=cache,
            use_cache=True,
        )
        nxt = out.logits[:, -1].argmax(-1)
    _sync(device)
    res["decode_step_ms"] = (time.perf_counter() - t0) / steps * 1e3

    def shared_frame():
        e = fr.embeds()
        return shared_prefix_generate(model, e, fr.attention_mask, steps, None)

    t, toks = timed(shared_frame, device, rep)
    res["shared_prefix_frame_s"] = t
    res["captions_per_s"] = n_regions / t
    res["tokens_per_s"] = n_regions * steps / t

    def batched_frame():
        return hf_generate(model, fr.embeds(), fr.attention_mask, steps)

    t, _ = timed(batched_frame, device, rep)
    res["batched_generate_frame_s"] = t

    if not args.skip_naive and n_regions <= args.naive_max_regions:

        def naive_frame():
            outs = []
            for b in range(n_regions):  # each region alone: its own encode + full prompt
                g, r = model.region_encoder(fr.pixels, fr.masks[b : b + 1])
                ids = fr.input_ids[b][fr.attention_mask[b].bool()][None]
                e = model.merge_embeddings(ids, model.project(g), model.project(r))
                ones = torch.ones_like(ids)
                outs.append(hf_generate(model, e, ones, steps))
            return outs

        t, _ = timed(naive_frame, device, max(1, rep // 2), warmup=1 if n_regions <= 8 else 0)
        res["naive_frame_s"] = t
        res["naive_over_shared"] = t / res["shared_prefix_frame_s"]
    res["batched_over_shared"] = res["batched_generate_frame_s"] / res["shared_prefix_frame_s"]
    res["generated_tokens_per_region"] = len(toks[0][0]) if toks and toks[0] else steps
    return res


def measure_onnx_encoder(model, processor, args, device: torch.device) -> dict:
    """Region encoder at R=8: PyTorch vs ONNX Runtime (CUDA provider on a GPU, fp16 graph
    when the model is half precision; TensorRT only with --tensorrt: its engine build for
    CLIP-L takes minutes)."""
    import tempfile

    from rgpt_model.onnx_encoder import OnnxRegionEncoder
    from rgpt_model.onnx_export import export_region_encoder

    fr = Frame(model, processor, 8, device)
    half = model.dtype in (torch.float16, torch.bfloat16)
    dtype = "float16" if half and device.type == "cuda" else "float32"
    if device.type == "cuda":
        providers = ["tensorrt", "cuda"] if args.tensorrt else ["cuda"]
    else:
        providers = ["cpu"]
    out: dict = {"export_dtype": dtype}
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        path = export_region_encoder(model, Path(d) / "enc.onnx", dtype=dtype)
        out["export_s"] = time.perf_counter() - t0
        enc = OnnxRegionEncoder(path, providers, device)
        out["providers"] = enc.providers
        px, masks = fr.pixels.float(), fr.masks.float()
        with torch.no_grad():
            t_torch, ref = timed(lambda: model.region_encoder(fr.pixels, fr.masks), device, 10)
        t_onnx, got = timed(lambda: enc(px, masks), device, 10)
    out["torch_ms"] = t_torch * 1e3
    out["onnx_ms"] = t_onnx * 1e3
    out["speedup"] = t_torch / t_onnx
    out["max_abs_diff_global_region"] = [
        float((a.float() - b.float()).abs().max()) for a, b in zip(ref, got, strict=True)
    ]
    out["max_abs_torch_global_region"] = [float(a.float().abs().max()) for a in ref]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny config on the CPU (seconds)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--dtype", default=None, help="bfloat16 (GPU default) or float32")
    ap.add_argument("--regions", nargs="+", type=int, default=[1, 8, 16])
    ap.add_argument("--new-tokens", type=int, default=None, help="tokens per region")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--naive-max-regions", type=int, default=16)
    ap.add_argument(
        "--onnx",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the ONNX Runtime region encoder (default: on)",
    )
    ap.add_argument("--tensorrt", action="store_true", help="try TensorRT before CUDA")
    ap.add_argument("--json", type=Path, default=Path("benchmark_gpu.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t_start = time.perf_counter()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.tiny:
        vision, text, vocab = TINY_VISION, TINY_TEXT, None
        dtype = getattr(torch, args.dtype or "float32")
        args.new_tokens = args.new_tokens or 4
        args.repeats = args.repeats or 1
    else:
        vision, text, vocab = CLIP_L_336, VICUNA_7B, 32000
        dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
        args.new_tokens = args.new_tokens or 32
        args.repeats = args.repeats or 3
    if device.type == "cpu" and args.tiny:
        torch.set_num_threads(1)  # tiny shapes: threads only add overhead

    logger.info("building random %s model on %s (%s)", "tiny" if args.tiny else "7B", device, dtype)
    t0 = time.perf_counter()
    model, processor = build_random_rgpt(
        vision, text, vocab_size=vocab, device=str(device), dtype=dtype
    )
    build_s = time.perf_counter() - t0
    lm_params = sum(p.numel() for p in model.language_model.parameters())
    lm_bytes = sum(p.numel() * p.element_size() for p in model.language_model.parameters())
    vis_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("language"))
    name, nominal = nominal_bandwidth(device)
    copy_bw = measured_copy_bandwidth(device, 1 << (30 if device.type == "cuda" else 24))

    report = {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
        "tiny": bool(args.tiny),
        "model": {
            "vision": vision,
            "text": text,
            "llm_params_B": lm_params / 1e9,
            "vision_side_params_M": vis_params / 1e6,
            "llm_weight_GB": lm_bytes / 1e9,
            "global_tokens": model.config.num_global_tokens,
            "refined_grid": model.config.refined_grid_size,
        },
        "build_s": build_s,
        "new_tokens_per_region": args.new_tokens,
        "bandwidth": {
            "nominal_bytes_per_s": nominal,
            "measured_copy_bytes_per_s": copy_bw,
            "limit_step_ms_nominal": lm_bytes / nominal * 1e3 if nominal else None,
            "limit_step_ms_measured": lm_bytes / copy_bw * 1e3,
        },
        "results": [],
    }

    def save() -> None:  # after every section, so a time-out still leaves results
        report["total_s"] = time.perf_counter() - t_start
        if device.type == "cuda":
            report["max_memory_allocated_GB"] = torch.cuda.max_memory_allocated(device) / 1e9
        args.json.write_text(json.dumps(report, indent=2) + "\n")

    for r in args.regions:
        logger.info("R=%d ...", r)
        try:
            res = measure_r(model, processor, r, args, device)
        except Exception as exc:  # noqa: BLE001 - record and go on (one run on a GPU is precious)
            logger.exception("R=%d failed", r)
            res = {"regions": r, "error": f"{type(exc).__name__}: {exc}"}
            if args.tiny:
                raise
        else:
            bw_limit = (
                report["bandwidth"]["limit_step_ms_nominal"]
                or report["bandwidth"]["limit_step_ms_measured"]
            )
            res["decode_step_over_bandwidth_limit"] = res["decode_step_ms"] / bw_limit
        report["results"].append(res)
        logger.info(
            "R=%d: %s", r, {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
        save()
    if args.onnx:
        try:
            report["onnx_encoder"] = measure_onnx_encoder(model, processor, args, device)
        except Exception as exc:  # noqa: BLE001
            logger.exception("ONNX encoder section failed")
            report["onnx_encoder"] = {"error": f"{type(exc).__name__}: {exc}"}
            if args.tiny:
                raise
        logger.info("onnx encoder: %s", report["onnx_encoder"])
    save()
    print(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
