"""ONNX Runtime backend for the region encoder (vision tower + refinement + mask pooling).

Why: ONNX Runtime (CPU, CUDA or TensorRT execution providers) runs the per-frame encoder with
less framework overhead than eager PyTorch and lets a robot deploy without a CUDA PyTorch.
:class:`OnnxRegionEncoder` returns exactly what ``model.region_encoder`` returns, so
the predictor can use either (``RGPTPredictor(..., backend="onnx")``).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_DEFAULT_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def _cuda_usable() -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def _tensorrt_usable() -> bool:
    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def usable_providers() -> list[str]:
    """Providers this onnxruntime build offers *and* this machine can run.

    onnxruntime-gpu lists CUDA/TensorRT even on a machine without a GPU (session creation then
    logs an error and falls back), so those are kept only when a GPU / libnvinfer is present.
    """
    import onnxruntime as ort

    offered = ort.get_available_providers()
    ok = []
    for p in offered:
        if p == "CUDAExecutionProvider" and not _cuda_usable():
            continue
        if p == "TensorrtExecutionProvider" and not (_cuda_usable() and _tensorrt_usable()):
            continue
        ok.append(p)
    if "CPUExecutionProvider" not in ok:
        ok.append("CPUExecutionProvider")
    return ok


def select_providers(requested: str | Sequence[str] | None = None) -> list[str]:
    """Resolve ``"auto"``/None, an alias (``"cuda"``, ``"tensorrt"``, ``"cpu"``) or a list.

    "auto" prefers TensorRT, then CUDA, then CPU among :func:`usable_providers`. An explicit
    request for a provider this machine cannot run falls back to the next usable one (logged);
    CPU is always last so a session can be built.
    """
    usable = usable_providers()
    if requested is None or requested == "auto":
        wanted: list[str] = list(_DEFAULT_ORDER)
    else:
        items = [requested] if isinstance(requested, str) else list(requested)
        wanted = [PROVIDER_ALIASES.get(str(r).lower(), str(r)) for r in items]
    chosen = [p for p in wanted if p in usable]
    dropped = [p for p in wanted if p not in usable]
    if dropped and requested not in (None, "auto"):
        logger.warning("ONNX Runtime providers %s not usable here; using %s", dropped, chosen)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    if "CUDAExecutionProvider" in chosen or "TensorrtExecutionProvider" in chosen:
        try:  # onnxruntime >= 1.21 can load CUDA/cuDNN from the torch/nvidia wheels
            import onnxruntime as ort

            if hasattr(ort, "preload_dlls"):
                ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001
            logger.debug("onnxruntime.preload_dlls failed: %s", exc)
    return chosen


class OnnxRegionEncoder:
    """An ONNX Runtime session that stands in for ``model.region_encoder``.

    Call it with torch tensors (pixel_values (1, 3, S, S), masks (R, S, S)); it returns torch
    tensors (global (1, T, C), regions (R, C)) on ``device`` in float32. With the CUDA provider
    and CUDA inputs, tensors are bound on the GPU (IO binding, no host round trip).
    """

    def __init__(
        self,
        path: str | Path,
        providers: str | Sequence[str] | None = "auto",
        device: str | torch.device = "cpu",
        *,
        expected_fingerprint: str | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        from .errors import ModelLoadError

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(
                f"ONNX region encoder {self.path} not found; export it with "
                "python -m rgpt_model.onnx_export MODEL_DIR OUT.onnx"
            )
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads:
            opts.intra_op_num_threads = int(intra_op_threads)
        chosen = select_providers(providers)
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=chosen)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot load ONNX region encoder {self.path}: {exc}") from exc
        self.providers = self.session.get_providers()
        meta = self.session.get_modelmeta().custom_metadata_map
        self.fingerprint = meta.get("rgpt_fingerprint")
        self.dtype = meta.get("rgpt_dtype", "float32")
        if expected_fingerprint and self.fingerprint and expected_fingerprint != self.fingerprint:
            raise ModelLoadError(
                f"{self.path} was exported from a different model (fingerprint "
                f"{self.fingerprint} != {expected_fingerprint}); export it again"
            )
        self.device = torch.device(device)
        self._np_dtype = np.float16 if self.dtype == "float16" else np.float32
        self._torch_dtype = torch.float16 if self.dtype == "float16" else torch.float32
        self._on_gpu = self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        logger.info("ONNX region encoder %s (%s) on %s", self.path, self.dtype, self.providers)

    @classmethod
    def for_model(
        cls,
        model,
        path: str | Path | None = None,
        providers: str | Sequence[str] | None = "auto",
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        intra_op_threads: int | None = None,
    ) -> OnnxRegionEncoder:
        """Reuse ``path`` if it was exported from this model, else export it (cache dir)."""
        from .onnx_export import export_region_encoder, model_fingerprint

        fp = model_fingerprint(model)
        if path is None:
            from .demo import cache_dir

            path = cache_dir() / "onnx" / f"region_encoder_{fp}_{dtype}.onnx"
        path = Path(path)
        if path.is_file():
            try:
                return cls(
                    path,
                    providers,
                    device,
                    expected_fingerprint=fp,
                    intra_op_threads=intra_op_threads,
                )
            except Exception as exc:  # noqa: BLE001 - stale or corrupt: export again
                logger.warning("re-exporting %s: %s", path, exc)
        export_region_encoder(model, path, dtype=dtype)
        return cls(
            path, providers, device, expected_fingerprint=fp, intra_op_threads=intra_op_threads
        )

    def __call__(
        self,
        pixel_values: torch.Tensor,
        masks: torch.Tensor,
        region_image_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if region_image_index is not None and bool((region_image_index != 0).any()):
            raise ValueError("the ONNX region encoder handles one image per call")
        n = masks.shape[0]
        if n == 0:  # the graph was traced with R >= 1: pool one dummy region, drop it
            masks = masks.new_ones((1,) + tuple(masks.shape[1:]))
        if self._on_gpu and pixel_values.is_cuda and self._static_global_shape():
            g, r = self._run_bound(pixel_values, masks)
        else:
            g_np, r_np = self.session.run(
                None,
                {
                    "pixel_values": pixel_values.detach().cpu().numpy().astype(self._np_dtype),
                    "masks": masks.detach().cpu().numpy().astype(self._np_dtype),
                },
            )
            g = torch.from_numpy(g_np).to(self.device)
            r = torch.from_numpy(r_np).to(self.device)
        return g.float(), (r[:0] if n == 0 else r).float()

    def _static_global_shape(self) -> bool:
        shape = self.session.get_outputs()[0].shape
        return len(shape) == 3 and all(isinstance(d, int) for d in shape[1:])

    def _run_bound(
        self, pixel_values: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """IO-bound run on the GPU: inputs and outputs stay in torch CUDA memory."""
        px = pixel_values.to(self._torch_dtype).contiguous()
        mk = masks.to(self._torch_dtype).contiguous()
        dev = px.device
        n = mk.shape[0]
        t = int(self.session.get_outputs()[0].shape[1])
        c = int(self.session.get_outputs()[0].shape[2])
        g = torch.empty((1, t, c), dtype=self._torch_dtype, device=dev)
        r = torch.empty((n, c), dtype=self._torch_dtype, device=dev)
        binding = self.session.io_binding()
        idx = dev.index or 0
        for name, ten in (("pixel_values", px), ("masks", mk)):
            binding.bind_input(name, "cuda", idx, self._np_dtype, tuple(ten.shape), ten.data_ptr())
        for name, ten in (("global_features", g), ("region_features", r)):
            binding.bind_output(name, "cuda", idx, self._np_dtype, tuple(ten.shape), ten.data_ptr())
        self.session.run_with_iobinding(binding)
        return g, r
